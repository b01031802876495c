import Foundation

/// Output schema version, carried as `"v"` in every JSON line. Bump on incompatible change.
public let outputSchemaVersion = 1

/// One label with its probability.
public struct LabelScore: Sendable, Equatable {
    /// Class index in the model's output.
    public var index: Int
    /// Human-readable name, when a labels list is known.
    public var label: String?
    /// Softmax probability.
    public var score: Float

    public init(index: Int, label: String?, score: Float) {
        self.index = index; self.label = label; self.score = score
    }
}

/// How embeddings are written into JSON lines.
public enum EmbeddingEncoding: String, Sendable, CaseIterable {
    /// A JSON array of numbers (`"embedding": [0.1, ...]`).
    case json
    /// float32 little-endian bytes in base64 (`"embedding_b64": "..."`).
    case base64
}

/// What each frame's record carries.
public struct EmitOptions: Sendable, Equatable {
    public var labels: Bool
    public var embedding: Bool
    public var embeddingEncoding: EmbeddingEncoding

    public init(labels: Bool = true, embedding: Bool = false, embeddingEncoding: EmbeddingEncoding = .json) {
        self.labels = labels; self.embedding = embedding; self.embeddingEncoding = embeddingEncoding
    }
}

/// One kept frame's result, as handed to the sinks. The embedding points into a batch buffer that is
/// valid only during the `write` call.
public struct FrameRecord {
    public var input: String
    public var frame: Int
    public var pts: Double
    public var keyframe: Bool
    public var labels: [LabelScore]
    public var embedding: UnsafeBufferPointer<Float>?
    /// Seconds this record stands for: to the next kept frame's pts (the input's last kept frame:
    /// its own frame duration). Nil when unknown (then not written).
    public var duration: Double?
    /// Live inputs: when the frame was received, seconds since the Unix epoch (UTC); nil for files.
    public var wall: Double?

    /// `pts` and `duration` are kept rounded to microseconds (`FrameRecord.roundedPTS`), as every
    /// output shows them; `wall` too.
    public init(input: String, frame: Int, pts: Double, keyframe: Bool,
                labels: [LabelScore], embedding: UnsafeBufferPointer<Float>?,
                duration: Double? = nil, wall: Double? = nil) {
        self.input = input; self.frame = frame; self.pts = FrameRecord.roundedPTS(pts); self.keyframe = keyframe
        self.labels = labels; self.embedding = embedding
        self.duration = duration.map(FrameRecord.roundedPTS)
        self.wall = wall.map(FrameRecord.roundedWall)
    }
}

extension FrameRecord {
    /// A presentation time in seconds rounded to the microsecond, so that it prints (shortest
    /// round-trip form) as `4.52`, not `4.5200000000000005` (the product of a tick count and a
    /// time base that binary floating point cannot hold exactly). Every time base in practice is
    /// coarser than 1 µs except 1/90000-style clocks, whose ticks this keeps apart (11.1 µs each).
    /// Non-finite values are returned as they are (JSON writes them as null).
    public static func roundedPTS(_ seconds: Double) -> Double {
        guard seconds.isFinite, abs(seconds) < 9e9 else { return seconds }
        let rounded = (seconds * 1_000_000).rounded() / 1_000_000
        return rounded == 0 ? 0 : rounded  // no "-0.0"
    }

    /// A wall-clock time (seconds since the epoch, ~1.8e9) rounded to the microsecond: a Double
    /// holds such values to ~0.2 µs, so the rounded value prints with at most 6 decimals.
    public static func roundedWall(_ seconds: Double) -> Double {
        guard seconds.isFinite, abs(seconds) < 1e11 else { return seconds }
        return (seconds * 1_000_000).rounded() / 1_000_000
    }
}

/// Encodes records as JSON lines (schema in README.md, "Output").
public enum RecordEncoder {
    /// `{"v":1,"input":..,"frame":..,"pts":..,"duration":..,"wall":..,"keyframe":..,"labels":[..],"embedding":[..]}`
    /// + newline (`duration` when known, `wall` on live inputs).
    public static func frameLine(_ r: FrameRecord, options: EmitOptions, reusing buffer: [UInt8] = []) -> [UInt8] {
        var w = JSONObjectWriter(reusing: buffer)
        w.field("v", outputSchemaVersion)
        w.field("input", r.input)
        w.field("frame", r.frame)
        w.field("pts", r.pts)
        if let d = r.duration { w.field("duration", d) }
        if let t = r.wall { w.field("wall", t) }
        w.field("keyframe", r.keyframe)
        if options.labels {
            w.field("labels", rawJSON: labelsJSON(r.labels))
        }
        if options.embedding, let e = r.embedding {
            switch options.embeddingEncoding {
            case .json:
                w.field("embedding", floats: e)
            case .base64:
                w.field("embedding_b64", Data(buffer: e).base64EncodedString())
            }
        }
        return w.finishLine()
    }

    /// `[{"index":286,"label":"Egyptian cat","score":0.78}, ...]`
    public static func labelsJSON(_ labels: [LabelScore]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (i, l) in labels.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            var w = JSONObjectWriter()
            w.field("index", l.index)
            if let name = l.label { w.field("label", name) }
            w.field("score", l.score)
            var line = w.finishLine()
            line.removeLast()  // newline
            out.append(contentsOf: line)
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    /// The record written when an input fails: `{"v":1,"input":..,"error":..,"frames":N}`.
    public static func errorLine(input: String, message: String, framesEmitted: Int) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("v", outputSchemaVersion)
        w.field("input", input)
        w.field("error", message)
        w.field("frames", framesEmitted)
        return w.finishLine()
    }
}
