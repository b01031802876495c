import Foundation
import Testing
import TestSupport

/// Runs `framepipe frames`/`probe` as a user would: output lines, stderr, exit status.
@Suite("framepipe frames / probe (built binary)")
struct MediaCommandTests {
    static func video(_ name: String) -> String { TestEnv.asset("videos/\(name)") }

    /// Parses `frames` output lines into (index, pts, keyframe).
    static func parse(_ result: ProcessResult) throws -> [(index: Int, pts: Double, keyframe: Bool)] {
        try result.lines.map { line in
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            return (try #require(obj["index"] as? Int), try #require(obj["pts"] as? Double), try #require(obj["keyframe"] as? Bool))
        }
    }

    /// A bad input must give exactly one stderr line naming it, a non-zero status, no crash, no hang.
    static func expectCleanFailure(_ result: ProcessResult, input: String, mentions: String,
                                   sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!result.timedOut && !result.signaled, "hang or crash", sourceLocation: sourceLocation)
        #expect(result.status == 1, "exit status \(result.status)", sourceLocation: sourceLocation)
        let lines = result.stderrText.split(separator: "\n").filter { !$0.contains(": warning: ") }
        #expect(lines.count == 1, "stderr: \(result.stderrText)", sourceLocation: sourceLocation)
        #expect(lines.first?.hasPrefix("framepipe: \(input): ") == true, "stderr: \(result.stderrText)", sourceLocation: sourceLocation)
        #expect(result.stderrText.contains(mentions), "stderr: \(result.stderrText)", sourceLocation: sourceLocation)
    }

    @Test("done-when: frames bigbuckbunny.mp4 | wc -l prints 132", .enabled(if: TestEnv.hasAssets))
    func doneWhen() throws {
        let r = try shell("'\(TestEnv.framepipe)' frames '\(Self.video("bigbuckbunny.mp4"))' | wc -l")
        #expect(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "132")
    }

    @Test("frames prints index/pts/keyframe lines matching ffprobe", .enabled(if: TestEnv.hasAssets))
    func framesMatchFFprobe() throws {
        let path = Self.video("carphone_pristine.mp4")
        let r = try framepipe(["frames", path])
        #expect(r.status == 0 && r.stderrText.isEmpty)
        let ours = try Self.parse(r)
        let probe = try shell("ffprobe -v error -select_streams v:0 -show_entries frame=pts_time,key_frame -of csv=p=0 '\(path)'")
        let reference = probe.lines.map { $0.split(separator: ",") }.filter { $0.count >= 2 }
        #expect(ours.count == 120 && reference.count == 120)
        for (i, (o, ref)) in zip(ours, reference).enumerated() {
            #expect(o.index == i)
            #expect(o.keyframe == (ref[0] == "1"))
            #expect(abs(o.pts - (Double(ref[1]) ?? -1)) < 1e-6)
        }
    }

    @Test("stdin gives the same lines as the file path, with and without --start", .enabled(if: TestEnv.hasAssets))
    func stdinEqualsFile() throws {
        let dir = try TestEnv.tempDir("e2e-stdin")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The assets keep their index (moov) at the end, which no pipe reader can use: remux for streaming.
        let file = dir.appendingPathComponent("bikes-faststart.mp4").path
        try shell("ffmpeg -v error -y -i '\(Self.video("bikes.mp4"))' -c copy -movflags +faststart '\(file)'")
        for flags in [[], ["--start", "3", "--end", "5"], ["--keyframes"]] {
            let fromFile = try framepipe(["frames", file] + flags)
            let fromPipe = try shell("cat '\(file)' | '\(TestEnv.framepipe)' frames - \(flags.joined(separator: " "))")
            #expect(fromFile.status == 0 && fromPipe.status == 0, "\(flags): \(fromPipe.stderrText)")
            #expect(!fromFile.lines.isEmpty)
            #expect(fromPipe.lines == fromFile.lines, "flags \(flags)")
        }
        #expect(try framepipe(["frames", file]).lines.count == 250)
        // The original (index at the end) through a pipe: a clear error that says why.
        let moovAtEnd = try shell("cat '\(Self.video("bikes.mp4"))' | '\(TestEnv.framepipe)' frames -")
        Self.expectCleanFailure(moovAtEnd, input: "-", mentions: "faststart")
    }

