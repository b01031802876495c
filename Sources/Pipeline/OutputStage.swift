import Foundation
import Output

/// Stdout as a sink: one JSON line per frame (`RecordEncoder`), and an error record when an input
/// stops early. Several inputs may share one `LineWriter` (it writes whole lines atomically).
public final class JSONLinesSink: FrameSink {
    private let writer: LineWriter
    private let input: String
    private let options: EmitOptions
    private let frameLines: Bool
    private var line: [UInt8] = []
    private var written = 0

    /// - Parameter frameLines: false writes no frame records (`--segments` alone), only the others.
    public init(writer: LineWriter, input: String, options: EmitOptions, frameLines: Bool = true) {
        self.writer = writer; self.input = input; self.options = options; self.frameLines = frameLines
    }

    public func write(_ record: FrameRecord) throws {
        written += 1
        guard frameLines else { return }
        line = RecordEncoder.frameLine(record, options: options, reusing: line)
        try writer.write(line)
    }

    public func writeSegment(_ segment: LabelSegment) throws {
        try writer.write(RecordEncoder.segmentLine(input: input, segment))
    }

    public func writePooled(mode: PoolMode, frames: Int, embedding: [Float]) throws {
        try writer.write(RecordEncoder.pooledLine(input: input, mode: mode, frames: frames, embedding: embedding,
                                                  encoding: options.embeddingEncoding))
    }

    public func finish(error: String?) throws {
        if let error { try writer.write(RecordEncoder.errorLine(input: input, message: error, framesEmitted: written)) }
    }

    public func abandon() {}
}

/// The last stage of one input: reads its event link in frame order, passes frames through the
/// input's `ResultProcessor`s to its sink, and finishes the input at its end. Runs on the input's
/// own output queue; owns the sink and the processors. Progress, the outcome and the error record
/// all come from this one event stream.
final class OutputStage {
    private let input: InputRun
    private let makeSink: (() throws -> FrameSink)?
    private let stats: PipelineStats
    private let runCancelled: () -> Bool
    private let outputClosed: () -> Void
    private let log: (String) -> Void
    private let finished: (InputOutcome) -> Void
    private var sink: FrameSink?
    private var sinkFailed = false
    private var processors: [ResultProcessor] = []
    /// `--segments` and `--pool` state of this input (nil: off).
    private var tracker: SegmentTracker?
    private var pooler: EmbeddingPooler?

    /// - Parameters:
    ///   - makeSink: the input's sink (its plan's, or stdout's).
    ///   - outputClosed: called when stdout's reader went away.
    ///   - finished: called once, last, with the input's outcome.
    init(run: InputRun, makeSink: (() throws -> FrameSink)?, options: PipelineOptions, stats: PipelineStats,
         runCancelled: @escaping () -> Bool, outputClosed: @escaping () -> Void, log: @escaping (String) -> Void,
         finished: @escaping (InputOutcome) -> Void) {
        self.input = run; self.makeSink = makeSink; self.stats = stats; self.runCancelled = runCancelled
        self.outputClosed = outputClosed; self.log = log; self.finished = finished
        tracker = options.segmentMin.map { SegmentTracker(minDuration: $0) }
        pooler = options.pool.map { EmbeddingPooler(mode: $0) }
    }

    func run() {
        processors = input.plan.makeProcessors?() ?? []
        var dropped = 0
        var end = InputEnd.cancelled
        loop: while case .item(let event) = input.route.events.pop() {
            switch event {
            case .frame(let result):
                guard input.failure == nil else { continue }
                stats.emit.measure { process(result, from: 0) }
            case .gap(let n):
                dropped += n
            case .error(let message):
                input.fail(message)
            case .end(let e):
                end = e
                break loop
            }
        }
        if input.isCancelled { end = .cancelled }
        if input.failure == nil, !processors.isEmpty, !runCancelled() {
            for (i, p) in processors.enumerated() {
                do { try p.finish(end, emit: { self.process($0, from: i + 1) }) } catch { input.fail("\(error)") }
            }
        }
        finish(end)
    }

    /// Passes `result` through processors `from...` and then to the sink.
    private func process(_ result: FrameResult, from index: Int) {
        guard input.failure == nil else { return }
        if index < processors.count {
            do { try processors[index].process(result, emit: { self.process($0, from: index + 1) }) } catch {
                input.fail("\(error)")
            }
            return
        }
        write(result)
    }

    private func write(_ result: FrameResult) {
        guard let s = openSink() else { return }
        let m = result.meta
        do {
            try result.embedding.withUnsafeBufferPointer { emb in
                if !emb.isEmpty { pooler?.add(emb) }
                if let closed = tracker?.add(pts: m.pts, top: result.labels.first) { try s.writeSegment(closed) }
                try s.write(FrameRecord(input: input.plan.name, frame: m.index, pts: m.pts, keyframe: m.keyframe,
                                        labels: result.labels, embedding: emb.isEmpty ? nil : emb))
            }
            input.didEmit(pts: m.pts)
        } catch is LineWriter.Closed {
            outputClosed()
        } catch is LineWriter.Abandoned {
            // The run was cancelled while stdout's reader was not reading: this line is given up.
        } catch {
            s.abandon()
            sink = nil
            sinkFailed = true
            input.fail("\(error)")
        }
    }

    private func openSink() -> FrameSink? {
        if let sink { return sink }
        guard let makeSink, !sinkFailed else { return nil }
        do {
            sink = try makeSink()
        } catch {
            sinkFailed = true
            input.fail("\(error)")
        }
        return sink
    }

    private func finish(_ end: InputEnd) {
        let error = input.failure ?? end.error
        let cancelled = runCancelled()
        var outcome = InputOutcome(name: input.plan.name, error: error)
        (outcome.framesDecoded, outcome.decodeErrors, outcome.framesDropped) = input.counts
        outcome.framesEmitted = input.emitted
        if let error, !(cancelled && error == "cancelled") { log("\(input.plan.name): \(error)") }
        if let s = openSink() {
            if cancelled {
                s.abandon()
            } else {
                do {
                    // The last open segment and the pooled embedding of what was emitted, also for
                    // an input that failed part-way (its records so far are kept too).
                    if var t = tracker, let last = t.finish() { try s.writeSegment(last) }
                    if let p = pooler, let e = p.result { try s.writePooled(mode: p.mode, frames: p.frames, embedding: e) }
                    try s.finish(error: error)
                    outcome.files = s.outputPaths
                } catch is LineWriter.Closed {
                    outputClosed()
                } catch is LineWriter.Abandoned {
                    // cancelled meanwhile (see write)
                } catch {
                    outcome.error = outcome.error ?? "\(error)"
                    log("\(input.plan.name): \(error)")
                }
            }
        }
        input.advance(to: .finished)
        finished(outcome)
    }
}
