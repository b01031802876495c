import Foundation
import Testing
import TestSupport

/// Issue 15's features end to end on real media: label segments, ...
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct FeatureTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let slideshow = TestEnv.asset("videos/slideshow_dev.mp4")

    func objects(_ r: ProcessResult) throws -> [[String: Any]] {
        try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// slideshow_dev.mp4 is four 2-second segments (../shared/assets/README.md).
    @Test func slideshowSegmentsAreTheFourTwoSecondSpans() throws {
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--segments", Self.slideshow])
        #expect(r.status == 0, "\(r.stderrText)")
        let segs = try objects(r)
        #expect(segs.map { $0["index"] as? Int } == [286, 20, 653, 320])
        #expect(segs.map { $0["segment"] as? Int } == [0, 1, 2, 3])
        let frame = 1.0 / 25
        for (k, s) in segs.enumerated() {
            let start = try #require(s["start"] as? Double), end = try #require(s["end"] as? Double)
            #expect(abs(start - 2 * Double(k)) <= frame, "segment \(k) starts at \(start)")
            #expect(abs(end - 2 * Double(k + 1)) <= frame, "segment \(k) ends at \(end)")
            #expect(s["frames"] as? Int == 50)
            #expect(s["input"] as? String == Self.slideshow)
            #expect(((s["score_mean"] as? Double) ?? 0) > 0.5)
        }
        #expect(segs.first?["label"] as? String == "Egyptian cat")

        // Interleaved: 200 frame records and the 4 segment records, each segment just before the frame
        // that closed it (13 frames, 0.52 s, into the next label), the last at the end.
        let w = try framepipe(["run", "--model", Self.model, "--quiet", "--top-k", "1", "--segments", "--with-frames", Self.slideshow])
        #expect(w.status == 0, "\(w.stderrText)")
        let all = try objects(w)
        #expect(all.count == 204)
        let positions = all.enumerated().filter { $0.element["segment"] != nil }.map(\.offset)
        #expect(positions == [62, 113, 164, 203])
    }

    @Test func segmentsGoToTheOutputFolderAsCSVAndJSONL() throws {
        let dir = try TestEnv.tempDir()
        let r = try framepipe(["run", "--model", Self.model, "--quiet", "--segments", "--output-dir", dir.path, Self.slideshow])
        #expect(r.status == 0, "\(r.stderrText)")
        let csv = try String(contentsOfFile: dir.path + "/slideshow_dev.segments.csv", encoding: .utf8)
        let rows = csv.split(separator: "\n")
        #expect(rows.first.map(String.init) == "segment,index,label,start,end,frames,score_mean")
        #expect(rows.dropFirst().map { $0.split(separator: ",")[1] } == ["286", "20", "653", "320"])
        #expect(rows.count == 5)
        let jsonl = try String(contentsOfFile: dir.path + "/slideshow_dev.jsonl", encoding: .utf8)
        #expect(jsonl.split(separator: "\n").filter { $0.contains("\"segment\":") }.count == 4)
    }

    @Test func segmentFlagsAreCheckedUpFront() throws {
        let a = try framepipe(["run", "--model", Self.model, "--segments", "--emit", "embedding", Self.slideshow])
        #expect(a.status == 2 && a.stderrText.contains("--segments"))
        let b = try framepipe(["run", "--model", Self.model, "--segment-min", "-1", Self.slideshow])
        #expect(b.status == 2 && b.stderrText.contains("--segment-min"))
    }
}

/// `--scene` against PySceneDetect's ContentDetector (the `scenedetect` package in the venv).
@Suite(.enabled(if: TestEnv.hasAssets && TestEnv.hasPython), .serialized)
struct SceneTests {
    /// The four shared videos, scaled to 320x240 at 25 fps and concatenated (682 frames; hard cuts
    /// between them, inside slideshow_dev.mp4 every 2 s, and inside bikes and bigbuckbunny).
    static func concatenatedClip() throws -> String {
        let dir = try TestEnv.tempDir("framepipe-scene")
        let out = dir.path + "/concat.mp4"
        let names = ["slideshow_dev.mp4", "bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"]
        let inputs = names.map { "-i '\(TestEnv.asset("videos/" + $0))'" }.joined(separator: " ")
        let chains = names.indices.map { "[\($0):v]scale=320:240,setsar=1,fps=25[v\($0)]" }.joined(separator: ";")
        let labels = names.indices.map { "[v\($0)]" }.joined()
        let r = try shell("ffmpeg -loglevel error -y \(inputs) -filter_complex '\(chains);\(labels)concat=n=4:v=1:a=0[v]' "
                          + "-map '[v]' -c:v libx264 -g 50 -pix_fmt yuv420p '\(out)'")
        try #require(r.status == 0, "ffmpeg: \(r.stderrText)")
        return out
    }

