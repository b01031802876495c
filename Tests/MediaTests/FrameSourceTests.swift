import Foundation
import Media
import Testing
import TestSupport

@Suite("FrameSource: decoding real media")
struct FrameSourceTests {
    @Test("frame count, pts and key flags equal ffprobe -show_frames", .enabled(if: TestEnv.hasAssets),
          arguments: Fixtures.videos)
    func matchesFFprobe(video: (name: String, frames: Int)) throws {
        let path = Fixtures.video(video.name)
        let reference = try Fixtures.ffprobeFrames(path)
        #expect(reference.count == video.frames, "ffprobe itself disagrees with the asset README")
        let (frames, stats) = try Fixtures.decodeMeta(path)
        #expect(frames.count == reference.count)
        #expect(frames.map(\.index) == Array(0..<frames.count))
        for (ours, theirs) in zip(frames, reference) {
            #expect(abs(ours.pts - theirs.pts) < 1e-9, "frame \(ours.index): pts \(ours.pts) vs ffprobe \(theirs.pts)")
            #expect(ours.keyframe == theirs.keyframe, "frame \(ours.index): keyframe flag")
        }
        #expect(stats.framesDecoded == video.frames && stats.framesKept == video.frames)
        #expect(stats.packetsRead == video.frames && stats.decodeErrors == 0)
    }

    @Test("1 and 4 decoder threads give the same frames", .enabled(if: TestEnv.hasAssets))
    func threadCountsAgree() throws {
        let path = Fixtures.video("bikes.mp4")
        let one = try Fixtures.decodeMeta(path, SourceOptions(decoderThreads: 1)).frames
        let four = try Fixtures.decodeMeta(path, SourceOptions(decoderThreads: 4)).frames
        #expect(one.count == 250)
        #expect(one.map(\.pts) == four.map(\.pts))
        #expect(one.map(\.keyframe) == four.map(\.keyframe))
    }

    @Test("stream info of an asset", .enabled(if: TestEnv.hasAssets))
    func streamInfo() throws {
        let source = try FrameSource(input: Fixtures.video("carphone_pristine.mp4"))
        #expect(source.stream.codec == "h264")
        #expect(source.stream.width == 176 && source.stream.height == 144)
        #expect(source.stream.pixelFormat == "yuv420p")
        #expect(source.stream.frameCount == 120)
        #expect(abs((source.stream.fps ?? 0) - 30000.0 / 1001.0) < 1e-9)
        #expect(source.stream.timeBase == Rational(num: 1, den: 30000))
        #expect(source.stream.rotation == 0)
    }

    @Test("probe lists video and audio streams", .enabled(if: TestEnv.hasAssets))
    func probeStreams() throws {
        let info = try ProbeInfo.probe(Fixtures.video("bigbuckbunny.mp4"))
        #expect(info.streams.map(\.type) == ["video", "audio"])
        #expect(info.bestVideoStream == 0)
        #expect(info.streams[0].frameCount == 132)
        #expect(info.streams[1].sampleRate == 48000)
    }

    @Test("--stream selects a stream; a non-video or missing stream is a clear error", .enabled(if: TestEnv.hasAssets))
    func streamSelection() throws {
        let path = Fixtures.video("bigbuckbunny.mp4")
        #expect(try Fixtures.decodeMeta(path, SourceOptions(streamIndex: 0)).frames.count == 132)
        let audio = #expect(throws: MediaError.self) { try FrameSource(input: path, options: SourceOptions(streamIndex: 1)) }
        #expect(audio?.description.contains("stream 1 is not a video stream") == true)
        let missing = #expect(throws: MediaError.self) { try FrameSource(input: path, options: SourceOptions(streamIndex: 7)) }
        #expect(missing?.input == path && missing?.description.hasPrefix("select stream: no stream 7") == true)
    }

    @Test("still images decode through the same source", .enabled(if: TestEnv.hasAssets),
          arguments: ["images/cat.bmp", "images/kite_and_cold.jpg"])
    func stillImage(name: String) throws {
        let (frames, _) = try Fixtures.decode(TestEnv.asset(name))
        #expect(frames.count == 1)
        #expect(frames.first.map { $0.width > 0 && $0.height > 0 } == true)
    }

    @Test("rotation from the display matrix is reported as ffmpeg's autorotate applies it")
    func rotationIsReported() throws {
        let dir = try TestEnv.tempDir("media-rotation")
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = dir.appendingPathComponent("plain.mp4").path, path = dir.appendingPathComponent("rot.mp4").path
        try Fixtures.run("ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 3 -c:v libx264 -pix_fmt yuv420p '\(plain)'")
        try Fixtures.run("ffmpeg -v error -y -i '\(plain)' -c copy -metadata:s:v:0 rotate=90 '\(path)'")
        // ffprobe prints av_display_rotation_get (counter-clockwise); ours is clockwise.
        let probed = try Fixtures.run("ffprobe -v error -select_streams v:0 -show_entries stream_side_data=rotation -of csv=p=0 '\(path)'")
        let ccw = try #require(Int(probed.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(ccw != 0)
        let source = try FrameSource(input: path)
        #expect(source.stream.rotation == ((-ccw % 360) + 360) % 360)
        #expect(try FrameSource(input: plain).stream.rotation == 0)
        // Decoded frames keep the stored orientation (TensorScaler turns them): still 64x48.
        let frame = try #require(try source.next())
        #expect(frame.width == 64 && frame.height == 48)
    }
}
