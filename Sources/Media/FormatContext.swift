import CFFmpeg
import Foundation

/// What FFmpeg's interrupt callback (`AVIOInterruptCB`) consults: a cancel flag and an optional
/// deadline for the current I/O step (opening, or reading one packet). Thread-safe.
///
/// Network protocols poll the callback while they wait (every ~100 ms), so a silent server makes
/// the blocked call return `AVERROR_EXIT` once the deadline passes; `timedOut` then tells a
/// timeout from a cancel.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    /// A cancel from outside that may come before the source even exists (e.g. during open).
    private let external: CancellationToken?

    init(external: CancellationToken? = nil) { self.external = external }

    private var deadline: UInt64 = 0  // uptime ns; 0 = none
    private var expired = false
    /// True after `set()` (cancelled).
    var isSet: Bool {
        lock.lock(); defer { lock.unlock() }
        return value || external?.isCancelled == true
    }
    /// True once a deadline has passed while FFmpeg was waiting. Sticky: the interrupted AVIOContext
    /// stays at EOF, and demuxers may first return what they had buffered (e.g. MPEG-TS flushes its
    /// last packet), so the end that follows is a timeout, not the real end of the input.
    var timedOut: Bool { lock.lock(); defer { lock.unlock() }; return expired }
    func set() { lock.lock(); value = true; lock.unlock() }

    /// Starts a time limit of `seconds` for the next I/O step (nil: none).
    func arm(_ seconds: Double?) {
        lock.lock(); defer { lock.unlock() }
        if let seconds { deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1e9) } else { deadline = 0 }
    }

    /// The callback's answer: interrupt when cancelled or past the deadline.
    func shouldInterrupt() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if value || external?.isCancelled == true { return true }
        if deadline != 0 && DispatchTime.now().uptimeNanoseconds > deadline { expired = true; return true }
        return false
    }
}

/// A cancel request that can be made before or while an input is opened (from any thread): give it
/// to `SourceOptions.cancellation`, and `cancel()` makes a blocked open or read give up soon, like
/// `FrameSource.cancel()` does once the source exists.
public final class CancellationToken: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    public init() {}
    public func cancel() { lock.lock(); cancelled = true; lock.unlock() }
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }
}

/// Owns an opened demuxer (`AVFormatContext`); `deinit` calls `avformat_close_input`.
final class FormatContext {
    /// The open context (never nil after init).
    let ctx: UnsafeMutablePointer<AVFormatContext>
    /// The input as the user named it.
    let input: String
    /// Set by `FrameSource.cancel()`; makes blocking I/O return `AVERROR_EXIT`.
    let interrupt: InterruptFlag

    /// Custom I/O for in-memory input (kept alive as long as the context).
    private let memoryIO: MemoryIO?
    /// A FIFO opened for FFmpeg's `pipe:FD` (closed after the context).
    private var fifo: FIFOInput?

    private static let networkInit: Void = { _ = avformat_network_init() }()

    /// The FFmpeg URL for a user-facing input name: `-` is stdin (`pipe:0`), a plain path `file:PATH`.
    static func url(for input: String) -> String { InputPolicy.forInput(input).url }

    /// Opens `input` and reads its stream parameters (`avformat_open_input`, `avformat_find_stream_info`)
    /// under `InputPolicy.forInput(input)`; opening as a whole must finish within `timeout` seconds.
    /// A local FIFO is opened here, not by FFmpeg: see `FIFOInput`.
    convenience init(input: String, timeout: Double? = nil, cancellation: CancellationToken? = nil) throws {
        var policy = InputPolicy.forInput(input)
        var fifo: FIFOInput?
        if let path = policy.localPath, FIFOInput.isFIFO(path) {
            let opened = try FIFOInput(path: path, input: input, timeout: timeout, cancellation: cancellation)
            policy = InputPolicy(url: "pipe:\(opened.fd)", protocols: "pipe", network: false,
                                 refusedFormats: InputPolicy.referencingFormats)
            fifo = opened
        }
        try self.init(input: input, policy: policy, memory: nil, timeout: timeout, cancellation: cancellation)
        self.fifo = fifo
    }

    /// Opens bytes in memory through a custom `AVIOContext` (`avio_alloc_context`); no protocol may
    /// be opened from inside them. `name` stands for the input in errors.
    convenience init(data: [UInt8], name: String) throws {
        try self.init(input: name, policy: .memory, memory: MemoryIO(data, name: name), timeout: nil, cancellation: nil)
    }

