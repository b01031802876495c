import Foundation
import Output
#if canImport(Glibc)
import Glibc
#endif

/// `<outbox>/STEM.manifest.json`: which input an output set was made from and what it holds,
/// written atomically after the set is complete and before the input moves to done/.
///
/// ```json
/// {"v":1,"input":"clip.mp4","size":1234,"mtime":1733212800.25,"sha256":"9f86…","stem":"clip",
///  "frames":120,"files":{"clip.csv":5120,"clip.jsonl":9000,"clip.npy":614528},"done":"clip.mp4"}
/// ```
/// `done` is the input's name in done/ (`clip-2.mp4` when an earlier `clip.mp4` is there).
public struct SetManifest: Codable, Equatable, Sendable {
    public var v = 1
    public var input: String
    public var size: Int64
    public var mtime: Double
    public var sha256: String
    public var stem: String
    public var frames: Int
    /// File name → size in bytes, for every file of the set.
    public var files: [String: Int64]
    public var done: String

    /// The manifest's path for `stem` in `outbox`.
    public static func path(outbox: String, stem: String) -> String { outbox + "/" + stem + ".manifest.json" }

    /// The set files a stem may have (`.jsonl` last: its presence means the set is complete);
    /// the segment and pooled files only with `output.segments` / `output.pool`.
    static func setFiles(stem: String) -> [String] {
        [".npy", ".csv", ".segments.csv", ".pooled.npy", ".segments.npy", ".jsonl"].map { stem + $0 }
    }

    /// True when `STEM.jsonl` (committed last) exists and does not end with an error record: the
    /// set is complete and describes a successful run.
    static func isComplete(outbox: String, stem: String) -> Bool {
        // The last line is all that matters: read the file's tail only (a set can be large).
        guard let h = FileHandle(forReadingAtPath: outbox + "/" + stem + ".jsonl") else { return false }
        defer { try? h.close() }
        let end = (try? h.seekToEnd()) ?? 0
        try? h.seek(toOffset: end > 1 << 20 ? end - (1 << 20) : 0)
        let data = (try? h.readToEnd()) ?? Data()
        let lines = data.split(separator: 10)
        guard let last = lines.last else { return true }  // no frames, no error
        let object = (try? JSONSerialization.jsonObject(with: Data(last))) as? [String: Any]
        return object != nil && object?["error"] == nil
    }

    /// True when any file of the set, or its manifest, exists.
    static func isTaken(outbox: String, stem: String) -> Bool {
        (setFiles(stem: stem) + [stem + ".manifest.json"]).contains { FileManager.default.fileExists(atPath: outbox + "/" + $0) }
    }

    /// A stem for `input` whose set files do not exist yet and that no other file has claimed:
    /// `clip`, else `clip-2`, `clip-3` ... (as `framepipe run` names duplicates).
    static func freeStem(for input: String, outbox: String, claimed: Set<String>) -> String {
        let base = OutputNaming.stem(for: input)
        var candidate = base
        var n = 1
        while claimed.contains(candidate) || isTaken(outbox: outbox, stem: candidate) {
            n += 1
            candidate = "\(base)-\(n)"
        }
        return candidate
    }

    /// Describes the set of `stem` as it is on disk now.
    static func describe(outbox: String, stem: String, input: String, size: Int64, mtime: Double, sha256: String,
                         frames: Int, done: String) -> SetManifest {
        var files: [String: Int64] = [:]
        for f in setFiles(stem: stem) {
            var st = stat()
            if stat(outbox + "/" + f, &st) == 0 { files[f] = Int64(st.st_size) }
        }
        return SetManifest(input: input, size: size, mtime: mtime, sha256: sha256, stem: stem, frames: frames,
                           files: files, done: done)
    }

    /// Writes the manifest (temporary name, fsync, rename).
    func write(outbox: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var data = Array(try enc.encode(self))
        data.append(10)
        let f = try AtomicFile(finalPath: Self.path(outbox: outbox, stem: stem))
        try f.write(data)
        try f.commit()
    }

    /// Reads a manifest (nil when absent or unreadable).
    static func read(outbox: String, stem: String) -> SetManifest? {
        guard let data = FileManager.default.contents(atPath: path(outbox: outbox, stem: stem)) else { return nil }
        return try? JSONDecoder().decode(SetManifest.self, from: data)
    }
}
