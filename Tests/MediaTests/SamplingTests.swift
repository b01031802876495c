import Foundation
import Media
import Testing
import TestSupport

@Suite("FrameSampler: decisions without media")
struct FrameSamplerTests {
    static func run(_ options: SamplingOptions, _ frames: [(Double, Bool)]) -> [FrameSampler.Decision] {
        var sampler = FrameSampler(options: options)
        return frames.map { sampler.decide(pts: $0.0, keyframe: $0.1) }
    }

    @Test func everyKeepsFirstOfEachGroup() {
        let frames = (0..<7).map { (Double($0) * 0.04, false) }
        #expect(Self.run(.init(every: 3), frames) == [.keep, .drop, .drop, .keep, .drop, .drop, .keep])
    }

    @Test func fpsFollowsTimestampsNotFrameCounts() {
        // 4 frames in the first 0.1 s, then one every 0.25 s: at 4 fps keep the first frame per 0.25 s tick.
        let pts = [0.0, 0.03, 0.06, 0.09, 0.25, 0.5, 0.75, 0.76, 1.0]
        let got = Self.run(.init(fps: 4), pts.map { ($0, false) })
        #expect(got == [.keep, .drop, .drop, .drop, .keep, .keep, .keep, .drop, .keep])
    }

    @Test func windowIsHalfOpenAndStops() {
        let frames = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5].map { ($0, true) }
        #expect(Self.run(.init(start: 0.5, end: 2.0), frames) == [.drop, .keep, .keep, .keep, .stop, .stop])
    }

    @Test func keyframesOnlyDropsOthers() {
        let frames = [(0.0, true), (0.1, false), (0.2, true)]
        #expect(Self.run(.init(keyframesOnly: true), frames) == [.keep, .drop, .keep])
    }

    @Test func everyCountsOnlyFramesThatPassedTheOtherFilters() {
        let frames = [(0.0, true), (0.1, false), (0.2, true), (0.3, false), (0.4, true)]
        #expect(Self.run(.init(every: 2, keyframesOnly: true), frames) == [.keep, .drop, .drop, .drop, .keep])
    }

    @Test func validation() {
        #expect(SamplingOptions(every: 0).validationError != nil)
        #expect(SamplingOptions(fps: 0).validationError != nil)
        #expect(SamplingOptions(fps: -Double.infinity).validationError != nil)
        #expect(SamplingOptions(start: 3, end: 2).validationError != nil)
        #expect(SamplingOptions(start: -1).validationError != nil)
        #expect(SamplingOptions(every: 2, fps: 5, keyframesOnly: true, start: 1, end: 2).validationError == nil)
    }
}

@Suite("FrameSource: sampling on real and generated clips")
struct SourceSamplingTests {
    @Test("--every N keeps indices 0, N, 2N...", .enabled(if: TestEnv.hasAssets))
    func every() throws {
        let (frames, stats) = try Fixtures.decodeMeta(Fixtures.video("bikes.mp4"), SourceOptions(sampling: .init(every: 3)))
        #expect(frames.map(\.index) == Array(stride(from: 0, to: 250, by: 3)))
        #expect(stats.framesDecoded == 250 && stats.framesKept == 84)
    }

    @Test("--fps chooses by timestamp on a variable-frame-rate clip")
    func fpsOnVariableFrameRate() throws {
        let dir = try TestEnv.tempDir("media-vfr")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = try Fixtures.makeVFRClip(in: dir)
        let all = try Fixtures.ffprobeFrames(clip)
        #expect(all.count == 85)  // 20 at 10 fps, 60 at 30 fps, 5 at 5 fps

        let ten = try Fixtures.decodeMeta(clip, SourceOptions(sampling: .init(fps: 10))).frames
        // All of the 10 fps part, every third frame of the 30 fps part, all of the 5 fps part.
        #expect(ten.count == 20 + 20 + 5)
        let middle = ten.filter { $0.pts >= 2 && $0.pts < 4 }
        #expect(middle.map(\.index) == Array(stride(from: 20, to: 80, by: 3)))
        // Never two kept frames in the same 1/10 s.
        for (a, b) in zip(ten, ten.dropFirst()) { #expect(b.pts - a.pts > 0.099) }

        let two = try Fixtures.decodeMeta(clip, SourceOptions(sampling: .init(fps: 2))).frames
        // The first frame at or after each 0.5 s tick (the 5 fps part has 4.4 and 4.6, no 4.5).
        #expect(two.map { Int(($0.pts * 1000).rounded()) } == [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4600])
        // Kept pts are real frame pts from ffprobe.
        for f in two { #expect(all.contains { abs($0.pts - f.pts) < 1e-9 }) }
    }

    @Test("--keyframes gives exactly ffprobe's key frames and never decodes the others")
    func keyframes() throws {
        let dir = try TestEnv.tempDir("media-gop")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = try Fixtures.makeGOPClip(in: dir, frames: 100, gop: 10)
        let expected = try Fixtures.ffprobeFrames(clip).filter(\.keyframe)
        #expect(expected.count == 10)
        let (frames, stats) = try Fixtures.decodeMeta(clip, SourceOptions(sampling: .init(keyframesOnly: true)))
        #expect(frames.map(\.pts) == expected.map(\.pts))
        #expect(frames.allSatisfy { $0.keyframe })
        #expect(frames.map(\.index) == Array(stride(from: 0, to: 100, by: 10)))
        // The decoder only ever saw the key packets: the speed-up is real, not a filter afterwards.
        #expect(stats.packetsRead == 100)
        #expect(stats.packetsDecoded == 10)
        #expect(stats.framesDecoded == 10)
    }

    @Test("--start/--end keep exactly the frames with start <= pts < end", .enabled(if: TestEnv.hasAssets),
          arguments: [(2.0, 4.0), (0.0, 1.0), (7.3, 20.0)])
    func window(start: Double, end: Double) throws {
        let path = Fixtures.video("bikes.mp4")
        let reference = try Fixtures.ffprobeFrames(path)
        let expected = reference.indices.filter { reference[$0].pts >= start && reference[$0].pts < end }
        let (frames, stats) = try Fixtures.decodeMeta(path, SourceOptions(sampling: .init(start: start, end: end)))
        #expect(frames.map(\.pts) == expected.map { reference[$0].pts })
        // bikes.mp4 is constant 25 fps, so the post-seek index estimate is exact.
        #expect(frames.map(\.index) == expected)
        if start > 1 { #expect(stats.framesDecoded < expected.last! + 1, "seek skipped the early frames") }
        if end < 10 { #expect(stats.packetsRead < 250, "reading stopped after --end") }
    }

    @Test("sampling flags combine: window, then fps, then every", .enabled(if: TestEnv.hasAssets))
    func combined() throws {
        let frames = try Fixtures.decodeMeta(Fixtures.video("bikes.mp4"),
                                             SourceOptions(sampling: .init(every: 2, fps: 5, start: 1, end: 3))).frames
        // 5 fps over [1, 3) of a 25 fps clip = frames 25, 30, ..., 70; every 2nd of those.
        #expect(frames.map(\.index) == [25, 35, 45, 55, 65])
    }
}
