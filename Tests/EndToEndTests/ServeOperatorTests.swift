import Foundation
import Testing
import TestSupport

/// Issue #17, as an operator meets the service: a real `framepipe serve` process, the notify socket
/// the test reads, files dropped the ways producers really write them, kill -9 at chosen moments.
@Suite(.serialized, .enabled(if: TestEnv.hasAssets)) struct ServeOperatorTests {
    /// A 100-frame clip (176x144, 25 fps, 4 s) with its index (`moov`) at the end, as ffmpeg writes
    /// MP4 by default: a file cut short is unreadable, not silently short.
    static func clip(in dir: URL, name: String = "clip-source.mp4", seconds: Int = 4) throws -> String {
        let path = dir.path + "/" + name
        let r = try shell("ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=176x144:rate=25 -t \(seconds) -c:v mpeg4 -q:v 5 '\(path)'", timeout: 120)
        guard r.status == 0 else { throw HarnessError(description: "ffmpeg: \(r.stderrText)") }
        return path
    }

    static func sha256sum(_ path: String) throws -> String {
        String(try shell("sha256sum '\(path)'", timeout: 60).stdoutText.prefix(64))
    }

    static func inode(_ path: String) -> (ino: UInt, mtime: Int) {
        var st = stat()
        stat(path, &st)
        return (UInt(st.st_ino), Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec))
    }

    // MARK: item 2

    @Test func aFileNameCannotForgeJournalLines() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        try h.writeConfig(h.config(top: "retries = 0\n"))
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        let evil = "evil\n<0>FORGED line.mp4"
        let corrupt = h.root.path + "/junk"
        try Data((0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: corrupt))
        try h.drop(corrupt, as: evil)
        try h.drop(TestEnv.asset("videos/carphone_pristine.mp4"), as: "tab\tand\u{1b}[31mansi.mp4")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/failed/" + evil) && h.exists(h.inbox + "/done/tab\tand\u{1b}[31mansi.mp4") },
                "log:\n\(h.log)")
        h.signal(SIGTERM)
        #expect(h.waitExit(timeout: 30)?.status == 0)
        let lines = h.log.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        // Every line starts with our own priority prefix; none is the forged one; no raw controls.
        for line in lines {
            #expect(line.range(of: #"^<[0-7]>"#, options: .regularExpression) != nil, "line without a prefix: \(line)")
            #expect(!line.hasPrefix("<0>"), "forged: \(line)")
            #expect(!line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }, "raw control byte: \(line)")
        }
        #expect(h.log.contains(#"failed evil\n<0>FORGED line.mp4"#), "log:\n\(h.log)")
        #expect(h.log.contains(#"done tab\tand\x1b[31mansi.mp4"#), "log:\n\(h.log)")
    }

    // MARK: items 4 and 5

    @Test func killAfterTheSetIsCommittedFinishesTheMoveWithoutRedoing() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let clip = try Self.clip(in: h.root)
        try h.writeConfig(h.config(output: "emit = [\"labels\"]"))
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        // done/ cannot be entered: the set gets committed, the move fails, the file stays. That is
        // the state a kill -9 between the commit and the move leaves.
        try FileManager.default.createDirectory(atPath: h.inbox + "/done", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: h.inbox + "/done")
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: h.inbox + "/done"))
        try h.drop(clip, as: "clip.mp4")
        #expect(eventually(timeout: 120) { h.log.contains("clip.mp4: processed, but") }, "log:\n\(h.log)")
        h.signal(SIGKILL)
        _ = h.waitExit(timeout: 10)
        #expect(h.exists(h.inbox + "/clip.mp4"))
        let set = h.outbox + "/clip.jsonl"
        #expect(lineCount(set) == 100)
        let before = Self.inode(set)
        let npyBefore = Self.inode(h.outbox + "/clip.npy")
        // The other moment: killed before the manifest was written.
        try? FileManager.default.removeItem(atPath: h.outbox + "/clip.manifest.json")
        try FileManager.default.removeItem(atPath: h.inbox + "/done")

        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        #expect(eventually(timeout: 60) { h.exists(h.inbox + "/done/clip.mp4") }, "log:\n\(h.log)")
        #expect(h.log.contains("clip.mp4: its set clip was complete before the restart; finishing the move to done/"), "log:\n\(h.log)")
        // Not redone: the very same files (inode and mtime), no second set.
        #expect(Self.inode(set) == before && Self.inode(h.outbox + "/clip.npy") == npyBefore)
        #expect(h.list(h.outbox) == ["clip.csv", "clip.jsonl", "clip.manifest.json", "clip.npy"])
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: h.outbox + "/clip.manifest.json"))) as? [String: Any])
        #expect(manifest["sha256"] as? String == (try Self.sha256sum(h.inbox + "/done/clip.mp4")))
        #expect(manifest["frames"] as? Int == 100 && manifest["done"] as? String == "clip.mp4")
        #expect((manifest["files"] as? [String: Any])?["clip.jsonl"] as? Int == Int((try FileManager.default.attributesOfItem(atPath: set)[.size] as? Int) ?? -1))

        // Item 5: the same name again, and a name sharing its stem: nothing earlier is replaced.
        try h.drop(TestEnv.asset("videos/carphone_pristine.mp4"), as: "clip.mp4")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/clip-2.mp4") }, "log:\n\(h.log)")
        try h.drop(clip, as: "clip.mkv")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/clip.mkv") }, "log:\n\(h.log)")
        h.signal(SIGTERM)
        #expect(h.waitExit(timeout: 30)?.status == 0)
        #expect(Self.inode(set) == before)  // the first set is untouched
        #expect(lineCount(set) == 100)
        #expect(lineCount(h.outbox + "/clip-2.jsonl") == 120)  // carphone: 120 frames
        #expect(lineCount(h.outbox + "/clip-3.jsonl") == 100)
        #expect(try Self.sha256sum(h.inbox + "/done/clip.mp4") == (try Self.sha256sum(clip)))
        #expect(try Self.sha256sum(h.inbox + "/done/clip-2.mp4") == (try Self.sha256sum(TestEnv.asset("videos/carphone_pristine.mp4"))))
        let second = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: h.outbox + "/clip-2.manifest.json"))) as? [String: Any])
        #expect(second["input"] as? String == "clip.mp4" && second["done"] as? String == "clip-2.mp4")
    }

    // MARK: items 6 and 7

    @Test func writersThatReopenOrPauseStillGetDoneAndFilesAreSeparateFromLines() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let clip = try Self.clip(in: h.root)
        let size = (try FileManager.default.attributesOfItem(atPath: clip)[.size] as? Int) ?? 0
        #expect(size > 8192)
        try h.writeConfig(h.config(top: "settle_time = 2\nretries = 1\nretry_delay = 3\n",
                                   output: "emit = [\"labels\"]\nfiles = [\"npy\", \"csv\"]"))
        // A slow write in place, started before the service: one dd (open, write, close) per chunk.
        let chunk = 4096
        let chunks = (size + chunk - 1) / chunk
        func ddLoop(_ target: String, pause: Double) -> String {
            "for i in $(seq 0 \(chunks - 1)); do dd if='\(clip)' of='\(target)' bs=\(chunk) skip=$i seek=$i count=1 conv=notrunc status=none; sleep \(pause); done"
        }
        let early = try Process.run(URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", ddLoop(h.inbox + "/early.mp4", pause: 0.3)])
        defer { if early.isRunning { early.terminate() } }
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/early.mp4") }, "log:\n\(h.log)")
        // A preallocated (sparse) file, half written, then a pause longer than settle_time: it is
        // taken too early and fails (its index is still zeros); the retry after retry_delay, or
        // the change it sees, finds it complete. The worker is idle, so it is taken at once.
        let half = chunks / 2
        let sparse = h.inbox + "/sparse.mp4"
        let pausing = try Process.run(URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", """
            truncate -s \(size) '\(sparse)'
            dd if='\(clip)' of='\(sparse)' bs=\(chunk) count=\(half) conv=notrunc status=none
            sleep 3.5
            dd if='\(clip)' of='\(sparse)' bs=\(chunk) skip=\(half) seek=\(half) conv=notrunc status=none
            """])
        defer { if pausing.isRunning { pausing.terminate() } }
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/sparse.mp4") }, "log:\n\(h.log)")
        // One dd per chunk while the service runs.
        let chunked = try Process.run(URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", ddLoop(h.inbox + "/chunked.mp4", pause: 0.3)])
        defer { if chunked.isRunning { chunked.terminate() } }
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/chunked.mp4") }, "log:\n\(h.log)")
        h.signal(SIGTERM)
        #expect(h.waitExit(timeout: 30)?.status == 0)
        #expect(h.list(h.inbox + "/failed").isEmpty, "log:\n\(h.log)")
        #expect(h.log.contains("trying again in 3 s") || h.log.contains("changed while it was read"), "log:\n\(h.log)")
        for name in ["early", "chunked", "sparse"] {
            #expect(lineCount(h.outbox + "/\(name).jsonl") == 100, "\(name): \((try? String(contentsOfFile: h.outbox + "/\(name).jsonl", encoding: .utf8)) ?? "")\nlog:\n\(h.log)")
            #expect(try Self.sha256sum(h.inbox + "/done/\(name).mp4") == (try Self.sha256sum(clip)))
        }
        // Item 7: the lines carry labels only; the embeddings are in the .npy, the top-k in the .csv.
        let lines = jsonLines(h.outbox + "/chunked.jsonl")
        #expect(lines.allSatisfy { $0["embedding"] == nil && $0["embedding_b64"] == nil && $0["labels"] != nil })
        #expect(lineCount(h.outbox + "/chunked.csv") == 101)
        if TestEnv.hasPython {
            let r = try runProcess(TestEnv.python, ["-c", "import numpy; a = numpy.load('\(h.outbox)/chunked.npy'); print(a.shape, a.dtype, bool(numpy.isfinite(a).all()))"], timeout: 60)
            #expect(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "(100, 1280) float32 True", "\(r.stderrText)")
        }
        let jsonlBytes = (try FileManager.default.attributesOfItem(atPath: h.outbox + "/chunked.jsonl")[.size] as? Int) ?? 0
        let npyBytes = (try FileManager.default.attributesOfItem(atPath: h.outbox + "/chunked.npy")[.size] as? Int) ?? 0
        print("[serve] chunked.jsonl \(jsonlBytes) bytes (labels only), chunked.npy \(npyBytes) bytes (100 x 1280 float32)")
    }

    // MARK: item 8

    @Test func metricsAreFreshWhenIdleAndPassPromtool() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let long = try ServeTests.longClip(in: h.root)
        let port = randomPort()
        try h.writeConfig(h.config(metricsPort: port, output: "emit = [\"labels\"]"))
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        try h.drop(long, as: "long.mp4")
        // In progress: the file being processed is not counted as queued.
        #expect(eventually(timeout: 60) {
            (try? h.metrics(port: port)).flatMap { ServeHarness.value($0, "framepipe_inbox_in_progress") } == 1
        }, "log:\n\(h.log)")
        let busy = try h.metrics(port: port)
        #expect(ServeHarness.value(busy, "framepipe_queue_depth{queue=\"inbox\"}") == 0, "\(busy)")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/long.mp4") }, "log:\n\(h.log)")
        // Idle: within a tick every pipeline queue reads 0, nothing is in progress.
        #expect(eventually(timeout: 5) {
            guard let m = try? h.metrics(port: port) else { return false }
            let depths = m.split(separator: "\n").filter { $0.hasPrefix("framepipe_queue_depth{") && $0.contains("source=\"inbox\"") }
            return !depths.isEmpty && depths.allSatisfy { $0.hasSuffix(" 0") }
                && ServeHarness.value(m, "framepipe_inbox_in_progress") == 0
        })
        let idle = try h.metrics(port: port)
        #expect(!idle.contains("kind=\"reconnect\""))
        #expect(ServeHarness.value(idle, "framepipe_frames_emitted_total{source=\"inbox\"}") == 600)
        let body = idle.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        h.signal(SIGTERM)
        #expect(h.waitExit(timeout: 30)?.status == 0)

        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            print("[serve] SKIPPED promtool check: /usr/bin/promtool missing (Debian package prometheus; scripts/setup installs it)")
            return
        }
        let file = h.root.path + "/metrics.txt"
        try body.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try shell("promtool check metrics < '\(file)'", timeout: 60)
        #expect(check.status == 0, "promtool: \(check.stdoutText)\(check.stderrText)\n\(body)")
        #expect(check.stdoutText.isEmpty && check.stderrText.isEmpty, "promtool lint: \(check.stdoutText)\(check.stderrText)")
    }
}
