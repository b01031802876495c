import Foundation

/// The inference service's batching logic with no threads or locks: which input gets the next
/// slot, when a batch is sealed, and in what order sealed batches and input ends reach the model.
/// `InferenceService` wraps it in a condition; tests drive it directly.
///
/// Order: an input's slots are reserved by its one scale thread in frame order, at most one batch
/// is open at a time, and sealed items leave strictly in sealing order, so every input's frames
/// (and its end, placed after the batch holding its last frame) stay in frame order.
struct BatcherState {
    /// What leaves for the model, in order.
    enum Item {
        case batch(Batch)
        /// An input's gap or end with no frame of it in the open batch: passed on after what was
        /// sealed before.
        case event(InputRoute, InputEvent)
    }

    /// A reserved slot: the caller writes the sample, then calls `commit`.
    struct Slot {
        let batch: Batch
        let index: Int
        var pointer: UnsafeMutablePointer<Float> { batch.slot(index) }
    }

    let policy: BatchPolicy
    let maxLatencyNanos: UInt64
    private(set) var free: [Batch]
    private(set) var open: Batch?
    private(set) var sealed: [Item] = []
    /// Inputs registered and not yet ended: while some remain, a partial batch may still grow.
    private(set) var producers = 0
    private var waiters: [(ticket: Int, key: UInt64)] = []
    private var nextTicket = 0
    /// Batches handed to the model, and those holding frames of more than one input.
    private(set) var batches = 0
    private(set) var mixedBatches = 0

    init(pool: [Batch], policy: BatchPolicy, maxLatency: Double) {
        precondition(!pool.isEmpty, "the batch pool is empty")
        free = pool
        self.policy = policy
        maxLatencyNanos = UInt64(max(0, maxLatency) * 1e9)
    }

    private var sealedBatches: Int { sealed.reduce(0) { if case .batch = $1 { return $0 + 1 }; return $0 } }
    /// Batches taken by `next` and not yet recycled.
    private(set) var outside = 0
    var sealedCount: Int { sealedBatches }

    mutating func addProducer() { producers += 1 }

    /// Queues a request for a slot. `key` orders requests under `.latency` (the frame's decode
    /// time); under `.throughput` requests are served in arrival order.
    mutating func request(key: UInt64) -> Int {
        let t = nextTicket
        nextTicket += 1
        waiters.append((t, policy == .latency ? key : UInt64(t)))
        return t
    }

    /// Withdraws a request (the input was cancelled while waiting).
    mutating func withdraw(_ ticket: Int) { waiters.removeAll { $0.ticket == ticket } }

    /// The slot for request `ticket` if it is that request's turn and there is room; nil: wait.
    mutating func grant(_ ticket: Int, route: InputRoute, meta: FrameMeta, now: UInt64) -> Slot? {
        guard let first = waiters.min(by: { ($0.key, $0.ticket) < ($1.key, $1.ticket) }), first.ticket == ticket else {
            return nil
        }
        if open == nil {
            guard let b = free.popLast() else { return nil }
            b.openedAt = now
            open = b
        }
        let b = open!
        waiters.removeAll { $0.ticket == ticket }
        b.entries.append(.init(route: route, meta: meta, state: .reserved))
        let slot = Slot(batch: b, index: b.count - 1)
        if b.isFull { seal() }
        return slot
    }

    /// The sample of `slot` is written (`kept`), or the frame was dropped after all.
    mutating func commit(_ slot: Slot, kept: Bool) {
        precondition(slot.batch.entries[slot.index].state == .reserved, "slot committed twice")
        slot.batch.entries[slot.index].state = kept ? .written : .dropped
    }

    /// `route` has no more frames: its end goes after the batch holding its last frame.
    mutating func end(_ route: InputRoute, _ end: InputEnd) {
        precondition(producers > 0, "end without a producer")
        producers -= 1
        note(route, .end(end))
    }

    /// An in-band event of `route` (a gap, its end), placed after the frames it sent so far.
    mutating func note(_ route: InputRoute, _ event: InputEvent) {
        if let b = open, b.entries.contains(where: { $0.route === route }) {
            b.eventsAfter.append((route, event))
        } else {
            sealed.append(.event(route, event))
        }
    }

    /// When the open batch must be sealed by the latency cap (uptime nanoseconds), if one is open.
    var deadline: UInt64? {
        guard let b = open, b.count > 0 else { return nil }
        return b.openedAt + maxLatencyNanos
    }

    /// The next item for the model, sealing the open batch first when it is due: its latency cap
    /// passed, no input is left to add to it, or (`.latency`) nothing else waits. Nil: wait.
    mutating func next(now: UInt64) -> Item? {
        if let b = open, b.count > 0,
           now >= b.openedAt + maxLatencyNanos || producers == 0 || (policy == .latency && sealed.isEmpty) {
            seal()
        }
        guard let head = sealed.first else { return nil }
        if case .batch(let b) = head {
            guard b.isComplete else { return nil }
            outside += 1
            if b.writtenCount > 0 {
                batches += 1
                if b.inputCount > 1 { mixedBatches += 1 }
            }
        }
        sealed.removeFirst()
        return head
    }

    /// A batch taken by `next` is done with: back to the pool.
    mutating func recycle(_ b: Batch) {
        b.reset()
        outside -= 1
        free.append(b)
    }

    private mutating func seal() {
        if let b = open { sealed.append(.batch(b)) }
        open = nil
    }
}
