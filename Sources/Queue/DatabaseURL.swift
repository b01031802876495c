import Foundation
import PostgresNIO

/// A PostgreSQL connection URL as libpq writes it, the subset framepipe needs:
///
///     postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
///     postgresql://USER@/DATABASE?host=/run/postgresql        (unix socket folder, port 5432)
///     postgres://USER@localhost:5433/DATABASE?sslmode=disable
///
/// `sslmode` may be `disable` (the default here) or `prefer`/`require`, which are refused with a
/// clear error for now: framepipe talks to PostgreSQL in clear text, so use a private network or a
/// unix socket. Percent-escapes in user, password and database are decoded.
public struct DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var password: String?
    /// TCP host, or nil for a unix socket in `socketDirectory`.
    public var host: String?
    public var port: Int
    public var socketDirectory: String?
    public var database: String

    /// Parses `text`; the error names the part that is wrong (never the password).
    public init(_ text: String) throws {
        func bad(_ why: String) -> QueueError { QueueError("database URL \(DatabaseURL.redact(text)): \(why)") }
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else {
            throw bad("must start with postgres:// or postgresql://")
        }
        guard let c = URLComponents(string: text) else { throw bad("not a valid URL") }
        guard let u = c.percentEncodedUser.flatMap({ $0.removingPercentEncoding }), !u.isEmpty else {
            throw bad("no user name (postgres://USER@HOST/DATABASE)")
        }
        user = u
        password = c.percentEncodedPassword?.removingPercentEncoding
        let path = c.percentEncodedPath.dropFirst()
        guard let db = String(path).removingPercentEncoding, !db.isEmpty, !db.contains("/") else {
            throw bad("no database name (postgres://USER@HOST/DATABASE)")
        }
        database = db
        port = c.port ?? 5432
        if port < 1 || port > 65535 { throw bad("port must be 1...65535") }
        var socket: String?
        var queryPort: Int?
        for item in c.queryItems ?? [] {
            switch item.name {
            case "host":
                guard let v = item.value, v.hasPrefix("/") else { throw bad("`host=` must be an absolute socket folder") }
                socket = v
            case "port":
                guard let v = item.value.flatMap(Int.init), v >= 1, v <= 65535 else { throw bad("`port=` must be 1...65535") }
                queryPort = v
            case "sslmode":
                guard item.value == "disable" else {
                    throw bad("sslmode=\(item.value ?? "") is not supported (framepipe connects without TLS: use a private network or a unix socket, and sslmode=disable)")
                }
            default:
                throw bad("unknown parameter `\(item.name)` (known: host, port, sslmode)")
            }
        }
        if let p = queryPort { port = p }
        let h = c.host.flatMap { $0.isEmpty ? nil : $0 }
        if socket == nil && h == nil { throw bad("no host (postgres://USER@HOST/DATABASE, or ?host=/socket/folder)") }
        if h?.hasPrefix("/") == true || h?.hasPrefix("%2F") == true { socket = h?.removingPercentEncoding; host = nil } else { host = h }
        if socket != nil { host = nil }
        socketDirectory = socket
    }

    /// The URL with its password replaced by `***` (for logs and errors).
    public var description: String {
        var s = "postgres://\(user)\(password == nil ? "" : ":***")@\(host ?? "")"
        if host != nil && port != 5432 { s += ":\(port)" }
        s += "/\(database)"
        if let d = socketDirectory { s += "?host=\(d)" + (port != 5432 ? "&port=\(port)" : "") }
        return s
    }

    /// `text` with anything between `:` and `@` of the authority removed.
    public static func redact(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@") else { return text }
        let auth = text[scheme.upperBound..<at]
        guard let colon = auth.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }

    /// The connection settings for PostgresNIO (TLS off, a short connect timeout: an outage is
    /// noticed quickly and retried by the caller).
    var configuration: PostgresConnection.Configuration {
        var c: PostgresConnection.Configuration
        if let dir = socketDirectory {
            c = .init(unixSocketPath: dir + "/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            c = .init(host: host!, port: port, username: user, password: password, database: database, tls: .disable)
        }
        c.options.connectTimeout = .seconds(3)
        return c
    }
}
