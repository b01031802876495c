/// The sampling decision for each decoded frame, in presentation order. Pure logic (no FFmpeg), so it
/// is tested without media. Order: time window, key frames, fps, every (see `SamplingOptions`).
public struct FrameSampler: Sendable {
    /// What to do with one decoded frame.
    public enum Decision: Sendable, Equatable {
        /// Give the frame to the caller.
        case keep
        /// Skip this frame and continue.
        case drop
        /// The frame is at or past `end`: stop reading the input.
        case stop
    }

    /// The options being applied.
    public let options: SamplingOptions
    private var firstTickTime: Double?
    private var lastKeptTick: Double?
    private var candidates = 0

    /// Creates a sampler for `options`.
    public init(options: SamplingOptions) {
        precondition(options.validationError == nil, "invalid sampling options: \(options.validationError!)")
        self.options = options
    }

    /// Decides for a frame with presentation time `pts` (seconds) and key-frame flag `keyframe`.
    public mutating func decide(pts: Double, keyframe: Bool) -> Decision {
        if let end = options.end, pts >= end { return .stop }
        if let start = options.start, pts < start { return .drop }
        if options.keyframesOnly && !keyframe { return .drop }
        if let fps = options.fps {
            // Tick k covers [t0 + k/F, t0 + (k+1)/F); keep the first frame that lands in each tick.
            // The tiny epsilon absorbs rounding of timestamps that sit exactly on a tick.
            let t0 = firstTickTime ?? pts
            firstTickTime = t0
            let tick = ((pts - t0) * fps + 1e-6).rounded(.down)
            if let last = lastKeptTick, tick <= last { return .drop }
            lastKeptTick = tick
        }
        defer { candidates += 1 }
        return candidates % options.every == 0 ? .keep : .drop
    }
}
