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
        try writer.write(RecordEncoder.segmentLines(input: input, segment, encoding: options.embeddingEncoding))
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
///
/// Each frame's `duration` is the span to the next kept frame, so the stage holds one frame back
/// (one `FrameResult` per input: the memory bound does not change) and writes it when the next one
/// arrives; at the end of the input the last one gets its own frame duration. On a live input the
/// held frame waits at most `maxLatency` seconds: if the next kept frame has not come by then, it
/// is written with the previous frame's span (its own frame duration for the first), an estimate,
/// so a line never waits for a frame that may be seconds away (`--keyframes`, `--scene`).
/// Segments and pooling see each frame when it arrives, so a segment record still comes just
/// before the frame record that closed it.
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
    /// The frame held back until the next kept frame gives its duration.
    private var pending: FrameResult?
    /// Live inputs: when the held frame must be written even without its successor.
    private var pendingDeadline: Date?
    /// The last exact span written (the estimate for a live frame whose successor is late).
    private var lastSpan: Double?
    private let holdLimit: Double?

    /// - Parameters:
    ///   - makeSink: the input's sink (its plan's, or stdout's).
    ///   - outputClosed: called when stdout's reader went away.
    ///   - finished: called once, last, with the input's outcome.
    init(run: InputRun, makeSink: (() throws -> FrameSink)?, options: PipelineOptions, stats: PipelineStats,
         runCancelled: @escaping () -> Bool, outputClosed: @escaping () -> Void, log: @escaping (String) -> Void,
         finished: @escaping (InputOutcome) -> Void) {
        self.input = run; self.makeSink = makeSink; self.stats = stats; self.runCancelled = runCancelled
        self.outputClosed = outputClosed; self.log = log; self.finished = finished
        tracker = options.segmentMin.map { SegmentTracker(minDuration: $0, pool: options.pool) }
        pooler = options.pool.map { EmbeddingPooler(mode: $0) }
        holdLimit = run.plan.live ? max(0, options.maxLatency) : nil
    }

    func run() {
        processors = input.plan.makeProcessors?() ?? []
        var dropped = 0
        var end = InputEnd.cancelled
        loop: while true {
            let event: InputEvent
            switch input.route.events.pop(until: pendingDeadline) {
            case .item(let e): event = e
            case .finished: break loop
            case .timedOut:
                // A live frame's successor is late: write it with an estimated span.
                if let p = pending { emit(p, duration: lastSpan ?? p.meta.frameDuration) }
                continue loop
            }
            switch event {
            case .frame(let result):
                guard input.failure == nil else { continue }
                stats.emit.measure { process(result, from: 0) }
            case .gap(let n):
                dropped += n
                sink?.noteDropped(n)
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
        // The last kept frame: its own duration (also for an input that failed part-way).
        if let p = pending, !runCancelled() { emit(p, duration: p.meta.frameDuration) }
        pending = nil
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

    /// A kept frame arrives: the held one is written with its span up to this one, this one is
    /// counted into the segments and the pooled embedding, then held.
    private func write(_ result: FrameResult) {
        guard openSink() != nil else { return }
        if let p = pending {
            let span = FrameRecord.roundedPTS(result.meta.pts) - FrameRecord.roundedPTS(p.meta.pts)
            if span > 0 { lastSpan = span }
            emit(p, duration: span > 0 ? span : p.meta.frameDuration)
        }
        guard let s = sink else { return }
        let m = result.meta
        perform {
            try result.embedding.withUnsafeBufferPointer { emb in
                let e = emb.isEmpty ? nil : emb
                if let e { pooler?.add(e) }
                if let closed = tracker?.add(pts: m.pts, top: result.labels.first, embedding: e) { try s.writeSegment(closed) }
            }
        }
        guard sink != nil else { return }
        pending = result
        pendingDeadline = holdLimit.map { Date().addingTimeInterval($0) }
    }

    /// Writes the held frame `p` with `duration`.
    private func emit(_ p: FrameResult, duration: Double?) {
        pending = nil
        pendingDeadline = nil
        guard let s = sink else { return }
        let m = p.meta
        let ok = perform {
            try p.embedding.withUnsafeBufferPointer { emb in
                try s.write(FrameRecord(input: input.plan.name, frame: m.index, pts: m.pts, keyframe: m.keyframe,
                                        labels: p.labels, embedding: emb.isEmpty ? nil : emb,
                                        duration: duration, wall: m.wall))
            }
        }
        if ok { input.didEmit(pts: m.pts) }
    }

    /// Runs a sink call: a closed stdout ends the run quietly; any other failure drops the sink
    /// and fails the input. True when it succeeded.
    @discardableResult
    private func perform(_ body: () throws -> Void) -> Bool {
        guard let s = sink else { return false }
        do {
            try body()
            return true
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
        return false
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
