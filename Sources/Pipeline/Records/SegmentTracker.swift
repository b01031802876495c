import Output

/// Collapses one input's per-frame top-1 labels into segments, with hysteresis: a new segment
/// starts only when a label has held top-1 for at least `minDuration` seconds; shorter runs of
/// another label (flicker) stay inside the current segment. Fed frames in pts order; returns a
/// segment as soon as it closes (streaming, so live inputs get segments while they run).
/// Pure state, no threads: the emit stage owns one per input.
public struct SegmentTracker {
    /// Seconds a label must hold top-1 before it opens a segment.
    public let minDuration: Double

    private struct Run {
        var index: Int
        var label: String?
        var start: Double
        var frames = 0
        var scoreSum = 0.0
        var scored = 0
    }

    private var current: Run?
    private var candidate: Run?
    private var lastPts: Double?
    private var step: Double?
    private var count = 0

    public init(minDuration: Double) { self.minDuration = max(0, minDuration) }

    /// One frame: its pts and its top-1 label (nil when none passed `--min-score`). Returns the
    /// segment this frame closed, if any.
    public mutating func add(pts: Double, top: LabelScore?) -> LabelSegment? {
        if let last = lastPts, pts > last { step = pts - last }
        lastPts = pts
        guard let top else {
            // No label: the frame belongs to whatever is running.
            if candidate != nil { candidate!.frames += 1 } else if current != nil { current!.frames += 1 }
            return nil
        }
        if current?.index == top.index {
            absorbCandidate()
            current!.frames += 1
            current!.scoreSum += Double(top.score)
            current!.scored += 1
            return nil
        }
        if candidate?.index != top.index {
            absorbCandidate()
            candidate = Run(index: top.index, label: top.label, start: pts)
        }
        candidate!.frames += 1
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
        if current != nil { current!.frames += c.frames } else { candidate = nil }
    }

    private mutating func segment(_ r: Run, end: Double) -> LabelSegment {
        defer { count += 1 }
        return LabelSegment(number: count, index: r.index, label: r.label, start: r.start, end: end,
                            frames: r.frames, scoreMean: r.scored > 0 ? r.scoreSum / Double(r.scored) : 0)
    }
}
