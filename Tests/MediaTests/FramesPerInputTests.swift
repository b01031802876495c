import Foundation
import Media
import Testing
import TestSupport

/// `SamplingOptions.framesPerInput` on a generated 10-minute long-GOP file: seeks instead of decoding it all.
@Suite("FrameSource: --frames-per-input", .serialized)
struct FramesPerInputTests {
    /// 600 s at 10 fps (6000 packets), one key frame every 100 frames (10 s), nothing else.
    static let gop = 10.0
    static let packets = 6000

    /// Generates the clip once per test (a few seconds with ultrafast at 160x120).
    static func longGOPClip(_ dir: URL, faststart: Bool = true) throws -> String {
        let path = dir.appendingPathComponent("long-gop.mp4").path
        try Fixtures.run("ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=10 -t 600 -c:v libx264 -preset ultrafast "
                         + "-g 100 -keyint_min 100 -sc_threshold 0 -pix_fmt yuv420p \(faststart ? "-movflags +faststart" : "") '\(path)'")
        return path
    }

    @Test("10 frames of a 10-minute file: evenly spaced pts, under 15% of its packets read")
    func seeksToEachTarget() throws {
        let dir = try TestEnv.tempDir("fpi-seek")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try Self.longGOPClip(dir)
        let probed = try Fixtures.ffprobeFrames(path)
        #expect(probed.count == Self.packets)
        var options = SourceOptions()
        options.sampling = SamplingOptions(framesPerInput: 10)
        let (frames, stats) = try Fixtures.decodeMeta(path, options)
        #expect(frames.count == 10)
        for (k, frame) in frames.enumerated() {
            let ideal = Double(k) * 60
            // The first frame at or after the target: within one frame (0.1 s), so well within one GOP.
            #expect(frame.pts >= ideal - 1e-6 && frame.pts < ideal + 0.1 + 1e-6, "frame \(k) at \(frame.pts) s, ideal \(ideal)")
            #expect(frame.pts - ideal < Self.gop)
            // Its index is the file's own frame index at that pts (estimated from the rate after a seek).
            #expect(abs(probed[frame.index].pts - frame.pts) < 1e-6)
        }
        #expect(stats.packetsRead < Self.packets * 15 / 100, "read \(stats.packetsRead) of \(Self.packets) packets")
        #expect(stats.packetsRead > 0)
    }

    @Test("without seeking (the same choice, decoding everything) the frames are the same")
    func sameFramesAsFullDecode() throws {
        let dir = try TestEnv.tempDir("fpi-full")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try Self.longGOPClip(dir)
        var options = SourceOptions()
        options.sampling = SamplingOptions(start: 30, end: 300, framesPerInput: 7)
        let seeking = try Fixtures.decodeMeta(path, options)
        // A FIFO cannot seek: the same targets picked from a full decode.
        let fifo = dir.appendingPathComponent("in.fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", "cat '\(path)' > '\(fifo)'"]
        try writer.run()
        defer { writer.terminate(); writer.waitUntilExit() }
        let piped = try Fixtures.decodeMeta(fifo, options)
        #expect(seeking.frames.count == 7)
        #expect(seeking.frames.map(\.pts) == piped.frames.map(\.pts))
        let ideal = (0..<7).map { 30 + Double($0) * 270 / 7 }
        for (frame, t) in zip(seeking.frames, ideal) { #expect(frame.pts >= t - 1e-6 && frame.pts < t + 0.1 + 1e-6) }
        // The pipe decodes every packet up to the last target (then stops); the file seeks past most of them.
        #expect(piped.stats.packetsRead >= Int(ideal.last! * 10))
        #expect(seeking.stats.packetsRead < piped.stats.packetsRead / 2)
    }

    @Test("options: at least 1, and not with --every, --fps or --keyframes")
    func validation() {
        #expect(SamplingOptions(framesPerInput: 0).validationError != nil)
        #expect(SamplingOptions(every: 2, framesPerInput: 3).validationError?.contains("--every") == true)
        #expect(SamplingOptions(fps: 1, framesPerInput: 3).validationError != nil)
        #expect(SamplingOptions(keyframesOnly: true, framesPerInput: 3).validationError != nil)
        #expect(SamplingOptions(start: 1, end: 2, framesPerInput: 3).validationError == nil)
    }
}
