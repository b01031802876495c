import Foundation
import Media
import Testing
import TestSupport

/// One frame as ffprobe reports it.
struct ProbedFrame: Equatable {
    var pts: Double
    var keyframe: Bool
}

/// Reference data from the FFmpeg command-line tools (which we did not write) and generated clips.
enum Fixtures {
    /// The shared asset videos and their documented frame counts.
    static let videos: [(name: String, frames: Int)] = [
        ("bigbuckbunny.mp4", 132), ("bikes.mp4", 250), ("carphone_pristine.mp4", 120), ("slideshow_dev.mp4", 200),
    ]

    static func video(_ name: String) -> String { TestEnv.asset("videos/\(name)") }

    /// Runs a shell command and fails the test (throws) when it exits non-zero.
    @discardableResult
    static func run(_ command: String) throws -> ProcessResult {
        let result = try shell(command)
        guard result.status == 0 && !result.timedOut else {
            throw FixtureError("`\(command)` failed (\(result.status)): \(result.stderrText)")
        }
        return result
    }

    /// Every frame of the first video stream, in presentation order, from `ffprobe -show_frames`
    /// (best-effort timestamp times the stream time base, as framepipe defines pts).
    static func ffprobeFrames(_ path: String) throws -> [ProbedFrame] {
        let out = try run("ffprobe -v error -select_streams v:0 -show_entries stream=time_base:frame=best_effort_timestamp,key_frame -of json '\(path)'")
        let json = try #require(try JSONSerialization.jsonObject(with: out.stdout) as? [String: Any])
        let streams = try #require(json["streams"] as? [[String: Any]])
        let tbText = try #require(streams.first?["time_base"] as? String)
        let parts = tbText.split(separator: "/").compactMap { Double($0) }
        let tb = parts[0] / parts[1]
        let frames = try #require(json["frames"] as? [[String: Any]])
        return try frames.map { f in
            let ts = try #require(f["best_effort_timestamp"] as? Int)
            return ProbedFrame(pts: Double(ts) * tb, keyframe: (f["key_frame"] as? Int) == 1)
        }
    }

    /// Decodes `path` with a FrameSource and returns (index, pts, keyframe) of each kept frame.
    static func decode(_ path: String, _ options: SourceOptions = .init()) throws -> (frames: [DecodedFrame], stats: SourceStats) {
        let source = try FrameSource(input: path, options: options)
        var frames: [DecodedFrame] = []
        while let f = try source.next() { frames.append(f) }
        return (frames, source.stats)
    }

    /// Like `decode` but only the metadata, so the pictures are freed as we go.
    static func decodeMeta(_ path: String, _ options: SourceOptions = .init()) throws -> (frames: [(index: Int, pts: Double, keyframe: Bool)], stats: SourceStats) {
        let source = try FrameSource(input: path, options: options)
        var frames: [(index: Int, pts: Double, keyframe: Bool)] = []
        while let f = try source.next() { frames.append((f.index, f.pts, f.keyframe)) }
        return (frames, source.stats)
    }

    /// A variable-frame-rate clip: 2 s at 10 fps, then 2 s at 30 fps, then 1 s at 5 fps
    /// (concatenated segments in one MKV, timestamps kept), made with lavfi testsrc.
    static func makeVFRClip(in dir: URL) throws -> String {
        let out = dir.appendingPathComponent("vfr.mkv").path
        let d = dir.path
        try run("""
            cd '\(d)' && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=10:duration=2 -c:v libx264 -g 5 -pix_fmt yuv420p a.mkv && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=30:duration=2 -c:v libx264 -g 5 -pix_fmt yuv420p b.mkv && \
            ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=5:duration=1 -c:v libx264 -g 5 -pix_fmt yuv420p c.mkv && \
            printf "file a.mkv\\nfile b.mkv\\nfile c.mkv\\n" > list.txt && \
            ffmpeg -v error -y -f concat -safe 0 -i list.txt -c copy '\(out)'
            """)
        return out
    }

    /// A constant-rate clip with a known GOP: `frames` frames at 25 fps, a key frame every `gop` frames.
    static func makeGOPClip(in dir: URL, frames: Int = 100, gop: Int = 10) throws -> String {
        let out = dir.appendingPathComponent("gop\(gop).mp4").path
        try run("ffmpeg -v error -y -f lavfi -i testsrc=size=128x96:rate=25 -frames:v \(frames) -c:v libx264 -g \(gop) -keyint_min \(gop) -sc_threshold 0 -pix_fmt yuv420p '\(out)'")
        return out
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
