import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

// Shared by the Hostile*Tests suites: checking `framepipe run` output against the rules for bad
// input, and a loopback TCP/HTTP server.

/// How one input of a `framepipe run` ended, read back from its JSON lines.
struct InputResult {
    var frames = 0
    /// Error records (`{"v":1,"input":..,"error":..,"frames":N}`) for this input.
    var errors: [[String: Any]] = []
    var frameAfterError = false
}

/// Checks one `framepipe run` (stdout JSON lines) over `inputs` against the hostile-input rules and
/// returns per-input results plus every broken rule: no crash (signal), no hang, no partial line,
/// at most one error record per input and exactly one when it produced nothing, the record counts
/// the frames emitted and comes last, one stderr line per failed input, exit status 0/1 to match.
func checkRun(_ r: ProcessResult, inputs: [String]) -> (results: [String: InputResult], problems: [String]) {
    var problems: [String] = []
    if r.timedOut { problems.append("HANG: the run was killed after its time limit") }
    if r.signaled { problems.append("CRASH: ended by signal \(r.status)") }
    if !r.stdout.isEmpty && r.stdout.last != UInt8(ascii: "\n") { problems.append("PARTIAL: stdout does not end with a newline") }
    var results: [String: InputResult] = [:]
    for input in inputs { results[input] = InputResult() }
    for line in r.lines {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let input = obj["input"] as? String else {
            problems.append("PARTIAL or invalid line: \(line.prefix(120))")
            continue
        }
        guard var res = results[input] else { problems.append("line for an unknown input: \(input)"); continue }
        if obj["error"] != nil {
            res.errors.append(obj)
        } else {
            if !res.errors.isEmpty { res.frameAfterError = true }
            res.frames += 1
        }
        results[input] = res
    }
    var anyError = false
    for input in inputs {
        let res = results[input]!
        let name = URL(fileURLWithPath: input).lastPathComponent
        if res.errors.count > 1 { problems.append("\(name): \(res.errors.count) error records") }
        if res.frames == 0 && res.errors.count != 1 { problems.append("\(name): no frames and no error record") }
        if res.frameAfterError { problems.append("\(name): frame records after its error record") }
        if let e = res.errors.first {
            anyError = true
            if (e["frames"] as? Int) != res.frames { problems.append("\(name): error record says \(e["frames"] ?? "nil") frames, \(res.frames) emitted") }
            if ((e["error"] as? String) ?? "").isEmpty { problems.append("\(name): empty error message") }
            if !r.stderrText.contains("framepipe: \(input): ") { problems.append("\(name): no stderr line naming it") }
        }
    }
    if !r.timedOut && !r.signaled && r.status != (anyError ? 1 : 0) {
        problems.append("exit status \(r.status), expected \(anyError ? 1 : 0)")
    }
    return (results, problems)
}

/// The resident set size of process `pid` in kB (from /proc), nil when it is gone.
func residentKB(_ pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    return status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?
        .split(separator: " ").dropFirst().first.flatMap { Int($0) }
}

extension SplitMix {
    /// A value in 0..<n (SplitMix is MediaCommandTests' deterministic generator).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
}

struct HostileError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A TCP server on 127.0.0.1 (free port): silent, send-then-stall, or minimal HTTP/1.0; stops by itself
/// after `lifetime` seconds. Same as Tests/MediaTests/LoopbackServer.swift (targets share no sources).
final class LoopbackServer: @unchecked Sendable {
    enum Mode {
        /// Accepts connections and never sends a byte.
        case silent
        /// Sends these bytes to each client, then keeps the connection open without sending more.
        case sendThenStall([UInt8])
        /// Answers `GET /name` with the bytes of `files[name]` (404 otherwise), then closes.
        case http([String: [UInt8]])
    }

    let port: Int
    private let fd: Int32
    private let mode: Mode
    private let lock = NSLock()
    private var clients: [Int32] = []
    private var stopped = false
    private var accepted = 0
    /// Connections accepted so far.
    var connections: Int { lock.lock(); defer { lock.unlock() }; return accepted }

    init(mode: Mode, lifetime: TimeInterval = 120) throws {
        self.mode = mode
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HostileError("socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        self.fd = fd
        guard ok else { close(fd); throw HostileError("bind/listen: \(String(cString: strerror(errno)))") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in acceptLoop() }.start()
        DispatchQueue.global().asyncAfter(deadline: .now() + lifetime) { [weak self] in self?.stop() }
    }

    deinit { stop() }

    /// Closes the listening socket and every connection (idempotent).
    func stop() {
        lock.lock()
        if stopped { lock.unlock(); return }
        stopped = true
        let open = clients
        clients = []
        lock.unlock()
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        for c in open { shutdown(c, Int32(SHUT_RDWR)); close(c) }
    }

    private func acceptLoop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { if errno == EINTR { continue }; return }
            lock.lock()
            if stopped { lock.unlock(); close(c); return }
            clients.append(c)
            accepted += 1
            lock.unlock()
            Thread { [self] in serve(c) }.start()
        }
    }

    private func serve(_ c: Int32) {
        switch mode {
        case .silent:
            break
        case .sendThenStall(let bytes):
            send(c, bytes)
        case .http(let files):
            var request: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while request.count < 16_384 {
                let n = read(c, &buf, buf.count)
                if n <= 0 { break }
                request += buf[0..<n]
                if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
            }
            let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
            let path = line.count >= 2 ? String(line[1].dropFirst()) : ""
            if let body = files[path] {
                send(c, Array("HTTP/1.0 200 OK\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body)
            } else {
                send(c, Array("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            }
            lock.lock()
            if !stopped, let i = clients.firstIndex(of: c) { clients.remove(at: i); close(c) }
            lock.unlock()
        }
    }

    private func send(_ c: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}
