import CFFmpeg

/// Owns a video decoder (`AVCodecContext`) and drives FFmpeg's send/receive state machine.
final class VideoDecoder {
    /// What `avcodec_receive_frame` reported: EAGAIN and EOF are states, not errors.
    enum Receive {
        /// A frame was written into the caller's frame.
        case frame
        /// The decoder wants another packet (AVERROR(EAGAIN)).
        case needsInput
        /// Fully drained after a flush (AVERROR_EOF).
        case endOfStream
        /// A decoding error (the code); the caller counts it and carries on.
        case error(Int32)
    }

    let ctx: UnsafeMutablePointer<AVCodecContext>
    let input: String

    /// Opens a decoder for `stream` (`avcodec_find_decoder`, `avcodec_parameters_to_context`,
    /// `avcodec_open2`) with frame+slice threading (slice only for `lowDelay`: frame threading delays
    /// output by threads-1 packets), `max_pixels`, and, for `keyframesOnly`, `skip_frame = AVDISCARD_NONKEY`.
    init(stream: UnsafeMutablePointer<AVStream>, threads: Int, keyframesOnly: Bool, maxPixels: Int, lowDelay: Bool = false,
         input: String) throws {
        self.input = input
        let par = stream.pointee.codecpar!
        let streamName = "stream \(stream.pointee.index)"
        guard let codec = avcodec_find_decoder(par.pointee.codec_id) else {
            let id = par.pointee.codec_id
            let what = id == AV_CODEC_ID_NONE ? "the codec is unknown to FFmpeg"
                : "no decoder for codec '\(String(cString: avcodec_get_name(id)))' in this FFmpeg build"
            throw MediaError(input: input, operation: "open decoder", message: "\(streamName): \(what)")
        }
        guard let c = avcodec_alloc_context3(codec) else {
            throw MediaError(input: input, operation: "open decoder", code: fp_averror(ENOMEM))
        }
        ctx = c
        try ff(avcodec_parameters_to_context(ctx, par), "open decoder (\(streamName))", input: input)
        ctx.pointee.pkt_timebase = stream.pointee.time_base
        ctx.pointee.thread_count = Int32(clamping: threads)
        ctx.pointee.thread_type = lowDelay ? FF_THREAD_SLICE : FF_THREAD_FRAME | FF_THREAD_SLICE
        if keyframesOnly { ctx.pointee.skip_frame = AVDISCARD_NONKEY }
        // Checked by FFmpeg (av_image_check_size2) before any frame buffer is allocated.
        ctx.pointee.max_pixels = Int64(maxPixels)
        try ff(avcodec_open2(ctx, codec, nil), "open decoder (\(streamName), codec '\(String(cString: codec.pointee.name))')",
               input: input)
    }

    deinit {
        var c: UnsafeMutablePointer<AVCodecContext>? = ctx
        avcodec_free_context(&c)
    }

    /// `avcodec_send_packet`; nil flushes (enters draining). Returns FFmpeg's status code.
    func send(_ packet: UnsafeMutablePointer<AVPacket>?) -> Int32 {
        avcodec_send_packet(ctx, packet)
    }

    /// `avcodec_flush_buffers`: after a drain (EOF), the decoder accepts packets again.
    func reset() { avcodec_flush_buffers(ctx) }

    /// `avcodec_receive_frame` into `frame` (which is unreferenced first by FFmpeg).
    func receive(into frame: UnsafeMutablePointer<AVFrame>) -> Receive {
        let status = avcodec_receive_frame(ctx, frame)
        if status >= 0 { return .frame }
        if status == FFCode.again { return .needsInput }
        if status == FFCode.eof { return .endOfStream }
        return .error(status)
    }
}
