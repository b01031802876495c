import Foundation
import Output

/// How many times processing of each inbox file was started without finishing, kept in
/// `<state_dir>/attempts.json` and rewritten atomically (temp + fsync + rename) before each attempt,
/// so a file that kills the daemon every time is counted across restarts and finally set aside.
public final class AttemptsRecord: @unchecked Sendable {
    /// One file's history.
    public struct Entry: Codable, Equatable, Sendable {
        public var attempts: Int
        public var lastError: String?
        /// Size and modification time when the count started: a new file under the same name starts over.
        public var size: Int64
        public var mtime: Double
        /// The output stem chosen for this file (its set is `<outbox>/STEM.*`) and the file's
        /// SHA-256, recorded before the work starts: after a kill, a complete `STEM.jsonl` for the
        /// same size, mtime and hash means the work was done and only the move to done/ is left.
        public var stem: String?
        public var sha256: String?
    }

    public let path: String
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]

    /// Loads `path` if present; an unreadable record is replaced (and the reason returned in `warning`).
    public init(path: String) {
        self.path = path
        if let data = FileManager.default.contents(atPath: path) {
            if let e = try? JSONDecoder().decode([String: Entry].self, from: data) {
                entries = e
            } else {
                warning = "\(path): unreadable attempts record, starting afresh"
            }
        }
    }

    /// Set when the file on disk could not be read.
    public private(set) var warning: String?

    /// The entry for `name` if it still describes the same file.
    public func entry(_ name: String, size: Int64, mtime: Double) -> Entry? {
        lock.lock(); defer { lock.unlock() }
        guard let e = entries[name], e.size == size, e.mtime == mtime else { return nil }
        return e
    }

    /// The stem recorded for `name`, whatever file it described (size and mtime not compared).
    public func recordedStem(_ name: String) -> String? {
        lock.lock(); defer { lock.unlock() }
        return entries[name]?.stem
    }

    /// Output stems claimed by files other than `name` (so two inputs never share a set).
    public func stemsClaimed(except name: String) -> Set<String> {
        lock.lock(); defer { lock.unlock() }
        return Set(entries.filter { $0.key != name }.compactMap(\.value.stem))
    }

    /// Counts one more start of `name` and saves; returns the new count. `stem` and `sha256`
    /// (when given) are recorded with it.
    @discardableResult
    public func begin(_ name: String, size: Int64, mtime: Double, stem: String? = nil, sha256: String? = nil) throws -> Int {
        lock.lock()
        var e = entries[name].flatMap { $0.size == size && $0.mtime == mtime ? $0 : nil }
            ?? Entry(attempts: 0, lastError: nil, size: size, mtime: mtime)
        e.attempts += 1
        if let stem { e.stem = stem }
        if let sha256 { e.sha256 = sha256 }
        entries[name] = e
        let snapshot = entries
        lock.unlock()
        try save(snapshot)
        return e.attempts
    }

    /// Takes back the count of an attempt that was stopped on purpose (shutdown), not failed.
    public func undo(_ name: String) throws {
        lock.lock()
        if var e = entries[name] {
            e.attempts = max(0, e.attempts - 1)
            entries[name] = e
        }
        let snapshot = entries
        lock.unlock()
        try save(snapshot)
    }

    /// Notes why the last attempt failed (kept until the file leaves the inbox).
    public func noteError(_ name: String, _ error: String) throws {
        lock.lock()
        entries[name]?.lastError = error
        let snapshot = entries
        lock.unlock()
        try save(snapshot)
    }

    /// Forgets `name` (it went to done/ or failed/).
    public func clear(_ name: String) throws {
        lock.lock()
        let had = entries.removeValue(forKey: name) != nil
        let snapshot = entries
        lock.unlock()
        if had { try save(snapshot) }
    }

    /// Drops entries of files no longer in the inbox.
    public func prune(keeping names: Set<String>) throws {
        lock.lock()
        let before = entries.count
        entries = entries.filter { names.contains($0.key) }
        let changed = entries.count != before
        let snapshot = entries
        lock.unlock()
        if changed { try save(snapshot) }
    }

    private func save(_ snapshot: [String: Entry]) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try enc.encode(snapshot)
        let f = try AtomicFile(finalPath: path)
        try f.write(Array(data))
        try f.commit()
    }
}
