import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes whole lines to a file descriptor (stdout by default), one `write(2)` per call so lines
/// from several inputs never interleave mid-line, and each line reaches the reader as produced.
///
/// A closed reader (EPIPE, e.g. `| head -1`) is reported as `LineWriter.Closed`, never a crash:
/// the process ignores SIGPIPE (see `ignoreSIGPIPE()`).
public final class LineWriter: @unchecked Sendable {
    /// Thrown when the reading end has gone away.
    public struct Closed: Error {}

    private let fd: Int32
    private let lock = NSLock()
    /// True once a write hit EPIPE.
    public private(set) var isClosed = false

    public init(fd: Int32 = STDOUT_FILENO) { self.fd = fd }

    /// Makes a closed pipe an EPIPE error instead of a fatal signal. Call once at start.
    public static func ignoreSIGPIPE() { signal(SIGPIPE, SIG_IGN) }

    /// Writes `bytes` completely (retrying short writes and EINTR).
    public func write(_ bytes: [UInt8]) throws {
        lock.lock(); defer { lock.unlock() }
        if isClosed { throw Closed() }
        if let code = bytes.withUnsafeBytes({ writeAll(fd, $0) }) {
            if code == EPIPE { isClosed = true; throw Closed() }
            throw OutputError(path: fd == STDOUT_FILENO ? "stdout" : "fd \(fd)", operation: "write", code: code)
        }
    }
}
