#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `raw` to `fd` (`write(2)`), retrying short writes and EINTR.
/// - Returns: nil on success, else the `errno` of the failed write.
public func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer) -> Int32? {
    var offset = 0
    while offset < raw.count {
        let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        offset += n
    }
    return nil
}
