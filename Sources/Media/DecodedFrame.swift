import CFFmpeg

/// One decoded, kept frame. It owns an `AVFrame` reference (freed in `deinit`, `av_frame_free`),
/// so it can be given away from the decode stage to the scale stage without copying pixels.
public final class DecodedFrame: @unchecked Sendable {
    /// Position among all decoded frames of the stream (0-based), before sampling. Exact when the
    /// input was decoded from its beginning. After a `--start` seek the decoder starts at a key frame
    /// whose position is unknown, so the index of the first frame after the seek is estimated as
    /// `round((pts - stream start) * average fps)` and later frames count up from it: exact for
    /// constant-frame-rate streams, an estimate for variable frame rate. With key frames only, the
    /// other frames are never decoded: the index is the key packet's position in the stream (exact
    /// for closed GOPs, which is what H.264 IDR key frames are; after a seek, estimated as above).
    public let index: Int
    /// Presentation time in seconds: the frame's best-effort timestamp (its pts when present,
    /// else FFmpeg's guess) times the stream time base, as ffprobe's `pts_time` (not shifted by
    /// the stream's start time).
    public let pts: Double
    /// True for a key frame (`AVFrame.key_frame`).
    public let keyframe: Bool
    /// The frame's own duration in seconds: the duration of its packet (`AVFrame.pkt_duration`
    /// times the time base), else one interval of the stream's average (or base) frame rate; nil
    /// when neither is known. Stands for the last kept frame's span (`duration` in the records).
    public let frameDuration: Double?
    /// Live inputs only: when the frame was received, in seconds since the Unix epoch (UTC): the
    /// arrival of its packet, or the sender's clock when the stream carries it (RTSP, once an RTCP
    /// sender report has arrived). Nil for files.
    public let wall: Double?
    /// The input this frame came from (for error messages further down the pipeline).
    public let input: String
    /// Clockwise display rotation of the stream in degrees (0, 90, 180 or 270; other angles are
    /// reported as 0). Pixels are stored unrotated; `TensorScaler` applies it.
    public let rotation: Int
    /// The frame; owned by this object. Internal: users never touch FFmpeg types.
    let frame: UnsafeMutablePointer<AVFrame>

    /// Takes over the contents of `source` (`av_frame_move_ref`), leaving it blank for reuse.
    init(moving source: UnsafeMutablePointer<AVFrame>, index: Int, pts: Double, keyframe: Bool,
         input: String, rotation: Int, frameDuration: Double? = nil, wall: Double? = nil) {
        guard let f = av_frame_alloc() else { fatalError("av_frame_alloc: out of memory") }
        av_frame_move_ref(f, source)
        frame = f
        self.index = index
        self.pts = pts
        self.keyframe = keyframe
        self.frameDuration = frameDuration
        self.wall = wall
        self.input = input
        self.rotation = rotation % 90 == 0 ? rotation % 360 : 0
    }

    /// A frame made from packed RGB24 bytes (`width * height * 3`, rows top to bottom), for tests
    /// and synthetic inputs that have no file behind them (`av_frame_get_buffer`).
    public convenience init(rgb24 pixels: [UInt8], width: Int, height: Int, index: Int = 0, pts: Double = 0,
                            keyframe: Bool = true, input: String = "synthetic", rotation: Int = 0) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3, "need width*height*3 bytes")
        guard let tmp = av_frame_alloc() else { fatalError("av_frame_alloc: out of memory") }
        var owned: UnsafeMutablePointer<AVFrame>? = tmp
        defer { av_frame_free(&owned) }
        tmp.pointee.width = Int32(width)
        tmp.pointee.height = Int32(height)
        tmp.pointee.format = AV_PIX_FMT_RGB24.rawValue
        guard av_frame_get_buffer(tmp, 0) >= 0, let plane = tmp.pointee.data.0 else { fatalError("av_frame_get_buffer failed") }
        let stride = Int(tmp.pointee.linesize.0)
        pixels.withUnsafeBufferPointer { src in
            for y in 0..<height {
                (plane + y * stride).update(from: src.baseAddress! + y * width * 3, count: width * 3)
            }
        }
        self.init(moving: tmp, index: index, pts: pts, keyframe: keyframe, input: input, rotation: rotation)
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
    }

    /// Picture width in pixels.
    public var width: Int { Int(frame.pointee.width) }
    /// Picture height in pixels.
    public var height: Int { Int(frame.pointee.height) }
    /// Pixel format name, e.g. "yuv420p".
    public var pixelFormat: String {
        av_get_pix_fmt_name(AVPixelFormat(frame.pointee.format)).map { String(cString: $0) } ?? "unknown"
    }
    /// True when the decoder flagged this frame as damaged (`AV_FRAME_FLAG_CORRUPT` or `decode_error_flags`).
    public var isCorrupt: Bool {
        (frame.pointee.flags & AV_FRAME_FLAG_CORRUPT) != 0 || frame.pointee.decode_error_flags != 0
    }
}
