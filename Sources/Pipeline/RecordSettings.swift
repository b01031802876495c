import Output

/// Label segments and pooled embeddings, one type for the command line (`--segments`,
/// `--segment-min`, `--with-frames`, `--pool`) and the service config (`[output]`: `segments`,
/// `segment_min`, `with_frames`, `pool`), checked by the same rules (`SettingRules`).
public struct RecordSettings: Sendable, Equatable {
    /// Collapse top-1 labels into segments. `--segments`, `output.segments`.
    public var segments = false
    /// Seconds a label must hold top-1 to open a segment. `--segment-min`, `output.segment_min`.
    public var segmentMin = 0.5
    /// With `segments`: frame records too, interleaved. `--with-frames`, `output.with_frames`.
    public var withFrames = false
    /// One pooled embedding per input (and per segment with `segments`). `--pool`, `output.pool`.
    public var pool: PoolMode?

    public init() {}

    /// Checks every field and how they go together; `labels` and `embeddings` say what the
    /// records carry (`--emit`, `output.emit`). Throws the first `SettingError`.
    public func validate(labels: Bool, embeddings: Bool) throws {
        try SettingRules.segmentMin.validate(segmentMin)
        try SettingRules.checkRecords(segments: segments, withFrames: withFrames, pool: pool != nil,
                                      labels: labels, embeddings: embeddings)
    }

    /// Sets the pipeline's segment and pooling options.
    public func apply(to options: inout PipelineOptions) {
        options.pool = pool
        options.segmentMin = segments ? segmentMin : nil
        options.frameLines = !segments || withFrames
    }
}

extension SamplingSettings {
    /// Sets the pipeline's scene sampling from `scene`/`sceneMinGap` (`std`: the model's, so the
    /// score is in pixel units).
    public func applyScene(to options: inout PipelineOptions, std: [Float]) {
        options.scene = scene.map { ($0, sceneMinGap, std) }
    }
}
