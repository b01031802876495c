import CFFmpeg
import Foundation

/// Counters of one `FrameSource`, for the end-of-input summary.
public struct SourceStats: Sendable, Equatable {
    /// Packets of the decoded stream read from the container (sent to the decoder or skipped).
    public var packetsRead = 0
    /// Packets actually sent to the decoder (fewer than `packetsRead` with key frames only).
    public var packetsDecoded = 0
    /// Frames the decoder produced.
    public var framesDecoded = 0
    /// Frames kept by sampling (returned by `next()`).
    public var framesKept = 0
    /// Packets or frames the decoder rejected or flagged as damaged; counted, not fatal.
    public var decodeErrors = 0
    /// Packets the demuxer flagged as corrupt (`AV_PKT_FLAG_CORRUPT`, e.g. a short read).
    public var corruptPackets = 0
    public init() {}
}

/// Decodes the frames of one video stream of one input, applying sampling before anything is
/// scaled. Not thread-safe: one per input, used from one DispatchQueue (`cancel()` excepted).
///
/// The loop is FFmpeg's send/receive state machine: receive until the decoder wants input, read
/// and send one packet, repeat; at end of input send a flush and receive until EOF (drain).
/// Decoding errors are counted in `stats` and skipped. A read error, or a truncated input, is
/// thrown by `next()` after every frame decoded before the damage has been returned. Truncation is
/// noticed when the container promised more: fewer packets than its frame count (MP4), or packets
/// ending well before the stream's stated duration (MP4, Matroska's DURATION tag). Formats that
/// promise nothing (MPEG-TS, raw streams) simply end; so does a read that started with a seek.
public final class FrameSource {
    /// The input as given: a path, `-` (stdin) or a URL.
    public let input: String
    /// The stream being decoded.
    public let stream: StreamInfo
    /// The options in use.
    public let options: SourceOptions
    /// Counters so far.
    public private(set) var stats = SourceStats()

    private let container: FormatContext
    private let decoder: VideoDecoder
    private let streamIndex: Int32
    private let timeBase: Double
    private let packet = PacketBuffer()
    private let work = FrameBuffer()
    private var sampler: FrameSampler

    private enum Phase { case reading, draining, finished }
    private var phase = Phase.reading
    private var packetPending = false
    private var pendingError: MediaError?
    private var seeked = false
    private var stoppedAtEnd = false
    private var nextIndex: Int?
    private var lastPTS: Double?
    private var lastPacketCorrupt = false
    /// Where the container says the stream ends (seconds), from the stream's own duration or its
    /// DURATION tag (Matroska); nil when it does not say. Used to notice truncation.
    private let promisedEnd: Double?
    /// The furthest pts + duration of any packet of the stream read so far (seconds).
    private var packetEnd = -Double.infinity
    /// Key frames only: stream position of each key packet sent, by pts, until its frame comes out.
    private var keyPacketOrdinals: [Int64: Int] = [:]
    /// True while a packet read has its time limit armed (kept across EAGAIN retries).
    private var readArmed = false
    /// Live key frames only: drain the decoder after each packet sent, so that its frame comes
    /// out now rather than when later key frames push it out.
    private let drainEachPacket: Bool
    /// True while such a drain is in progress (the decoder's EOF then means "reset and read on").
    private var drainingPacket = false
    /// `framesPerInput`: the target times (seconds) still to serve, earliest first, and whether to
    /// seek to each (a seekable input) rather than decode everything.
    private var targets: ArraySlice<Double> = []
    private var seekToTargets = false
    /// pts (stream time base) of the last packet sent to the decoder, to skip a seek whose key
    /// frame has already been passed.
    private var lastSentPTS: Int64?
    /// `wallClock`: when each packet of the stream arrived (seconds since the epoch), by its pts,
    /// until its frame comes out; and the last frame's wall time (frames never go back in time).
    private var receivedAt: [Int64: Double] = [:]
    private var lastWall: (value: Double, senderClock: Bool)?

