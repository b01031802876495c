import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Speaks systemd's notification protocol (sd_notify(3)) on `$NOTIFY_SOCKET` directly: one datagram
/// of `KEY=VALUE` lines per message over an AF_UNIX SOCK_DGRAM socket; a path starting with `@` is in
/// the abstract namespace. With no socket configured every call does nothing.
public final class SDNotifier: @unchecked Sendable {
    /// The socket path as given (nil: not running under systemd's notify protocol).
    public let socketPath: String?
    private let fd: Int32
    private let lock = NSLock()

    /// Uses `$NOTIFY_SOCKET` from `environment`.
    public convenience init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.init(socketPath: environment["NOTIFY_SOCKET"])
    }

    /// Uses `socketPath` (nil or empty: a no-op notifier).
    public init(socketPath: String?) {
        guard let p = socketPath, !p.isEmpty, p.hasPrefix("/") || p.hasPrefix("@") else {
            self.socketPath = nil
            fd = -1
            return
        }
        self.socketPath = p
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// True when messages go somewhere.
    public var isEnabled: Bool { fd >= 0 }

    /// Sends `state` (e.g. "READY=1\nSTATUS=..."); returns false when it could not be delivered.
    /// Never blocks (`MSG_DONTWAIT`): when the receiver's queue is full the message is dropped, so a
    /// slow reader can never stall the daemon (or its shutdown). Failures are not fatal.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard fd >= 0, let path = socketPath else { return false }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        // Abstract names are not NUL-terminated: the length says where the name ends.
        let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (bytes[0] == 0 ? 0 : 1))
        let payload = Array(state.utf8)
        lock.lock(); defer { lock.unlock() }
        let sent = withUnsafePointer(to: &addr) { ap in
            ap.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), sa, len) }
            }
        }
        return sent == payload.count
    }

    /// `READY=1` plus a status line.
    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    /// `STATUS=...`: shown by `systemctl status`.
    public func status(_ s: String) { notify("STATUS=\(s)") }
    /// `WATCHDOG=1`: the service is alive and making progress.
    public func watchdog() { notify("WATCHDOG=1") }
    /// `RELOADING=1` (with the monotonic time systemd 253+ asks for) ...
    public func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        notify("RELOADING=1\nMONOTONIC_USEC=\(Int(ts.tv_sec) * 1_000_000 + Int(ts.tv_nsec) / 1000)")
    }
    /// ... and `READY=1` again once the reload is done.
    public func reloaded(status: String) { notify("READY=1\nSTATUS=\(status)") }
    /// `STOPPING=1` at the start of shutdown.
    public func stopping() { notify("STOPPING=1\nSTATUS=stopping: draining in-flight work") }

    /// The watchdog interval systemd asks for (`WATCHDOG_USEC`, honouring `WATCHDOG_PID`), in seconds.
    public static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment) -> Double? {
        guard let s = environment["WATCHDOG_USEC"], let usec = UInt64(s), usec > 0 else { return nil }
        if let p = environment["WATCHDOG_PID"], let pid = Int32(p), pid != getpid() { return nil }
        return Double(usec) / 1e6
    }
}
