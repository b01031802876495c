import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL 15 cluster for one test: `initdb` into a temp folder, `postgres` started
/// directly (its PID is ours to stop), listening on a free loopback port and on a unix socket in the
/// same folder; trust authentication for the `framepipe` superuser. As root, the server runs as the
/// `postgres` system user (it refuses root), through `setpriv`, which execs it (same PID).
///
/// The server runs with fsync off: a throwaway cluster needs no durability against power loss, and
/// a stop (`SIGINT`, fast shutdown) or a kill of *our* processes does not depend on it.
final class PostgresCluster {
    static let bin = "/usr/lib/postgresql/15/bin"
    let root: URL
    let port: Int
    var dataDir: String { root.path + "/data" }
    var logPath: String { root.path + "/postgres.log" }
    var url: String { "postgres://framepipe@127.0.0.1:\(port)/postgres" }
    var socketURL: String { "postgresql://framepipe@/postgres?host=\(root.path)&port=\(port)" }
    private(set) var process: Process?

    /// True when the PostgreSQL binaries are installed (scripts/setup installs them).
    static var available: Bool { FileManager.default.isExecutableFile(atPath: bin + "/postgres") }

    private static var isRoot: Bool { getuid() == 0 }

    /// Creates the cluster (does not start it).
    init() throws {
        root = try TestEnv.tempDir("framepipe-pg")
        port = try Self.freePort()
        if Self.isRoot {
            chmod(root.path, 0o755)
            try run(["/bin/chown", "postgres:postgres", root.path])
        }
        try run(asServer([Self.bin + "/initdb", "-D", dataDir, "-U", "framepipe", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]))
    }

    /// The command run as the server's user.
    private func asServer(_ argv: [String]) -> [String] {
        Self.isRoot ? ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"] + argv : argv
    }

    private func run(_ argv: [String]) throws {
        let r = try runProcess(argv[0], Array(argv.dropFirst()), timeout: 120)
        guard r.status == 0, !r.signaled else {
            throw ClusterError("\(argv.joined(separator: " ")): exit \(r.status): \(r.stderrText)\(r.stdoutText)")
        }
    }

    /// Starts the server and waits until it accepts connections.
    func start() throws {
        precondition(process == nil)
        let p = Process()
        let argv = asServer([Self.bin + "/postgres", "-D", dataDir, "-p", "\(port)", "-k", root.path,
                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                             "-c", "full_page_writes=off", "-c", "max_connections=50"])
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        if Self.isRoot { try run(["/bin/chown", "postgres:postgres", logPath]) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let r = try runProcess(Self.bin + "/pg_isready", ["-q", "-h", "127.0.0.1", "-p", "\(port)"], timeout: 10)
            if r.status == 0 { return }
            if !p.isRunning { throw ClusterError("postgres exited at start: \(tail())") }
            usleep(100_000)
        }
        throw ClusterError("postgres did not accept connections within 60 s: \(tail())")
    }

    /// Fast shutdown (SIGINT: clients are disconnected, the server exits cleanly); waits for it.
    func stop() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        process = nil
    }

    /// Stops the server and removes the folder.
    func destroy() {
        stop()
        try? FileManager.default.removeItem(at: root)
    }

    /// Runs SQL through psql and returns its unaligned, tuples-only output.
    @discardableResult
    func psql(_ sql: String) throws -> String {
        let r = try runProcess(Self.bin + "/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                                   "-h", "127.0.0.1", "-p", "\(port)", "-U", "framepipe", "-d", "postgres", "-c", sql],
                               timeout: 60)
        guard r.status == 0 else { throw ClusterError("psql: \(sql): \(r.stderrText)") }
        return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func tail() -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(8).joined(separator: "\n")
    }

    /// A loopback port nobody listens on now (bound to port 0, read back, closed).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClusterError("socket: \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw ClusterError("bind: \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

struct ClusterError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
