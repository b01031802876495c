import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure while setting up a test fixture.
public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A deterministic random generator (SplitMix64), so generated test data is the same on every run.
public struct SplitMix {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    public mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
}

/// A TCP server on 127.0.0.1 (a free port) for hostile-network tests: silent, send-then-stall, or a
/// minimal HTTP/1.0 file server. Stops by itself after `lifetime` seconds at the latest.
public final class LoopbackServer: @unchecked Sendable {
    public enum Mode {
        /// Accepts connections and never sends a byte.
        case silent
        /// Sends these bytes to each client, then keeps the connection open without sending more.
        case sendThenStall([UInt8])
        /// Answers `GET /name` with the bytes of `files[name]` (404 otherwise), then closes.
        case http([String: [UInt8]])
    }

    public let port: Int
    private let fd: Int32
    private let mode: Mode
    private let lock = NSLock()
    private var clients: [Int32] = []
    private var stopped = false
    private var accepted = 0
    /// Connections accepted so far.
    public var connections: Int { lock.lock(); defer { lock.unlock() }; return accepted }

    public init(mode: Mode, lifetime: TimeInterval = 120) throws {
        self.mode = mode
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
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
        guard ok else { close(fd); throw TestSupportError("bind/listen: \(String(cString: strerror(errno)))") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in acceptLoop() }.start()
        DispatchQueue.global().asyncAfter(deadline: .now() + lifetime) { [weak self] in self?.stop() }
    }

    deinit { stop() }

    /// Closes the listening socket and every connection (idempotent).
    public func stop() {
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
