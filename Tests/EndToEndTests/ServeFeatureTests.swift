import Foundation
import Testing
import TestSupport

/// Issue 15's settings in the service config: `[output]` `segments`, `segment_min`, `with_frames`,
/// `pool` and `[sampling]` `scene`, `scene_min_gap`, each working end to end on an inbox file (the
/// same files as `run` with the same flags writes), and each bad value refused naming its key.
@Suite(.serialized, .enabled(if: TestEnv.hasAssets)) struct ServeFeatureTests {
    static let slideshow = TestEnv.asset("videos/slideshow_dev.mp4")
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")
    static let labels = TestEnv.asset("models/imagenet_labels.txt")

    /// `run` on the slideshow with `flags`, into a fresh folder; returns the folder.
    func runReference(_ flags: [String]) throws -> String {
        let dir = try TestEnv.tempDir()
        let r = try framepipe(["run", "--model", Self.model, "--labels", Self.labels, "--batch", "8", "--quiet",
                               "--output-dir", dir.path] + flags + [Self.slideshow], timeout: 300)
        try #require(r.status == 0, "\(r.stderrText)")
        return dir.path
    }

    /// CSV rows as fields, keeping only `columns`.
    func csv(_ path: String, columns: [Int]) -> [[String]] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { row in
            let f = row.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            return columns.map { $0 < f.count ? f[$0] : "" }
        }
    }

    @Test func segmentPoolSceneKeysWorkOnInboxFiles() throws {
        let h = try ServeHarness()
        defer { h.cleanup() }
        // 1: segments with frame records and pooling (per input and per segment).
        try h.writeConfig(h.config(topK: 1, output: """
            emit = ["labels", "embedding"]
            segments = true
            segment_min = 0.5
            with_frames = true
            pool = "mean"
            """))
        try h.start()
        #expect(h.waitReady(), "no READY=1; log:\n\(h.log)")
        try h.drop(Self.slideshow, as: "a.mp4")
        #expect(eventually(timeout: 180) { h.exists(h.inbox + "/done/a.mp4") }, "log:\n\(h.log)")
        let a = jsonLines(h.outbox + "/a.jsonl")
        #expect(a.filter { $0["frame"] != nil }.count == 200)  // with_frames
        #expect(a.filter { $0["start"] != nil }.map { $0["index"] as? Int } == [286, 20, 653, 320])
        #expect(a.filter { $0["pooled"] != nil && $0["segment"] != nil }.count == 4)
        #expect(a.last?["pooled"] as? String == "mean" && a.last?["frames"] as? Int == 200)
        #expect(h.list(h.outbox).filter { $0.hasPrefix("a.") } == [
            "a.csv", "a.jsonl", "a.manifest.json", "a.npy", "a.pooled.npy", "a.segments.csv", "a.segments.npy"])
        let manifest = try String(contentsOfFile: h.outbox + "/a.manifest.json", encoding: .utf8)
        #expect(manifest.contains("\"a.segments.npy\"") && manifest.contains("\"a.pooled.npy\""), "\(manifest)")
        let ref1 = try runReference(["--top-k", "1", "--emit", "both", "--segments", "--with-frames", "--pool", "mean"])
        let segColumns = [0, 1, 2, 3, 4, 5]  // segment, index, label, start, end, frames
        #expect(csv(h.outbox + "/a.segments.csv", columns: segColumns) == csv(ref1 + "/slideshow_dev.segments.csv", columns: segColumns))

        // 2: a longer segment_min, scene sampling, no frame records beside the segments.
        try h.writeConfig(h.config(topK: 1, output: """
            emit = ["labels"]
            segments = true
            segment_min = 3
            """, streams: """
            [sampling]
            scene = 0.3
            scene_min_gap = 0.6

            """))
        h.signal(SIGHUP)
        #expect(eventually(timeout: 60) { h.log.contains("configuration reloaded") }, "log:\n\(h.log)")
        try h.drop(Self.slideshow, as: "b.mp4")
        #expect(eventually(timeout: 180) { h.exists(h.inbox + "/done/b.mp4") }, "log:\n\(h.log)")
        let b = jsonLines(h.outbox + "/b.jsonl")
        #expect(!b.isEmpty && b.allSatisfy { $0["frame"] == nil && $0["start"] != nil }, "\(b)")
        let ref2 = try runReference(["--top-k", "1", "--segments", "--segment-min", "3", "--scene", "0.3", "--scene-min-gap", "0.6"])
        // The frames the scene rule kept (frame, top-1 index), and the segments over them.
        let kept = csv(h.outbox + "/b.csv", columns: [0, 3])
        #expect(kept.count > 2 && kept.count < 201, "\(kept)")
        #expect(kept == csv(ref2 + "/slideshow_dev.csv", columns: [0, 3]))
        #expect(csv(h.outbox + "/b.segments.csv", columns: segColumns) == csv(ref2 + "/slideshow_dev.segments.csv", columns: segColumns))

        h.signal(SIGTERM)
        #expect(h.waitExit(timeout: 30)?.status == 0, "log:\n\(h.log)")
    }

    /// (table, TOML line(s), what the error says): each names its key as the config spells it.
    static let bad: [(String, String, String)] = [
        ("output", "segments = \"yes\"", "`output.segments`"),
        ("output", "segments = true\nsegment_min = -1", "`output.segment_min` must be in 0...86400 s (got -1)"),
        ("output", "with_frames = true", "`output.with_frames` goes with `output.segments`"),
        ("output", "segments = true\nemit = [\"embedding\"]", "`output.segments` needs labels: `output.emit` must include labels"),
        ("output", "pool = \"median\"", "`output.pool` must be one of mean, max (got median)"),
        ("output", "pool = \"mean\"", "`output.pool` needs embeddings: `output.emit` must include embedding"),
        ("sampling", "scene = 1.5", "`sampling.scene` must be in 0...1 (got 1.5)"),
        ("sampling", "scene_min_gap = 1", "`sampling.scene_min_gap` goes with `sampling.scene`"),
        ("sampling", "scene = 0.4\nscene_min_gap = -2", "`sampling.scene_min_gap` must be in 0...86400 s (got -2)"),
        ("sampling", "scene = 0.4\nframes_per_input = 3", "`sampling.scene` and `sampling.frames_per_input` both choose the frames"),
    ]

    @Test(arguments: Array(0..<bad.count))
    func badValueNamesItsKey(index: Int) throws {
        let (table, lines, message) = Self.bad[index]
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("framepipe.toml").path
        try "inbox = \"\(dir.path)/in\"\noutbox = \"\(dir.path)/out\"\n[\(table)]\n\(lines)\n".write(toFile: path, atomically: true, encoding: .utf8)
        let serve = try framepipe(["serve", "--config", path, "--check-config"])
        #expect(serve.status == 78, "\(lines): status \(serve.status)")
        #expect(serve.stderrText.contains(path + ": ") && serve.stderrText.contains(message), "\(serve.stderrText)")
    }
}
