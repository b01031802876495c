import Foundation
import Testing
import Output
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// An input's file set is published as one: a failure at any file of the set (a full disk, a
/// failed fsync, rename or folder sync) leaves no file under a final name, and an earlier set under
/// those names as it was; a good set appears complete. The commit runs off the caller's thread.
@Suite struct FileSetCommitTests {
    static let dim = 4
    static let topK = 2

    /// Which call fails, and at which file of the set.
    enum Fault: String, CaseIterable {
        case write, fsync, rename, syncDirectory
    }

    /// File system calls that fail `fault` with `code` for the file whose final name ends in `ext`.
    static func failing(_ fault: Fault, at ext: String, code: Int32 = ENOSPC) -> FileIO {
        let real = FileIO.system
        @Sendable func hits(_ path: String) -> Bool { path.contains(".\(ext)\(AtomicFile.tempMarker)") || path.hasSuffix(".\(ext)") }
        return FileIO(
            write: { path, fd, bytes in fault == .write && hits(path) ? code : real.write(path, fd, bytes) },
            fsync: { path, fd in fault == .fsync && hits(path) ? EIO : real.fsync(path, fd) },
            rename: { from, to in fault == .rename && hits(to) ? EXDEV : real.rename(from, to) },
            syncDirectory: { dir in fault == .syncDirectory ? EIO : real.syncDirectory(dir) })
    }

    /// A sink with `frames` records written (small: nothing is flushed before the commit).
    static func sink(in dir: String, stem: String = "clip", frames: Int = 3, io: FileIO = .system) throws -> FileSetSink {
        let s = try FileSetSink(input: "clip.mp4", directory: dir, stem: stem,
                                options: EmitOptions(labels: true, embedding: false), embeddingDim: dim, topK: topK, io: io)
        var emb = [Float](repeating: 0, count: dim)
        for i in 0..<frames {
            for d in 0..<dim { emb[d] = Float(i * dim + d) }
            try emb.withUnsafeBufferPointer { buf in
                try s.write(FrameRecord(input: "clip.mp4", frame: i, pts: Double(i) / 25, keyframe: i == 0,
                                        labels: [LabelScore(index: 1, label: "one", score: 0.9)], embedding: buf))
            }
        }
        return s
    }

