import CFFmpeg

/// A rational number as FFmpeg stores time bases and frame rates.
public struct Rational: Sendable, Codable, Equatable, CustomStringConvertible {
    public var num: Int
    public var den: Int
    public init(num: Int, den: Int) { self.num = num; self.den = den }
    init(_ q: AVRational) { self.init(num: Int(q.num), den: Int(q.den)) }
    /// The value as a Double, or nil when the denominator or numerator is 0 (FFmpeg's "unknown").
    public var value: Double? { num == 0 || den == 0 ? nil : Double(num) / Double(den) }
    public var description: String { "\(num)/\(den)" }
}

/// One stream of a container, as `framepipe probe` prints it.
public struct StreamInfo: Sendable, Codable, Equatable {
    /// Container stream index (what `--stream` takes).
    public var index: Int
    /// "video", "audio", "subtitle", "data", "attachment" or "unknown".
    public var type: String
    /// Codec short name (`avcodec_get_name`), e.g. "h264".
    public var codec: String
    /// True when this FFmpeg build has a decoder for the codec.
    public var decodable: Bool
    /// Coded picture size; nil for streams without pictures (audio, data) and when unknown
    /// (0), so `probe` shows no size for an audio stream.
    public var width: Int?
    public var height: Int?
    /// Pixel format name, e.g. "yuv420p" (nil when unknown or not video).
    public var pixelFormat: String?
    /// Average frame rate (`avg_frame_rate`), nil when unknown.
    public var fps: Double?
    /// Base frame rate guessed by FFmpeg (`r_frame_rate`), nil when unknown.
    public var baseFPS: Double?
    /// The stream's time base: pts values are multiples of it.
    public var timeBase: Rational
    /// Start time in seconds, nil when unknown.
    public var startTime: Double?
    /// Duration in seconds (stream's own, else the container's), nil when unknown.
    public var duration: Double?
    /// Number of frames the container lists (`nb_frames`), nil when it does not say.
    public var frameCount: Int?
    /// Display rotation in degrees clockwise (0, 90, 180, 270...), from the display-matrix side data:
    /// the turn ffmpeg's autorotate applies. Decoded frames keep their stored orientation;
    /// `TensorScaler` applies the turn (multiples of 90°) when it fills the model input.
    public var rotation: Int
    /// Sample aspect ratio ("1:1" for square pixels), nil when unknown.
    public var sampleAspectRatio: Rational?
    /// Bit rate in bits/s, nil when unknown.
    public var bitRate: Int?
    /// Audio only: sample rate and channel count.
    public var sampleRate: Int?
    public var channels: Int?

