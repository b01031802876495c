import Foundation

/// Items handled and time spent working (not waiting) by one stage; updated by the stage's own
/// thread, read by anyone.
public final class StageStats: @unchecked Sendable {
    public let name: String
    private let lock = NSLock()
    private var _items = 0
    private var _busy: UInt64 = 0

    public init(name: String) { self.name = name }

    /// Runs `body`, counting `items` and adding its duration to busy time.
    @inline(__always)
    public func measure<T>(items: Int = 1, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let end = DispatchTime.now().uptimeNanoseconds
            lock.lock(); _items += items; _busy += end - start; lock.unlock()
        }
        return try body()
    }

    /// Counts items handled outside `measure`.
    public func count(_ n: Int) { lock.lock(); _items += n; lock.unlock() }

    public var items: Int { lock.lock(); defer { lock.unlock() }; return _items }
    public var busySeconds: Double { lock.lock(); defer { lock.unlock() }; return Double(_busy) / 1e9 }
}
