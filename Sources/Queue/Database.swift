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
    private let log: Logger
    private let lock = NSLock()
    private var connection: PostgresConnection?
    private static let ids = IDs()

    public init(url: DatabaseURL, log: Logger) {
        self.url = url; self.log = log
    }

    deinit { try? connection?.close().wait() }

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
                conn = try PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.any(),
                                                      configuration: url.configuration, id: Self.ids.next(), logger: log).wait()
            } catch {
                let (text, _) = QueueError.describe(error)
                throw QueueError("\(url): cannot connect: \(text)", isConnection: true)
            }
            connection = conn
        }
        do {
            return try body(Session(connection: conn, log: log))
        } catch {
            let (text, isConnection) = QueueError.describe(error)
            if isConnection || conn.isClosed {
                try? conn.close().wait()
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
        try? c?.close().wait()
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

    /// Runs `query` and returns its rows.
    @discardableResult
    public func query(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try connection.query(query, logger: log).wait()
    }

    /// Runs `query`; returns the number of rows it changed.
    @discardableResult
    public func execute(_ query: PostgresQuery) throws -> Int {
        try connection.query(query, logger: log).wait().metadata.rows ?? 0
    }
}
