import Media

extension DecodedFrame: PipelineFrame {
    public var meta: FrameMeta { FrameMeta(index: index, pts: pts, keyframe: keyframe, frameDuration: frameDuration, wall: wall) }
}

/// `FrameSource` as the decode stage's `FrameReader`.
final class MediaReader: FrameReader {
    let source: FrameSource
    init(_ source: FrameSource) { self.source = source }
    func next() throws -> PipelineFrame? { try source.next() }
    func cancel() { source.cancel() }
    var framesDecoded: Int { source.stats.framesDecoded }
    var decodeErrors: Int { source.stats.decodeErrors }
    var duration: Double? { source.stream.duration }
}

/// `TensorScaler` as the scale stage's `SampleWriter`.
final class ScalerWriter: SampleWriter {
    let scaler: TensorScaler
    init(_ scaler: TensorScaler) { self.scaler = scaler }
    func write(_ frame: PipelineFrame, to slot: UnsafeMutablePointer<Float>) throws {
        // Frames reaching the scale stage of a media plan are always DecodedFrames.
        try scaler.write(frame as! DecodedFrame, to: slot)
    }
}
