/// How a frame is fitted into the model's W x H input.
public enum ResizeMode: String, Sendable, CaseIterable, Codable {
    /// Scale the whole frame to W x H, ignoring aspect ratio.
    case stretch
    /// Scale so the frame covers W x H (shorter side fits), then crop the centre.
    case centerCrop = "center-crop"
    /// Scale so the frame fits inside W x H (longer side fits), then pad the borders.
    case letterbox
}

/// Which decoded frames a `FrameSource` keeps. Applied in this order: time window
/// (`start`/`end`), key frames, `fps`, then `every`.
public struct SamplingOptions: Sendable, Equatable {
    /// Keep the 1st, (N+1)th, (2N+1)th... of the frames that passed the other filters.
    public var every: Int = 1
    /// Keep at most F frames per second of presentation time, chosen by timestamp: the first frame
    /// at or after each tick `t0 + k/F` (t0 = pts of the first frame considered). Correct for
    /// variable frame rate, since only timestamps matter.
    public var fps: Double? = nil
    /// Decode key frames only: the decoder skips non-key frames (`skip_frame = AVDISCARD_NONKEY`)
    /// and non-key packets are never even sent to it.
    public var keyframesOnly = false
    /// Seconds: seek to the key frame before `start`, then drop frames with `pts < start`.
    public var start: Double? = nil
    /// Seconds: frames with `pts >= end` are dropped and reading stops at the first of them.
    public var end: Double? = nil
    /// Keep N frames evenly spaced over the input's duration (or over `start`..`end`): for target
    /// k = 0..<N at `lo + k * (hi - lo) / N`, the first frame with pts >= the target. A seekable
    /// input seeks to the key frame before each target (`av_seek_frame`, backward) and decodes
    /// forward from there; a pipe decodes everything and picks by pts. Needs a known duration (or
    /// `end`). At most N frames: a target no later than an already kept frame is skipped.
    /// Replaces `every`, `fps` and `keyframesOnly`.
    public var framesPerInput: Int? = nil

    /// Creates sampling options; the defaults keep every frame.
    public init(every: Int = 1, fps: Double? = nil, keyframesOnly: Bool = false,
                start: Double? = nil, end: Double? = nil, framesPerInput: Int? = nil) {
        self.every = every
        self.fps = fps
        self.keyframesOnly = keyframesOnly
        self.start = start
        self.end = end
        self.framesPerInput = framesPerInput
    }

    /// A problem with these options, or nil when they are usable.
    public var validationError: String? {
        if every < 1 { return "--every must be at least 1 (got \(every))" }
        if let fps, !(fps > 0 && fps.isFinite) { return "--fps must be a positive number (got \(fps))" }
        if let start, !(start >= 0 && start.isFinite) { return "--start must be >= 0 seconds (got \(start))" }
        if let end, !(end > 0 && end.isFinite) { return "--end must be > 0 seconds (got \(end))" }
        if let start, let end, !(start < end) { return "--start (\(start)) must be before --end (\(end))" }
        if let n = framesPerInput {
            if n < 1 { return "--frames-per-input must be at least 1 (got \(n))" }
            if every != 1 || fps != nil || keyframesOnly {
                return "--frames-per-input chooses the frames itself: it cannot be combined with --every, --fps or --keyframes"
            }
        }
        return nil
    }
}

/// How a `FrameSource` opens and decodes its input.
public struct SourceOptions: Sendable {
    /// The default `maxPixels`: 8192 x 8192.
    public static let defaultMaxPixels = 8192 * 8192
    /// The default `ioTimeout` in seconds.
    public static let defaultIOTimeout = 30.0

    /// The stream to decode (container stream index); nil picks the best video stream.
    public var streamIndex: Int? = nil
    /// Decoder threads (frame + slice threading); 0 lets FFmpeg choose.
    public var decoderThreads: Int = 0
    /// Which decoded frames are kept.
    public var sampling = SamplingOptions()
    /// Largest frame accepted, in pixels (width x height). Checked against the stream's header
    /// before the decoder is opened, and by the decoder itself (`AVCodecContext.max_pixels`) before
    /// it allocates any frame, so a header claiming 65535x65535 costs nothing.
    public var maxPixels: Int = SourceOptions.defaultMaxPixels
    /// Seconds that opening the input, and then each packet read, may take before the input fails
    /// (FFmpeg's interrupt callback; network protocols poll it, local files never block that long);
    /// nil: no limit.
    public var ioTimeout: Double? = SourceOptions.defaultIOTimeout
    /// Cancels opening and reading from outside (nil: only `FrameSource.cancel()`).
    public var cancellation: CancellationToken? = nil
    /// A live input: each frame comes out as soon as it is decoded. The decoder uses slice
    /// threads only (frame threads hold every frame back until threads-1 later packets arrive),
    /// and with `keyframesOnly` it is drained after each key frame (otherwise a key frame waits
    /// for the next ones: 1-3 GOPs, and the last ones until the end of the stream).
    public var lowDelay = false
    /// Stamp each frame with its receive time (`DecodedFrame.wall`): set for live inputs.
    public var wallClock = false

    /// Creates source options; everything is defaulted.
    public init(streamIndex: Int? = nil, decoderThreads: Int = 0, sampling: SamplingOptions = SamplingOptions(),
                maxPixels: Int = SourceOptions.defaultMaxPixels, ioTimeout: Double? = SourceOptions.defaultIOTimeout) {
        self.streamIndex = streamIndex
        self.decoderThreads = decoderThreads
        self.sampling = sampling
        self.maxPixels = maxPixels
        self.ioTimeout = ioTimeout
    }

    /// A problem with the limits, or nil when they are usable.
    public var limitsError: String? {
        if maxPixels < 1 { return "--max-pixels must be at least 1 (got \(maxPixels))" }
        if let t = ioTimeout, !(t > 0 && t.isFinite) { return "--io-timeout must be a positive number of seconds (got \(t))" }
        return nil
    }
}
