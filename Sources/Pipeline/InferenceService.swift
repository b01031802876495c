import Foundation
import Output

/// One input as the inference service sees it: where its labelled frames go, and how to label them.
public final class InputRoute: @unchecked Sendable {
    public let name: String
    /// Labelled frames, gaps, errors and the end, in frame order; read by the input's output stage.
    let events: BoundedLink<InputEvent>
    /// Used on the service's label thread only.
    var labeler: Labeler

    init(name: String, eventCapacity: Int, labeler: Labeler) {
        self.name = name
        events = BoundedLink(name: "events-\(name)", capacity: max(1, eventCapacity))
        self.labeler = labeler
    }
}

/// The one inference service of a process and model: a batcher that fills batches from every
/// active input (files and live streams alike), the model, and labelling.
///
/// ```
///  scale stages of all inputs          ┌───────────── service ──────────────┐
///  ──reserve slot, write sample──▶ open batch ─seal─▶ sealed ─▶ infer ─link─▶ label ─▶ per-input event links
///                                     ▲   (full, latency cap, no producer left)       │
///                                     └──────────── batch pool (fixed size) ◀─────────┘
/// ```
/// - batcher (`BatcherState`, behind `condition`): grants slots in request order (`.throughput`)
///   or earliest frame first (`.latency`); a scale stage blocks while no slot is free.
/// - infer: one thread the service creates; owns the `BatchRunner`; blocks when the label link is full.
/// - label: one thread; turns each row into a `FrameResult` for its input's event link (blocking
///   when that link is full, so a slow sink slows everyone, bounding memory), then recycles the batch.
/// The pool's size is fixed at creation: memory does not grow with the number of inputs.
public final class InferenceService: @unchecked Sendable {
    public let runner: BatchRunner
    public let batchSize: Int
    public let policy: BatchPolicy
    private let condition = NSCondition()
    private var state: BatcherState
    private var stopping = false
    /// The infer thread has ended (after `shutdown`): nothing is accepted any more.
    private var stopped = false
    private let labelLink: BoundedLink<BatcherState.Item>
    private let threads = DispatchGroup()
    let inferStats = StageStats(name: "infer")
    let labelStats = StageStats(name: "label")
    /// Called on the infer thread after each model call: frames, distinct inputs, seconds.
    private let onBatch: ((_ frames: Int, _ inputs: Int, _ seconds: Double) -> Void)?

    /// - Parameters:
    ///   - runner: the model; used only from the service's infer thread.
    ///   - batchSize: frames per model call (1...runner.maxBatch).
    ///   - maxLatency: seconds a partial batch may wait for more frames.
    ///   - poolSize: batch buffers (at least 3: one filling, one at the model, one being labelled).
    ///   - onBatch: called on the infer thread after each model call with its frames, the number
    ///     of inputs they came from, and its seconds (metrics).
    public init(runner: BatchRunner, batchSize: Int, maxLatency: Double, policy: BatchPolicy = .throughput,
                poolSize: Int = 3, onBatch: ((_ frames: Int, _ inputs: Int, _ seconds: Double) -> Void)? = nil) {
        self.onBatch = onBatch
        precondition(batchSize >= 1 && batchSize <= runner.maxBatch, "batch size out of range")
        self.runner = runner
        self.batchSize = batchSize
        self.policy = policy
        let pool = (0..<max(3, poolSize)).map { _ in
            Batch(capacity: batchSize, sampleSize: runner.sampleSize, embeddingDim: runner.embeddingDim,
                  classCount: runner.classCount)
        }
        state = BatcherState(pool: pool, policy: policy, maxLatency: maxLatency)
        labelLink = BoundedLink(name: "label", capacity: 1)
        threads.enter()
        Thread.detachNewThread { [self] in inferLoop(); threads.leave() }
        threads.enter()
        Thread.detachNewThread { [self] in labelLoop(); threads.leave() }
    }

    /// Stops the service once every registered input has ended, and returns only when its
    /// threads are done (no oneDNN call still running).
    public func shutdown() {
        condition.lock(); stopping = true; condition.broadcast(); condition.unlock()
        threads.wait()
    }

    // MARK: producers (scale stages)

    /// A new input will send frames.
    func register(_ route: InputRoute) {
        condition.lock(); state.addProducer(); condition.unlock()
    }

