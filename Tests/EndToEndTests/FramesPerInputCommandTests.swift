import Foundation
import Testing
import TestSupport

@Suite("CLI: --frames-per-input")
struct FramesPerInputCommandTests {
    static func pts(_ result: ProcessResult) throws -> [Double] {
        try result.lines.map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try #require(object["pts"] as? Double)
        }
    }

    @Test("a file and stdin both give 10 evenly spaced frames; clashing flags exit 2")
    func fileAndStdin() throws {
        let dir = try TestEnv.tempDir("e2e-fpi")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("long.mp4").path
        // 10 minutes, 10 fps, one key frame every 10 s; the index first so that a pipe can read it.
        try shell("ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=10 -t 600 -c:v libx264 -preset ultrafast "
                  + "-g 100 -sc_threshold 0 -pix_fmt yuv420p -movflags +faststart '\(path)'")
        let fromFile = try framepipe(["frames", path, "--frames-per-input", "10"])
        let fromPipe = try shell("cat '\(path)' | '\(TestEnv.framepipe)' frames - --frames-per-input 10")
        #expect(fromFile.status == 0 && fromPipe.status == 0, "\(fromFile.stderrText) \(fromPipe.stderrText)")
        let ideal = (0..<10).map { Double($0) * 60 }
        for result in [fromFile, fromPipe] {
            let got = try Self.pts(result)
            #expect(got.count == 10)
            for (p, t) in zip(got, ideal) { #expect(p >= t && p < t + 0.1 + 1e-6, "pts \(p), ideal \(t)") }
        }
        // A raw H.264 stream on a pipe states no duration: a clear error, unless --end says where to stop.
        let raw = dir.appendingPathComponent("short.h264").path
        try shell("ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=10 -t 5 -c:v libx264 -preset ultrafast '\(raw)'")
        let noDuration = try shell("cat '\(raw)' | '\(TestEnv.framepipe)' frames - --frames-per-input 4")
        #expect(noDuration.status != 0 && noDuration.status != 2)
        #expect(noDuration.stderrText.contains("duration"), "\(noDuration.stderrText)")
        let withEnd = try shell("cat '\(raw)' | '\(TestEnv.framepipe)' frames - --frames-per-input 4 --end 1.6")
        #expect(withEnd.status == 0, "\(withEnd.stderrText)")
        #expect(try Self.pts(withEnd).count == 4)
        for flags in [["--every", "2"], ["--fps", "1"], ["--keyframes"], ["--frames-per-input", "0"]] {
            let clash = try framepipe(["frames", path, "--frames-per-input", "3"] + flags)
            #expect(clash.status == 2, "\(flags): \(clash.stderrText)")
            #expect(clash.stderrText.contains("--frames-per-input"), "\(flags): \(clash.stderrText)")
        }
        let scene = try framepipe(["run", path, "--frames-per-input", "3", "--scene", "0.4"])
        #expect(scene.status == 2 && scene.stderrText.contains("--scene"), "\(scene.stderrText)")
    }
}
