import CFFmpeg
import Foundation

/// A thread-safe flag read by FFmpeg's interrupt callback (`AVIOInterruptCB`).
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

/// Owns an opened demuxer (`AVFormatContext`); `deinit` calls `avformat_close_input`.
final class FormatContext {
    /// The open context (never nil after init).
    let ctx: UnsafeMutablePointer<AVFormatContext>
    /// The input as the user named it.
    let input: String
    /// Set by `FrameSource.cancel()`; makes blocking I/O return `AVERROR_EXIT`.
    let interrupt = InterruptFlag()

    private static let networkInit: Void = { _ = avformat_network_init() }()

    /// The FFmpeg URL for a user-facing input name: `-` is stdin (`pipe:0`).
    static func url(for input: String) -> String { input == "-" ? "pipe:0" : input }

    /// Opens `input` and reads its stream parameters (`avformat_open_input`, `avformat_find_stream_info`).
    init(input: String) throws {
        self.input = input
        if input.contains("://") { _ = FormatContext.networkInit }
        guard let allocated = avformat_alloc_context() else {
            throw MediaError(input: input, operation: "open input", code: fp_averror(ENOMEM))
        }
        allocated.pointee.interrupt_callback = AVIOInterruptCB(
            callback: { opaque in
                guard let opaque else { return 0 }
                return Unmanaged<InterruptFlag>.fromOpaque(opaque).takeUnretainedValue().isSet ? 1 : 0
            },
            opaque: Unmanaged.passUnretained(interrupt).toOpaque())
        var opened: UnsafeMutablePointer<AVFormatContext>? = allocated
        // On failure avformat_open_input frees the context and sets it to NULL.
        let status = avformat_open_input(&opened, FormatContext.url(for: input), nil, nil)
        guard status >= 0, let opened else {
            throw MediaError(input: input, operation: "open input", code: status)
        }
        ctx = opened
        // Fully initialised from here: if this throws, deinit closes the input.
        let info = avformat_find_stream_info(ctx, nil)
        if info < 0 { throw MediaError(input: input, operation: "read stream info", code: info) }
    }

    deinit {
        var c: UnsafeMutablePointer<AVFormatContext>? = ctx
        avformat_close_input(&c)
    }

    /// The stream with container index `index`.
    func stream(_ index: Int) -> UnsafeMutablePointer<AVStream> {
        precondition(index >= 0 && index < Int(ctx.pointee.nb_streams), "stream \(index) out of range")
        return ctx.pointee.streams[index]!
    }

    /// True when the input can seek (a regular file or seekable protocol; not a pipe).
    var isSeekable: Bool {
        guard let pb = ctx.pointee.pb else { return false }
        return pb.pointee.seekable != 0
    }
}

/// Owns one `AVPacket` (`av_packet_alloc` / `av_packet_free`), reused for every read.
final class PacketBuffer {
    let pkt: UnsafeMutablePointer<AVPacket>
    init() {
        guard let p = av_packet_alloc() else { fatalError("av_packet_alloc: out of memory") }
        pkt = p
    }
    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = pkt
        av_packet_free(&p)
    }
}

/// Owns one `AVFrame` (`av_frame_alloc` / `av_frame_free`).
final class FrameBuffer {
    let frame: UnsafeMutablePointer<AVFrame>
    init() {
        guard let f = av_frame_alloc() else { fatalError("av_frame_alloc: out of memory") }
        frame = f
    }
    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
    }
}