    @Test("sampling flags through the CLI", .enabled(if: TestEnv.hasAssets))
    func samplingFlags() throws {
        let path = Self.video("slideshow_dev.mp4")
        #expect(try Self.parse(framepipe(["frames", path, "--every", "50"])).map(\.index) == [0, 50, 100, 150])
        #expect(try Self.parse(framepipe(["frames", path, "--fps", "1"])).map(\.index) == Array(stride(from: 0, to: 200, by: 25)))
        #expect(try Self.parse(framepipe(["frames", path, "--keyframes"])).allSatisfy { $0.keyframe })
        let window = try Self.parse(framepipe(["frames", path, "--start", "1", "--end", "1.2", "--decoder-threads", "1"]))
        #expect(window.map(\.index) == [25, 26, 27, 28, 29])
    }

    @Test("usage errors exit 2 with a clear message")
    func usageErrors() throws {
        for (args, text) in [(["--every", "0"], "--every"), (["--fps=-1"], "--fps"),
                             (["--start", "5", "--end", "2"], "--start"), (["--decoder-threads=-3"], "--decoder-threads")] {
            let r = try framepipe(["frames", "x.mp4"] + args)
            #expect(r.status == 2, "\(args): status \(r.status)")
            #expect(r.stderrText.contains(text) && r.stdout.isEmpty, "\(args): \(r.stderrText)")
        }
        let help = try framepipe(["frames", "--help"])
        for flag in ["--stream", "--every", "--fps", "--keyframes", "--start", "--end", "--decoder-threads"] {
            #expect(help.stdoutText.contains(flag), "help lacks \(flag)")
        }
    }

    @Test("bad inputs: one clear stderr line naming the input, non-zero exit, no crash or hang")
    func badInputs() throws {
        let dir = try TestEnv.tempDir("e2e-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("missing.mp4").path
        Self.expectCleanFailure(try framepipe(["frames", missing], timeout: 60), input: missing, mentions: "No such file")
        Self.expectCleanFailure(try framepipe(["probe", missing], timeout: 60), input: missing, mentions: "No such file")

        let text = dir.appendingPathComponent("notes.mp4")
        try Data("this is not a video\n".utf8).write(to: text)
        Self.expectCleanFailure(try framepipe(["frames", text.path], timeout: 60), input: text.path, mentions: "Invalid data")

        let random = dir.appendingPathComponent("random.mp4")
        var rng = SplitMix(seed: 7)
        try Data((0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) }).write(to: random)
        Self.expectCleanFailure(try framepipe(["frames", random.path], timeout: 60), input: random.path, mentions: "open input")

        // A stream whose codec FFmpeg does not know: rename the codec id inside an MKV.
        let good = dir.appendingPathComponent("good.mkv").path
        try shell("ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 5 -c:v libx264 -pix_fmt yuv420p '\(good)'")
        var mkv = try Data(contentsOf: URL(fileURLWithPath: good))
        let id = Data("V_MPEG4/ISO/AVC".utf8)
        let at = try #require(mkv.range(of: id))
        mkv.replaceSubrange(at, with: Data("V_FRAMEPIPE_XYZ".utf8))
        let unknown = dir.appendingPathComponent("unknown-codec.mkv")
        try mkv.write(to: unknown)
        Self.expectCleanFailure(try framepipe(["frames", unknown.path], timeout: 60), input: unknown.path, mentions: "codec")
        let probed = try framepipe(["probe", unknown.path])
        #expect(probed.status == 0 && probed.stdoutText.contains("\"decodable\" : false"))
    }

