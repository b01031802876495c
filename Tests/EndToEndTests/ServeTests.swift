import Foundation
import Testing
import TestSupport

/// `framepipe serve` run as a real process with the shared ImageNet model: READY over a notify
/// socket, inbox files to done/ or failed/, SIGHUP, SIGTERM, SIGKILL + restart, metrics.
@Suite(.serialized, .enabled(if: TestEnv.hasAssets)) struct ServeTests {
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")  // 176x144, 120 frames

    /// A generated clip long enough to be caught mid-processing (600 frames).
    static func longClip(in dir: URL) throws -> String {
        let path = dir.path + "/long-source.mp4"
        let r = try shell("ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=176x144:rate=25 -t 24 -c:v mpeg4 -q:v 5 '\(path)'", timeout: 120)
        guard r.status == 0 else { throw HarnessError(description: "ffmpeg: \(r.stderrText)") }
        return path
    }

    @Test func readyThenGoodAndCorruptFilesThenReloadThenStop() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let port = randomPort()
        try h.writeConfig(h.config(topK: 5, metricsPort: port))
        try h.start()
        #expect(h.waitReady(), "no READY=1; log:\n\(h.log)")

        let corrupt = h.root.path + "/corrupt-source.mp4"
        try Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: URL(fileURLWithPath: corrupt))
        try h.drop(corrupt, as: "corrupt.mp4")
        try h.drop(Self.carphone, as: "carphone.mp4")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/carphone.mp4") && h.exists(h.inbox + "/failed/corrupt.mp4") },
                "log:\n\(h.log)")
        let lines = jsonLines(h.outbox + "/carphone.jsonl")
        #expect(lines.count == 120)
        #expect(lines.map { $0["frame"] as? Int ?? -1 } == Array(0..<120))
        #expect((lines.first?["labels"] as? [[String: Any]])?.count == 5)
        #expect(h.exists(h.outbox + "/carphone.npy") && h.exists(h.outbox + "/carphone.csv"))
        let reason = (try? String(contentsOfFile: h.inbox + "/failed/corrupt.mp4.error", encoding: .utf8)) ?? ""
        #expect(reason.contains("corrupt.mp4"), "\(reason)")
        #expect(reason.count > "corrupt.mp4: ".count + 5, "\(reason)")

        // Metrics over loopback.
        let m = try shell("exec 3<>/dev/tcp/127.0.0.1/\(port); printf 'GET /metrics HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        #expect(m.stdoutText.contains("framepipe_frames_emitted_total{source=\"inbox\"} 120"), "\(m.stdoutText)")
        #expect(m.stdoutText.contains("framepipe_inputs_total{result=\"failed\"} 1"))
        #expect(m.stdoutText.contains("framepipe_batch_latency_seconds_count 15"))  // 120 frames / batch 8

        // SIGHUP with a changed top-k: the next file has 2 labels per frame.
        try h.writeConfig(h.config(topK: 2, metricsPort: port))
        h.signal(SIGHUP)
        #expect(eventually(timeout: 30) { h.log.contains("configuration reloaded") }, "log:\n\(h.log)")
        try h.drop(Self.carphone, as: "second.mp4")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/second.mp4") })
        #expect((jsonLines(h.outbox + "/second.jsonl").first?["labels"] as? [[String: Any]])?.count == 2)

        h.signal(SIGTERM)
        let exit = h.waitExit(timeout: 30)
        #expect(exit?.status == 0 && exit?.normal == true, "log:\n\(h.log)")
        #expect(h.notify.waitFor("STOPPING=1", timeout: 5).found)
        // Progress-driven pings and status lines came while it ran.
        #expect(h.notify.messages.contains("WATCHDOG=1"))
        #expect(h.notify.messages.contains { $0.hasPrefix("STATUS=inbox 1 done, 1 failed, 0 queued; ") && $0.hasSuffix(" frames/s") },
                "\(h.notify.messages.filter { $0.hasPrefix("STATUS") })")
        // info level is quiet: no per-frame lines.
        #expect(h.log.split(separator: "\n").count < 40, "log:\n\(h.log)")
        #expect(h.log.contains("<6>done carphone.mp4"))
    }

    @Test func sigtermDuringAFileExitsZeroWithTheFileCompleteOrLeftToRedo() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let clip = try Self.longClip(in: h.root)
        try h.writeConfig(h.config(drain: 1))
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        try h.drop(clip, as: "long.mp4")
        // Mid-file: its temporary output exists.
        #expect(eventually(timeout: 60) {
            ((try? FileManager.default.contentsOfDirectory(atPath: h.outbox)) ?? []).contains { $0.hasPrefix(".long.jsonl.partial-") }
        })
        h.signal(SIGTERM)
        let exit = h.waitExit(timeout: 30)
        #expect(exit?.status == 0 && exit?.normal == true, "log:\n\(h.log)")
        let outs = (try? FileManager.default.contentsOfDirectory(atPath: h.outbox)) ?? []
        if h.exists(h.inbox + "/done/long.mp4") {
            #expect(lineCount(h.outbox + "/long.jsonl") == 600)
        } else {
            #expect(h.exists(h.inbox + "/long.mp4"))
            #expect(outs.isEmpty, "\(outs)")  // no final names, no temporaries
        }
        #expect(!outs.contains { $0.contains(".partial-") })
    }

    @Test func sigkillDuringAFileThenRestartGivesExactlyOneCompleteSet() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let clip = try Self.longClip(in: h.root)
        try h.writeConfig(h.config())
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        try h.drop(clip, as: "long.mp4")
        #expect(eventually(timeout: 60) {
            ((try? FileManager.default.contentsOfDirectory(atPath: h.outbox)) ?? []).contains { $0.hasPrefix(".long.jsonl.partial-") }
        })
        h.signal(SIGKILL)
        _ = h.waitExit(timeout: 10)
        #expect(!h.exists(h.outbox + "/long.jsonl"))  // killed mid-file: nothing under a final name

        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        #expect(eventually(timeout: 120) { h.exists(h.inbox + "/done/long.mp4") }, "log:\n\(h.log)")
        h.signal(SIGTERM)
        _ = h.waitExit(timeout: 30)
        let outs = try FileManager.default.contentsOfDirectory(atPath: h.outbox).sorted()
        #expect(outs == ["long.csv", "long.jsonl", "long.manifest.json", "long.npy"])
        let frames = jsonLines(h.outbox + "/long.jsonl").compactMap { $0["frame"] as? Int }
        #expect(frames == Array(0..<600))
        #expect(h.log.contains("removed") && h.log.contains("unfinished temporary"))
    }
}
