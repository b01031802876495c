import Foundation
import Output
#if canImport(Glibc)
import Glibc
#endif

/// The inbox folder and its queue: names of complete files waiting to be processed, in arrival
/// order, each at most once; and the moves of processed files to done/ or failed/.
public final class Inbox: @unchecked Sendable {
    public let directory: String
    public let doneDir: String
    public let failedDir: String
    private let condition = NSCondition()
    private var queue: [String] = []
    private var queued = Set<String>()
    private var closed = false

    public init(directory: String, doneDir: String, failedDir: String) {
        self.directory = directory; self.doneDir = doneDir; self.failedDir = failedDir
    }

    /// True for names the inbox may process: not hidden (our temporaries start with `.`), not an
    /// editor backup, not a partial download.
    public static func isCandidate(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && !name.hasSuffix("~") && !name.hasSuffix(".part")
            && !name.hasSuffix(".tmp") && !name.contains(AtomicFile.tempMarker)
    }

    /// Creates the folders if missing; throws naming the folder that cannot be made.
    public func prepare() throws {
        for d in [directory, doneDir, failedDir] {
            do {
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            } catch {
                throw ServiceError("\(d): cannot create folder: \(error.localizedDescription)")
            }
        }
    }

    /// Regular files already in the inbox, oldest first (processed at start: they were complete
    /// before we looked, or arrive later through the watcher).
    public func existingFiles() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [(String, Double)] = []
        for n in names where Self.isCandidate(n) {
            var st = stat()
            guard stat(directory + "/" + n, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            found.append((n, Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9))
        }
        return found.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map(\.0)
    }

    /// Queues `name` unless it is already waiting.
    public func enqueue(_ name: String) {
        condition.lock()
        if !closed, queued.insert(name).inserted {
            queue.append(name)
            condition.broadcast()
        }
        condition.unlock()
    }

    /// The next name, or nil after `timeout` seconds or once closed.
    public func next(timeout: Double) -> String? {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while queue.isEmpty && !closed {
            if !condition.wait(until: deadline) { return nil }
        }
        if closed || queue.isEmpty { return nil }
        let n = queue.removeFirst()
        queued.remove(n)
        return n
    }

    /// Stops handing out names (shutdown).
    public func close() {
        condition.lock(); closed = true; condition.broadcast(); condition.unlock()
    }

    /// Files waiting.
    public var depth: Int { condition.lock(); defer { condition.unlock() }; return queue.count }

    /// Moves a processed file into done/.
    public func moveToDone(_ name: String) throws {
        try Self.move(directory + "/" + name, to: doneDir + "/" + name)
    }

    /// Writes `failed/NAME.error` (atomically) with `reason`, then moves the file into failed/.
    public func moveToFailed(_ name: String, reason: String) throws {
        let f = try AtomicFile(finalPath: failedDir + "/" + name + ".error")
        try f.write(Array((reason.hasSuffix("\n") ? reason : reason + "\n").utf8))
        try f.commit()
        try Self.move(directory + "/" + name, to: failedDir + "/" + name)
    }

    /// `rename(2)`, then fsync of both folders so the move survives a crash; across file systems,
    /// copy + fsync + unlink.
    static func move(_ from: String, to: String) throws {
        if rename(from, to) == 0 {
            AtomicFile.syncDirectory(of: to)
            AtomicFile.syncDirectory(of: from)
            return
        }
        guard errno == EXDEV else { throw ServiceError("cannot move \(from) to \(to): \(String(cString: strerror(errno)))") }
        guard let data = FileManager.default.contents(atPath: from) else {
            throw ServiceError("cannot read \(from) to move it")
        }
        let f = try AtomicFile(finalPath: to)
        try f.write(Array(data))
        try f.commit()
        if unlink(from) != 0 { throw ServiceError("cannot remove \(from): \(String(cString: strerror(errno)))") }
        AtomicFile.syncDirectory(of: from)
    }
}
