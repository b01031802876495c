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

    /// A name seen but not yet handed out: waiting until its size and mtime stop changing.
    private struct Settling {
        var size: Int64
        var mtime: Double
        /// When (size, mtime) were last seen to change (monotonic seconds).
        var since: Double
        /// Not handed out before this (monotonic seconds): a retry's delay.
        var notBefore: Double
        /// Moved in by rename(2): complete by construction, no settle wait.
        var atomic: Bool
    }
    private var settling: [String: Settling] = [:]
    private var arrival: [String] = []  // settling names in arrival order
    /// Seconds a file's size and mtime must stay the same before it is processed.
    public var settleSeconds: Double {
        get { condition.lock(); defer { condition.unlock() }; return _settle }
        set { condition.lock(); _settle = newValue; condition.unlock() }
    }
    private var _settle = 0.0

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Queues `name` unless it is already waiting. A file that arrived by `rename(2)` (`atomic`)
    /// is ready at once; any other waits until its size and mtime have been stable for
    /// `settleSeconds` (a writer that closes and reopens, one `dd` per chunk, resets the wait).
    public func enqueue(_ name: String, atomic: Bool = false, delay: Double = 0) {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, !queued.contains(name) else { return }
        if atomic && delay == 0 {
            if settling.removeValue(forKey: name) != nil { arrival.removeAll { $0 == name } }
            queued.insert(name)
            queue.append(name)
            condition.broadcast()
            return
        }
        let t = Self.now()
        if var s = settling[name] {
            // Seen again (another close): the settle wait starts over from this event.
            s.since = t
            if atomic { s.atomic = true }
            s.notBefore = max(s.notBefore, t + delay)
            settling[name] = s
        } else {
            let (size, mtime) = Self.identity(directory + "/" + name) ?? (-1, 0)
            settling[name] = Settling(size: size, mtime: mtime, since: t, notBefore: t + delay, atomic: atomic)
            arrival.append(name)
        }
        condition.broadcast()
    }

    /// Size and mtime of a regular file (nil: missing or not a regular file).
    static func identity(_ path: String) -> (Int64, Double)? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return (Int64(st.st_size), Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    /// Moves settled names to the ready queue (caller holds the lock).
    private func promoteSettled() {
        guard !settling.isEmpty else { return }
        let t = Self.now()
        var keep: [String] = []
        for name in arrival {
            guard var s = settling[name] else { continue }
            guard let (size, mtime) = Self.identity(directory + "/" + name) else {
                settling[name] = nil  // gone (moved away or deleted)
                continue
            }
            if size != s.size || mtime != s.mtime {
                s.size = size; s.mtime = mtime; s.since = t
                settling[name] = s
                keep.append(name)
                continue
            }
            if t >= s.notBefore && (s.atomic || t - s.since >= _settle) {
                settling[name] = nil
                queued.insert(name)
                queue.append(name)
            } else {
                keep.append(name)
            }
        }
        arrival = keep
    }

    /// The next name, or nil after `timeout` seconds or once closed.
    public func next(timeout: Double) -> String? {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            promoteSettled()
            if closed { return nil }
            if !queue.isEmpty { break }
            // Settling files are re-checked every 100 ms.
            let wake = settling.isEmpty ? deadline : min(deadline, Date(timeIntervalSinceNow: 0.1))
            if !condition.wait(until: wake) && Date() >= deadline {
                promoteSettled()
                if queue.isEmpty || closed { return nil }
                break
            }
        }
        let n = queue.removeFirst()
        queued.remove(n)
        return n
    }

    /// Stops handing out names (shutdown).
    public func close() {
        condition.lock(); closed = true; condition.broadcast(); condition.unlock()
    }

    /// Files ready and waiting (not counting the one in progress nor those still settling).
    public var depth: Int { condition.lock(); defer { condition.unlock() }; return queue.count }

    /// Files seen but still settling (being written, or waiting for a retry).
    public var settlingCount: Int { condition.lock(); defer { condition.unlock() }; return settling.count }

    /// `dir/name`, or `dir/STEM-2.EXT`, `-3` ... when that is taken (never replaces a file).
    static func freeName(_ name: String, in dir: String, extraSuffixes: [String] = []) -> String {
        func taken(_ n: String) -> Bool {
            ([""] + extraSuffixes).contains { FileManager.default.fileExists(atPath: dir + "/" + n + $0) }
        }
        if !taken(name) { return name }
        let ext = (name as NSString).pathExtension
        let base = ext.isEmpty ? name : String(name.dropLast(ext.utf8.count + 1))
        var i = 2
        while true {
            let candidate = base + "-\(i)" + (ext.isEmpty ? "" : "." + ext)
            if !taken(candidate) { return candidate }
            i += 1
        }
    }

    /// Moves a processed file into done/ under its own name, or `NAME-2.EXT` ... when an earlier
    /// file of that name is there (it is never replaced). Returns the name used in done/.
    @discardableResult
    public func moveToDone(_ name: String) throws -> String {
        let target = Self.freeName(name, in: doneDir)
        try Self.move(directory + "/" + name, to: doneDir + "/" + target)
        return target
    }

    /// Writes `failed/NAME.error` (atomically) with `reason`, then moves the file into failed/
    /// (as `NAME-2.EXT` ... when an earlier failure of that name is there). Returns the name used.
    @discardableResult
    public func moveToFailed(_ name: String, reason: String) throws -> String {
        let target = Self.freeName(name, in: failedDir, extraSuffixes: [".error"])
        let f = try AtomicFile(finalPath: failedDir + "/" + target + ".error")
        try f.write(Array((reason.hasSuffix("\n") ? reason : reason + "\n").utf8))
        try f.commit()
        try Self.move(directory + "/" + name, to: failedDir + "/" + target)
        return target
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
