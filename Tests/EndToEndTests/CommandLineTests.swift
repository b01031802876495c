import Foundation
import Testing
import TestSupport

/// The command line as users meet it (issue #13): one error style, one exit-status table for
/// every command, flag rules that run before anything is opened. One test per item of the issue.
@Suite(.enabled(if: TestEnv.hasAssets))
struct CommandLineTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")
    static let bikes = TestEnv.asset("videos/bikes.mp4")
    static let bunny = TestEnv.asset("videos/bigbuckbunny.mp4")
    static let cat = TestEnv.asset("images/cat.bmp")

    /// Every stderr line is `framepipe: ...` (no "Error:", no backtrace).
    static func expectHouseStyle(_ r: ProcessResult, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!r.signaled && !r.timedOut, "\(what): signal or timeout", sourceLocation: sourceLocation)
        for line in r.stderrText.split(separator: "\n") {
            #expect(line.hasPrefix("framepipe: "), "\(what): stray stderr line '\(line)'", sourceLocation: sourceLocation)
        }
    }

    // Item 1: a folder as the model: a clear error and 78, never a crash, for every way of naming it.
    @Test func modelFolderIsAClearErrorEverywhere() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [([String], [String: String]?)] = [
            (["run", "--model", dir.path, Self.bikes], nil),
            (["check", "--model", dir.path, Self.cat], nil),
            (["bench", "--model", dir.path, "--iterations", "1"], nil),
            (["inspect", dir.path], nil),
            (["run", Self.bikes], ["FRAMEPIPE_MODEL": dir.path]),
        ]
        for (args, env) in cases {
            let r = try framepipe(args, environment: env, timeout: 60)
            Self.expectHouseStyle(r, "\(args)")
            #expect(r.status == 78, "\(args): \(r.status) \(r.stderrText)")
            #expect(r.stderrText == "framepipe: \(dir.path): is a directory, not a model file (ONNX, Keras H5 or TFLite)\(env == nil ? "" : " (from FRAMEPIPE_MODEL)")\n",
                    "\(args): \(r.stderrText)")
        }
    }

    // Item 2: bench caps --batch like run, before allocating anything.
    @Test func benchBatchIsCappedLikeRun() throws {
        for command in ["bench", "run"] {
            let r = try framepipe([command, "--model", Self.model, "--batch", "100000", "--iterations", "1", "--warmup", "0"]
                                  + (command == "run" ? [Self.carphone] : []), timeout: 30)
            #expect(r.status == 2, "\(command): \(r.status) \(r.stderrText)")
            #expect(r.stderrText.hasPrefix("framepipe: error: --batch must be in 1...1024 (got 100000)\n"), "\(r.stderrText)")
        }
        // Flags within their ranges whose product cannot fit: a usage error, not an allocation crash.
        let pool = try framepipe(["run", "--model", Self.model, "--jobs", "256", "--batches-in-flight", "64", "--batch", "1024",
                                  Self.carphone], timeout: 60)
        #expect(pool.status == 2 && !pool.signaled, "\(pool.status) \(pool.stderrText)")
        #expect(pool.stderrText.contains("more than half of this machine's memory"), "\(pool.stderrText)")
    }

    // Item 3 and "wrote out//x.jsonl": the README's folder example creates the folder.
    @Test func outputFolderIsCreatedAndNamedOnce() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out/nested").path + "/"
        let r = try framepipe(["run", "--model", Self.model, "--emit", "both", "--jobs", "2", "--fps", "2",
                               "--output-dir", out, Self.carphone, Self.bikes], timeout: 120)
        #expect(r.status == 0, "\(r.stderrText)")
        for stem in ["carphone_pristine", "bikes"] {
            for ext in ["jsonl", "npy", "csv"] {
                let file = dir.appendingPathComponent("out/nested/\(stem).\(ext)").path
                #expect(FileManager.default.fileExists(atPath: file), "missing \(file)")
                #expect(r.stderrText.contains("framepipe: wrote \(file)\n"), "\(r.stderrText)")
            }
        }
        #expect(!r.stderrText.contains("//"), "\(r.stderrText)")
        // A path that exists and is not a folder cannot be used: 78, before the model loads.
        let file = dir.appendingPathComponent("plain").path
        try Data().write(to: URL(fileURLWithPath: file))
        let notDir = try framepipe(["run", "--model", Self.model, "--output-dir", file, Self.carphone], timeout: 30)
        #expect(notDir.status == 78)
        #expect(notDir.stderrText == "framepipe: \(file): --output-dir: exists and is not a folder\n", "\(notDir.stderrText)")
    }

    // Item 5: a negative number is a value, rejected with its range (same rule in every command).
    @Test func negativeNumbersAreValuesRejectedWithTheirRange() throws {
        let cases: [(String, [String], String)] = [
            ("run", ["--fps", "-1"], "--fps must be > 0 and <= 1000000 (got -1)"),
            ("run", ["--every", "-2"], "--every must be in 1...1000000000 (got -2)"),
            ("run", ["--top-k", "-1"], "--top-k must be in 1...100000 (got -1)"),
            ("run", ["--start", "-1"], "--start must be in 0...1000000000 s (got -1)"),
            ("run", ["--end", "-1"], "--end must be > 0 and <= 1000000000 s (got -1)"),
            ("run", ["--min-score", "-0.5"], "--min-score must be in 0...1 (got -0.5)"),
            ("run", ["--io-timeout", "-1"], "--io-timeout must be in 0...1000000 s (got -1)"),
            ("run", ["--max-latency", "-5"], "--max-latency must be in 1...3600000 ms (got -5)"),
            ("run", ["--decoder-threads", "-3"], "--decoder-threads must be in 0...64 (got -3)"),
            ("run", ["--threads", "-1"], "--threads must be in 1...1024 (got -1)"),
            ("frames", ["--fps", "-1"], "--fps must be > 0 and <= 1000000 (got -1)"),
            ("frames", ["--stream", "-1"], "--stream must be in 0...65535 (got -1)"),
            ("check", ["--top-k", "-1"], "--top-k must be in 1...100000 (got -1)"),
            ("bench", ["--batch", "-4"], "--batch must be in 1...1024 (got -4)"),
            ("bench", ["--warmup", "-1"], "--warmup must be in 0...1000000 (got -1)"),
        ]
        for (command, flags, message) in cases {
            let r = try framepipe([command, "--model", Self.model] + flags + (command == "bench" ? [] : [Self.carphone]),
                                  timeout: 30)
            #expect(r.status == 2, "\(command) \(flags): \(r.status)")
            #expect(r.stderrText.hasPrefix("framepipe: error: \(message)\n"), "\(command) \(flags): \(r.stderrText)")
            #expect(!r.stderrText.contains("Missing value") && r.stdout.isEmpty)
        }
    }

    // Item 6: --top-k 0 is refused by run as by check.
    @Test func topKZeroIsRefusedByEveryCommand() throws {
        for args in [["run", "--top-k", "0", Self.carphone], ["check", "--top-k", "0", Self.cat]] {
            let r = try framepipe(args + ["--model", Self.model], timeout: 30)
            #expect(r.status == 2, "\(args): \(r.status)")
            #expect(r.stderrText.hasPrefix("framepipe: error: --top-k must be in 1...100000 (got 0)\n"), "\(r.stderrText)")
        }
    }

    // Item 7: each row of the exit-status table, end to end.
    @Test func exitStatusTable() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.mp4").path
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: bad))
        let corrupt = dir.appendingPathComponent("corrupt.onnx").path
        try FileManager.default.contents(atPath: Self.model)!.prefix(5000).write(to: URL(fileURLWithPath: corrupt))

        // 0: everything done.
        let ok = try framepipe(["run", "--model", Self.model, "--quiet", "--end", "0.2", Self.carphone], timeout: 60)
        #expect(ok.status == 0, "\(ok.stderrText)")
        // 1: some input failed, the others were processed.
        let some = try framepipe(["run", "--model", Self.model, "--quiet", "--end", "0.2", bad, Self.carphone], timeout: 60)
        #expect(some.status == 1, "\(some.stderrText)")
        #expect(some.lines.count == 7 && some.stderrText.contains("framepipe: \(bad): "))
        // 2: usage.
        for args in [["run"], ["run", "--no-such-flag", Self.carphone], ["frames", "--fps", "x", Self.carphone], ["help", "foo"]] {
            let r = try framepipe(args, timeout: 30)
            #expect(r.status == 2, "\(args): \(r.status) \(r.stderrText)")
            Self.expectHouseStyle(r, "\(args)")
        }
        // 78: cannot start.
        var cannotStart: [(String, [String], [String: String]?)] = [
            ("corrupt model", ["run", "--model", corrupt, Self.carphone], nil),
            ("corrupt model (inspect)", ["inspect", corrupt], nil),
            ("corrupt model (bench)", ["bench", "--model", corrupt], nil),
            ("missing model", ["check", "--model", dir.appendingPathComponent("none.onnx").path, Self.cat], nil),
            ("/dev/null as model", ["run", "--model", "/dev/null", Self.carphone], nil),
            ("bf16 without CPU support", ["run", "--model", Self.model, "--precision", "bf16", Self.carphone],
             ["ONEDNN_MAX_CPU_ISA": "AVX2"]),
            ("bf16 without CPU support (bench)", ["bench", "--model", Self.model, "--precision", "bf16", "--iterations", "1"],
             ["ONEDNN_MAX_CPU_ISA": "AVX2"]),
        ]
        // "No default model" needs a machine without the installed default, and a binary outside any
        // checkout (a built binary finds its checkout's models/): a copy of it in the temp folder.
        let installedDefault = "/usr/local/share/framepipe/models/mobilenet_v2_1.0_224_quant.tflite"
        let detached = dir.appendingPathComponent("framepipe-detached").path
        let noDefault = !FileManager.default.fileExists(atPath: installedDefault)
        if noDefault { try FileManager.default.copyItem(atPath: TestEnv.framepipe, toPath: detached) }
        let noModelEnv = ["FRAMEPIPE_MODEL": "", "XDG_DATA_HOME": dir.appendingPathComponent("empty").path]
        for (what, args, env) in cannotStart {
            let r = try framepipe(args, environment: env, timeout: 60)
            #expect(r.status == 78, "\(what): \(r.status) \(r.stderrText)")
            #expect(r.stdout.isEmpty, "\(what): \(r.stdoutText)")
            Self.expectHouseStyle(r, what)
            #expect(r.stderrText.split(separator: "\n").count == 1, "\(what): \(r.stderrText)")
        }
        if noDefault {
            let r = try runProcess(detached, ["run", Self.carphone], environment: noModelEnv, timeout: 60)
            #expect(r.status == 78, "no default model: \(r.status) \(r.stderrText)")
            #expect(r.stdout.isEmpty)
            Self.expectHouseStyle(r, "no default model")
            #expect(r.stderrText.hasPrefix("framepipe: error: no model: pass --model PATH"), "\(r.stderrText)")
        }
    }

    // Item 7, last row: a model without a class output, when labels are asked for.
    @Test(.enabled(if: TestEnv.hasPython)) func modelWithoutClassOutputCannotStart() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let features = dir.appendingPathComponent("features.onnx").path
        let p = try runProcess(TestEnv.python, ["-c", """
            import onnx, sys
            m = onnx.load(sys.argv[1])
            keep = [o for o in m.graph.output if o.name == 'features']
            del m.graph.output[:]
            m.graph.output.extend(keep)
            onnx.save(m, sys.argv[2])
            """, Self.model, features])
        try #require(p.status == 0, "\(p.stderrText)")
        let r = try framepipe(["run", "--model", features, Self.carphone], timeout: 60)
        #expect(r.status == 78, "\(r.stderrText)")
        #expect(r.stderrText == "framepipe: \(features): the model has no class output; use --emit embedding\n")
        let embedding = try framepipe(["run", "--model", features, "--emit", "embedding", "--quiet", "--end", "0.1", Self.carphone],
                                      timeout: 60)
        #expect(embedding.status == 0 && embedding.lines.count == 3, "\(embedding.stderrText)")
    }

    // Item 8: the input is named once; every command uses the same style.
    @Test func inputNamedOnceInOneStyle() throws {
        let missing = "/nonexistent-\(UUID().uuidString).mp4"
        let run = try framepipe(["run", "--model", Self.model, "--quiet", missing], timeout: 60)
        #expect(run.status == 1)
        #expect(run.stderrText == "framepipe: \(missing): open input: No such file or directory\n", "\(run.stderrText)")
        let record = try JSONSerialization.jsonObject(with: Data(run.lines[0].utf8)) as? [String: Any]
        #expect(record?["error"] as? String == "open input: No such file or directory")
        for args in [["frames", missing], ["probe", missing], ["check", "--model", Self.model, missing],
                     ["bench", "--model", Self.model, "--decode", missing]] {
            let r = try framepipe(args, timeout: 60)
            #expect(r.status == 1, "\(args): \(r.status)")
            #expect(r.stderrText.hasSuffix("framepipe: \(missing): open input: No such file or directory\n"), "\(args): \(r.stderrText)")
            #expect(r.stderrText.components(separatedBy: missing).count == 2, "\(args): input named more than once")
        }
        for args in [["inspect", missing], ["bench", "--model", missing]] {
            let r = try framepipe(args, timeout: 30)
            #expect(r.status == 78)
            #expect(r.stderrText == "framepipe: \(missing): model file not found\n", "\(r.stderrText)")
        }
    }

    // Item 9: FFmpeg's own precise reason, and hints that fit the input.
    @Test func messagesSayWhatIsWrong() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let moovEnd = dir.appendingPathComponent("moov-end.mp4").path
        let f = try shell("ffmpeg -v error -y -i '\(Self.carphone)' -c copy '\(moovEnd)'")
        try #require(f.status == 0, "\(f.stderrText)")
        let bytes = FileManager.default.contents(atPath: moovEnd)!
        let truncated = dir.appendingPathComponent("truncated.mp4").path
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let y4m = dir.appendingPathComponent("wide.y4m").path
        try (Data("YUV4MPEG2 W99999999 H2 F25:1 Ip A1:1 C420jpeg\nFRAME\n".utf8) + Data(count: 64)).write(to: URL(fileURLWithPath: y4m))
        for (input, reason) in [(truncated, "open input: Invalid data found when processing input: moov atom not found"), (y4m, "open input: Picture size 99999999x2 is invalid")] {
            let r = try framepipe(["frames", input], timeout: 30)
            #expect(r.status == 1)
            #expect(r.stderrText == "framepipe: \(input): \(reason)\n", "\(r.stderrText)")
        }
        // A server without Range support: the hint names the server, not a pipe.
        let server = try LoopbackServer(mode: .http(["moov-end.mp4": Array(bytes)]))
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)/moov-end.mp4"
        let http = try framepipe(["frames", "--io-timeout", "5", url], timeout: 60)
        #expect(http.status == 1)
        #expect(http.stderrText.contains("no HTTP Range support") && !http.stderrText.contains("from a pipe"), "\(http.stderrText)")
        // From a real pipe the pipe hint stays.
        let piped = try shell("cat '\(moovEnd)' | '\(TestEnv.framepipe)' frames -", timeout: 60)
        #expect(piped.status == 1 && piped.stderrText.contains("cannot be read from a pipe"), "\(piped.stderrText)")
        // Model files that are not models at all (the model loaders own the wording; the status is ours).
        let text = dir.appendingPathComponent("weights.h5").path
        try Data("just text\n".utf8).write(to: URL(fileURLWithPath: text))
        let r = try framepipe(["run", "--model", text, Self.carphone], timeout: 30)
        #expect(r.status == 78 && r.stderrText.hasPrefix("framepipe: \(text): "), "\(r.stderrText)")
        let null = try framepipe(["run", "--model", "/dev/null", Self.carphone], timeout: 30)
        #expect(null.status == 78 && null.stderrText == "framepipe: /dev/null: is a character device, not a model file\n", "\(null.stderrText)")
    }

    // Minor: pts as the shortest decimal of the value rounded to microseconds, equal to ffprobe's.
    @Test func ptsPrintedRoundedToMicroseconds() throws {
        let frames = try framepipe(["frames", Self.carphone], timeout: 60)
        #expect(frames.status == 0)
        let pts = frames.lines.map { line -> String in
            let tail = line.components(separatedBy: "\"pts\":")[1]
            return String(tail.prefix { $0 != "," })
        }
        #expect(pts.count == 120)
        #expect(pts.allSatisfy { ($0.split(separator: ".").last?.count ?? 0) <= 6 }, "\(pts.prefix(5))")
        let probe = try shell("ffprobe -v error -select_streams v:0 -show_entries frame=pts_time -of csv=p=0 '\(Self.carphone)'")
        let reference = probe.stdoutText.split(whereSeparator: { $0 == "\n" || $0 == "," }).compactMap { Double($0) }
        #expect(reference.count == 120)
        for (ours, theirs) in zip(pts.compactMap(Double.init), reference) {
            #expect(abs(ours - theirs) < 1e-6, "\(ours) vs ffprobe \(theirs)")
        }
        let run = try framepipe(["run", "--model", Self.model, "--quiet", "--every", "40", Self.carphone], timeout: 60)
        #expect(run.stdoutText.contains("\"pts\":1.334667,"), "\(run.stdoutText.prefix(400))")
    }

    // Minor: `help foo` is a usage error; `help run` is help.
    @Test func helpForUnknownCommandExitsTwo() throws {
        let foo = try framepipe(["help", "foo"])
        #expect(foo.status == 2 && foo.stdout.isEmpty)
        #expect(foo.stderrText.hasPrefix("framepipe: error: unknown command 'foo'"), "\(foo.stderrText)")
        let run = try framepipe(["help", "run"])
        #expect(run.status == 0 && run.stdoutText.contains("--top-k"))
    }

    // Minor: stdin redirected from a file can seek, so even a moov-at-end MP4 is read.
    @Test func seekableStdinIsReadAsAFile() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let moovEnd = dir.appendingPathComponent("moov-end.mp4").path
        try #require(try shell("ffmpeg -v error -y -i '\(Self.carphone)' -c copy '\(moovEnd)'").status == 0)
        let r = try shell("'\(TestEnv.framepipe)' frames - < '\(moovEnd)'", timeout: 60)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.lines.count == 120)
    }

    // Minor: probe gives no width/height for an audio stream.
    @Test func probeShowsNoSizeForAudio() throws {
        let r = try framepipe(["probe", "--compact", Self.bunny])
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let streams = try #require(json["streams"] as? [[String: Any]])
        let audio = try #require(streams.first { $0["type"] as? String == "audio" })
        #expect(audio["width"] == nil && audio["height"] == nil, "\(audio)")
        let video = try #require(streams.first { $0["type"] as? String == "video" })
        #expect(video["width"] as? Int == 1280 && video["height"] as? Int == 720)
    }
}
