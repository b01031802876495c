import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The system calls an output file makes on its way to its final name, as values, so a test can
/// make any of them fail (a full disk at the `.csv`, an fsync error at the `.jsonl`) without root.
/// Each returns nil on success or the `errno` of the failure.
public struct FileIO: Sendable {
    /// Writes all of the bytes to `fd` (the temporary file at `path`).
    public var write: @Sendable (_ path: String, _ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32?
    /// `fsync(2)` of the temporary file at `path`.
    public var fsync: @Sendable (_ path: String, _ fd: Int32) -> Int32?
    /// `rename(2)`, temporary name to final name.
    public var rename: @Sendable (_ from: String, _ to: String) -> Int32?
    /// `fsync(2)` of a folder, so the renames in it survive a crash.
    public var syncDirectory: @Sendable (_ path: String) -> Int32?

    public init(write: @escaping @Sendable (String, Int32, UnsafeRawBufferPointer) -> Int32?,
                fsync: @escaping @Sendable (String, Int32) -> Int32?,
                rename: @escaping @Sendable (String, String) -> Int32?,
                syncDirectory: @escaping @Sendable (String) -> Int32?) {
        self.write = write; self.fsync = fsync; self.rename = rename; self.syncDirectory = syncDirectory
    }

    /// The real calls.
    public static let system = FileIO(
        write: { _, fd, bytes in writeAll(fd, bytes) },
        fsync: { _, fd in Glibc.fsync(fd) == 0 ? nil : errno },
        rename: { from, to in Glibc.rename(from, to) == 0 ? nil : errno },
        syncDirectory: { dir in
            let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dfd >= 0 else { return errno }
            defer { close(dfd) }
            // Some file systems cannot fsync a folder (EINVAL): nothing more can be done there.
            if Glibc.fsync(dfd) != 0 && errno != EINVAL { return errno }
            return nil
        })
}
