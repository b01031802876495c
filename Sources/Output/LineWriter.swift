import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes whole lines to a file descriptor (stdout by default), each line completely before the
/// next (a lock), so lines from several inputs never interleave mid-line, and each line reaches
/// the reader as produced.
///
/// A closed reader (EPIPE, e.g. `| head -1`) is reported as `LineWriter.Closed`, never a crash:
/// the process ignores SIGPIPE (see `ignoreSIGPIPE()`). A reader that stays but stops reading
/// blocks the writer, and so the pipeline behind it (that is the backpressure); `abandon()` (a
/// cancelled run: SIGTERM, SIGINT) ends that wait within `pollInterval`, because the writer only
/// writes what poll(2) says fits: at most `PIPE_BUF` bytes once the descriptor is writable, which
/// a pipe then takes without blocking.
public final class LineWriter: @unchecked Sendable {
    /// Thrown when the reading end has gone away.
    public struct Closed: Error {}
    /// Thrown by a write after `abandon()`: the run was cancelled and its output given up.
    public struct Abandoned: Error {}

    private let fd: Int32
    private let lock = NSLock()
    private let stateLock = NSLock()
    private var _abandoned = false
    /// Milliseconds between checks for `abandon()` while the reader is not reading.
    public static let pollInterval: Int32 = 100
    /// True once a write hit EPIPE.
    public private(set) var isClosed = false

    public init(fd: Int32 = STDOUT_FILENO) { self.fd = fd }

    /// Makes a closed pipe an EPIPE error instead of a fatal signal. Call once at start.
    public static func ignoreSIGPIPE() { signal(SIGPIPE, SIG_IGN) }

    /// Gives up on the output: a write waiting for the reader throws `Abandoned` within
    /// `pollInterval`, and so does every later write. Any thread.
    public func abandon() { stateLock.lock(); _abandoned = true; stateLock.unlock() }

    private var abandoned: Bool { stateLock.lock(); defer { stateLock.unlock() }; return _abandoned }

    /// Writes `bytes` completely (retrying short writes and EINTR), unless abandoned meanwhile.
    public func write(_ bytes: [UInt8]) throws {
        lock.lock(); defer { lock.unlock() }
        if isClosed { throw Closed() }
        if let code = try bytes.withUnsafeBytes({ try writeWaiting($0) }) {
            if code == EPIPE { isClosed = true; throw Closed() }
            throw OutputError(path: fd == STDOUT_FILENO ? "stdout" : "fd \(fd)", operation: "write", code: code)
        }
    }

    /// nil on success, else the errno of the failed poll or write.
    private func writeWaiting(_ raw: UnsafeRawBufferPointer) throws -> Int32? {
        var offset = 0
        while offset < raw.count {
            if abandoned { throw Abandoned() }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&p, 1, Self.pollInterval)
            if ready < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if ready == 0 { continue }  // still full: look at `abandoned` again
            // POLLERR/POLLHUP fall through to write(2), which reports why (EPIPE for a gone reader).
            let n = Glibc.write(fd, raw.baseAddress! + offset, min(raw.count - offset, Int(PIPE_BUF)))
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return errno
            }
            offset += n
        }
        return nil
    }
}
