import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7, part 4: integrity under faults. A stopped consumer keeps RSS bounded; SIGPIPE exits
/// quietly; SIGTERM mid-run leaves only complete lines and complete files; a full disk (tiny tmpfs,
/// and a file-size limit as an injected write failure) gives a clear error and no file under a
/// final name.
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct HostileFaultTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")
    static let bunny = TestEnv.asset("videos/bigbuckbunny.mp4")

    /// bigbuckbunny looped 4 times, 528 frames of 1280x720: long enough to be interrupted.
    static func longVideo(in dir: URL) throws -> String {
        let path = dir.appendingPathComponent("looped.mp4").path
        let r = try shell("ffmpeg -v error -y -stream_loop 3 -i '\(bunny)' -an -c copy '\(path)'")
        guard r.status == 0 else { throw HostileError("ffmpeg: \(r.stderrText)") }
        return path
    }

    /// Waits up to `seconds` for `p` to end; kills it (and records an issue) when it does not.
    func waitOrKill(_ p: Process, _ seconds: Double, _ what: String) {
        var waited = 0.0
        while p.isRunning && waited < seconds { Thread.sleep(forTimeInterval: 0.1); waited += 0.1 }
        if p.isRunning {
            Issue.record("\(what): still running after \(seconds) s")
            kill(p.processIdentifier, SIGKILL)
        }
        p.waitUntilExit()
    }

    /// Files in `dir` (names), and the temporary leftovers among them.
    func listing(_ dir: String) -> (all: [String], partial: [String]) {
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        return (all, all.filter { $0.contains(".partial-") })
    }

    /// Checks a committed `.jsonl`: every line is a whole JSON object; returns the frame records.
    func jsonlFrames(_ path: String) throws -> Int {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(data.last == UInt8(ascii: "\n"), "\(path) does not end with a newline")
        var frames = 0
        for line in data.split(separator: UInt8(ascii: "\n")) {
            let obj = try #require(try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], "partial line in \(path)")
            if obj["frame"] != nil { frames += 1 }
        }
        return frames
    }

    @Test func stoppedConsumerKeepsMemoryBounded() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let long = try Self.longVideo(in: dir)
        let pipe = Pipe()
        let consumer = Process()
        consumer.executableURL = URL(fileURLWithPath: "/bin/cat")
        consumer.standardInput = pipe.fileHandleForReading
        consumer.standardOutput = FileHandle.nullDevice
        let fp = Process()
        fp.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        fp.arguments = ["run", "--model", Self.model, "--quiet", "--emit", "both", long]
        fp.standardOutput = pipe.fileHandleForWriting
        fp.standardError = FileHandle.nullDevice
        try consumer.run()
        try fp.run()
        defer {
            kill(consumer.processIdentifier, SIGCONT)
            if fp.isRunning { kill(fp.processIdentifier, SIGKILL) }
            if consumer.isRunning { kill(consumer.processIdentifier, SIGKILL) }
        }
        Thread.sleep(forTimeInterval: 2)
        kill(consumer.processIdentifier, SIGSTOP)
        // The pipe and framepipe's bounded links fill up (slower on a loaded machine), then decoding
        // must wait: the second half of the samples (the last 6 s) must be flat.
        var samples: [Int] = []
        for _ in 0..<24 {
            Thread.sleep(forTimeInterval: 0.5)
            if let kb = residentKB(fp.processIdentifier) { samples.append(kb) }
        }
        #expect(fp.isRunning, "framepipe ended while its consumer was stopped (status \(fp.terminationStatus))")
        try #require(samples.count >= 20, "too few RSS samples: \(samples)")
        let settled = Array(samples.suffix(12))
        let growth = settled.max()! - settled.min()!
        print("stopped consumer: framepipe RSS \(settled.min()!)...\(settled.max()!) kB over the last 6 s (all samples: \(samples))")
        #expect(growth < 30_000, "RSS grew by \(growth) kB while the consumer was stopped: \(samples)")
        // Resumed, the run goes on; SIGTERM then ends it cleanly.
        kill(consumer.processIdentifier, SIGCONT)
        Thread.sleep(forTimeInterval: 1)
        kill(fp.processIdentifier, SIGTERM)
        waitOrKill(fp, 30, "framepipe after SIGTERM")
        #expect(fp.terminationReason == .exit && fp.terminationStatus == 128 + SIGTERM, "status \(fp.terminationStatus)")
    }

    @Test func readerClosingMidLineExitsQuietly() throws {
        // `head -c` closes the pipe in the middle of a line: SIGPIPE is ignored, EPIPE ends the run.
        let r = try shell("'\(TestEnv.framepipe)' run --model '\(Self.model)' --emit both '\(Self.carphone)' | head -c 3000 > /dev/null; echo \"status=${PIPESTATUS[0]}\" >&2",
                          timeout: 120)
        #expect(!r.timedOut)
        let status = r.stderrText.components(separatedBy: "status=").last?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(status == "0" || status == "141", "\(r.stderrText)")
        #expect(r.stderrText.hasPrefix("status="), "stderr: \(r.stderrText)")
    }

    @Test func sigtermMidRunLeavesOnlyCompleteLines() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let long = try Self.longVideo(in: dir)
        let out = dir.appendingPathComponent("stdout.jsonl")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        let fp = Process()
        fp.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        fp.arguments = ["run", "--model", Self.model, "--quiet", "--emit", "both", "--batch", "7", long]
        fp.standardOutput = handle
        fp.standardError = FileHandle.nullDevice
        try fp.run()
        var waited = 0.0
        while waited < 60, ((try? FileManager.default.attributesOfItem(atPath: out.path)[.size] as? Int) ?? 0) < 200_000 {
            Thread.sleep(forTimeInterval: 0.2); waited += 0.2
        }
        kill(fp.processIdentifier, SIGTERM)
        waitOrKill(fp, 30, "framepipe after SIGTERM")
        try handle.close()
        #expect(fp.terminationStatus == 128 + SIGTERM, "status \(fp.terminationStatus)")
        let frames = try jsonlFrames(out.path)
        print("SIGTERM mid-run: \(frames) complete lines on stdout, none partial")
        #expect(frames > 0 && frames < 528)
    }

    @Test func sigtermMidRunLeavesOnlyCompleteFiles() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let long = try Self.longVideo(in: dir)
        let outDir = dir.appendingPathComponent("out").path
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let fp = Process()
        fp.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        fp.arguments = ["run", "--model", Self.model, "--quiet", "--emit", "both", "--output-dir", outDir, Self.carphone, long]
        fp.standardOutput = FileHandle.nullDevice
        fp.standardError = FileHandle.nullDevice
        try fp.run()
        // Wait until carphone's set is complete and long.mp4's files are being written, then stop.
        var waited = 0.0
        while waited < 90 && !(listing(outDir).all.contains("carphone_pristine.jsonl") && !listing(outDir).partial.isEmpty) {
            Thread.sleep(forTimeInterval: 0.1); waited += 0.1
        }
        Thread.sleep(forTimeInterval: 1)
        let during = listing(outDir)
        kill(fp.processIdentifier, SIGTERM)
        waitOrKill(fp, 30, "framepipe after SIGTERM")
        #expect(fp.terminationStatus == 128 + SIGTERM, "status \(fp.terminationStatus)")
        let after = listing(outDir)
        print("SIGTERM with --output-dir: during the run \(during.all), after \(after.all)")
        #expect(!during.partial.isEmpty, "long.mp4 was not being written when the signal came")
        #expect(after.all == ["carphone_pristine.csv", "carphone_pristine.jsonl", "carphone_pristine.npy"])
        #expect(try jsonlFrames("\(outDir)/carphone_pristine.jsonl") == 120)
        // The .npy holds exactly 120 x 1280 float32 after its header.
        let npy = try Data(contentsOf: URL(fileURLWithPath: "\(outDir)/carphone_pristine.npy"))
        let headerLen = Int(npy[8]) | Int(npy[9]) << 8
        let header = String(decoding: npy[10..<(10 + headerLen)], as: UTF8.self)
        #expect(header.contains("(120, 1280)"), "\(header)")
        #expect(npy.count == 10 + headerLen + 120 * 1280 * 4)
    }

    /// True when strace works here (installed, and ptrace allowed).
    static let canTrace: Bool = (try? shell("strace -f -o /dev/null true", timeout: 20))?.status == 0

    @Test(.enabled(if: canTrace)) func outputFilesAreFsyncedThenRenamedThenTheFolderFsynced() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let outDir = dir.appendingPathComponent("out").path
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let trace = dir.appendingPathComponent("strace.txt").path
        let r = try shell("strace -f -e trace=openat,fsync,fdatasync,rename,renameat,renameat2 -o '\(trace)' '\(TestEnv.framepipe)' run --model '\(Self.model)' --quiet --emit both --every 20 --output-dir '\(outDir)' '\(Self.carphone)'",
                          timeout: 120)
        #expect(r.status == 0, "\(r.stderrText)")
        // Replay the calls of the syscall log: which path each fd is, what was fsynced, and when.
        var fdPath: [String: String] = [:]
        var synced = Set<String>()  // paths fsynced since they were opened
        var renamed: [String: Int] = [:]  // final path -> event number of its rename
        var dirSyncs: [Int] = []  // event numbers of fsyncs of the output folder
        var problems: [String] = []
        let text = try String(contentsOfFile: trace, encoding: .utf8)
        // Calls interrupted by another thread's come in two pieces ("<unfinished ...>" and
        // "<... name resumed>"): join them per thread id first.
        var pending: [Substring: String] = [:]
        var lines: [String] = []
        for raw in text.split(separator: "\n") {
            let pid = raw.prefix { $0 != " " }
            if raw.hasSuffix("<unfinished ...>") {
                pending[pid] = String(raw.dropLast("<unfinished ...>".count))
            } else if raw.contains(" resumed>"), let head = pending.removeValue(forKey: pid) {
                lines.append(head + (raw.components(separatedBy: " resumed>").last ?? ""))
            } else {
                lines.append(String(raw))
            }
        }
        for (n, l) in lines.enumerated() {
            let quoted = l.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            let result = l.components(separatedBy: " = ").last.flatMap { Int($0.split(separator: " ").first ?? "") }
            if l.contains("openat("), let path = quoted.first, let fd = result, fd >= 0 {
                fdPath[String(fd)] = path
                synced.remove(path)
            } else if l.contains("fsync(") || l.contains("fdatasync(") {
                let fd = l.components(separatedBy: "sync(").last?.split(separator: ")").first.map(String.init) ?? ""
                if let path = fdPath[fd], result == 0 {
                    synced.insert(path)
                    if path == outDir { dirSyncs.append(n) }
                }
            } else if l.contains("rename"), quoted.count >= 2, result == 0 {
                let (from, to) = (quoted[0], quoted[quoted.count - 1])
                if !synced.contains(from) { problems.append("\(to): renamed from \(from) before it was fsynced") }
                renamed[to] = n
            }
        }
        let finals = ["jsonl", "npy", "csv"].map { "\(outDir)/carphone_pristine.\($0)" }
        for f in finals {
            guard let at = renamed[f] else { problems.append("\(f): never renamed into place"); continue }
            if !dirSyncs.contains(where: { $0 > at }) { problems.append("\(f): the folder was not fsynced after the rename") }
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(renamed.keys.filter { $0.hasPrefix(outDir) }.count == 3)
        // The .jsonl is renamed last: a present .jsonl means the whole set is there.
        #expect(renamed[finals[0]].map { at in finals.dropFirst().allSatisfy { (renamed[$0] ?? .max) < at } } == true)
    }

    /// Runs carphone with embeddings (~0.6 MB of .npy) into `outDir`, where writing must fail.
    func runIntoFailingDirectory(_ outDir: String, prefix: String, expect reason: String) throws {
        let r = try shell("\(prefix) exec '\(TestEnv.framepipe)' run --model '\(Self.model)' --quiet --emit both --output-dir '\(outDir)' '\(Self.carphone)'",
                          timeout: 120)
        #expect(!r.timedOut && !r.signaled)
        #expect(r.status == 1, "status \(r.status): \(r.stderrText)")
        #expect(r.stdout.isEmpty)
        let lines = r.stderrText.split(separator: "\n")
        #expect(lines.contains { $0.contains("framepipe: \(Self.carphone): ") && $0.contains(outDir) && $0.contains(reason) },
                "expected one clear line naming the input, the file and '\(reason)': \(r.stderrText)")
        let files = listing(outDir).all
        #expect(files.isEmpty, "no file may be left, under a final name or a temporary one: \(files)")
        print("write failure (\(reason)): \(r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    @Test func fullDiskGivesAClearErrorAndNoFile() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let mnt = dir.appendingPathComponent("tiny").path
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mount = try shell("mount -t tmpfs -o size=256k framepipe-tiny '\(mnt)'")
        if mount.status == 0 {
            defer { _ = try? shell("umount '\(mnt)'") }
            try runIntoFailingDirectory(mnt, prefix: "", expect: "No space left on device")
        } else {
            print("full disk: cannot mount a tmpfs here (\(mount.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))); the file-size limit case below still runs")
        }
        // An injected write failure that needs no privilege: a 128 KiB file-size limit (EFBIG;
        // SIGXFSZ ignored so the write fails instead of killing the process).
        let limited = dir.appendingPathComponent("limited").path
        try FileManager.default.createDirectory(atPath: limited, withIntermediateDirectories: true)
        try runIntoFailingDirectory(limited, prefix: "trap '' XFSZ; ulimit -f 128;", expect: "File too large")
    }
}