    private init(input: String, policy: InputPolicy, memory: MemoryIO?, timeout: Double?,
                 cancellation: CancellationToken?) throws {
        self.input = input
        self.interrupt = InterruptFlag(external: cancellation)
        self.memoryIO = memory
        if policy.network { _ = FormatContext.networkInit }
        guard let allocated = avformat_alloc_context() else {
            throw MediaError(input: input, operation: "open input", code: fp_averror(ENOMEM))
        }
        allocated.pointee.interrupt_callback = AVIOInterruptCB(
            callback: { opaque in
                guard let opaque else { return 0 }
                return Unmanaged<InterruptFlag>.fromOpaque(opaque).takeUnretainedValue().shouldInterrupt() ? 1 : 0
            },
            opaque: Unmanaged.passUnretained(interrupt).toOpaque())
        // av_strdup'd strings are owned (and freed) by the context, also when opening fails.
        allocated.pointee.protocol_whitelist = av_strdup(policy.protocols)
        allocated.pointee.format_whitelist = av_strdup(policy.formatWhitelist)
        if let memory { allocated.pointee.pb = memory.avio }
        interrupt.arm(timeout)
        var opened: UnsafeMutablePointer<AVFormatContext>? = allocated
        // On failure avformat_open_input frees the context and sets it to NULL.
        var logged: [String] = []
        let status = FFmpegLog.capturing(&logged) {
            avformat_open_input(&opened, memory == nil ? policy.url : "", nil, nil)
        }
        guard status >= 0, let opened else {
            throw FormatContext.openError(input: input, status: status, timedOut: interrupt.timedOut, timeout: timeout,
                                          policy: policy, logged: logged)
        }
        ctx = opened
        // Fully initialised from here: if this throws, deinit closes the input.
        let info = FFmpegLog.capturing(&logged) { avformat_find_stream_info(ctx, nil) }
        if info < 0 {
            if interrupt.timedOut, let timeout {
                throw MediaError(input: input, operation: "read stream info", code: info,
                                 message: "timed out after \(timeout) s (--io-timeout)")
            }
            throw MediaError(input: input, operation: "read stream info", code: info,
                             message: FormatContext.reason(info, logged: logged))
        }
        interrupt.arm(nil)
    }

    /// The reason to show for a failed open: what FFmpeg logged for it when it said anything, as it
    /// is more precise than the return code. After "Invalid data found when processing input"
    /// (what the code says of a file that is not what its demuxer expects), FFmpeg's line tells
    /// why ("...: moov atom not found"); other codes are often only a by-product ("Picture size
    /// 99999999x2 is invalid" came back as EBUSY), so the logged line replaces them.
    static func reason(_ status: Int32, logged: [String]) -> String {
        guard !logged.isEmpty else { return ffErrorString(status) }
        let said = logged.joined(separator: "; ")
        return status == FFCode.invalidData ? "\(ffErrorString(status)): \(said)" : said
    }

    private static func openError(input: String, status: Int32, timedOut: Bool, timeout: Double?,
                                  policy: InputPolicy, logged: [String]) -> MediaError {
        if timedOut, let timeout {
            return MediaError(input: input, operation: "open input", code: status,
                              message: "timed out after \(timeout) s (--io-timeout)")
        }
        if status == fp_averror(EINVAL) {
            // What the whitelists refuse comes back as EINVAL. Name the refused format when we can.
            if let format = refusedFormat(policy), !policy.network {
                return MediaError(input: input, operation: "open input", code: status,
                                  message: "refused: the input is a '\(format)' file, which names further files to read; "
                                    + (format == "concat" ? "concat lists are never read" : "playlists are read only from http(s) URLs"))
            }
            return MediaError(input: input, operation: "open input", code: status,
                              message: "\(ffErrorString(status)) (or refused: this input may use only the \(policy.protocols) "
                                + "protocol\(policy.protocols.contains(",") ? "s" : ""); playlists and lists of other files "
                                + "are read only from http(s) URLs)")
        }
        return MediaError(input: input, operation: "open input", code: status, message: reason(status, logged: logged))
    }

