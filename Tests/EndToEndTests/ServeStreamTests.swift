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
            connect_timeout = 4
            reconnect_initial = 0.5
            reconnect_max = 2

            [[streams]]
            name = "never"
            url = "tcp://127.0.0.1:\(port)"
            reconnect_initial = 0.2
            reconnect_max = 1

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
        let restarted = Date()
        first = try Self.sender(port: port, seconds: 4)
        #expect(eventually(timeout: 30) { events("connected").count >= 2 }, "log:\n\(h.log)")
        let reconnect = Date().timeIntervalSince(restarted)
        #expect(eventually(timeout: 30) { frames().count > before + 5 }, "log:\n\(h.log)")
        first.waitUntilExit()
        // Each failed open used to wait stall_timeout and then back off (~11 s); a silent UDP
        // listener now retries at once, so the restarted sender is picked up within its probe time.
        print("[serve] udp reconnect: first connected line \(String(format: "%.2f", reconnect)) s after the sender restarted (stall_timeout 2 s, connect_timeout 4 s)")
        #expect(reconnect < 8, "reconnect took \(reconnect) s")
        // Per-stream metrics.
        let m = try shell("exec 3<>/dev/tcp/127.0.0.1/\(metricsPort); printf 'GET /metrics HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3", timeout: 20)
        func value(_ series: String) -> Double? {
            m.stdoutText.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect((value("framepipe_frames_emitted_total{source=\"cam\"}") ?? 0) >= Double(before + 5), "\(m.stdoutText)")
        #expect((value("framepipe_frames_decoded_total{source=\"cam\"}") ?? 0) >= Double(before + 5))
        #expect((value("framepipe_reconnects_total{source=\"cam\"}") ?? 0) >= 1)
        #expect((value("framepipe_connect_failures_total{source=\"never\"}") ?? 0) >= 3, "\(m.stdoutText)")
        #expect(!m.stdoutText.contains("kind=\"reconnect\""))
        h.signal(SIGTERM)
        let exit = h.waitExit(timeout: 30)
        #expect(exit?.status == 0, "log:\n\(h.log)")
        let all = jsonLines(file)
        #expect(all.count == lineCount(file))  // every line complete JSON
        let gap = try #require(events("gap").first)
        #expect(gap["stream"] as? String == "cam")
        // A sender that stopped is a stall, not damage.
        #expect(gap["cause"] as? String == "stalled", "\(gap)")
        #expect((gap["reason"] as? String ?? "").hasPrefix("no frame for 2 s"), "\(gap)")
        #expect(!(gap["reason"] as? String ?? "").contains("damaged"))
        #expect(gap["connection"] as? Int == 1 && gap["retry_in"] as? Double == 0)  // a listener retries at once
        // The records' attempt and connection numbers are the log's.
        let logLines = h.log.split(separator: "\n")
        for c in events("connected") {
            let attempt = c["attempt"] as? Int ?? -1, connection = c["connection"] as? Int ?? -1
            #expect(logLines.contains { $0.hasPrefix("<6>stream cam connected") && $0.contains(" attempt=\(attempt) ") && $0.hasSuffix("connection=\(connection)") || $0.hasPrefix("<6>stream cam connected") && $0.contains("attempt=\(attempt) connection=\(connection)") },
                    "connected line \(c) not in the log:\n\(h.log)")
        }
        #expect(events("connected").map { $0["connection"] as? Int ?? 0 } == Array(1...events("connected").count))
        // Frame numbers continue across connections.
        let numbers = all.compactMap { $0["frame"] as? Int }
        #expect(numbers == numbers.sorted() && Set(numbers).count == numbers.count, "frame numbers restart: \(numbers)")
        let second = events("connected")[1]
        #expect((second["first_frame"] as? Int ?? 0) >= before, "\(second)")
        // A camera that never connects is a warning (1st, 2nd, 4th ... failure), the others info.
        #expect(h.log.contains("<4>stream never: cannot connect (attempt 1): "), "log:\n\(h.log)")
        #expect(h.log.contains("<4>stream never: cannot connect (attempt 2): "))
        #expect(h.log.contains("<6>stream never: cannot connect (attempt 3): "))
        #expect(!jsonLines(h.streams + "/never.jsonl").contains { $0["event"] as? String == "connected" })
    }
}
