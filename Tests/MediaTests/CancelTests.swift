import Foundation
import Media
import Testing
import TestSupport

@Suite("FrameSource: cancel")
struct CancelTests {
    @Test("cancel() from another thread ends a live network read (tcp), next() returns nil", .enabled(if: TestEnv.hasAssets))
    func cancelLiveStream() throws {
        // ffmpeg serves bikes.mp4 at real-time speed (10 s) as MPEG-TS over TCP.
        let port = Int.random(in: 20_000..<40_000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/bin/bash")
        server.arguments = ["-c", "exec ffmpeg -v error -re -i '\(Fixtures.video("bikes.mp4"))' -c copy -f mpegts -listen 1 tcp://127.0.0.1:\(port)"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }

        var source: FrameSource?
        for _ in 0..<50 where source == nil {  // until the server listens
            source = try? FrameSource(input: "tcp://127.0.0.1:\(port)")
            if source == nil { usleep(100_000) }
        }
        let live = try #require(source, "could not connect to the ffmpeg TCP server")
        var frames = 0
        while frames < 5, try live.next() != nil { frames += 1 }
        #expect(frames == 5)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { live.cancel() }
        while try live.next() != nil { frames += 1 }
        print("cancel: \(frames) frames read before the cancel took effect")
        // The clip has 250 frames arriving over 10 s; cancel ended the read long before.
        #expect(frames < 250)
        #expect(try live.next() == nil)
    }

    @Test("a CancellationToken ends an open blocked on a silent server, long before the I/O time limit")
    func cancelDuringOpen() throws {
        let server = try LoopbackServer(mode: .silent, lifetime: 60)
        defer { server.stop() }
        let token = CancellationToken()
        var options = SourceOptions()
        options.ioTimeout = 30
        options.cancellation = token
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { token.cancel() }
        let start = Date()
        #expect(throws: MediaError.self) {
            _ = try FrameSource(input: "http://127.0.0.1:\(server.port)/clip.mp4", options: options)
        }
        let waited = Date().timeIntervalSince(start)
        #expect(waited < 10, "open took \(waited) s after the cancel")
    }
}
