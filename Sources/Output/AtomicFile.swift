import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Errors from writing output files.
public struct OutputError: Error, CustomStringConvertible, Sendable {
    /// The file concerned.
    public let path: String
    /// What was being done.
    public let operation: String
    /// errno at the failure, if any.
    public let code: Int32

    public init(path: String, operation: String, code: Int32 = errno) {
        self.path = path; self.operation = operation; self.code = code
    }

    public var description: String {
        "\(path): \(operation) failed: \(String(cString: strerror(code)))"
    }
}

/// A file written under a temporary name in the destination folder and renamed into place by
/// `commit()` only when complete: readers never see a half-written file under the final name.
///
/// `commit()` flushes the data (`fsync`), renames (`rename(2)`, atomic within one file system) and
/// then fsyncs the folder so the rename itself survives a crash. A failed write leaves only the
/// temporary file, which `abandon()` (or `deinit`, if never committed) removes.
public final class AtomicFile {
    /// The name the file gets on commit.
    public let finalPath: String
    /// The temporary name used while writing (`.NAME.partial-<pid>-<n>` in the same folder).
    public let tempPath: String
    private var fd: Int32
    private var committed = false
    private var buffer: [UInt8] = []
    private static let bufferLimit = 1 << 16
    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    /// Prefix of every temporary file name, so leftovers can be recognised and cleaned.
    public static let tempMarker = ".partial-"

    /// Opens a new temporary file beside `finalPath`.
    public init(finalPath: String) throws {
        self.finalPath = finalPath
        let url = URL(fileURLWithPath: finalPath)
        let dir = url.deletingLastPathComponent().path
        Self.counterLock.lock(); Self.counter += 1; let n = Self.counter; Self.counterLock.unlock()
        tempPath = dir + "/." + url.lastPathComponent + Self.tempMarker + "\(getpid())-\(n)"
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw OutputError(path: tempPath, operation: "create") }
    }

    deinit {
        if !committed { abandon() }
    }

    /// Appends bytes (buffered).
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Appends raw bytes (buffered).
    public func write(_ raw: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: raw)
        if buffer.count >= Self.bufferLimit { try flush() }
    }

    /// Writes out the buffer.
    public func flush() throws {
        guard !buffer.isEmpty else { return }
        if let code = buffer.withUnsafeBytes({ writeAll(fd, $0) }) {
            throw OutputError(path: tempPath, operation: "write", code: code)
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Overwrites bytes at `offset` (after flushing what is buffered).
    public func rewrite(at offset: Int, _ bytes: [UInt8]) throws {
        try flush()
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if n != bytes.count { throw OutputError(path: tempPath, operation: "rewrite header") }
    }

    /// Flushes, fsyncs, renames to `finalPath` and fsyncs the folder.
    public func commit() throws {
        precondition(!committed && fd >= 0)
        try flush()
        if fsync(fd) != 0 { throw OutputError(path: tempPath, operation: "fsync") }
        if close(fd) != 0 { fd = -1; throw OutputError(path: tempPath, operation: "close") }
        fd = -1
        if rename(tempPath, finalPath) != 0 { throw OutputError(path: finalPath, operation: "rename") }
        committed = true
        Self.syncDirectory(of: finalPath)
    }

    /// Closes and removes the temporary file; the final name is never touched.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if !committed { unlink(tempPath) }
        buffer.removeAll()
    }

    /// fsyncs the folder holding `path` (best effort: some file systems refuse).
    public static func syncDirectory(of path: String) {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// Removes temporary files left in `directory` by an earlier run that was killed; returns their names.
    @discardableResult
    public static func removeLeftovers(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        for name in names where name.hasPrefix(".") && name.contains(tempMarker) {
            if unlink(directory + "/" + name) == 0 { removed.append(name) }
        }
        return removed
    }
}
