import Foundation
import Testing
import TestSupport

/// `framepipe run` end to end, on the shared ImageNet model and real videos.
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct RunTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let slideshow = TestEnv.asset("videos/slideshow_dev.mp4")
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")
    static let bunny = TestEnv.asset("videos/bigbuckbunny.mp4")

    func objects(_ r: ProcessResult) throws -> [[String: Any]] {
        try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func top1(_ o: [String: Any]) -> Int? {
        ((o["labels"] as? [[String: Any]])?.first?["index"]) as? Int
    }

    @Test func slideshowSegmentsCarryTheirReferenceLabels() throws {
        let r = try framepipe(["run", "--model", Self.model, "--quiet", Self.slideshow])
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try objects(r)
        #expect(objs.count == 200)
        // Reference top-1 per 2-second segment (../shared/assets/README.md): frames 0-49 Egyptian cat (286),
        // 50-99 chickadee (20), 100-149 military uniform (653), 150-199 dragonfly (320).
        let reference = [286, 20, 653, 320]
        for (seg, want) in reference.enumerated() {
            let frames = objs.filter { ($0["frame"] as! Int) / 50 == seg }
            let hits = frames.filter { top1($0) == want }.count
            #expect(frames.count == 50)
            #expect(Double(hits) >= 0.95 * Double(frames.count), "segment \(seg): \(hits)/\(frames.count) frames are \(want)")
        }
        let first = objs[0]
        #expect(first["input"] as? String == Self.slideshow)
        #expect((first["labels"] as? [[String: Any]])?.first?["label"] as? String == "Egyptian cat")
        #expect((first["labels"] as? [[String: Any]])?.count == 5)

        // Frame indices and pts equal `framepipe frames`.
        let f = try framepipe(["frames", Self.slideshow])
        let frames = try objects(f)
        #expect(frames.map { $0["index"] as! Int } == objs.map { $0["frame"] as! Int })
        #expect(frames.map { $0["pts"] as! Double } == objs.map { $0["pts"] as! Double })
    }

    @Test func batchSizesGiveIdenticalLabels() throws {
        var results: [[Int?]] = []
        for batch in ["1", "7", "16"] {
            let r = try framepipe(["run", "--model", Self.model, "--quiet", "--batch", batch, "--top-k", "1",
                                   "--every", "3", Self.slideshow])
            #expect(r.status == 0, "\(r.stderrText)")
            results.append(try objects(r).map(top1))
        }
        #expect(results[0].count == 67)
        #expect(results[0] == results[1] && results[1] == results[2])
    }

    @Test(.enabled(if: TestEnv.hasPython))
    func outputDirFilesLoadInNumpyAndMatchJSON() throws {
        let dir = try TestEnv.tempDir()
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--emit", "both", "--every", "10",
                               "--output-dir", dir.path, Self.carphone])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdout.isEmpty)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(names == ["carphone_pristine.csv", "carphone_pristine.jsonl", "carphone_pristine.npy"])
        // base64 embeddings on stdout must decode to the same floats as the .npy rows.
        let b = try framepipe(["run", "--model", Self.model, "--quiet", "--emit", "embedding", "--every", "10",
                               "--embedding-encoding", "base64", Self.carphone])
        #expect(b.status == 0, "\(b.stderrText)")
        let b64 = dir.appendingPathComponent("b64.jsonl")
        try b.stdout.write(to: b64)
        let script = """
        import json, base64, numpy as np, csv
        d = '\(dir.path)'
        a = np.load(d + '/carphone_pristine.npy')
        assert a.dtype == np.float32 and a.shape == (12, 1280), (a.dtype, a.shape)
        lines = [json.loads(l) for l in open(d + '/carphone_pristine.jsonl')]
        assert len(lines) == 12 and [l['frame'] for l in lines] == list(range(0, 120, 10))
        j = np.array([l['embedding'] for l in lines], dtype=np.float32)
        assert np.array_equal(j, a), np.abs(j - a).max()
        b = [json.loads(l) for l in open('\(b64.path)')]
        e = np.stack([np.frombuffer(base64.b64decode(x['embedding_b64']), dtype='<f4') for x in b])
        assert np.array_equal(e, a), np.abs(e - a).max()
        rows = list(csv.reader(open(d + '/carphone_pristine.csv')))
        assert rows[0][:5] == ['frame', 'pts', 'label1', 'index1', 'score1'] and len(rows) == 13, rows[0]
        assert [int(r[0]) for r in rows[1:]] == list(range(0, 120, 10))
        assert [r[3] for r in rows[1:]] == [str(l['labels'][0]['index']) for l in lines]
        print('ok', a.shape)
        """
        let p = try runProcess(TestEnv.python, ["-c", script])
        #expect(p.status == 0, "\(p.stderrText)")
        #expect(p.stdoutText.hasPrefix("ok"))
    }

    @Test func headOneEndsPromptlyAndQuietly() throws {
        let r = try shell("set -o pipefail; '\(TestEnv.framepipe)' run --model '\(Self.model)' '\(Self.bunny)' '\(Self.bunny)' | head -1; echo \"status=${PIPESTATUS[0]}\" >&2",
                          timeout: 120)
        #expect(!r.timedOut)
        #expect(r.lines.count == 1)
        let status = r.stderrText.components(separatedBy: "status=").last?.trimmingCharacters(in: .whitespacesAndNewlines)
        // 0 (EPIPE handled) or 141 (SIGPIPE): either way nothing else on stderr.
        #expect(status == "0" || status == "141", "\(r.stderrText)")
        #expect(r.stderrText.hasPrefix("status="), "stderr: \(r.stderrText)")
    }

    @Test func corruptInputAmongGoodOnesWithJobs() throws {
        let dir = try TestEnv.tempDir()
        let bad = dir.appendingPathComponent("broken.mp4").path
        try Data("this is not a video\n".utf8).write(to: URL(fileURLWithPath: bad))
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--jobs", "2", "--top-k", "1", "--every", "5",
                               Self.carphone, bad, Self.slideshow])
        #expect(r.status == 1)
        let objs = try objects(r)
        let errors = objs.filter { $0["error"] != nil }
        #expect(errors.count == 1)
        #expect(errors.first?["input"] as? String == bad)
        #expect(objs.filter { ($0["input"] as? String) == Self.carphone && $0["frame"] != nil }.count == 24)
        #expect(objs.filter { ($0["input"] as? String) == Self.slideshow && $0["frame"] != nil }.count == 40)
        // Per-input order is frame order even with two inputs interleaved.
        let slideFrames = objs.filter { ($0["input"] as? String) == Self.slideshow }.compactMap { $0["frame"] as? Int }
        #expect(slideFrames == slideFrames.sorted())
        let errLines = r.stderrText.split(separator: "\n").filter { $0.contains("broken.mp4") }
        #expect(errLines.count == 1, "\(r.stderrText)")
    }

    @Test func slowConsumerKeepsMemoryBounded() throws {
        // A long input (bigbuckbunny looped 5 times) read slowly: the RSS must level off, not grow.
        let dir = try TestEnv.tempDir()
        let long = dir.appendingPathComponent("long.mp4").path
        let mk = try shell("ffmpeg -v error -y -stream_loop 4 -i '\(Self.bunny)' -c copy '\(long)'")
        try #require(mk.status == 0, "\(mk.stderrText)")
        let script = """
        '\(TestEnv.framepipe)' run --model '\(Self.model)' --quiet --emit both '\(long)' | \
        (i=0; while IFS= read -r line; do i=$((i+1)); [ $((i % 20)) -eq 0 ] && sleep 0.5; done; echo "read=$i")
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var samples: [Int] = []
        let deadline = Date().addingTimeInterval(25)
        // framepipe is a child of the bash we started: found by its parent, never by name.
        var framepipePID: Int32?
        while Date() < deadline && process.isRunning {
            Thread.sleep(forTimeInterval: 1)
            if framepipePID == nil { framepipePID = childPID(of: process.processIdentifier, executable: TestEnv.framepipe) }
            guard let pid = framepipePID else { continue }
            if let kb = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
                .split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })?
                .split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
                samples.append(kb)
            }
        }
        if let pid = framepipePID { kill(pid, SIGTERM) }
        process.terminate()
        process.waitUntilExit()
        try #require(samples.count >= 10, "too few RSS samples: \(samples)")
        // After warm-up, RSS stays within a small band while the reader lags far behind. Warm-up
        // (model compile, first batches) is the first half of the samples: under load it has taken
        // longer than 4 s, and a fixed 4 s counted its growth as a leak.
        let settled = Array(samples.suffix(samples.count / 2))
        let growth = settled.max()! - settled.min()!
        #expect(growth < 60_000, "RSS grew by \(growth) kB while the consumer was slow: \(samples)")
    }

    @Test func checkShowsPreprocessingAndTopLabelsForImages() throws {
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("images/expected_top5.json")))) as! [String: Any]
        let images = expected.keys.sorted()
        let r = try framepipe(["check", "--model", Self.model] + images.map { TestEnv.asset("images/\($0)") })
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stderrText.contains("224x224"))
        let objs = try objects(r)
        #expect(objs.count == images.count)
        for (name, o) in zip(images, objs) {
            let ref = expected[name] as! [String: Any]
            let refTop = ((ref["top5"] as! [[String: Any]])[0]["index"]) as! Int
            #expect(top1(o) == refTop, "\(name)")
            let norm = o["embedding_norm"] as! Double, refNorm = ref["feature_norm"] as! Double
            #expect(abs(norm - refNorm) / refNorm < 0.03, "\(name): norm \(norm) vs \(refNorm)")
        }
    }

    @Test func progressLineOnlyOnATerminal() throws {
        // `script` gives framepipe a terminal for stderr (stdout still goes to /dev/null).
        let tty = try shell("script -qfec \"'\(TestEnv.framepipe)' run --model '\(Self.model)' '\(Self.bunny)' > /dev/null\" /dev/null",
                            timeout: 120)
        #expect(tty.status == 0, "\(tty.stdoutText)")
        #expect(tty.stdoutText.contains("\r\u{1B}[K"), "no progress line: \(tty.stdoutText)")
        #expect(tty.stdoutText.contains(" fps ") && tty.stdoutText.contains("ETA"))
        #expect(tty.stdoutText.contains("frames decoded 132, emitted 132"))
        // Piped stderr: the summary only, no progress redraws.
        let piped = try framepipe(["run", "--model", Self.model, Self.bunny])
        #expect(piped.status == 0)
        #expect(!piped.stderrText.contains("\r") && piped.stderrText.contains("emitted 132"))
        let quiet = try framepipe(["run", "--quiet", "--model", Self.model, "--every", "50", Self.bunny])
        #expect(quiet.stderr.isEmpty)
    }

    @Test func helpListsEveryGroupOfFlags() throws {
        let r = try framepipe(["run", "--help"])
        #expect(r.status == 0)
        for flag in ["--model", "--precision", "--threads", "--every", "--fps", "--keyframes", "--batch", "--emit",
                     "--top-k", "--embedding-encoding", "--output-dir", "--jobs", "--max-latency", "--quiet"] {
            #expect(r.stdoutText.contains(flag), "run --help lacks \(flag)")
        }
    }

    @Test func usageErrorsExitTwo() throws {
        for args in [["run", "--batch", "0", Self.slideshow], ["run", "--emit", "everything", Self.slideshow]] {
            let r = try framepipe(args)
            #expect(r.status == 2, "\(args): \(r.status) \(r.stderrText)")
            #expect(!r.stderrText.isEmpty)
        }
        let missing = try framepipe(["run", "--model", "/nonexistent/model.onnx", Self.slideshow])
        #expect(missing.status == 78)  // cannot start (README, "Exit status")
        let noFolder = try framepipe(["run", "--model", Self.model, "--output-dir", "/dev/null/dir", Self.slideshow])
        #expect(noFolder.status == 78, "\(noFolder.stderrText)")
        #expect(missing.stderrText.contains("/nonexistent/model.onnx"))
    }
}

/// The PID of the child of `parent` running `executable` (read from /proc: the children list of
/// each of its threads and their /proc/PID/exe), nil when there is none yet.
func childPID(of parent: Int32, executable: String) -> Int32? {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(parent)/task")) ?? []
    let target = URL(fileURLWithPath: executable).resolvingSymlinksInPath().path
    for task in tasks {
        let text = (try? String(contentsOfFile: "/proc/\(parent)/task/\(task)/children", encoding: .utf8)) ?? ""
        for word in text.split(separator: " ") {
            guard let pid = Int32(word) else { continue }
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
            if exe == target { return pid }
        }
    }
    return nil
}
