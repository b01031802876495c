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
/// temporary file, which `abandon()` (or `deinit`, if never committed) removes. Several files that
/// must appear together go through `FileSetCommit`, which uses the steps below one by one.
///
/// Used from one thread at a time (the writer's, then whichever thread commits).
public final class AtomicFile: @unchecked Sendable {
    /// The name the file gets on commit.
    public let finalPath: String
    /// The temporary name used while writing (`.NAME.partial-<pid>-<n>` in the same folder).
    public let tempPath: String
    /// The folder both names are in.
    public let directory: String
    /// The system calls it makes (tests inject failures).
    public let io: FileIO
    private var fd: Int32
    private var state = State.writing
    private var backup: String?
    private var buffer: [UInt8] = []
    private static let bufferLimit = 1 << 16
    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    private enum State { case writing, prepared, published, committed, abandoned }

    /// Prefix of every temporary file name, so leftovers can be recognised and cleaned.
    public static let tempMarker = ".partial-"

    /// Opens a new temporary file beside `finalPath`.
    public init(finalPath: String, io: FileIO = .system) throws {
        self.finalPath = finalPath
        self.io = io
        let url = URL(fileURLWithPath: finalPath)
        directory = url.deletingLastPathComponent().path
        Self.counterLock.lock(); Self.counter += 1; let n = Self.counter; Self.counterLock.unlock()
        tempPath = directory + "/." + url.lastPathComponent + Self.tempMarker + "\(getpid())-\(n)"
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw OutputError(path: tempPath, operation: "create") }
    }

    deinit {
        if state != .committed { abandon() }
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
        precondition(fd >= 0, "write after commit or abandon")
        if let code = buffer.withUnsafeBytes({ io.write(tempPath, fd, $0) }) {
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

    /// Flushes, fsyncs, renames to `finalPath` and fsyncs the folder; on a failure nothing is
    /// left under the final name (an earlier file there stays as it was).
    public func commit() throws {
        try FileSetCommit.commit([self])
    }

    /// Step 1 of a commit: flush, fsync and close the temporary file.
    func prepare() throws {
        precondition(state == .writing && fd >= 0)
        try flush()
        if let code = io.fsync(tempPath, fd) { throw OutputError(path: tempPath, operation: "fsync", code: code) }
        let closed = close(fd)
        fd = -1
        if closed != 0 { throw OutputError(path: tempPath, operation: "close") }
        state = .prepared
    }

    /// Step 2: rename into place, keeping a file already under the final name as a backup
    /// (a hard link under a temporary name) until the whole set is committed.
    func publish() throws {
        precondition(state == .prepared)
        var st = stat()
        if lstat(finalPath, &st) == 0 {
            let b = tempPath + ".previous"
            if link(finalPath, b) == 0 { backup = b }
        }
        if let code = io.rename(tempPath, finalPath) {
            if let b = backup { unlink(b); backup = nil }
            throw OutputError(path: finalPath, operation: "rename", code: code)
        }
        state = .published
    }

    /// Rolls a `publish()` back: the earlier file returns under the final name, or the name goes.
    func unpublish() {
        guard state == .published else { return }
        if let b = backup {
            Glibc.rename(b, finalPath)
            backup = nil
        } else {
            unlink(finalPath)
        }
        state = .abandoned
    }

    /// Step 3, once the whole set is in place: forget the backup of the earlier file.
    func dropBackup() {
        if let b = backup { unlink(b); backup = nil }
        state = .committed
    }

    /// Closes and removes the temporary file; the final name is never touched.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if state == .writing || state == .prepared { unlink(tempPath) }
        if state != .published && state != .committed { state = .abandoned }
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