    static func listing(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    @Test func goodSetAppearsComplete() throws {
        let dir = try TestEnv.tempDir().path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try Self.sink(in: dir)
        #expect(Self.listing(dir).allSatisfy { $0.contains(AtomicFile.tempMarker) })  // nothing final while writing
        try s.finish(error: nil)
        #expect(Self.listing(dir) == ["clip.csv", "clip.jsonl", "clip.npy"])
        #expect(s.outputPaths == ["jsonl", "npy", "csv"].map { "\(dir)/clip.\($0)" })
        let lines = try String(contentsOfFile: dir + "/clip.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        let csv = try String(contentsOfFile: dir + "/clip.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 4 && csv[0].hasPrefix("frame,pts,label1"))
        let npy = try Data(contentsOf: URL(fileURLWithPath: dir + "/clip.npy"))
        #expect(npy.count == 128 + 3 * Self.dim * 4)
        #expect(String(decoding: npy[10..<128], as: UTF8.self).contains("(3, \(Self.dim))"))
    }

    @Test(arguments: Fault.allCases, ["npy", "csv", "jsonl"])
    func failureAtAnyFileLeavesNoFinalName(fault: Fault, ext: String) throws {
        let dir = try TestEnv.tempDir().path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try Self.sink(in: dir, io: Self.failing(fault, at: ext))
        #expect(throws: OutputError.self) { try s.finish(error: nil) }
        #expect(Self.listing(dir).isEmpty, "\(fault) at .\(ext): \(Self.listing(dir))")
    }

    @Test(arguments: Fault.allCases, ["npy", "csv", "jsonl"])
    func failureKeepsTheEarlierSetAsItWas(fault: Fault, ext: String) throws {
        let dir = try TestEnv.tempDir().path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.sink(in: dir, frames: 2).finish(error: nil)
        let before = try ["csv", "jsonl", "npy"].map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/clip.\($0)")) }
        let s = try Self.sink(in: dir, frames: 5, io: Self.failing(fault, at: ext))
        #expect(throws: OutputError.self) { try s.finish(error: "damaged") }
        #expect(Self.listing(dir) == ["clip.csv", "clip.jsonl", "clip.npy"], "\(fault) at .\(ext)")
        let after = try ["csv", "jsonl", "npy"].map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/clip.\($0)")) }
        #expect(after == before, "\(fault) at .\(ext): the earlier set changed")
    }

    @Test func errorRecordEndsTheJsonl() throws {
        let dir = try TestEnv.tempDir().path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.sink(in: dir, frames: 2).finish(error: "decode: broken")
        let last = try String(contentsOfFile: dir + "/clip.jsonl", encoding: .utf8).split(separator: "\n").last ?? ""
        #expect(last.contains("\"error\":\"decode: broken\"") && last.contains("\"frames\":2"))
    }

    @Test func commitRunsOffTheCallersThreadAndReportsItsOutcome() throws {
        let dir = try TestEnv.tempDir().path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The fsyncs wait for the test: finish(error:completion:) must return before they happen.
        let gate = DispatchSemaphore(value: 0)
        let real = FileIO.system
        let slow = FileIO(write: real.write, fsync: { path, fd in gate.wait(); gate.signal(); return real.fsync(path, fd) },
                          rename: real.rename, syncDirectory: real.syncDirectory)
        let s = try Self.sink(in: dir, io: slow)
        let done = DispatchSemaphore(value: 0)
        let outcome = Box()
        let caller = pthread_self()
        s.finish(error: nil) { error in
            outcome.set(error: error, onCaller: pthread_equal(pthread_self(), caller) != 0)
            done.signal()
        }
        // Returned while the commit is held: another input's sink can write and commit meanwhile.
        let other = try Self.sink(in: dir, stem: "other")
        try other.finish(error: nil)
        #expect(Self.listing(dir).filter { !$0.hasPrefix(".") } == ["other.csv", "other.jsonl", "other.npy"])
        gate.signal()
        #expect(done.wait(timeout: .now() + 30) == .success)
        #expect(outcome.finished && outcome.error == nil && !outcome.onCaller)
        #expect(Self.listing(dir).contains("clip.jsonl"))
    }

    /// A real full disk (a small tmpfs; needs root, skipped otherwise) that fills at each file of
    /// the set in turn: the commit's flushes come in the order .npy, .csv, .jsonl.
    @Test(.enabled(if: getuid() == 0), arguments: ["npy", "csv", "jsonl"])
    func realFullDiskAtEachFile(ext: String) throws {
        let root = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let mnt = root.appendingPathComponent("tiny").path
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mount = try shell("mount -t tmpfs -o size=1m framepipe-settle '\(mnt)'")
        guard mount.status == 0 else {
            print("full disk at .\(ext): cannot mount a tmpfs here (\(mount.stderrText)); the injected cases cover it")
            return
        }
        defer { _ = try? shell("umount -l '\(mnt)'") }
        // 300 frames: each file spans pages (npy ~5 KB, csv ~8 KB, jsonl ~45 KB), and none reaches the
        // 64 KiB write buffer, so every byte is written by the commit, in the set's order.
        let frames = 300
        let sizes = try sizesOfASet(frames: frames, in: root.path)
        let pages = { (bytes: Int) in (bytes + 4095) / 4096 }
        let free: Int
        switch ext {
        case "npy": free = pages(sizes["npy"]!) - 1
        case "csv": free = pages(sizes["npy"]!) + pages(sizes["csv"]!) - 1
        default: free = pages(sizes["npy"]!) + pages(sizes["csv"]!) + pages(sizes["jsonl"]!) - 1
        }
        try fill(mnt, leavingPages: free)
        let s = try Self.sink(in: mnt, frames: frames)
        let error = #expect(throws: OutputError.self) { try s.finish(error: nil) }
        #expect(error?.description.contains("No space left on device") == true, "\(String(describing: error))")
        #expect(error?.path.contains(".\(ext)") == true, "expected the disk to fill at .\(ext): \(String(describing: error))")
        #expect(Self.listing(mnt) == ["filler"], "full at .\(ext): \(Self.listing(mnt))")
    }

    /// The sizes of a set of `frames` frames, written in a scratch folder.
    func sizesOfASet(frames: Int, in scratch: String) throws -> [String: Int] {
        let dir = scratch + "/sizes"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Self.sink(in: dir, frames: frames).finish(error: nil)
        var out: [String: Int] = [:]
        for ext in ["npy", "csv", "jsonl"] {
            out[ext] = try FileManager.default.attributesOfItem(atPath: "\(dir)/clip.\(ext)")[.size] as? Int
        }
        return out
    }

    /// Writes `dir/filler` until exactly `pages` free 4 KiB pages are left.
    func fill(_ dir: String, leavingPages pages: Int) throws {
        var st = statvfs()
        statvfs(dir, &st)
        let freeBytes = Int(st.f_bavail) * Int(st.f_frsize)
        let size = freeBytes - pages * 4096
        try #require(size > 0)
        try Data(count: size).write(to: URL(fileURLWithPath: dir + "/filler"))
        statvfs(dir, &st)
        #expect(Int(st.f_bavail) * Int(st.f_frsize) == pages * 4096)
    }
}

private final class Box: @unchecked Sendable {
    private let lock = NSLock()
    private var _error: Error?
    private var _finished = false
    private var _onCaller = false
    func set(error: Error?, onCaller: Bool) { lock.lock(); _error = error; _finished = true; _onCaller = onCaller; lock.unlock() }
    var error: Error? { lock.lock(); defer { lock.unlock() }; return _error }
    var finished: Bool { lock.lock(); defer { lock.unlock() }; return _finished }
    var onCaller: Bool { lock.lock(); defer { lock.unlock() }; return _onCaller }
}