    /// For a local file that failed to open: the demuxer FFmpeg detects for it (`av_probe_input_buffer2`)
    /// when that is one the policy refuses, else nil. Never probes stdin (that would consume it).
    private static func refusedFormat(_ policy: InputPolicy) -> String? {
        guard policy.url.hasPrefix("file:"), !policy.refusedFormats.isEmpty else { return nil }
        var pb: UnsafeMutablePointer<AVIOContext>?
        guard avio_open2(&pb, policy.url, AVIO_FLAG_READ, nil, nil) >= 0 else { return nil }
        defer { avio_closep(&pb) }
        var format: UnsafePointer<AVInputFormat>?
        guard av_probe_input_buffer2(pb, &format, policy.url, nil, 0, 1 << 16) >= 0,
              let name = format.map({ String(cString: $0.pointee.name) }) else { return nil }
        return name.split(separator: ",").map(String.init).first { policy.refusedFormats.contains($0) }
    }

    deinit {
        var c: UnsafeMutablePointer<AVFormatContext>? = ctx
        avformat_close_input(&c)  // never frees a custom pb: memoryIO's deinit does, after this
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

/// Bytes in memory read through a custom `AVIOContext` (`avio_alloc_context` with read and seek
/// callbacks); `deinit` frees the context and its buffer (`avio_context_free`).
final class MemoryIO {
    private let data: [UInt8]
    private var position = 0
    private(set) var avio: UnsafeMutablePointer<AVIOContext>!

    init(_ data: [UInt8], name: String) throws {
        self.data = data
        let size: Int32 = 1 << 14
        guard let buffer = av_malloc(Int(size)) else {
            throw MediaError(input: name, operation: "open input", code: fp_averror(ENOMEM))
        }
        let opaque = Unmanaged.passUnretained(self).toOpaque()
        guard let ctx = avio_alloc_context(buffer.assumingMemoryBound(to: UInt8.self), size, 0, opaque, { opaque, buf, size in
            let io = Unmanaged<MemoryIO>.fromOpaque(opaque!).takeUnretainedValue()
            let n = min(Int(size), io.data.count - io.position)
            if n <= 0 { return fp_averror_eof() }
            io.data.withUnsafeBufferPointer { src in buf!.update(from: src.baseAddress! + io.position, count: n) }
            io.position += n
            return Int32(n)
        }, nil, { opaque, offset, whence in
            let io = Unmanaged<MemoryIO>.fromOpaque(opaque!).takeUnretainedValue()
            if whence & AVSEEK_SIZE != 0 { return Int64(io.data.count) }
            let base: Int64
            switch whence & ~AVSEEK_FORCE {
            case SEEK_SET: base = 0
            case SEEK_CUR: base = Int64(io.position)
            case SEEK_END: base = Int64(io.data.count)
            default: return Int64(fp_averror(EINVAL))
            }
            let (target, overflow) = base.addingReportingOverflow(offset)
            guard !overflow, target >= 0, target <= Int64(io.data.count) else { return Int64(fp_averror(EINVAL)) }
            io.position = Int(target)
            return target
        }) else {
            av_free(buffer)
            throw MediaError(input: name, operation: "open input", code: fp_averror(ENOMEM))
        }
        avio = ctx
    }

    deinit {
        // The buffer may have been replaced by FFmpeg: free the current one.
        av_freep(&avio.pointee.buffer)
        var c: UnsafeMutablePointer<AVIOContext>? = avio
        avio_context_free(&c)
    }
}

/// A named pipe given as a local path. FFmpeg's `file` protocol would `open(2)` it blocking, and
/// with no writer that open never returns (the interrupt callback is not consulted there). So the
/// FIFO is opened non-blocking, a writer's first data (or its close) is awaited with `poll(2)`
/// for at most the I/O timeout, checking for a cancel every 100 ms, and FFmpeg then reads the
/// descriptor through its `pipe:FD` protocol, like stdin.
final class FIFOInput {
    let fd: Int32

    static func isFIFO(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO
    }

    init(path: String, input: String, timeout: Double?, cancellation: CancellationToken?) throws {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw MediaError(input: input, operation: "open input", code: fp_averror(errno)) }
        self.fd = fd
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        while true {
            if cancellation?.isCancelled == true {
                throw MediaError(input: input, operation: "open input", code: FFCode.exit, message: "cancelled")
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 100)
            if n > 0 { break }  // data, or a writer came and went (POLLHUP): FFmpeg reads what there is
            if n < 0 && errno != EINTR { throw MediaError(input: input, operation: "open input", code: fp_averror(errno)) }
            if let deadline, Date() >= deadline {
                throw MediaError(input: input, operation: "open input",
                                 message: "a FIFO with no writer: nothing arrived for \(timeout ?? 0) s (--io-timeout)")
            }
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)  // FFmpeg's pipe protocol reads blocking
    }

    deinit { close(fd) }
}
