import Foundation
@testable import Pipeline
import Output

/// Counts live fake frames, to prove memory stays bounded.
final class LiveCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var live = 0
    private(set) var peak = 0
    func inc() { lock.lock(); live += 1; peak = max(peak, live); lock.unlock() }
    func dec() { lock.lock(); live -= 1; lock.unlock() }
    var maxLive: Int { lock.lock(); defer { lock.unlock() }; return peak }
}

final class FakeFrame: PipelineFrame {
    let meta: FrameMeta
    let counter: LiveCounter?
    init(index: Int, counter: LiveCounter?) {
        meta = FrameMeta(index: index, pts: Double(index) / 25, keyframe: index % 10 == 0)
        self.counter = counter
        counter?.inc()
    }
    deinit { counter?.dec() }
}

struct FakeFailure: Error, CustomStringConvertible {
    let description: String
}

/// Yields `count` frames; throws after `failAfter` frames if set.
final class FakeReader: FrameReader {
    let count: Int
    let failAfter: Int?
    let counter: LiveCounter?
    let delay: useconds_t
    private var i = 0
    /// Set by `cancel()` from any thread, read by `next()` on the decode thread.
    private let cancelLock = NSLock()
    private var _cancelled = false
    private var cancelled: Bool { cancelLock.lock(); defer { cancelLock.unlock() }; return _cancelled }
    init(count: Int, failAfter: Int? = nil, counter: LiveCounter? = nil, delay: useconds_t = 0) {
        self.count = count; self.failAfter = failAfter; self.counter = counter; self.delay = delay
    }
    func next() throws -> PipelineFrame? {
        if cancelled { throw FakeFailure(description: "interrupted") }
        if let f = failAfter, i == f { throw FakeFailure(description: "damaged data after frame \(f)") }
        guard i < count else { return nil }
        if delay > 0 { usleep(delay) }
        defer { i += 1 }
        return FakeFrame(index: i, counter: counter)
    }
    func cancel() { cancelLock.lock(); _cancelled = true; cancelLock.unlock() }
    var framesDecoded: Int { i }
    var decodeErrors: Int { 0 }
    var duration: Double? { Double(count) / 25 }
}

/// Writes the frame index into every float of the slot.
final class FakeWriter: SampleWriter {
    let sampleSize: Int
    init(sampleSize: Int) { self.sampleSize = sampleSize }
    func write(_ frame: PipelineFrame, to slot: UnsafeMutablePointer<Float>) throws {
        let v = Float(frame.meta.index)
        for i in 0..<sampleSize { slot[i] = v }
    }
}

/// Embedding = [v, v+1, ...]; logits peak at class v % classCount. Records batch sizes.
final class FakeRunner: BatchRunner, @unchecked Sendable {
    let sampleSize = 4
    let embeddingDim = 3
    let classCount = 5
    let maxBatch: Int
    private let lock = NSLock()
    private(set) var batchSizes: [Int] = []
    init(maxBatch: Int = 16) { self.maxBatch = maxBatch }
    func run(input: UnsafePointer<Float>, count: Int,
             embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        lock.lock(); batchSizes.append(count); lock.unlock()
        for n in 0..<count {
            let v = input[n * sampleSize]
            for d in 0..<embeddingDim { embeddings?[n * embeddingDim + d] = v + Float(d) }
            for c in 0..<classCount { logits?[n * classCount + c] = (Int(v) % classCount == c) ? 5 : 0 }
        }
    }
}

/// Collects what a pipeline writes for one input.
final class MemorySink: FrameSink, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var records: [(frame: Int, pts: Double, top: Int?, embedding: [Float])] = []
    private(set) var finishedWith: String?? = .none
    private(set) var abandoned = false
    let slow: useconds_t
    init(slow: useconds_t = 0) { self.slow = slow }
    func write(_ r: FrameRecord) throws {
        if slow > 0 { usleep(slow) }
        lock.lock()
        records.append((r.frame, r.pts, r.labels.first?.index, r.embedding.map(Array.init) ?? []))
        lock.unlock()
    }
    func finish(error: String?) throws { lock.lock(); finishedWith = .some(error); lock.unlock() }
    func abandon() { lock.lock(); abandoned = true; lock.unlock() }
    private(set) var notedDrops = 0
    func noteDropped(_ dropped: Int) { lock.lock(); notedDrops += dropped; lock.unlock() }
}

