import Foundation
import PostgresNIO

/// A queue problem a user must see: a bad database URL, a database that refuses us, a schema newer
/// than this framepipe. `description` names the database (password removed) and what failed.
public struct QueueError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// True when the failure is the connection (server down, restarting, unreachable): the caller
    /// may wait and retry. False for errors the server reported about our statement.
    public let isConnection: Bool

    public init(_ message: String, isConnection: Bool = false) {
        self.message = message; self.isConnection = isConnection
    }

    public var description: String { message }

    /// The server's own message for a PSQLError (its `description` hides everything on purpose),
    /// or the NIO/system error's text.
    static func describe(_ error: Error) -> (text: String, isConnection: Bool) {
        if let e = error as? QueueError { return (e.message, e.isConnection) }
        if let e = error as? PSQLError {
            if let info = e.serverInfo, let message = info[.message] {
                let state = info[.sqlState] ?? ""
                // Class 08 (connection exception), 57P01-03 (admin shutdown, crash shutdown, cannot
                // connect now: the server is stopping or starting).
                let conn = state.hasPrefix("08") || state.hasPrefix("57P")
                return ("\(message)" + (state.isEmpty ? "" : " (SQLSTATE \(state))"), conn)
            }
            switch e.code {
            case .serverClosedConnection, .connectionError, .uncleanShutdown, .messageDecodingFailure,
                 .unexpectedBackendMessage, .clientClosedConnection:
                let why = e.underlying.map { " (\($0))" } ?? ""
                return ("connection lost or refused: \(e.code)\(why)", true)
            default:
                return ("\(e.code)", false)
            }
        }
        if let e = error as? PostgresTransactionError {
            if let inner = e.closureError ?? e.beginError ?? e.commitError ?? e.rollbackError { return describe(inner) }
        }
        if let e = error as? ChannelError { return ("connection: \(e)", true) }
        if let e = error as? IOError { return ("connection: \(e.description)", true) }
        return ("\(error)", true)
    }
}
