import Foundation

/// What a link does when a producer offers an item and the link is full.
public enum OverflowPolicy: Sendable {
    /// Wait for room: a slow consumer slows the producer (files).
    case block
    /// Drop the oldest queued item and count it (live streams: stay current).
    case dropOldest
}

/// The logic of a bounded FIFO link, with no threads or locks: a small state machine that
/// `BoundedLink` wraps in a lock. Tested on its own.
public struct LinkState<Item> {
    public enum Offer { case accepted, full, dropped(Item), rejected }
    public enum Take { case item(Item), empty, finished }

    public let capacity: Int
    public let policy: OverflowPolicy
    private var items: [Item?]
    private var head = 0
    public private(set) var count = 0
    /// No more items will be offered (end of stream); takes drain what is queued.
    public private(set) var closed = false
    /// Everything stops: offers are rejected, takes finish at once.
    public private(set) var cancelled = false
    /// Items dropped by `.dropOldest`.
    public private(set) var drops = 0
    /// Highest count seen.
    public private(set) var highWater = 0

    public init(capacity: Int, policy: OverflowPolicy = .block) {
        precondition(capacity > 0, "link capacity must be positive")
        self.capacity = capacity
        self.policy = policy
        items = Array(repeating: nil, count: capacity)
    }

    public var isFull: Bool { count == capacity }

    /// Offers an item; `.full` means the caller (with `.block`, or with `mayDrop` false) must
    /// wait and offer again. `mayDrop` false: this item never evicts another (an end marker must
    /// not cost the input its last frame).
    public mutating func offer(_ item: Item, mayDrop: Bool = true) -> Offer {
        precondition(!closed, "offer after close")
        if cancelled { return .rejected }
        if count == capacity {
            switch mayDrop ? policy : .block {
            case .block:
                return .full
            case .dropOldest:
                let old = items[head]!
                items[head] = nil
                head = (head + 1) % capacity
                count -= 1
                drops += 1
                append(item)
                return .dropped(old)
            }
        }
        append(item)
        return .accepted
    }

    private mutating func append(_ item: Item) {
        items[(head + count) % capacity] = item
        count += 1
        highWater = max(highWater, count)
    }

    /// Takes the oldest item; `.empty` means wait, `.finished` means closed and drained (or cancelled).
    public mutating func take() -> Take {
        if cancelled { return .finished }
        if count == 0 { return closed ? .finished : .empty }
        let item = items[head]!
        items[head] = nil
        head = (head + 1) % capacity
        count -= 1
        return .item(item)
    }

    /// Marks the end of stream.
    public mutating func close() { closed = true }

    /// Stops the link; returns what was queued so the caller can release it.
    public mutating func cancel() -> [Item] {
        cancelled = true
        var left: [Item] = []
        while count > 0 {
            left.append(items[head]!)
            items[head] = nil
            head = (head + 1) % capacity
            count -= 1
        }
        return left
    }
}

/// A bounded, thread-safe FIFO between two pipeline stages: `LinkState` behind an `NSCondition`.
public final class BoundedLink<Item>: @unchecked Sendable {
    private var state: LinkState<Item>
    private let condition = NSCondition()
    public let name: String

    public init(name: String, capacity: Int, policy: OverflowPolicy = .block) {
        self.name = name
        state = LinkState(capacity: capacity, policy: policy)
    }

    /// Puts an item in, waiting for room under `.block` (or always, with `mayDrop` false).
    /// Returns false when the link was cancelled (the item was not taken).
    @discardableResult
    public func push(_ item: Item, mayDrop: Bool = true) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while true {
            switch state.offer(item, mayDrop: mayDrop) {
            case .accepted, .dropped:
                condition.broadcast()
                return true
            case .rejected:
                return false
            case .full:
                condition.wait()
            }
        }
    }

    /// The result of `pop`.
    public enum Pop { case item(Item), timedOut, finished }

    /// Takes the next item, waiting for one; `.finished` after close + drain or cancel;
    /// `.timedOut` if `deadline` passes first.
    public func pop(until deadline: Date? = nil) -> Pop {
        condition.lock(); defer { condition.unlock() }
        while true {
            switch state.take() {
            case .item(let item):
                condition.broadcast()
                return .item(item)
            case .finished:
                return .finished
            case .empty:
                if let deadline {
                    if !condition.wait(until: deadline) { return .timedOut }
                } else {
                    condition.wait()
                }
            }
        }
    }

    /// No more pushes; consumers drain the rest, then see `.finished`.
    public func close() {
        condition.lock(); state.close(); condition.broadcast(); condition.unlock()
    }

    /// Wakes everyone and stops the link; returns the items that were still queued.
    @discardableResult
    public func cancel() -> [Item] {
        condition.lock(); defer { condition.unlock() }
        let left = state.cancel()
        condition.broadcast()
        return left
    }

    /// Items queued now.
    public var depth: Int { condition.lock(); defer { condition.unlock() }; return state.count }
    /// Items dropped by `.dropOldest`.
    public var drops: Int { condition.lock(); defer { condition.unlock() }; return state.drops }
    /// The most items ever queued at once.
    public var highWater: Int { condition.lock(); defer { condition.unlock() }; return state.highWater }
}
