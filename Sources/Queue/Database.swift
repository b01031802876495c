import Foundation
import Logging
import PostgresNIO

/// One PostgreSQL connection used from a plain thread (blocking calls on NIO futures, never on
/// Swift's cooperative pool), reopened on demand: after the server went away (restart, outage) the
/// next call connects again, so callers only retry.
///
/// Not shared between threads that run transactions: each worker role (claiming and committing,
/// lease heartbeat, status) owns its own `Database`. Calls on one instance are serialized by its lock.
public final class Database: @unchecked Sendable {
    /// Where to connect.
    public let url: DatabaseURL
    /// Longest wait for the server's answer to one statement, and for a connection to be ready
    /// (TCP, startup and authentication). A server that accepts but never answers (seen while
    /// PostgreSQL restarts) must not wedge a worker: the wait ends, the connection is dropped and
    /// the caller retries like after any outage.
    public let timeout: Double
    private let log: Logger
    private let lock = NSLock()
    private var connection: PostgresConnection?
    private static let ids = IDs()

    public init(url: DatabaseURL, log: Logger, timeout: Double = 30) {
        self.url = url; self.log = log; self.timeout = timeout
    }

    deinit { if let c = connection { Self.closeNow(c) } }

    /// Runs `body` on the open connection (connecting first if needed). A connection-level failure
    /// closes the connection (the next call reconnects) and is rethrown as a `QueueError` with
    /// `isConnection`; a statement error keeps it open.
    public func with<T>(_ body: (Session) throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        let conn: PostgresConnection
        if let c = connection, !c.isClosed {
            conn = c
        } else {
            connection = nil
            do {
                let future = PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.any(),
                                                        configuration: url.configuration, id: Self.ids.next(), logger: log)
                do { conn = try Self.wait(future, timeout: min(timeout, 10), what: "connection setup") } catch {
                    future.whenSuccess { late in Self.closeNow(late) }  // ready after we gave up: not ours to keep
                    throw error
                }
            } catch {
                let (text, _) = QueueError.describe(error)
                throw QueueError("\(url): cannot connect: \(text)", isConnection: true)
            }
            connection = conn
        }
        do {
            return try body(Session(connection: conn, log: log, timeout: timeout))
        } catch {
            let (text, isConnection) = QueueError.describe(error)
            if isConnection || conn.isClosed {
                Self.closeNow(conn)  // not waited for: a wedged server must not wedge us
                connection = nil
                throw QueueError("\(url): \(text)", isConnection: true)
            }
            throw QueueError("\(url): \(text)")
        }
    }

    /// Runs `body` inside BEGIN ... COMMIT (ROLLBACK when it throws).
    public func transaction<T>(_ body: (Session) throws -> T) throws -> T {
        try with { s in
            try s.execute("BEGIN")
            do {
                let v = try body(s)
                try s.execute("COMMIT")
                return v
            } catch {
                _ = try? s.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Closes the connection (the next call opens a new one).
    public func close() {
        lock.lock(); let c = connection; connection = nil; lock.unlock()
        if let c {
            let f: EventLoopFuture<Void> = c.close()
            _ = try? Self.wait(f, timeout: 5, what: "close")
        }
    }

    /// Starts closing `c` without waiting for it.
    static func closeNow(_ c: PostgresConnection) {
        let f: EventLoopFuture<Void> = c.close()
        f.whenFailure { _ in }  // already closed: nothing to do
    }

    /// Waits for `future` at most `timeout` seconds (`EventLoopFuture.wait` has no limit).
    static func wait<T>(_ future: EventLoopFuture<T>, timeout: Double, what: String) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        future.whenComplete { box.set($0); done.signal() }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            throw QueueError("no answer from the server within \(Int(timeout)) s (\(what))", isConnection: true)
        }
        return try box.get()
    }

    private final class ResultBox<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var result: Result<T, Error>?
        func set(_ r: Result<T, Error>) { lock.lock(); result = r; lock.unlock() }
        func get() throws -> T { lock.lock(); defer { lock.unlock() }; return try result!.get() }
    }

    private final class IDs: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func next() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
    }
}

/// The open connection inside `Database.with`: blocking query helpers.
public struct Session {
    let connection: PostgresConnection
    let log: Logger
    let timeout: Double

    /// Runs `query` and returns its rows.
    @discardableResult
    public func query(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try Database.wait(connection.query(query, logger: log), timeout: timeout, what: "query")
    }

    /// Runs `query`; returns the number of rows it changed.
    @discardableResult
    public func execute(_ query: PostgresQuery) throws -> Int {
        try Database.wait(connection.query(query, logger: log), timeout: timeout, what: "query").metadata.rows ?? 0
    }
}
