import Testing
@testable import Pipeline

@Suite struct SceneFilterTests {
    /// A 3-plane sample of `n` floats per plane, all `v` (model units: pixel = v * std + mean).
    func sample(_ v: Float, n: Int = 64) -> [Float] { Array(repeating: v, count: 3 * n) }

    func keeps(_ frames: [[Float]], threshold: Double, minGap: Double = 0) -> [Int] {
        var f = SceneFilter(threshold: threshold, minGap: minGap, std: [127.5, 127.5, 127.5])
        return frames.enumerated().compactMap { i, s in
            s.withUnsafeBufferPointer { f.keep(sample: $0, pts: Double(i) * 0.04) } ? i : nil
        }
    }

    @Test func keepsTheFirstFrameAndCuts() {
        // Five still frames, a cut (pixel 0 -> 255), five still frames, a cut back.
        let frames = Array(repeating: sample(-1), count: 5) + Array(repeating: sample(1), count: 5) + [sample(-1)]
        #expect(keeps(frames, threshold: 0.4) == [0, 5, 10])
        #expect(keeps(frames, threshold: 0.4, minGap: 0.3) == [0, 10])  // 5 is only 0.2 s after 0
    }

    @Test func scoreIsFFmpegsSceneScale() {
        var f = SceneFilter(threshold: 0.5, std: [127.5, 127.5, 127.5])
        let a = sample(-1), b = sample(0)  // pixels 0 then 127.5: mafd 127.5 from a mafd of 0
        _ = a.withUnsafeBufferPointer { f.keep(sample: $0, pts: 0) }
        _ = a.withUnsafeBufferPointer { f.keep(sample: $0, pts: 0.04) }
        #expect(f.lastScore == 0)
        #expect(b.withUnsafeBufferPointer { f.keep(sample: $0, pts: 0.08) })
        #expect(f.lastScore == 1)  // min(127.5, 127.5) / 100, clamped
    }

    @Test func steadyChangeScoresLow() {
        // Each frame 20 pixel units brighter than the last: a large but constant difference (a pan).
        let frames = (0..<10).map { sample(-1 + Float($0) * 20 / 127.5) }
        var f = SceneFilter(threshold: 0.1, std: [127.5, 127.5, 127.5])
        var kept: [Int] = []
        for (i, s) in frames.enumerated() where s.withUnsafeBufferPointer({ f.keep(sample: $0, pts: Double(i)) }) {
            kept.append(i)
        }
        #expect(kept == [0, 1])  // only the start of the motion (mafd 20 after 0) scores 0.2
    }
}
