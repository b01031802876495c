import Foundation
import Testing
import TestSupport

/// A live stream over loopback UDP (MPEG-TS from the ffmpeg CLI at real-time speed): the stream's
/// file grows, stopping the sender gives a gap line and reconnect attempts, restarting it resumes.
@Suite(.serialized, .enabled(if: TestEnv.hasAssets)) struct ServeStreamTests {
    /// Sends `seconds` of a test pattern to 127.0.0.1:port in the background; returns the process.
    static func sender(port: Int, seconds: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        p.arguments = ["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
                       "-t", "\(seconds)", "-c:v", "mpeg2video", "-q:v", "5", "-f", "mpegts",
                       "udp://127.0.0.1:\(port)?pkt_size=1316"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    @Test func udpStreamGrowsGapsAndResumes() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        let port = randomPort()
        let metricsPort = randomPort()
        try h.writeConfig(h.config(metricsPort: metricsPort, inbox: false, logLevel: "debug", streams: """
            [[streams]]
            name = "cam"
            url = "udp://127.0.0.1:\(port)"
            stall_timeout = 2
            reconnect_initial = 0.5
            reconnect_max = 2

            """))
        try h.start()
        #expect(h.waitReady(), "log:\n\(h.log)")
        let file = h.streams + "/cam.jsonl"
        var first = try Self.sender(port: port, seconds: 6)
        defer { if first.isRunning { first.terminate() } }
        func frames() -> [[String: Any]] { jsonLines(file).filter { $0["frame"] != nil } }
        func events(_ e: String) -> [[String: Any]] { jsonLines(file).filter { $0["event"] as? String == e } }
        #expect(eventually(timeout: 30) { frames().count >= 10 }, "log:\n\(h.log)")
        first.waitUntilExit()
        // The sender stopped: a gap line, then reconnect attempts.
        #expect(eventually(timeout: 20) { !events("gap").isEmpty }, "log:\n\(h.log)")
        let before = frames().count
        first = try Self.sender(port: port, seconds: 4)
        #expect(eventually(timeout: 30) { events("connected").count >= 2 && frames().count > before + 5 }, "log:\n\(h.log)")
        first.waitUntilExit()
        // Per-stream metrics.
        let m = try shell("exec 3<>/dev/tcp/127.0.0.1/\(metricsPort); printf 'GET /metrics HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        func value(_ series: String) -> Double? {
            m.stdoutText.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect((value("framepipe_frames_emitted_total{source=\"cam\"}") ?? 0) >= Double(before + 5), "\(m.stdoutText)")
        #expect((value("framepipe_frames_decoded_total{source=\"cam\"}") ?? 0) >= Double(before + 5))
        #expect((value("framepipe_reconnects_total{source=\"cam\"}") ?? 0) >= 1)
        h.signal(SIGTERM)
        let exit = h.waitExit(timeout: 30)
        #expect(exit?.status == 0, "log:\n\(h.log)")
        let all = jsonLines(file)
        #expect(all.count == lineCount(file))  // every line complete JSON
        let gap = try #require(events("gap").first)
        #expect(gap["stream"] as? String == "cam")
        #expect((gap["retry_in"] as? Double ?? 0) > 0)
    }
}
