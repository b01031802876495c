import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 server answering `GET /metrics` with `Metrics.render()` (and 404/405 to
/// anything else), one connection at a time on its own DispatchQueue; every response closes the
/// connection. Plain sockets: no HTTP package is needed for one text endpoint.
public final class MetricsServer: @unchecked Sendable {
    private let metrics: Metrics
    private let log: Logger
    private var fd: Int32 = -1
    private let queue = DispatchQueue(label: "framepipe.metrics")
    private let stopLock = NSLock()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    /// The port actually bound (useful when asked for port 0).
    public private(set) var port: UInt16 = 0

    public init(metrics: Metrics, log: Logger) { self.metrics = metrics; self.log = log }

    /// Binds `host:port` (IPv4) and starts serving. Throws with the address and the failing call.
    public func start(host: String, port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServiceError("metrics \(host):\(port): socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 || listen(fd, 16) != 0 {
            let msg = String(cString: strerror(errno))
            close(fd); fd = -1
            throw ServiceError("metrics \(host):\(port): cannot listen: \(msg)")
        }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = UInt16(bigEndian: bound.sin_port)
        queue.async { self.acceptLoop(); self.finished.signal() }
    }

    /// Stops accepting and waits for the loop to end (at most ~0.5 s).
    public func stop() {
        stopLock.lock(); let was = stopped; stopped = true; stopLock.unlock()
        if !was && fd >= 0 { finished.wait(); close(fd); fd = -1 }
    }

    private var isStopped: Bool { stopLock.lock(); defer { stopLock.unlock() }; return stopped }

    private func acceptLoop() {
        while !isStopped {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 250)
            if n <= 0 { continue }
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            handle(c)
            close(c)
        }
    }

    private func handle(_ c: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            request.append(contentsOf: buf[0..<n])
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
            if let s = String(bytes: request, encoding: .utf8), s.contains("\r\n\r\n") || s.contains("\n\n") { break }
        }
        let text = String(decoding: request, as: UTF8.self)
        let first = text.split(separator: "\r\n", maxSplits: 1).first.map(String.init)
            ?? text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = first.split(separator: " ")
        let response: String
        if parts.count >= 2, parts[0] == "GET", parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?") {
            let body = metrics.render()
            response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        } else if parts.count >= 2, parts[0] != "GET" {
            response = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        } else {
            let body = "not found: try /metrics\n"
            response = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        }
        let bytes = Array(response.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(c, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        shutdown(c, Int32(SHUT_WR))
    }
}

/// A daemon-level failure with a message for the user.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}
