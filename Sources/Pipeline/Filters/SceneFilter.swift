/// `--scene T`: keeps the first frame and each frame where the scene changes, judged on the frame
/// as already scaled for the model (so it costs one pass over ~150k floats, no extra decode).
///
/// The score follows FFmpeg's `scene` (libavfilter `select`): the mean absolute difference to the
/// previous decoded frame in 0...255 pixel units (`mafd`), then `min(mafd, |mafd - previous mafd|) / 100`
/// clamped to 0...1, so a steady pan (large but constant difference) scores low and a cut scores
/// high. A frame is kept when its score is at least `threshold` and at least `minGap` seconds have
/// passed since the last kept frame. Pure state, no threads: one per input, on the scale stage.
public struct SceneFilter {
    public let threshold: Double
    public let minGap: Double
    /// Per channel (NCHW planes): the model's std, turning a sample difference back into pixel units.
    private let pixelScale: [Float]
    private var previous: [Float] = []
    private var previousMAFD: Double?
    private var lastKept: Double?
    /// The last frame's score (for tests and logs).
    public private(set) var lastScore = 0.0

    /// - Parameter std: the model's per-channel std on 0...255 pixels (3 values, RGB planes).
    public init(threshold: Double, minGap: Double = 0, std: [Float]) {
        self.threshold = threshold; self.minGap = minGap; self.pixelScale = std
    }

    /// Whether to keep the frame whose model sample is `sample` (C*H*W floats, planar).
    public mutating func keep(sample: UnsafeBufferPointer<Float>, pts: Double) -> Bool {
        defer { previous.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: sample) } }
        guard previous.count == sample.count, !sample.isEmpty else {
            previous = Array(repeating: 0, count: sample.count)
            previousMAFD = nil
            lastScore = 1
            lastKept = pts
            return true
        }
        let planes = max(1, pixelScale.count)
        let plane = sample.count / planes
        var total = 0.0
        previous.withUnsafeBufferPointer { prev in
            for c in 0..<planes {
                var sum: Float = 0
                let lo = c * plane, hi = c == planes - 1 ? sample.count : lo + plane
                for i in lo..<hi { sum += abs(sample[i] - prev[i]) }
                total += Double(sum) * Double(pixelScale.isEmpty ? 1 : pixelScale[c])
            }
        }
        let mafd = total / Double(sample.count)
        let diff = abs(mafd - (previousMAFD ?? 0))  // FFmpeg starts from 0 too
        previousMAFD = mafd
        lastScore = min(1, max(0, min(mafd, diff) / 100))
        guard lastScore >= threshold else { return false }
        if let last = lastKept, pts - last < minGap { return false }
        lastKept = pts
        return true
    }
}

/// `SceneFilter` as an input's `SampleFilter` (one per input, on its scale thread).
final class SceneSampleFilter: SampleFilter {
    private var filter: SceneFilter
    init(_ filter: SceneFilter) { self.filter = filter }
    func keep(_ sample: UnsafeBufferPointer<Float>, meta: FrameMeta) -> Bool {
        filter.keep(sample: sample, pts: meta.pts)
    }
}

extension InputPlan {
    /// Keeps only this input's scene changes (and its first frame): a `SceneFilter` per run of the
    /// plan, on its scale stage. `std` is the model's, turning sample differences into pixel units.
    public mutating func sampleScenes(threshold: Double, minGap: Double, std: [Float]) {
        makeFilter = { SceneSampleFilter(SceneFilter(threshold: threshold, minGap: minGap, std: std)) }
    }
}