    @Test func sceneCutsAgreeWithPySceneDetect() throws {
        let clip = try Self.concatenatedClip()
        let py = try shell("'\(TestEnv.python)' -c 'from scenedetect import detect, ContentDetector; "
                           + "print(\" \".join(str(s[0].frame_num) for s in detect(\"\(clip)\", ContentDetector())))'")
        try #require(py.status == 0, "PySceneDetect (scripts/setup --deps installs scenedetect): \(py.stderrText)")
        let reference = py.stdoutText.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        #expect(reference.count >= 8, "PySceneDetect found \(reference)")
        // ContentDetector's default minimum scene length is 15 frames: 0.6 s at 25 fps.
        let r = try framepipe(["run", "--model", FeatureTests.model, "--quiet", "--top-k", "1",
                               "--scene", "0.3", "--scene-min-gap", "0.6", clip])
        #expect(r.status == 0, "\(r.stderrText)")
        let ours = try r.lines.map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["frame"] as! Int }
        #expect(ours.count == reference.count, "framepipe \(ours), PySceneDetect \(reference)")
        for (a, b) in zip(ours, reference) { #expect(abs(a - b) <= 1, "framepipe \(ours), PySceneDetect \(reference)") }
    }

    @Test func sceneFlagsAreCheckedUpFront() throws {
        let a = try framepipe(["run", "--model", FeatureTests.model, "--scene", "1.5", FeatureTests.slideshow])
        #expect(a.status == 2 && a.stderrText.contains("--scene"))
        let b = try framepipe(["run", "--model", FeatureTests.model, "--scene-min-gap", "1", FeatureTests.slideshow])
        #expect(b.status == 2 && b.stderrText.contains("--scene-min-gap"))
    }
}

/// `--pool`: the pooled record equals the mean (max) of the frame embeddings written beside it.
@Suite(.enabled(if: TestEnv.hasAssets), .serialized)
struct PoolTests {
    static let carphone = TestEnv.asset("videos/carphone_pristine.mp4")

    @Test func pooledRecordIsTheMeanAndMaxOfTheFrames() throws {
        for mode in ["mean", "max"] {
            let r = try framepipe(["run", "--model", FeatureTests.model, "--quiet", "--emit", "embedding",
                                   "--every", "10", "--pool", mode, Self.carphone])
            #expect(r.status == 0, "\(r.stderrText)")
            let objs = try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            #expect(objs.count == 13)  // 12 frames (120 / 10), then the pooled record
            let frames = objs.dropLast().map { ($0["embedding"] as! [Double]) }
            let pooled = try #require(objs.last)
            #expect(pooled["pooled"] as? String == mode && pooled["frames"] as? Int == 12)
            let got = try #require(pooled["embedding"] as? [Double])
            #expect(got.count == 1280)
            for i in 0..<1280 {
                let column = frames.map { $0[i] }
                let want = mode == "mean" ? column.reduce(0, +) / Double(column.count) : column.max()!
                if abs(got[i] - want) > 1e-4 * max(1, abs(want)) {
                    Issue.record("\(mode) element \(i): \(got[i]) != \(want)")
                    break
                }
            }
        }
    }

    @Test(.enabled(if: TestEnv.hasPython))
    func pooledNPYMatchesTheFrameNPY() throws {
        let dir = try TestEnv.tempDir()
        let r = try framepipe(["run", "--model", FeatureTests.model, "--quiet", "--emit", "both", "--every", "10",
                               "--pool", "mean", "--output-dir", dir.path, Self.carphone])
        #expect(r.status == 0, "\(r.stderrText)")
        let py = try shell("'\(TestEnv.python)' -c 'import numpy as n; f=n.load(\"\(dir.path)/carphone_pristine.npy\"); "
                           + "p=n.load(\"\(dir.path)/carphone_pristine.pooled.npy\"); print(f.shape, p.shape, "
                           + "float(n.abs(f.mean(0)-p[0]).max()))'")
        #expect(py.status == 0, "\(py.stderrText)")
        let parts = py.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(parts.hasPrefix("(12, 1280) (1, 1280) "), "\(parts)")
        #expect((Double(parts.split(separator: " ").last ?? "") ?? 1) < 1e-5, "\(parts)")
    }