    /// Reads the description of `stream` (an open container's stream).
    init(stream: UnsafeMutablePointer<AVStream>, container: UnsafeMutablePointer<AVFormatContext>) {
        let st = stream.pointee
        let par = st.codecpar.pointee
        index = Int(st.index)
        switch par.codec_type {
        case AVMEDIA_TYPE_VIDEO: type = "video"
        case AVMEDIA_TYPE_AUDIO: type = "audio"
        case AVMEDIA_TYPE_SUBTITLE: type = "subtitle"
        case AVMEDIA_TYPE_DATA: type = "data"
        case AVMEDIA_TYPE_ATTACHMENT: type = "attachment"
        default: type = "unknown"
        }
        codec = String(cString: avcodec_get_name(par.codec_id))
        decodable = avcodec_find_decoder(par.codec_id) != nil
        let pictures = par.codec_type == AVMEDIA_TYPE_VIDEO || par.codec_type == AVMEDIA_TYPE_SUBTITLE
        width = pictures && par.width > 0 ? Int(par.width) : nil
        height = pictures && par.height > 0 ? Int(par.height) : nil
        if par.codec_type == AVMEDIA_TYPE_VIDEO, par.format >= 0, let name = av_get_pix_fmt_name(AVPixelFormat(par.format)) {
            pixelFormat = String(cString: name)
        } else {
            pixelFormat = nil
        }
        fps = Rational(st.avg_frame_rate).value
        baseFPS = Rational(st.r_frame_rate).value
        timeBase = Rational(st.time_base)
        let tb = Rational(st.time_base).value ?? 0
        startTime = st.start_time == FFCode.noPTS ? nil : Double(st.start_time) * tb
        if st.duration != FFCode.noPTS && st.duration > 0 {
            duration = Double(st.duration) * tb
        } else if container.pointee.duration != FFCode.noPTS && container.pointee.duration > 0 {
            duration = Double(container.pointee.duration) / Double(fp_time_base())
        } else {
            duration = nil
        }
        frameCount = st.nb_frames > 0 ? Int(st.nb_frames) : nil
        rotation = StreamInfo.rotation(of: stream)
        let sar = Rational(par.sample_aspect_ratio)
        sampleAspectRatio = sar.value == nil ? nil : sar
        bitRate = par.bit_rate > 0 ? Int(par.bit_rate) : nil
        if par.codec_type == AVMEDIA_TYPE_AUDIO {
            sampleRate = par.sample_rate > 0 ? Int(par.sample_rate) : nil
            channels = par.ch_layout.nb_channels > 0 ? Int(par.ch_layout.nb_channels) : nil
        } else {
            sampleRate = nil
            channels = nil
        }
    }

    /// Clockwise display rotation from the stream's display matrix (`av_stream_get_side_data`,
    /// `av_display_rotation_get`, which returns the counter-clockwise angle).
    static func rotation(of stream: UnsafeMutablePointer<AVStream>) -> Int {
        guard let data = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, nil) else { return 0 }
        let angle = data.withMemoryRebound(to: Int32.self, capacity: 9) { av_display_rotation_get($0) }
        guard angle.isFinite else { return 0 }
        let clockwise = Int((-angle).rounded()) % 360
        return clockwise < 0 ? clockwise + 360 : clockwise
    }
}

/// What `framepipe probe` reports about one input: the container and all its streams.
public struct ProbeInfo: Sendable, Codable, Equatable {
    /// The input as given.
    public var input: String
    /// Container format short name(s), e.g. "mov,mp4,m4a,3gp,3g2,mj2".
    public var format: String
    /// Container duration in seconds, nil when unknown.
    public var duration: Double?
    /// Container bit rate in bits/s, nil when unknown.
    public var bitRate: Int?
    /// The stream the frame source would pick by default (`av_find_best_stream`), nil when none.
    public var bestVideoStream: Int?
    /// Every stream of the container.
    public var streams: [StreamInfo]

    /// Opens `input` (path, `-` for stdin, or URL) and describes it (`avformat_open_input`,
    /// `avformat_find_stream_info`), under the same protocol policy as `FrameSource`; opening must
    /// finish within `timeout` seconds (nil: no limit). Throws a `MediaError` naming the input when
    /// it cannot be read.
    public static func probe(_ input: String, timeout: Double? = SourceOptions.defaultIOTimeout) throws -> ProbeInfo {
        let container = try FormatContext(input: input, timeout: timeout)
        let ctx = container.ctx
        var streams: [StreamInfo] = []
        for i in 0..<Int(ctx.pointee.nb_streams) {
            streams.append(StreamInfo(stream: ctx.pointee.streams[i]!, container: ctx))
        }
        let best = av_find_best_stream(ctx, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        return ProbeInfo(
            input: input,
            format: ctx.pointee.iformat.map { String(cString: $0.pointee.name) } ?? "unknown",
            duration: ctx.pointee.duration > 0 && ctx.pointee.duration != FFCode.noPTS
                ? Double(ctx.pointee.duration) / Double(fp_time_base()) : nil,
            bitRate: ctx.pointee.bit_rate > 0 ? Int(ctx.pointee.bit_rate) : nil,
            bestVideoStream: best >= 0 ? Int(best) : nil,
            streams: streams)
    }
}
