import Output

/// `--pool mean|max`: one video-level embedding per input from its frames' embeddings (element-wise
/// mean or max over every kept frame; per segment, `SegmentTracker` keeps one per run). Pure state, no threads: the emit stage owns one per input.
public struct EmbeddingPooler {
    public let mode: PoolMode
    public private(set) var frames = 0
    private var acc: [Float] = []

    public init(mode: PoolMode) { self.mode = mode }

    public mutating func add(_ e: UnsafeBufferPointer<Float>) {
        if acc.isEmpty {
            acc = Array(e)
        } else {
            precondition(acc.count == e.count, "embedding size changed within an input")
            switch mode {
            case .mean: for i in acc.indices { acc[i] += e[i] }
            case .max: for i in acc.indices where e[i] > acc[i] { acc[i] = e[i] }
            }
        }
        frames += 1
    }

    /// Folds in another pooler's frames (same mode): as if its frames had been added here.
    public mutating func merge(_ other: EmbeddingPooler) {
        precondition(other.mode == mode, "pooling modes differ")
        guard other.frames > 0 else { return }
        if frames == 0 {
            acc = other.acc
        } else {
            precondition(acc.count == other.acc.count, "embedding size changed within an input")
            switch mode {
            case .mean: for i in acc.indices { acc[i] += other.acc[i] }
            case .max: for i in acc.indices where other.acc[i] > acc[i] { acc[i] = other.acc[i] }
            }
        }
        frames += other.frames
    }

    /// The pooled embedding (nil before any frame).
    public var result: [Float]? {
        guard frames > 0 else { return nil }
        switch mode {
        case .mean: return acc.map { $0 / Float(frames) }
        case .max: return acc
        }
    }
}