    @Test("truncated video: frames before the damage, then the truncation reported, non-zero exit", .enabled(if: TestEnv.hasAssets))
    func truncated() throws {
        let dir = try TestEnv.tempDir("e2e-trunc")
        defer { try? FileManager.default.removeItem(at: dir) }
        // MP4 (index first: the container lists 250 frames) and Matroska (it states the duration).
        for (name, flags) in [("full.mp4", "-movflags +faststart"), ("full.mkv", "")] {
            let full = dir.appendingPathComponent(name).path
            try shell("ffmpeg -v error -y -i '\(Self.video("bikes.mp4"))' -c copy \(flags) '\(full)'")
            #expect(try framepipe(["frames", full]).lines.count == 250)
            let data = try Data(contentsOf: URL(fileURLWithPath: full))
            let cut = dir.appendingPathComponent("cut-" + name)
            try data.prefix(data.count * 6 / 10).write(to: cut)
            let r = try framepipe(["frames", cut.path], timeout: 60)
            Self.expectCleanFailure(r, input: cut.path, mentions: "truncated")
            let frames = try Self.parse(r)
            #expect(frames.count > 50 && frames.count < 250, "\(name): \(frames.count) frames before the damage")
            #expect(frames.map(\.index) == Array(0..<frames.count))
        }
        // The original asset cut short loses its index (moov at the end): cannot be opened at all.
        let noIndex = dir.appendingPathComponent("no-index.mp4")
        try (try Data(contentsOf: URL(fileURLWithPath: Self.video("bikes.mp4")))).prefix(300_000).write(to: noIndex)
        Self.expectCleanFailure(try framepipe(["frames", noIndex.path], timeout: 60), input: noIndex.path, mentions: "open input")
    }

    @Test("random bytes in the middle: counted and summarised on stderr, not fatal", .enabled(if: TestEnv.hasAssets))
    func corruptPackets() throws {
        let dir = try TestEnv.tempDir("e2e-corrupt")
        defer { try? FileManager.default.removeItem(at: dir) }
        var data = try Data(contentsOf: URL(fileURLWithPath: Self.video("bikes.mp4")))
        var rng = SplitMix(seed: 1)
        for offset in [150_000, 260_000, 380_000] {  // inside the mdat (the index is at the end)
            for i in 0..<64 { data[offset + i] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        let damaged = dir.appendingPathComponent("damaged.mp4")
        try data.write(to: damaged)
        let r = try framepipe(["frames", damaged.path], timeout: 120)
        #expect(!r.timedOut && !r.signaled)
        #expect(r.status == 0, "stderr: \(r.stderrText)")
        #expect(r.lines.count >= 240, "most frames survive (\(r.lines.count))")
        #expect(r.stderrText.hasPrefix("framepipe: \(damaged.path): warning: "), "stderr: \(r.stderrText)")
        #expect(r.stderrText.contains("decode error"))
    }

    @Test("probe prints the streams as JSON", .enabled(if: TestEnv.hasAssets))
    func probe() throws {
        let r = try framepipe(["probe", Self.video("bigbuckbunny.mp4")])
        #expect(r.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let streams = try #require(json["streams"] as? [[String: Any]])
        #expect(streams.count == 2)
        let v = streams[0]
        #expect(v["codec"] as? String == "h264" && v["type"] as? String == "video")
        #expect(v["width"] as? Int == 1280 && v["height"] as? Int == 720)
        #expect(v["frameCount"] as? Int == 132 && v["fps"] as? Double == 25)
        #expect(v["pixelFormat"] as? String == "yuv420p" && v["rotation"] as? Int == 0)
        #expect(abs((v["duration"] as? Double ?? 0) - 5.28) < 1e-6)
        #expect(streams[1]["codec"] as? String == "aac")
        let image = try framepipe(["probe", "--compact", TestEnv.asset("images/cat.bmp")])
        #expect(image.status == 0 && image.lines.count == 1 && image.stdoutText.contains("\"codec\":\"bmp\""))
    }
}

