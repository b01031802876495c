import Foundation

/// A run of frames sharing one top-1 label (`--segments`): [start, end) in seconds of pts.
public struct LabelSegment: Sendable, Equatable {
    /// 0-based number of the segment within its input.
    public var number: Int
    /// Class index and name (when a labels list is known).
    public var index: Int
    public var label: String?
    /// First frame's pts, and the pts where the next segment starts (or, for the last one, the last
    /// frame's pts plus one frame interval).
    public var start: Double
    public var end: Double
    /// Frames inside [start, end), whatever their own top-1.
    public var frames: Int
    /// Mean top-1 score of the frames in the segment whose top-1 is the segment's label.
    public var scoreMean: Double
    /// With `--pool`: the segment's frames' embeddings pooled (nil: off, or no embeddings).
    public var pooled: PooledEmbedding?

    public init(number: Int, index: Int, label: String?, start: Double, end: Double, frames: Int, scoreMean: Double,
                pooled: PooledEmbedding? = nil) {
        self.number = number; self.index = index; self.label = label
        self.start = start; self.end = end; self.frames = frames; self.scoreMean = scoreMean
        self.pooled = pooled
    }
}

/// A pooled embedding (`--pool`): the mode, how many frame embeddings went into it, the values.
public struct PooledEmbedding: Sendable, Equatable {
    public var mode: PoolMode
    public var frames: Int
    public var values: [Float]

    public init(mode: PoolMode, frames: Int, values: [Float]) {
        self.mode = mode; self.frames = frames; self.values = values
    }
}

extension RecordEncoder {
    /// `{"v":1,"input":..,"segment":k,"label":..,"index":..,"start":s,"end":s,"frames":n,"score_mean":..}` + newline.
    public static func segmentLine(input: String, _ s: LabelSegment) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("v", outputSchemaVersion)
        w.field("input", input)
        w.field("segment", s.number)
        if let label = s.label { w.field("label", label) }
        w.field("index", s.index)
        w.field("start", FrameRecord.roundedPTS(s.start))
        w.field("end", FrameRecord.roundedPTS(s.end))
        w.field("frames", s.frames)
        w.field("score_mean", Float(s.scoreMean))
        return w.finishLine()
    }

    /// The segment's line, followed by its pooled embedding's line when it has one (`--pool`).
    public static func segmentLines(input: String, _ s: LabelSegment, encoding: EmbeddingEncoding) -> [UInt8] {
        var out = segmentLine(input: input, s)
        if let p = s.pooled {
            out += pooledLine(input: input, mode: p.mode, frames: p.frames, embedding: p.values, encoding: encoding,
                              segment: s.number)
        }
        return out
    }

    /// The columns of `NAME.segments.csv`.
    public static let segmentCSVHeader = ["segment", "index", "label", "start", "end", "frames", "score_mean"]

    /// One row of `NAME.segments.csv`.
    public static func segmentCSVFields(_ s: LabelSegment) -> [String] {
        [String(s.number), String(s.index), s.label ?? "", String(FrameRecord.roundedPTS(s.start)),
         String(FrameRecord.roundedPTS(s.end)), String(s.frames), String(Float(s.scoreMean))]
    }
}

/// How `--pool` combines an input's (or a segment's) frame embeddings.
public enum PoolMode: String, Sendable, CaseIterable, Equatable {
    case mean, max
}

extension RecordEncoder {
    /// `{"v":1,"input":..,"pooled":"mean","frames":n,"embedding":[..]}` (or `embedding_b64`) + newline;
    /// a segment's (`segment` set) carries `"segment":k` after `pooled`.
    public static func pooledLine(input: String, mode: PoolMode, frames: Int, embedding: [Float],
                                  encoding: EmbeddingEncoding, segment: Int? = nil) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("v", outputSchemaVersion)
        w.field("input", input)
        w.field("pooled", mode.rawValue)
        if let segment { w.field("segment", segment) }
        w.field("frames", frames)
        embedding.withUnsafeBufferPointer { e in
            switch encoding {
            case .json: w.field("embedding", floats: e)
            case .base64: w.field("embedding_b64", Data(buffer: e).base64EncodedString())
            }
        }
        return w.finishLine()
    }
}
