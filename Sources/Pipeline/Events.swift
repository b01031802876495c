import Foundation
import Output

/// Settings of a pipeline run.
public struct PipelineOptions: Sendable {
    /// Frames per model call; the last batch of an input may be smaller.
    public var batchSize = 16
    /// Decoded frames that may wait for the scaler, shared by the inputs running at once: each
    /// gets `frameLinkCapacity(concurrentInputs:)` of them, so memory does not grow with `jobs`.
    public var frameLinkCapacity = 8
    /// Batch buffers of the inference service (not multiplied by inputs: one pool per service).
    public var batchesPerJob = 3
    /// Inputs processed at once.
    public var jobs = 1
    /// A partial batch goes out once its first frame has waited this long (seconds), for every
    /// input; files rarely see it (batches fill first), live streams do.
    public var maxLatency: Double = 0.5
    /// How the service fills batches.
    public var policy: BatchPolicy = .throughput
    /// What each record carries.
    public var emit = EmitOptions()
    public var topK = 5
    public var minScore: Float = 0
    /// Class names in output order (nil: indices only).
    public var labelNames: [String]?
    /// `--segments`: collapse top-1 labels into segments that need this many seconds to open (nil: off).
    public var segmentMin: Double?
    /// Frame records on stdout (false with `--segments` alone: only segment records).
    public var frameLines = true
    /// `--pool`: one pooled embedding per input, as its own record (nil: off).
    public var pool: PoolMode?
    /// `--scene`: keep only scene changes (and the first frame), judged on the scaled sample (nil: off).
    public var scene: (threshold: Double, minGap: Double, std: [Float])?

    public init() {}

    /// One input's share of the decoded-frame budget when `n` inputs run at once: an equal part
    /// of `frameLinkCapacity`, never below 2 (one frame being scaled while the next is decoded).
    /// A 720p frame is 1.4 MB, and each input's decoder holds its own reference frames besides,
    /// so a fixed per-input depth made 8 inputs cost 1.8x the memory of one.
    public func frameLinkCapacity(concurrentInputs n: Int) -> Int {
        max(2, frameLinkCapacity / max(1, n))
    }

    /// Decoder threads for each of `n` inputs decoding at once on `cores` CPUs when the user left
    /// it to us (`requested` 0). One input: 0 (FFmpeg's choice, frame threads on every core).
    /// Several: the cores divided among them, at least 1 each; FFmpeg's choice there would give
    /// every input cores+1 frame threads, each holding decoded frames of its own, for no speed
    /// (the inputs already keep every core busy).
    public static func decoderThreads(requested: Int, concurrentInputs n: Int, cores: Int) -> Int {
        guard requested == 0, n > 1 else { return requested }
        return max(1, cores / n)
    }
}

/// How the inference service decides what goes into a batch and when it leaves.
public enum BatchPolicy: String, Sendable, CaseIterable {
    /// Fill batches: a batch leaves when full, when its first frame reaches the latency cap, or
    /// when no input is left that could add to it. Slots go to inputs in request order.
    case throughput
    /// Earliest frame first: slots go to the frame decoded earliest, and a batch leaves as soon as
    /// the model is idle, however full.
    case latency
}

/// How an input's stream of frames ended: travels in-band after its last frame.
public enum InputEnd: Sendable, Equatable {
    /// Every frame was read.
    case completed
    /// Stopped early for this reason (damaged data, a model or sink failure).
    case failed(String)
    /// The run was cancelled.
    case cancelled

    var error: String? {
        switch self {
        case .completed: nil
        case .failed(let m): m
        case .cancelled: "cancelled"
        }
    }
}

/// One frame through the model: where it sits in its input and what the model said.
public struct FrameResult: Sendable {
    public var meta: FrameMeta
    public var labels: [LabelScore]
    /// The embedding (empty when the model has none).
    public var embedding: [Float]

    public init(meta: FrameMeta, labels: [LabelScore], embedding: [Float]) {
        self.meta = meta; self.labels = labels; self.embedding = embedding
    }
}

/// What the inference service hands an input's output stage, in frame order.
public enum InputEvent: Sendable {
    /// A labelled frame.
    case frame(FrameResult)
    /// The live input's frame link dropped this many frames (oldest first) before the next one.
    case gap(dropped: Int)
    /// Something failed for this input (e.g. the model on a batch holding its frames); frames
    /// that follow are not written, and the input ends failed.
    case error(String)
    /// The end of the input; nothing follows.
    case end(InputEnd)
}

/// How one input ended.
public struct InputOutcome: Sendable {
    public var name: String
    public var framesDecoded = 0
    public var framesEmitted = 0
    public var decodeErrors = 0
    public var framesDropped = 0
    /// Why the input stopped early (nil: it completed).
    public var error: String?
    /// Files written for it (final names), if any.
    public var files: [String] = []

    public init(name: String, error: String? = nil) { self.name = name; self.error = error }
}

/// What a finished run reports.
public struct PipelineReport: Sendable {
    public var inputs: [InputOutcome]
    /// (stage, items, busy seconds) in pipeline order.
    public var stages: [(name: String, items: Int, busy: Double)]
    public var wallSeconds: Double
    /// True when stdout's reader went away (e.g. `| head`): the run stopped early, quietly.
    public var outputClosed: Bool
    /// True when `cancel()` stopped the run.
    public var cancelled: Bool
    /// Batches run for this run's inputs, and how many of them held frames of more than one input.
    public var batches: Int
    public var mixedBatches: Int
    public var failedInputs: Int { inputs.filter { $0.error != nil }.count }
}

/// A point-in-time view for progress lines.
public struct PipelineProgress: Sendable {
    public var framesEmitted: Int
    public var elapsed: Double
    /// Sum of known input durations and the latest emitted pts per input, for an ETA.
    public var knownDuration: Double?
    public var emittedMediaTime: Double
}

/// A per-input, in-order step between labelling and the sinks: sees every frame of one input in
/// frame order on the input's output thread, may hold frames back (lookahead) and emit them, or
/// extra results, later; `finish` runs at the end of the input and emits what it still holds.
/// (The hook for label segments, pooled embeddings, per-frame durations.)
public protocol ResultProcessor: AnyObject {
    func process(_ result: FrameResult, emit: (FrameResult) throws -> Void) throws
    func finish(_ end: InputEnd, emit: (FrameResult) throws -> Void) throws
}

/// A per-input step after scaling that may drop a frame, looking at the scaled sample (the hook
/// for scene-change sampling). Runs on the input's scale thread.
public protocol SampleFilter: AnyObject {
    /// True to keep the frame.
    func keep(_ sample: UnsafeBufferPointer<Float>, meta: FrameMeta) -> Bool
}
