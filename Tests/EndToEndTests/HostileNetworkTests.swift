import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 7, parts 2-3: hostile HLS playlists served from 127.0.0.1 cannot reach local files or
/// other protocols; a silent server fails the input after --io-timeout and cannot block shutdown.
/// (FFmpeg 5.1's HLS demuxer already limits what an http playlist may open; framepipe's policy
/// narrows that further and is what keeps a local playlist from reading other files.)
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct HostileNetworkTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")

    func sh(_ command: String) throws {
        let r = try shell(command)
        guard r.status == 0 else { throw HostileError("`\(command)` failed: \(r.stderrText)") }
    }

    @Test func hostilePlaylistsCannotReachLocalFilesOrOtherProtocols() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let d = dir.path
        // seg.ts: the served segment (20 frames). secret.ts: a local file the playlists try to reach
        // (30 frames, another size), so reading it would show up as extra frames.
        try sh("""
            cd '\(d)' && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=10 -frames:v 20 -c:v libx264 -g 10 -pix_fmt yuv420p -f mpegts seg.ts && \
            ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=10 -frames:v 30 -c:v libx264 -g 10 -pix_fmt yuv420p -f mpegts secret.ts
            """)
        let secret = "\(d)/secret.ts"
        func playlist(_ uris: [String]) -> [UInt8] {
            var s = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n"
            for u in uris { s += "#EXTINF:2.0,\n\(u)\n" }
            return Array((s + "#EXT-X-ENDLIST\n").utf8)
        }
        let files: [String: [UInt8]] = [
            "seg.ts": [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(d)/seg.ts"))),
            "good.m3u8": playlist(["seg.ts"]),
            "file.m3u8": playlist(["file://\(secret)"]),
            "path.m3u8": playlist([secret]),
            "subfile.m3u8": playlist(["subfile,,start,0,end,0,,:\(secret)"]),
            "concat.m3u8": playlist(["concat:\(secret)|\(secret)"]),
            "self.m3u8": playlist(["self.m3u8", "self.m3u8"]),
            "mixed.m3u8": playlist(["seg.ts", "file://\(secret)"]),
            "key.m3u8": Array(("#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXT-X-KEY:METHOD=AES-128,URI=\"file://\(secret)\"\n"
                               + "#EXTINF:2.0,\nseg.ts\n#EXT-X-ENDLIST\n").utf8),
            "master.m3u8": Array("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nfile://\(d)/local.m3u8\n".utf8),
        ]
        try Data(playlist([secret])).write(to: URL(fileURLWithPath: "\(d)/local.m3u8"))
        let server = try LoopbackServer(mode: .http(files))
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)/"
        let names = ["good", "file", "path", "subfile", "concat", "self", "mixed", "master", "key"]
        let inputs = names.map { base + $0 + ".m3u8" } + ["\(d)/local.m3u8"]

        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--jobs", "2", "--top-k", "1", "--every", "2",
                               "--io-timeout", "10"] + inputs, timeout: 120)
        let (results, problems) = checkRun(r, inputs: inputs)
        #expect(problems.isEmpty, "\(problems)\n\(r.stderrText)")
        var summary: [String] = []
        for (name, input) in zip(names + ["local"], inputs) {
            let res = results[input]!
            // For the record: what FFmpeg's own defaults make of it (5.1's HLS demuxer already refuses
            // most of these over http; a local playlist it follows).
            let control = try shell("ffprobe -v error -select_streams v -show_entries stream=width -of csv=p=0 '\(input)'", timeout: 30)
            let ffmpeg = control.stdoutText.isEmpty ? "refused" : "reads it"
            summary.append("\(name): \(res.frames) frames\(res.errors.isEmpty ? "" : ", error: \(res.errors[0]["error"] ?? "")") [ffprobe: \(ffmpeg)]")
            if name == "local" || name == "good" {
                #expect(!control.stdoutText.isEmpty, "control: FFmpeg's defaults read \(name).m3u8")
            }
            switch name {
            case "good":
                #expect(res.frames == 10 && res.errors.isEmpty, "the control playlist must play: \(summary.last!)")
            case "mixed":
                #expect(res.frames == 10, "only the served segment may play: \(summary.last!)")
            default:
                #expect(res.frames == 0 && res.errors.count == 1, "\(summary.last!)")
            }
        }
        print("hostile playlists:\n  " + summary.joined(separator: "\n  "))
    }

    @Test func silentServerFailsItsInputAfterTheTimeoutOthersComplete() throws {
        let server = try LoopbackServer(mode: .silent)
        defer { server.stop() }
        let silent = "http://127.0.0.1:\(server.port)/video.mp4"
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--jobs", "2", "--top-k", "1", "--every", "10",
                               "--io-timeout", "2", silent, Self.carphone], timeout: 90)
        let (results, problems) = checkRun(r, inputs: [silent, Self.carphone])
        #expect(problems.isEmpty, "\(problems)\n\(r.stderrText)")
        #expect(results[Self.carphone]?.frames == 12)
        #expect(results[silent]?.frames == 0)
        #expect((results[silent]?.errors.first?["error"] as? String)?.contains("--io-timeout") == true, "\(r.stdoutText)")
    }

    @Test func sigtermWhileASilentServerIsBeingOpenedEndsTheRun() throws {
        let server = try LoopbackServer(mode: .silent)
        defer { server.stop() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestEnv.framepipe)
        p.arguments = ["run", "--model", Self.model, "--quiet", "--io-timeout", "600", "http://127.0.0.1:\(server.port)/v.mp4"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Once the model is loaded, the open connects and then waits on the silent server.
        var waited = 0.0
        while server.connections == 0 && p.isRunning && waited < 60 { Thread.sleep(forTimeInterval: 0.1); waited += 0.1 }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(server.connections == 1 && p.isRunning, "framepipe never connected, or ended before the signal")
        kill(p.processIdentifier, SIGTERM)
        waited = 0
        while p.isRunning && waited < 30 { Thread.sleep(forTimeInterval: 0.1); waited += 0.1 }
        let ended = !p.isRunning
        if !ended { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(ended, "still running 30 s after SIGTERM (open blocked on the silent server)")
        #expect(p.terminationReason == .exit && p.terminationStatus == 128 + SIGTERM, "status \(p.terminationStatus)")
    }
}