func plan(_ name: String, reader: @escaping () throws -> FrameReader, sink: MemorySink, live: Bool = false) -> InputPlan {
    InputPlan(name: name, live: live, openReader: reader,
              makeWriter: { FakeWriter(sampleSize: 4) }, makeSink: { sink })
}

/// A runner that fails on its `failOn`-th call (0-based) and can be made slow; records whether a
/// call is in progress and every batch's first sample values.
final class ScriptedRunner: BatchRunner, @unchecked Sendable {
    let sampleSize = 4
    let embeddingDim = 3
    let classCount = 5
    let maxBatch: Int
    let failOn: Int?
    let delay: useconds_t
    private let lock = NSLock()
    private var calls = 0
    private var _inside = false
    private(set) var callsWhileInside = 0
    init(maxBatch: Int = 16, failOn: Int? = nil, delay: useconds_t = 0) {
        self.maxBatch = maxBatch; self.failOn = failOn; self.delay = delay
    }
    var inside: Bool { lock.lock(); defer { lock.unlock() }; return _inside }
    func run(input: UnsafePointer<Float>, count: Int,
             embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        lock.lock(); let n = calls; calls += 1; _inside = true; lock.unlock()
        defer { lock.lock(); _inside = false; lock.unlock() }
        if delay > 0 { usleep(delay) }
        if n == failOn { throw FakeFailure(description: "primitive execution failed") }
        try FakeRunner(maxBatch: maxBatch).run(input: input, count: count, embeddings: embeddings, logits: logits)
    }
}

/// A writer whose construction or `failAt`-th frame throws.
final class ThrowingWriter: SampleWriter {
    let failAt: Int
    init(failAt: Int) { self.failAt = failAt }
    func write(_ frame: PipelineFrame, to slot: UnsafeMutablePointer<Float>) throws {
        if frame.meta.index == failAt { throw FakeFailure(description: "cannot convert frame \(failAt)") }
        try FakeWriter(sampleSize: 4).write(frame, to: slot)
    }
}

/// A sink that fails on its `failOnWrite`-th record or at finish.
final class ThrowingSink: FrameSink, @unchecked Sendable {
    let failOnWrite: Int?
    let failOnFinish: Bool
    private var n = 0
    private(set) var abandoned = false
    init(failOnWrite: Int? = nil, failOnFinish: Bool = false) { self.failOnWrite = failOnWrite; self.failOnFinish = failOnFinish }
    func write(_ r: FrameRecord) throws {
        defer { n += 1 }
        if n == failOnWrite { throw FakeFailure(description: "disk full") }
    }
    func finish(error: String?) throws { if failOnFinish { throw FakeFailure(description: "cannot commit files") } }
    func abandon() { abandoned = true }
}

/// A reader whose `next()` sleeps without checking cancellation (like a blocked FFmpeg call),
/// recording whether a call is in progress.
final class StubbornReader: FrameReader, @unchecked Sendable {
    private let lock = NSLock()
    private var _inside = false
    private var i = 0
    var inside: Bool { lock.lock(); defer { lock.unlock() }; return _inside }
    func next() throws -> PipelineFrame? {
        lock.lock(); _inside = true; lock.unlock()
        defer { lock.lock(); _inside = false; lock.unlock() }
        usleep(300_000)
        i += 1
        return FakeFrame(index: i - 1, counter: nil)
    }
    func cancel() {}
    var framesDecoded: Int { i }
    var decodeErrors: Int { 0 }
    var duration: Double? { nil }
}
