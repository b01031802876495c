import Output

/// Where a kept frame sits in its input: what every output record carries.
public struct FrameMeta: Sendable, Equatable {
    /// Index among all decoded frames of the stream (before sampling).
    public var index: Int
    /// Presentation time in seconds.
    public var pts: Double
    public var keyframe: Bool
    /// The frame's own duration in seconds (from its packet, else the frame rate), when known:
    /// the span of an input's last kept frame.
    public var frameDuration: Double?
    /// Live inputs: when the frame was received (seconds since the Unix epoch, UTC); nil for files.
    public var wall: Double?

    public init(index: Int, pts: Double, keyframe: Bool, frameDuration: Double? = nil, wall: Double? = nil) {
        self.index = index; self.pts = pts; self.keyframe = keyframe
        self.frameDuration = frameDuration; self.wall = wall
    }
}

/// A decoded frame travelling from the decode stage to the scale stage (given away, not shared).
public protocol PipelineFrame: AnyObject {
    var meta: FrameMeta { get }
}

/// The decode side of one input: yields kept frames in order. Used from one thread only,
/// except `cancel()`, which any thread may call to make a blocked `next()` return soon.
public protocol FrameReader: AnyObject {
    /// The next kept frame, nil at end of stream; throws when the input cannot be read further.
    func next() throws -> PipelineFrame?
    /// Asks a blocked read to give up.
    func cancel()
    /// Frames decoded so far (kept or not).
    var framesDecoded: Int { get }
    /// Damaged packets/frames skipped so far (not fatal).
    var decodeErrors: Int { get }
    /// The input's duration in seconds when known (for progress and ETA).
    var duration: Double? { get }
}

/// Turns a frame into one model-input sample (C*H*W floats, NCHW) written into a batch slot.
/// One per scale stage; used from that stage's thread only.
public protocol SampleWriter: AnyObject {
    func write(_ frame: PipelineFrame, to slot: UnsafeMutablePointer<Float>) throws
}

/// Runs the model on a batch. Used from the infer stage's thread only.
public protocol BatchRunner: AnyObject {
    /// Floats per input sample (C*H*W).
    var sampleSize: Int { get }
    /// Floats per embedding (0 when the model has none).
    var embeddingDim: Int { get }
    /// Number of logits (0 when the model has none).
    var classCount: Int { get }
    /// Largest batch `run` accepts.
    var maxBatch: Int { get }
    /// Runs `count` samples; writes `count*embeddingDim` embeddings and `count*classCount` logits.
    func run(input: UnsafePointer<Float>, count: Int,
             embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws
}

/// One input to process: how to open it and where its per-input files go.
public struct InputPlan {
    /// The name as given by the user (path, `-` or URL); tags every output line.
    public var name: String
    /// Opens the input (on the decode stage's thread).
    public var openReader: () throws -> FrameReader
    /// Makes the input's scaler (on the scale stage's thread).
    public var makeWriter: () throws -> SampleWriter
    /// Makes the input's file sink, or nil to write only to stdout.
    public var makeSink: (() throws -> FrameSink)?
    /// Called when the input is cancelled, also while `openReader` may still be blocked in an open
    /// (a silent server): lets the reader-to-be give up at once.
    public var cancelOpen: (() -> Void)?
    /// Makes the input's frame filter (on the scale stage's thread), run on each scaled sample
    /// before it joins a batch; nil: every frame is kept.
    public var makeFilter: (() -> SampleFilter)?
    /// Makes the input's result processors (on its output thread), applied in order between
    /// labelling and the sink; empty: results go straight to the sink.
    public var makeProcessors: (() -> [ResultProcessor])?
    /// Live input: decoded frames are dropped (oldest first) rather than blocking decoding.
    public var live: Bool

    public init(name: String, live: Bool = false, openReader: @escaping () throws -> FrameReader,
                makeWriter: @escaping () throws -> SampleWriter, makeSink: (() throws -> FrameSink)? = nil) {
        self.name = name; self.live = live
        self.openReader = openReader; self.makeWriter = makeWriter; self.makeSink = makeSink
    }
}