    /// `--pool` with `--segments`: after each segment's record, its pooled record, equal to the
    /// mean of the embeddings of the frame records inside [start, end); the input's own pooled record
    /// last. With --output-dir, NAME.segments.npy holds those rows in segment order (numpy reads it).
    @Test func eachSegmentGetsThePoolOfItsFrames() throws {
        let r = try framepipe(["run", "--model", FeatureTests.model, "--quiet", "--emit", "both", "--top-k", "1",
                               "--segments", "--with-frames", "--pool", "mean", FeatureTests.slideshow])
        #expect(r.status == 0, "\(r.stderrText)")
        let objs = try r.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let frames = objs.filter { $0["frame"] != nil }
        let segments = objs.filter { $0["start"] != nil }
        let pooled = objs.filter { $0["pooled"] != nil && $0["segment"] != nil }
        #expect(frames.count == 200 && segments.count == 4 && pooled.count == 4)
        for (k, seg) in segments.enumerated() {
            let at = try #require(objs.firstIndex { $0["start"] != nil && $0["segment"] as? Int == k })
            let p = objs[at + 1]
            #expect(p["pooled"] as? String == "mean" && p["segment"] as? Int == k, "record after segment \(k): \(p.keys)")
            let start = seg["start"] as! Double, end = seg["end"] as! Double
            let inside = frames.filter { ($0["pts"] as! Double) >= start - 1e-6 && ($0["pts"] as! Double) < end - 1e-6 }
            #expect(inside.count == seg["frames"] as? Int && p["frames"] as? Int == inside.count)
            let got = try #require(p["embedding"] as? [Double])
            let rows = inside.map { $0["embedding"] as! [Double] }
            for i in 0..<1280 {
                let want = rows.map { $0[i] }.reduce(0, +) / Double(rows.count)
                if abs(got[i] - want) > 1e-4 * max(1, abs(want)) { Issue.record("segment \(k) element \(i): \(got[i]) != \(want)"); break }
            }
        }
        let last = try #require(objs.last)
        #expect(last["pooled"] as? String == "mean" && last["segment"] == nil && last["frames"] as? Int == 200)
    }

    @Test(.enabled(if: TestEnv.hasPython))
    func segmentsNPYHoldsOneRowPerSegment() throws {
        let dir = try TestEnv.tempDir()
        let r = try framepipe(["run", "--model", FeatureTests.model, "--quiet", "--emit", "both", "--segments",
                               "--pool", "max", "--output-dir", dir.path, FeatureTests.slideshow])
        #expect(r.status == 0, "\(r.stderrText)")
        let base = dir.path + "/slideshow_dev"
        // --segments alone: the .jsonl carries no frame records (as stdout), the .npy and .csv still do.
        let script = """
            import json, numpy as n
            lines = [json.loads(l) for l in open('\(base).jsonl')]
            assert not [l for l in lines if 'frame' in l], 'frame records in the jsonl'
            segs = [l for l in lines if 'start' in l]
            pooled = [l for l in lines if 'pooled' in l and 'segment' in l]
            f = n.load('\(base).npy'); s = n.load('\(base).segments.npy')
            assert f.shape == (200, 1280) and s.shape == (4, 1280), (f.shape, s.shape)
            for k, seg in enumerate(segs):
                a = round(seg['start'] * 25); b = round(seg['end'] * 25)
                assert n.array_equal(s[k], f[a:b].max(0)), k
                assert n.array_equal(n.array(pooled[k]['embedding'], dtype=n.float32), s[k]), k
            print('ok', len(segs))
            """
        let py = try runProcess(TestEnv.python, ["-c", script])
        #expect(py.status == 0, "\(py.stderrText)")
        #expect(py.stdoutText.hasPrefix("ok 4"), "\(py.stdoutText)")
        let csvRows = try String(contentsOfFile: base + ".csv", encoding: .utf8).split(separator: "\n").count
        #expect(csvRows == 201)
    }

    @Test func poolNeedsEmbeddings() throws {
        let r = try framepipe(["run", "--model", FeatureTests.model, "--pool", "mean", Self.carphone])
        #expect(r.status == 2 && r.stderrText.contains("--pool"))
    }
}