    /// Waits for a slot for `meta`'s sample; nil when `cancelled()` became true while waiting.
    func reserve(for route: InputRoute, meta: FrameMeta, decodedAt: UInt64,
                 cancelled: () -> Bool) -> BatcherState.Slot? {
        condition.lock(); defer { condition.unlock() }
        let ticket = state.request(key: decodedAt)
        while true {
            if cancelled() || stopped {
                state.withdraw(ticket)
                condition.broadcast()
                return nil
            }
            if let slot = state.grant(ticket, route: route, meta: meta, now: DispatchTime.now().uptimeNanoseconds) {
                condition.broadcast()
                return slot
            }
            condition.wait()
        }
    }

    /// The sample is written (or, `kept` false, the frame was dropped after all).
    func commit(_ slot: BatcherState.Slot, kept: Bool) {
        condition.lock(); state.commit(slot, kept: kept); condition.broadcast(); condition.unlock()
    }

    /// The input has no more frames.
    func end(_ route: InputRoute, _ end: InputEnd) {
        condition.lock(); state.end(route, end); condition.broadcast(); condition.unlock()
    }

    /// A gap in the input (live frames dropped), in-band after the frames sent so far.
    func note(_ route: InputRoute, _ event: InputEvent) {
        condition.lock(); state.note(route, event); condition.broadcast(); condition.unlock()
    }

    /// Wakes producers waiting for a slot (one of them was cancelled).
    func wake() { condition.lock(); condition.broadcast(); condition.unlock() }

    // MARK: observation

    /// Model calls so far, and those holding frames of more than one input.
    public var batchCounts: (batches: Int, mixed: Int) {
        condition.lock(); defer { condition.unlock() }
        return (state.batches, state.mixedBatches)
    }

    /// Sealed batches waiting for the model, batches at the label stage, free batch buffers.
    public var depths: (sealed: Int, label: Int, free: Int) {
        condition.lock(); let s = state.sealedCount, f = state.free.count; condition.unlock()
        return (s, labelLink.depth, f)
    }

    // MARK: threads

    private func inferLoop() {
        condition.lock()
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            if let item = state.next(now: now) {
                condition.unlock()
                if case .batch(let b) = item { infer(b) }
                if !labelLink.push(item), case .batch(let b) = item {
                    condition.lock(); state.recycle(b); condition.broadcast(); condition.unlock()
                }
                condition.lock()
                continue
            }
            if stopping && state.producers == 0 && state.sealed.isEmpty && state.open == nil { break }
            if let d = state.deadline {
                let wait = Double(d > now ? d - now : 0) / 1e9
                _ = condition.wait(until: Date(timeIntervalSinceNow: wait))
            } else {
                condition.wait()
            }
        }
        stopped = true
        condition.broadcast()
        condition.unlock()
        labelLink.close()
    }

    private func infer(_ b: Batch) {
        guard b.writtenCount > 0 else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        do {
            try inferStats.measure(items: b.count) {
                try runner.run(input: b.input, count: b.count, embeddings: b.embeddings, logits: b.logits)
            }
        } catch {
            b.error = "inference failed: \(error)"
        }
        onBatch?(b.count, b.inputCount, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }

    private func labelLoop() {
        while case .item(let item) = labelLink.pop() {
            switch item {
            case .event(let route, let event):
                route.events.push(event)
            case .batch(let b):
                labelStats.measure(items: b.count) { deliver(b) }
                condition.lock(); state.recycle(b); condition.broadcast(); condition.unlock()
            }
        }
    }

    private func deliver(_ b: Batch) {
        if let error = b.error {
            var told = Set<ObjectIdentifier>()
            for e in b.entries where told.insert(ObjectIdentifier(e.route)).inserted {
                e.route.events.push(.error(error))
            }
        } else {
            for (i, e) in b.entries.enumerated() where e.state == .written {
                let labels = b.logits.map {
                    e.route.labeler.labels(UnsafeBufferPointer(start: $0 + i * b.classCount, count: b.classCount))
                } ?? []
                let embedding = b.embeddings.map {
                    Array(UnsafeBufferPointer(start: $0 + i * b.embeddingDim, count: b.embeddingDim))
                } ?? []
                e.route.events.push(.frame(FrameResult(meta: e.meta, labels: labels, embedding: embedding)))
            }
        }
        for (route, event) in b.eventsAfter { route.events.push(event) }
    }
}