    /// Opens `input` ("-" = stdin, or a URL) and its video stream, ready to decode.
    /// Throws a `MediaError` naming the input when it cannot be opened, has no (such) video stream,
    /// or its codec has no decoder.
    public convenience init(input: String, options: SourceOptions = .init()) throws {
        AllocationCap.allow(framePixels: options.maxPixels)  // before FFmpeg allocates anything for it
        try self.init(input: input, options: options, container: FormatContext(input: input, timeout: options.ioTimeout,
                                                                          cancellation: options.cancellation))
    }

    /// Decodes a whole input held in memory (read through a custom `AVIOContext`); `name` stands for
    /// it in errors. Such an input may not open any protocol or further file (no playlists).
    public convenience init(data: [UInt8], name: String, options: SourceOptions = .init()) throws {
        AllocationCap.allow(framePixels: options.maxPixels)
        try self.init(input: name, options: options, container: FormatContext(data: data, name: name))
    }

    private init(input: String, options: SourceOptions, container: FormatContext) throws {
        precondition(options.sampling.validationError == nil, options.sampling.validationError ?? "")
        precondition(options.limitsError == nil, options.limitsError ?? "")
        self.input = input
        self.options = options
        self.container = container
        let ctx = container.ctx
        let count = Int(ctx.pointee.nb_streams)
        let index: Int
        if let wanted = options.streamIndex {
            guard wanted >= 0 && wanted < count else {
                throw MediaError(input: input, operation: "select stream",
                                 message: "no stream \(wanted) (the input has \(count) stream\(count == 1 ? "" : "s"))")
            }
            guard ctx.pointee.streams[wanted]!.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO else {
                throw MediaError(input: input, operation: "select stream", message: "stream \(wanted) is not a video stream")
            }
            index = wanted
        } else {
            let best = av_find_best_stream(ctx, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
            guard best >= 0 else {
                throw MediaError(input: input, operation: "select stream", message: "no video stream found")
            }
            index = Int(best)
        }
        // Let the demuxer skip every other stream (e.g. audio).
        for i in 0..<count where i != index { ctx.pointee.streams[i]!.pointee.discard = AVDISCARD_ALL }
        let st = container.stream(index)
        let (w, h) = (Int(st.pointee.codecpar.pointee.width), Int(st.pointee.codecpar.pointee.height))
        if w < 0 || h < 0 || w * h > options.maxPixels {  // Int32 values: the Int product cannot overflow
            throw MediaError(input: input, operation: "check frame size",
                             message: "the stream declares \(w)x\(h) frames, over the limit of \(options.maxPixels) pixels (--max-pixels)")
        }
        streamIndex = Int32(index)
        stream = StreamInfo(stream: st, container: ctx)
        timeBase = stream.timeBase.value ?? 0
        promisedEnd = FrameSource.promisedEnd(of: st, timeBase: timeBase, start: stream.startTime ?? 0)
        decoder = try VideoDecoder(stream: st, threads: options.decoderThreads,
                                   keyframesOnly: options.sampling.keyframesOnly, maxPixels: options.maxPixels,
                                   lowDelay: options.lowDelay, input: input)
        drainEachPacket = options.lowDelay && options.sampling.keyframesOnly
        sampler = FrameSampler(options: options.sampling)
        nextIndex = 0
        if let n = options.sampling.framesPerInput {
            let lo = options.sampling.start ?? (stream.startTime ?? 0)
            var end = promisedEnd
            let total = ctx.pointee.duration
            if end == nil, total != FFCode.noPTS, total > 0 {
                let origin = ctx.pointee.start_time == FFCode.noPTS ? 0 : Double(ctx.pointee.start_time) / 1e6
                end = origin + Double(total) / 1e6
            }
            if let wanted = options.sampling.end { end = min(wanted, end ?? wanted) }
            guard let hi = end, hi > lo else {
                throw MediaError(input: input, operation: "sample frames",
                                 message: end == nil
                                    ? "--frames-per-input needs the input's duration, which it does not state (give --end)"
                                    : "--frames-per-input: nothing to sample between \(seconds(lo)) s and \(seconds(end!)) s")
            }
            targets = ArraySlice((0..<n).map { lo + Double($0) * (hi - lo) / Double(n) })
            seekToTargets = container.isSeekable && timeBase > 0
        }
        if let start = options.sampling.start { seek(to: start) }
    }

    /// `framesPerInput` on a seekable input: seeks to the key frame at or before `target` and
    /// empties the decoder, unless that key frame has already been sent (then decoding forward
    /// is cheaper). The container's index answers that (MP4, Matroska); without an index, always seek.
    private func seekForTarget(_ target: Double) {
        guard phase == .reading else { return }  // at the end already: the decoder's last frames decide
        let ts = Int64((target / timeBase).rounded(.down))
        let st = container.stream(Int(streamIndex))
        if let sent = lastSentPTS, let entry = avformat_index_get_entry_from_timestamp(st, ts, AVSEEK_FLAG_BACKWARD),
           entry.pointee.timestamp <= sent {
            return
        }
        guard av_seek_frame(container.ctx, streamIndex, ts, AVSEEK_FLAG_BACKWARD) >= 0 else { return }
        seeked = true
        nextIndex = nil
        if packetPending { av_packet_unref(packet.pkt); packetPending = false }
        decoder.reset()
        lastSentPTS = nil
    }

    /// Seeks to the key frame at or before `start` (`av_seek_frame` with `AVSEEK_FLAG_BACKWARD`).
    /// Pipes cannot seek: then frames before `start` are decoded and dropped.
    private func seek(to start: Double) {
        guard container.isSeekable, timeBase > 0, start > (stream.startTime ?? 0) else { return }
        let ts = Int64((start / timeBase).rounded(.down))
        if av_seek_frame(container.ctx, streamIndex, ts, AVSEEK_FLAG_BACKWARD) >= 0 {
            seeked = true
            nextIndex = nil  // unknown until the first frame's pts is seen
        }
    }

    /// Makes a blocked read return soon (FFmpeg's interrupt callback); from then on `next()` returns
    /// nil (frames still inside the decoder are dropped). Thread-safe. Network protocols poll the
    /// flag while waiting; a read blocked on a local pipe or FIFO notices it only when data or EOF arrives.
    public func cancel() { container.interrupt.set() }

    /// The next kept frame, or nil at end of stream (or after `cancel()`).
    /// Throws, after returning every frame before the damage, when reading failed or stopped early.
    public func next() throws -> DecodedFrame? {
        while true {
            if container.interrupt.isSet { phase = .finished }  // cancelled: no draining either
            if phase == .finished {
                if let error = pendingError { pendingError = nil; throw error }
                return nil
            }
            switch decoder.receive(into: work.frame) {
            case .frame:
                if let frame = take() { return frame }
            case .needsInput:
                if phase == .draining { phase = .finished; break }  // defensive: a drained decoder asks no more
                feed()
            case .endOfStream:
                if drainingPacket {  // one key frame drained: reset the decoder and read on
                    drainingPacket = false
                    decoder.reset()
                    if phase == .reading { feed() } else { finish() }
                } else {
                    finish()
                }
            case .error(let code):
                stats.decodeErrors += 1
                if code == FFCode.exit || stats.decodeErrors > 10_000 { phase = .finished; break }
                if phase == .reading && !drainingPacket { feed() }
            }
        }
    }

    /// Handles a frame the decoder produced: timestamps, index, sampling. Returns it when kept.
    private func take() -> DecodedFrame? {
        stats.framesDecoded += 1
        let f = work.frame.pointee
        if Int(f.width) * Int(f.height) > options.maxPixels {  // the decoder's own check should have caught it
            stats.decodeErrors += 1
            av_frame_unref(work.frame)
            return nil
        }
        if (f.flags & AV_FRAME_FLAG_CORRUPT) != 0 || f.decode_error_flags != 0 { stats.decodeErrors += 1 }
        let pts: Double
        if f.best_effort_timestamp != FFCode.noPTS {
            pts = Double(f.best_effort_timestamp) * timeBase
        } else {
            pts = (lastPTS ?? 0) + (lastPTS == nil ? 0 : 1 / (stream.fps ?? stream.baseFPS ?? 25))
        }
        lastPTS = pts
        let index: Int
        if options.sampling.keyframesOnly {
            // Non-key frames are never decoded, so count packets instead: a key packet's position in
            // decode order is its frame's position in presentation order for closed GOPs.
            index = keyPacketOrdinals.removeValue(forKey: f.best_effort_timestamp) ?? estimatedIndex(pts)
        } else {
            index = nextIndex ?? estimatedIndex(pts)
        }
        nextIndex = index + 1
        let wall = options.wallClock ? wallTime(pts: pts, ticks: f.pts != FFCode.noPTS ? f.pts : f.best_effort_timestamp) : nil
        if options.sampling.framesPerInput != nil { return takeTarget(pts: pts, index: index) }
        switch sampler.decide(pts: pts, keyframe: f.key_frame != 0) {
        case .keep:
            stats.framesKept += 1
            return DecodedFrame(moving: work.frame, index: index, pts: pts, keyframe: f.key_frame != 0,
                                input: input, rotation: stream.rotation, frameDuration: frameDuration(f), wall: wall)
        case .drop:
            av_frame_unref(work.frame)
            return nil
        case .stop:
            av_frame_unref(work.frame)
            stoppedAtEnd = true
            phase = .finished
            return nil
        }
    }

    /// `framesPerInput`: keeps the frame when it reaches the next target, then seeks to the one after.
    private func takeTarget(pts: Double, index: Int) -> DecodedFrame? {
        guard let target = targets.first, pts >= target - 1e-6 else {
            av_frame_unref(work.frame)
            if targets.isEmpty { stoppedAtEnd = true; phase = .finished }
            return nil
        }
        while let t = targets.first, t <= pts + 1e-6 { targets.removeFirst() }
        stats.framesKept += 1
        let keyframe = work.frame.pointee.key_frame != 0
        let frame = DecodedFrame(moving: work.frame, index: index, pts: pts, keyframe: keyframe,
                                 input: input, rotation: stream.rotation, frameDuration: frameDuration(work.frame.pointee))
        if let next = targets.first {
            if seekToTargets { seekForTarget(next) }
        } else {
            stoppedAtEnd = true
            phase = .finished
        }
        return frame
    }

    /// A frame's own duration in seconds: its packet's (`pkt_duration`), else one average (or
    /// base) frame interval; nil when the stream says neither.
    private func frameDuration(_ f: AVFrame) -> Double? {
        if f.pkt_duration > 0 && timeBase > 0 { return Double(f.pkt_duration) * timeBase }
        guard let rate = stream.fps ?? stream.baseFPS, rate > 0 else { return nil }
        return 1 / rate
    }

    /// `wallClock`: the frame's time in seconds since the Unix epoch. With the sender's clock
    /// (`AVFormatContext.start_time_realtime`, which FFmpeg's RTSP demuxer sets from the first RTCP
    /// sender report, at pts 0): that plus `pts`. Otherwise the arrival of the frame's packet
    /// (`ticks` is its pts), never earlier than the previous frame's (a frame reordered behind a
    /// later-sent one is only complete when that one has arrived too), or now when unknown.
    private func wallTime(pts: Double, ticks: Int64) -> Double {
        let now = Date().timeIntervalSince1970
        var wall: Double
        var sender = false
        let realtime = container.ctx.pointee.start_time_realtime
        if realtime != FFCode.noPTS && realtime > 0 {
            wall = Double(realtime) / 1e6 + pts
            sender = true
        } else {
            wall = receivedAt[ticks] ?? now
        }
        if ticks != FFCode.noPTS { receivedAt = receivedAt.filter { $0.key > ticks } }
        if let last = lastWall, last.senderClock == sender { wall = max(wall, last.value) }
        lastWall = (wall, sender)
        return wall
    }

    /// The stream's declared end: `start + duration` from `AVStream.duration`, else from a
    /// `DURATION` tag ("HH:MM:SS.fraction", as Matroska muxers write per track).
    private static func promisedEnd(of st: UnsafeMutablePointer<AVStream>, timeBase: Double, start: Double) -> Double? {
        if st.pointee.duration != FFCode.noPTS && st.pointee.duration > 0 && timeBase > 0 {
            return start + Double(st.pointee.duration) * timeBase
        }
        guard let entry = av_dict_get(st.pointee.metadata, "DURATION", nil, 0), let value = entry.pointee.value else { return nil }
        let parts = String(cString: value).split(separator: ":")
        guard parts.count == 3, let h = Double(parts[0]), let m = Double(parts[1]), let sec = Double(parts[2]) else { return nil }
        let seconds = h * 3600 + m * 60 + sec
        return seconds > 0 ? start + seconds : nil
    }

    /// The index of a frame whose position is unknown (after a seek): pts times the average frame rate.
    private func estimatedIndex(_ pts: Double) -> Int {
        let rate = stream.fps ?? stream.baseFPS ?? 0
        return max(0, Int(((pts - (stream.startTime ?? 0)) * rate).rounded()))
    }

    /// Reads packets until one of our stream is sent to the decoder, or starts draining at end of input.
    private func feed() {
        let pkt = packet.pkt
        while true {
            if !packetPending {
                if !readArmed { container.interrupt.arm(options.ioTimeout); readArmed = true }
                let status = av_read_frame(container.ctx, pkt)
                if status == FFCode.again && !container.interrupt.isSet && !container.interrupt.shouldInterrupt() {
                    usleep(2_000)  // a non-blocking live input has no packet yet
                    continue
                }
                readArmed = false
                if status < 0 {
                    if container.interrupt.timedOut && !container.interrupt.isSet {
                        container.interrupt.arm(nil)
                        pendingError = MediaError(
                            input: input, operation: "read packet",
                            message: "no data for \(options.ioTimeout ?? 0) s after \(stats.packetsRead) packets (--io-timeout)")
                    } else if status != FFCode.eof && status != FFCode.exit && !container.interrupt.isSet {
                        var message = "\(ffErrorString(status)) after \(stats.packetsRead) packets (input damaged or truncated)"
                        if stats.packetsRead == 0 && !container.isSeekable {
                            message += InputPolicy.urlScheme(input) == nil
                                ? "; note: an MP4 whose index (moov) is at the end cannot be read from a pipe: "
                                    + "pass the file path, or remux it with 'ffmpeg -i IN -c copy -movflags +faststart OUT'"
                                : "; note: an MP4 whose index (moov) is at the end must be read with seeks, which this "
                                    + "server does not allow (no HTTP Range support): download the file first, or remux "
                                    + "it with 'ffmpeg -i IN -c copy -movflags +faststart OUT'"
                        }
                        pendingError = MediaError(input: input, operation: "read packet", message: message)
                    }
                    startDraining()
                    return
                }
                guard pkt.pointee.stream_index == streamIndex else { av_packet_unref(pkt); continue }
                stats.packetsRead += 1
                if options.wallClock && pkt.pointee.pts != FFCode.noPTS {
                    if receivedAt.count >= 4096 { receivedAt.removeAll(keepingCapacity: true) }  // frames never came out
                    receivedAt[pkt.pointee.pts] = Date().timeIntervalSince1970
                }
                if pkt.pointee.pts != FFCode.noPTS {
                    packetEnd = max(packetEnd, Double(pkt.pointee.pts + max(0, pkt.pointee.duration)) * timeBase)
                }
                lastPacketCorrupt = (pkt.pointee.flags & AV_PKT_FLAG_CORRUPT) != 0
                if lastPacketCorrupt { stats.corruptPackets += 1 }
                // Key frames only: never even send non-key packets to the decoder.
                if options.sampling.keyframesOnly && (pkt.pointee.flags & AV_PKT_FLAG_KEY) == 0 {
                    av_packet_unref(pkt)
                    continue
                }
                if options.sampling.keyframesOnly && !seeked && pkt.pointee.pts != FFCode.noPTS {
                    keyPacketOrdinals[pkt.pointee.pts] = stats.packetsRead - 1
                }
            }
            let sentPTS = pkt.pointee.pts
            let status = decoder.send(pkt)
            if status == FFCode.again {  // the decoder has output first; keep the packet for later
                packetPending = true
                return
            }
            packetPending = false
            av_packet_unref(pkt)
            if status < 0 {
                stats.decodeErrors += 1
                continue
            }
            stats.packetsDecoded += 1
            if sentPTS != FFCode.noPTS { lastSentPTS = max(lastSentPTS ?? sentPTS, sentPTS) }
            if drainEachPacket {
                _ = decoder.send(nil)
                drainingPacket = true
            }
            return
        }
    }

    private func startDraining() {
        phase = .draining
        _ = decoder.send(nil)
    }

    /// End of stream: check the container's promise (truncation) before reporting the end.
    private func finish() {
        phase = .finished
        guard pendingError == nil, !seeked, !stoppedAtEnd, !container.interrupt.isSet else { return }
        if let promised = stream.frameCount, stats.packetsRead < promised {
            pendingError = MediaError(
                input: input, operation: "read packet",
                message: "input is truncated: the container lists \(promised) frames but only \(stats.packetsRead) packets could be read")
        } else if let promised = promisedEnd, packetEnd.isFinite,
                  packetEnd < promised - max(0.5, 2 / (stream.fps ?? stream.baseFPS ?? 25)) {
            pendingError = MediaError(
                input: input, operation: "read packet",
                message: "input is truncated: the stream stops at \(seconds(packetEnd)) s but the container says it lasts until \(seconds(promised)) s")
        } else if lastPacketCorrupt {
            pendingError = MediaError(input: input, operation: "read packet",
                                      message: "input is truncated: the last packet is incomplete")
        } else if stats.framesDecoded == 0 {
            pendingError = MediaError(
                input: input, operation: "decode",
                message: "no frame could be decoded (\(stats.packetsRead) packets read, \(stats.decodeErrors) errors)")
        }
    }
}

/// FFmpeg's cap on any single allocation (`av_max_alloc`, process-wide, default 2 GiB): lowered to
/// what the largest allowed frame needs, so a header claiming a huge packet or extradata size fails
/// its allocation instead of reserving gigabytes. Only ever raised after the first call, so inputs
/// opened with different `maxPixels` never starve each other.
enum AllocationCap {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var current = 0

    /// Makes room for frames of `framePixels` pixels: max(256 MiB, 8 bytes per pixel).
    static func allow(framePixels: Int) {
        let wanted = min(Int(Int32.max), max(256 << 20, framePixels.multipliedReportingOverflow(by: 8).overflow ? Int.max : framePixels * 8))
        lock.lock(); defer { lock.unlock() }
        if wanted > current {
            current = wanted
            av_max_alloc(wanted)
        }
    }
}

/// Seconds with 3 decimals, for messages.
private func seconds(_ value: Double) -> String {
    let ms = Int((value * 1000).rounded())
    let frac = String(abs(ms) % 1000)
    return "\(ms / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}
