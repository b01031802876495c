import Foundation
import Testing
@testable import Pipeline
import Output

/// A frame with the metadata a test chooses.
final class TimedFrame: PipelineFrame {
    let meta: FrameMeta
    init(_ meta: FrameMeta) { self.meta = meta }
}

/// Yields the given frames; before frame `gateBefore` it waits for `gate` (so a test can hold the
/// input until something came out). `gateWait` says whether that wait succeeded.
final class ListReader: FrameReader, @unchecked Sendable {
    let metas: [FrameMeta]
    let gate: DispatchSemaphore?
    let gateBefore: Int
    private let lock = NSLock()
    private var i = 0
    private var _gateWait: DispatchTimeoutResult?
    var gateWait: DispatchTimeoutResult? { lock.lock(); defer { lock.unlock() }; return _gateWait }
    init(_ metas: [FrameMeta], gate: DispatchSemaphore? = nil, gateBefore: Int = 0) {
        self.metas = metas; self.gate = gate; self.gateBefore = gateBefore
    }
    func next() throws -> PipelineFrame? {
        guard i < metas.count else { return nil }
        if let gate, i == gateBefore {
            let r = gate.wait(timeout: .now() + 60)
            lock.lock(); _gateWait = r; lock.unlock()
        }
        defer { i += 1 }
        return TimedFrame(metas[i])
    }
    func cancel() {}
    var framesDecoded: Int { i }
    var decodeErrors: Int { 0 }
    var duration: Double? { nil }
}

/// Keeps each record's pts, duration and wall; signals `written` on every record.
final class TimeSink: FrameSink, @unchecked Sendable {
    private let lock = NSLock()
    private var _rows: [(pts: Double, duration: Double?, wall: Double?)] = []
    var rows: [(pts: Double, duration: Double?, wall: Double?)] { lock.lock(); defer { lock.unlock() }; return _rows }
    let written = DispatchSemaphore(value: 0)
    func write(_ r: FrameRecord) throws {
        lock.lock(); _rows.append((r.pts, r.duration, r.wall)); lock.unlock()
        written.signal()
    }
    func finish(error: String?) throws {}
    func abandon() {}
}

@Suite struct FrameTimeTests {
    func options(latency: Double) -> PipelineOptions {
        var o = PipelineOptions()
        o.batchSize = 4
        o.topK = 1
        o.maxLatency = latency
        o.emit = EmitOptions(labels: true, embedding: true)
        return o
    }

    /// Each record spans to the next kept frame's pts; the last one gets its own frame duration;
    /// `wall` passes through untouched (and absent stays absent).
    @Test(arguments: [1, 4])
    func durationIsTheSpanToTheNextKeptFrame(batch: Int) {
        let pts = [0, 0.04, 0.2, 0.24, 1.0, 1.04]
        let metas = pts.enumerated().map { i, t in
            FrameMeta(index: i, pts: t, keyframe: i == 0, frameDuration: 0.04, wall: i == 2 ? 1_800_000_000.25 : nil)
        }
        let sink = TimeSink()
        var o = options(latency: 60)
        o.batchSize = batch
        let p = Pipeline(runner: FakeRunner(), options: o, stdout: nil, log: { _ in })
        let report = p.run([InputPlan(name: "a", openReader: { ListReader(metas) },
                                      makeWriter: { FakeWriter(sampleSize: 4) }, makeSink: { sink })])
        #expect(report.inputs[0].error == nil && report.inputs[0].framesEmitted == 6)
        #expect(sink.rows.map(\.pts) == pts)
        #expect(sink.rows.map(\.duration) == [0.04, 0.16, 0.04, 0.76, 0.04, 0.04])
        #expect(sink.rows.map(\.wall) == [nil, nil, 1_800_000_000.25, nil, nil, nil])
    }

    /// A frame whose next pts is not later (a broken stream) falls back to its own duration.
    @Test func repeatedPtsFallBackToTheFrameDuration() {
        let metas = [0.0, 0.0, 0.5].enumerated().map { FrameMeta(index: $0, pts: $1, keyframe: true, frameDuration: 0.1) }
        let sink = TimeSink()
        let p = Pipeline(runner: FakeRunner(), options: options(latency: 60), stdout: nil, log: { _ in })
        _ = p.run([InputPlan(name: "a", openReader: { ListReader(metas) }, makeWriter: { FakeWriter(sampleSize: 4) },
                             makeSink: { sink })])
        #expect(sink.rows.map(\.duration) == [0.1, 0.5, 0.1])
    }

