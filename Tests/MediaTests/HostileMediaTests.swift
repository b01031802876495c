import Foundation
import Media
import Testing
import TestSupport

/// Hostile input at the `FrameSource` level: size caps, protocol and playlist policy, I/O time
/// limits, in-memory input, and the fuzzer's saved regression inputs.
@Suite("FrameSource: hostile input", .serialized)
struct HostileMediaTests {
    init() { FFmpegLogLevel.set(.quiet) }  // the corrupt inputs below make FFmpeg chatty

    /// A YUV4MPEG2 stream whose header claims `width` x `height` frames, followed by a little data.
    static func y4m(width: Int, height: Int) -> [UInt8] {
        Array("YUV4MPEG2 W\(width) H\(height) F25:1 Ip A1:1 C420jpeg\nFRAME\n".utf8) + [UInt8](repeating: 128, count: 4096)
    }

    static func expectMediaError(_ body: () throws -> Void, contains text: String, _ what: String) {
        do {
            try body()
            Issue.record("\(what): expected an error mentioning '\(text)', got success")
        } catch let error as MediaError {
            #expect(error.description.contains(text), "\(what): \(error)")
        } catch {
            Issue.record("\(what): expected a MediaError, got \(error)")
        }
    }

    @Test("headers claiming 65535x65535 or 10000x10000 frames are refused before anything is allocated")
    func hugeHeaderRefused() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // 65535x65535: FFmpeg's own image size check (av_image_check_size) refuses it at open.
        let path = dir.appendingPathComponent("huge.y4m").path
        try Data(Self.y4m(width: 65535, height: 65535)).write(to: URL(fileURLWithPath: path))
        #expect(throws: MediaError.self) { _ = try FrameSource(input: path) }
        #expect(throws: MediaError.self) { _ = try FrameSource(data: Self.y4m(width: 65535, height: 65535), name: "mem") }
        // 10000x10000 passes FFmpeg's check; ours (default 8192x8192) refuses it before the decoder opens.
        let big = dir.appendingPathComponent("big.y4m").path
        try Data(Self.y4m(width: 10000, height: 10000)).write(to: URL(fileURLWithPath: big))
        Self.expectMediaError({ _ = try FrameSource(input: big) }, contains: "--max-pixels", "file")
        Self.expectMediaError({ _ = try FrameSource(data: Self.y4m(width: 10000, height: 10000), name: "mem") },
                              contains: "10000x10000", "memory")
    }

    @Test("maxPixels: a stream of exactly the limit decodes, one pixel less is refused")
    func maxPixelsBoundary() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = try Fixtures.makeGOPClip(in: dir, frames: 10, gop: 5)  // 128x96
        let atLimit = try Fixtures.decodeMeta(clip, SourceOptions(maxPixels: 128 * 96))
        #expect(atLimit.frames.count == 10)
        Self.expectMediaError({ _ = try FrameSource(input: clip, options: SourceOptions(maxPixels: 128 * 96 - 1)) },
                              contains: "128x96", "one pixel under")
    }

    @Test("frames growing past maxPixels mid-stream are never decoded; the small ones are")
    func midStreamGrowthRefusedByDecoder() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let d = dir.path
        try Fixtures.run("""
            cd '\(d)' && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=25 -frames:v 20 -c:v libx264 -g 5 -pix_fmt yuv420p -f mpegts a.ts && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=320x240:rate=25 -frames:v 20 -c:v libx264 -g 5 -pix_fmt yuv420p -f mpegts b.ts && \
            cat a.ts b.ts > spliced.ts
            """)
        let spliced = "\(d)/spliced.ts"
        let all = try Fixtures.decode(spliced)
        #expect(Set(all.frames.map { "\($0.width)x\($0.height)" }) == ["96x64", "320x240"], "the splice changes size")
        let capped = try Fixtures.decode(spliced, SourceOptions(maxPixels: 96 * 64 * 2))
        #expect(capped.frames.allSatisfy { $0.width == 96 && $0.height == 64 })
        #expect(capped.frames.count == 20)
        #expect(capped.stats.decodeErrors > 0)
    }

    @Test("in-memory input decodes the same frames as the file")
    func memoryInputMatchesFile() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = try Fixtures.makeGOPClip(in: dir, frames: 30, gop: 10)
        let fromFile = try Fixtures.decodeMeta(clip)
        let source = try FrameSource(data: [UInt8](try Data(contentsOf: URL(fileURLWithPath: clip))), name: "clip in memory")
        var fromMemory: [(Int, Double, Bool)] = []
        while let f = try source.next() { fromMemory.append((f.index, f.pts, f.keyframe)) }
        #expect(fromFile.frames.count == 30)
        #expect(fromMemory.map { $0.0 } == fromFile.frames.map { $0.index })
        #expect(fromMemory.map { $0.1 } == fromFile.frames.map { $0.pts })
        #expect(fromMemory.map { $0.2 } == fromFile.frames.map { $0.keyframe })
    }

    @Test("local playlists, concat lists and protocol-looking names cannot reach other files")
    func localReferencesRefused() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let d = dir.path
        try Fixtures.run("cd '\(d)' && ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=10 -frames:v 10 -c:v libx264 -pix_fmt yuv420p -f mpegts seg.ts")
        let seg = "\(d)/seg.ts"
        let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\nfile://\(seg)\n#EXTINF:1.0,\n\(seg)\n#EXT-X-ENDLIST\n"
        let cases: [(name: String, content: String?)] = [
            ("playlist.m3u8", playlist),
            // Relative: FFmpeg's concat demuxer refuses absolute paths by itself (safe=1), not these.
            ("list.ffconcat", "ffconcat version 1.0\nfile 'seg.ts'\n"),
            ("concat:\(seg)|\(seg)", nil),
            ("subfile,,start,0,end,0,,:\(seg)", nil),
        ]
        for c in cases {
            let input = c.content == nil ? c.name : "\(d)/\(c.name)"
            if let content = c.content { try Data(content.utf8).write(to: URL(fileURLWithPath: input)) }
            if c.content != nil {
                // Control: FFmpeg's own defaults would follow the reference (this is the attack).
                let probe = try shell("ffprobe -v error -show_entries stream=codec_name -of csv '\(input)'")
                #expect(probe.stdoutText.contains("h264"), "control: ffprobe should follow \(c.name)")
            }
            if c.content != nil {
                // A local playlist or list is refused by name, whatever its extension.
                Self.expectMediaError({ _ = try FrameSource(input: input) }, contains: "refused", c.name)
            } else {
                #expect(throws: MediaError.self, "\(c.name)") { _ = try FrameSource(input: input) }
            }
            if let content = c.content {
                #expect(throws: MediaError.self, "\(c.name) in memory") {
                    _ = try FrameSource(data: Array(content.utf8), name: c.name)
                }
            }
        }
        // A real file whose name merely looks like a protocol is read as that file.
        let odd = "\(d)/concat:odd.ts"
        try FileManager.default.copyItem(atPath: seg, toPath: odd)
        #expect(try Fixtures.decodeMeta(odd).frames.count == 10)
    }

    @Test("a silent server: opening fails after --io-timeout")
    func silentServerOpenTimesOut() throws {
        let server = try LoopbackServer(mode: .silent)
        defer { server.stop() }
        let started = Date()
        Self.expectMediaError({ _ = try FrameSource(input: "http://127.0.0.1:\(server.port)/video.mp4",
                                                    options: SourceOptions(ioTimeout: 1)) },
                              contains: "--io-timeout", "silent http server")
        print("silent server: open gave up after \(String(format: "%.1f", Date().timeIntervalSince(started))) s (limit 1 s)")
    }

    @Test("a server that stops sending mid-stream: frames so far, then an --io-timeout error")
    func stalledServerReadTimesOut() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ts = dir.appendingPathComponent("clip.ts").path
        try Fixtures.run("ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=25 -frames:v 75 -c:v libx264 -g 25 -pix_fmt yuv420p -f mpegts '\(ts)'")
        let server = try LoopbackServer(mode: .sendThenStall([UInt8](try Data(contentsOf: URL(fileURLWithPath: ts)))))
        defer { server.stop() }
        let source = try FrameSource(input: "tcp://127.0.0.1:\(server.port)", options: SourceOptions(ioTimeout: 1))
        var frames = 0
        do {
            while try source.next() != nil { frames += 1 }
            Issue.record("expected an --io-timeout error after \(frames) frames")
        } catch let error as MediaError {
            #expect(error.description.contains("--io-timeout"), "\(error)")
        }
        #expect(frames >= 50, "frames before the stall: \(frames)")
    }

    @Test("fuzz regressions and bit-flipped clips: each decodes or throws a MediaError, never crashes")
    func fuzzRegressionsAndFlips() throws {
        var inputs: [(String, [UInt8])] = []
        let regressions = TestEnv.packageRoot.appendingPathComponent("fuzz/regressions")
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: regressions.path)) ?? []).sorted()
        where name.hasSuffix(".b64") {
            let text = try String(contentsOf: regressions.appendingPathComponent(name), encoding: .utf8)
            let data = try #require(Data(base64Encoded: text, options: .ignoreUnknownCharacters), "\(name): not base64")
            inputs.append((name, [UInt8](data)))
        }
        let saved = inputs.count
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.makeGOPClip(in: dir, frames: 20, gop: 5))))
        var rng = SplitMix(seed: 7)
        for n in 0..<24 {
            var bytes = clip
            for _ in 0..<(1 + n) { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8)) }
            inputs.append(("flip-\(n)", bytes))
        }
        var decoded = 0, refused = 0
        for (name, bytes) in inputs {
            do {
                let source = try FrameSource(data: bytes, name: name, options: SourceOptions(decoderThreads: 1))
                while try source.next() != nil {}
                decoded += 1
            } catch is MediaError {
                refused += 1
            } catch {
                Issue.record("\(name): not a MediaError: \(error)")
            }
        }
        print("fuzz replay: \(saved) saved regression input(s) + \(inputs.count - saved) bit-flipped clips: \(decoded) decoded, \(refused) refused with an error")
        #expect(decoded + refused == inputs.count)
    }
}

