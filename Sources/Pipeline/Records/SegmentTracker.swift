import Output

/// Collapses one input's per-frame top-1 labels into segments, with hysteresis: a new segment
/// starts only when a label has held top-1 for at least `minDuration` seconds; shorter runs of
/// another label (flicker) stay inside the current segment. Fed frames in pts order; returns a
/// segment as soon as it closes (streaming, so live inputs get segments while they run).
/// With a pool mode, each segment also carries its frames' embeddings pooled (`--pool` with
/// `--segments`): the same frames as its `frames` count. Pure state, no threads: the emit stage
/// owns one per input.
public struct SegmentTracker {
    /// Seconds a label must hold top-1 before it opens a segment.
    public let minDuration: Double
    /// `--pool` per segment (nil: off).
    public let pool: PoolMode?

    private struct Run {
        var index: Int
        var label: String?
        var start: Double
        var frames = 0
        var scoreSum = 0.0
        var scored = 0
        var pooler: EmbeddingPooler?

        /// Counts one frame in (and pools its embedding, if any).
        mutating func take(_ embedding: UnsafeBufferPointer<Float>?) {
            frames += 1
            if let embedding, !embedding.isEmpty { pooler?.add(embedding) }
        }

        /// Takes over `other`'s frames (a flicker absorbed into this run).
        mutating func absorb(_ other: Run) {
            frames += other.frames
            if let o = other.pooler { pooler?.merge(o) }
        }
    }

    private var current: Run?
    private var candidate: Run?
    private var lastPts: Double?
    private var step: Double?
    private var count = 0

    public init(minDuration: Double, pool: PoolMode? = nil) { self.minDuration = max(0, minDuration); self.pool = pool }

    /// One frame: its pts, its top-1 label (nil when none passed `--min-score`) and, for pooling,
    /// its embedding. Returns the segment this frame closed, if any.
    public mutating func add(pts: Double, top: LabelScore?, embedding: UnsafeBufferPointer<Float>? = nil) -> LabelSegment? {
        if let last = lastPts, pts > last { step = pts - last }
        lastPts = pts
        guard let top else {
            // No label: the frame belongs to whatever is running.
            if candidate != nil { candidate!.take(embedding) } else if current != nil { current!.take(embedding) }
            return nil
        }
        if current?.index == top.index {
            absorbCandidate()
            current!.take(embedding)
            current!.scoreSum += Double(top.score)
            current!.scored += 1
            return nil
        }
        if candidate?.index != top.index {
            absorbCandidate()
            candidate = Run(index: top.index, label: top.label, start: pts, pooler: pool.map { EmbeddingPooler(mode: $0) })
        }
        candidate!.take(embedding)
        candidate!.scoreSum += Double(top.score)
        candidate!.scored += 1
        // The run covers [start, pts + one frame interval).
        guard pts + (step ?? 0) - candidate!.start >= minDuration - 1e-9 else { return nil }
        let closed = current.map { segment($0, end: candidate!.start) }
        current = candidate
        candidate = nil
        return closed
    }

    /// End of input: the open segment, ending one frame interval after the last frame (a run that
    /// never reached `minDuration`, e.g. in a very short input, is still reported).
    public mutating func finish() -> LabelSegment? {
        if current == nil { current = candidate; candidate = nil }
        absorbCandidate()
        guard let run = current, let last = lastPts else { return nil }
        current = nil
        return segment(run, end: last + (step ?? 0))
    }

    private mutating func absorbCandidate() {
        guard let c = candidate else { return }
        candidate = nil
        if current != nil { current!.absorb(c) }
    }

    private mutating func segment(_ r: Run, end: Double) -> LabelSegment {
        defer { count += 1 }
        let pooled = r.pooler.flatMap { p in p.result.map { PooledEmbedding(mode: p.mode, frames: p.frames, values: $0) } }
        return LabelSegment(number: count, index: r.index, label: r.label, start: r.start, end: end,
                            frames: r.frames, scoreMean: r.scored > 0 ? r.scoreSum / Double(r.scored) : 0, pooled: pooled)
    }
}