    /// Live: the reader does not produce frame 1 until frame 0's record has been written. Holding
    /// frame 0 for its successor would wait forever (the gate's 60 s); it is written once
    /// `maxLatency` has passed, with an estimated span. Frame 2 arrives right after frame 1, so
    /// frame 1 gets its exact span, and frame 2 (the last) its own duration.
    @Test func liveFrameIsNotHeldForItsSuccessor() {
        let metas = [FrameMeta(index: 0, pts: 10, keyframe: true, frameDuration: 0.04),
                     FrameMeta(index: 25, pts: 11, keyframe: true, frameDuration: 0.04),
                     FrameMeta(index: 26, pts: 11.04, keyframe: false, frameDuration: 0.04)]
        let gate = DispatchSemaphore(value: 0)
        let reader = ListReader(metas, gate: gate, gateBefore: 1)
        let sink = TimeSink()
        let opener = DispatchQueue(label: "gate")
        opener.async {
            // The first record opens the gate; a stage that never writes it leaves the reader to time out.
            if sink.written.wait(timeout: .now() + 60) == .success { gate.signal() }
        }
        let p = Pipeline(runner: FakeRunner(), options: options(latency: 0.05), stdout: nil, log: { _ in })
        let report = p.run([InputPlan(name: "cam", live: true, openReader: { reader },
                                      makeWriter: { FakeWriter(sampleSize: 4) }, makeSink: { sink })])
        #expect(reader.gateWait == .success, "frame 0 was held until its successor arrived")
        #expect(report.inputs[0].framesEmitted == 3)
        #expect(sink.rows.map(\.pts) == [10, 11, 11.04])
        #expect(sink.rows.map(\.duration) == [0.04, 0.04, 0.04])
    }
}

@Suite struct SegmentPoolingTests {
    /// Per-segment pooling covers exactly the frames the segment counts, flicker included.
    @Test(arguments: [PoolMode.mean, .max])
    func eachSegmentPoolsItsOwnFrames(mode: PoolMode) {
        // 30 frames of label 1, a 5-frame flicker of 9 (absorbed), 30 of 1, then 20 of label 2.
        let labels = Array(repeating: 1, count: 30) + Array(repeating: 9, count: 5) + Array(repeating: 1, count: 30)
            + Array(repeating: 2, count: 20)
        var t = SegmentTracker(minDuration: 0.5, pool: mode)
        var segments: [LabelSegment] = []
        for (i, l) in labels.enumerated() {
            let e: [Float] = [Float(i), -Float(i), Float(i % 7)]
            let s = e.withUnsafeBufferPointer {
                t.add(pts: Double(i) * 0.04, top: LabelScore(index: l, label: nil, score: 0.5), embedding: $0)
            }
            if let s { segments.append(s) }
        }
        if let s = t.finish() { segments.append(s) }
        #expect(segments.map(\.index) == [1, 2])
        #expect(segments.map(\.frames) == [65, 20])
        func expected(_ rows: Range<Int>) -> [Float] {
            let e = rows.map { i in [Float(i), -Float(i), Float(i % 7)] }
            return (0..<3).map { d in
                let column = e.map { $0[d] }
                return mode == .mean ? column.reduce(0, +) / Float(column.count) : column.max()!
            }
        }
        #expect(segments[0].pooled == PooledEmbedding(mode: mode, frames: 65, values: expected(0..<65)))
        #expect(segments[1].pooled == PooledEmbedding(mode: mode, frames: 20, values: expected(65..<85)))
        // Without a pool mode, no pooled embedding.
        var plain = SegmentTracker(minDuration: 0.5)
        _ = plain.add(pts: 0, top: LabelScore(index: 1, label: nil, score: 1))
        #expect(plain.finish()?.pooled == nil)
    }

    @Test func mergeEqualsAddingTheFrames() {
        for mode in PoolMode.allCases {
            var a = EmbeddingPooler(mode: mode), b = EmbeddingPooler(mode: mode), all = EmbeddingPooler(mode: mode)
            let rows: [[Float]] = [[1, 5], [-3, 2], [4, -1]]
            for (i, r) in rows.enumerated() {
                r.withUnsafeBufferPointer { i < 1 ? a.add($0) : b.add($0); all.add($0) }
            }
            var empty = EmbeddingPooler(mode: mode)
            empty.merge(b)
            a.merge(b)
            #expect(a.result == all.result && a.frames == 3)
            #expect(empty.frames == 2)
        }
    }

    /// The segment's line, then its pooled line naming the segment.
    @Test func segmentLinesCarryThePooledRecord() throws {
        let seg = LabelSegment(number: 3, index: 20, label: "x", start: 0, end: 1, frames: 2, scoreMean: 0.5,
                               pooled: PooledEmbedding(mode: .max, frames: 2, values: [0.5, -1]))
        let lines = RecordEncoder.segmentLines(input: "a.mp4", seg, encoding: .json).split(separator: 10)
        #expect(lines.count == 2)
        let pooled = try JSONSerialization.jsonObject(with: Data(lines[1])) as! [String: Any]
        #expect(pooled["pooled"] as? String == "max" && pooled["segment"] as? Int == 3 && pooled["frames"] as? Int == 2)
        #expect(pooled["embedding"] as? [Double] == [0.5, -1])
    }
}
