import Foundation
import Output
#if canImport(Glibc)
import Glibc
#endif

/// An append-only JSON-lines file for one live stream, rotated by size: when `NAME.jsonl` would
/// pass `rotateBytes` it becomes `NAME.1.jsonl` (older ones shift to `.2` ... `.keep`, the oldest is
/// removed) and a new `NAME.jsonl` starts. Each line goes out in one `write(2)` on an `O_APPEND`
/// descriptor; a line cut short by a crash is trimmed when the file is reopened, so every line in
/// the file is complete JSON.
public final class StreamLog: @unchecked Sendable {
    public let directory: String
    public let name: String
    public let rotateBytes: Int
    public let keepFiles: Int
    private var fd: Int32 = -1
    private var size = 0
    private let lock = NSLock()

    /// The current file.
    public var path: String { directory + "/" + name + ".jsonl" }

    /// Opens (creating) `<directory>/<name>.jsonl` for appending.
    public init(directory: String, name: String, rotateBytes: Int, keepFiles: Int) throws {
        self.directory = directory; self.name = name; self.rotateBytes = rotateBytes; self.keepFiles = keepFiles
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try open()
    }

    deinit { if fd >= 0 { close(fd) } }

    private func open() throws {
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw OutputError(path: path, operation: "open for appending") }
        var st = stat()
        fstat(fd, &st)
        size = Int(st.st_size)
        try trimPartialLine()
    }

    /// Drops bytes after the last newline (a line a crash cut short).
    private func trimPartialLine() throws {
        guard size > 0 else { return }
        let rfd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard rfd >= 0 else { return }
        defer { close(rfd) }
        var keep = size
        let chunk = 4096
        var buf = [UInt8](repeating: 0, count: chunk)
        var end = size
        search: while end > 0 {
            let start = max(0, end - chunk)
            let n = buf.withUnsafeMutableBytes { pread(rfd, $0.baseAddress, end - start, off_t(start)) }
            if n <= 0 { break }
            for i in stride(from: n - 1, through: 0, by: -1) where buf[i] == 10 {
                keep = start + i + 1
                break search
            }
            end = start
            keep = 0
        }
        if keep < size {
            if ftruncate(fd, off_t(keep)) != 0 { throw OutputError(path: path, operation: "trim partial line") }
            size = keep
        }
    }

    /// Appends one complete line (`line` must end with a newline), rotating first if needed.
    public func append(_ line: [UInt8]) throws {
        precondition(line.last == 10, "a stream log line must end with a newline")
        lock.lock(); defer { lock.unlock() }
        if size > 0 && size + line.count > rotateBytes { try rotate() }
        if let code = line.withUnsafeBytes({ writeAll(fd, $0) }) {
            throw OutputError(path: path, operation: "append", code: code)
        }
        size += line.count
    }

    /// Flushes the file to disk.
    public func sync() { lock.lock(); if fd >= 0 { fsync(fd) }; lock.unlock() }

    /// The path of rotated file number `n` (1 = newest).
    public func rotatedPath(_ n: Int) -> String { directory + "/" + name + ".\(n).jsonl" }

    private func rotate() throws {
        fsync(fd)
        close(fd)
        fd = -1
        if keepFiles == 0 {
            unlink(path)
        } else {
            unlink(rotatedPath(keepFiles))
            if keepFiles > 1 {
                for n in stride(from: keepFiles - 1, through: 1, by: -1) { rename(rotatedPath(n), rotatedPath(n + 1)) }
            }
            if rename(path, rotatedPath(1)) != 0 { throw OutputError(path: path, operation: "rotate") }
        }
        AtomicFile.syncDirectory(of: path)
        try open()
    }

    /// `{"v":1,"event":"gap","stream":..,"input":..,"cause":..,"reason":..,"time":..,"last_pts":..,
    /// "frames":..,"connection":..,"retry_in":..}`: connection number `connection` stopped delivering
    /// frames; `cause` is `ended` (the sender ended the stream), `stalled` (no frame for
    /// `stall_timeout`) or `error` (`reason` says which); lines resume after a reconnect.
    public static func gapLine(stream: String, input: String, cause: String, reason: String, time: Double,
                               lastPts: Double?, frames: Int, connection: Int, retryIn: Double) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("v", outputSchemaVersion)
        w.field("event", "gap")
        w.field("stream", stream)
        w.field("input", input)
        w.field("cause", cause)
        w.field("reason", reason)
        w.field("time", time)
        if let lastPts { w.field("last_pts", lastPts) }
        w.field("frames", frames)
        w.field("connection", connection)
        w.field("retry_in", retryIn)
        return w.finishLine()
    }

    /// `{"v":1,"event":"connected","stream":..,"input":..,"time":..,"attempt":..,"connection":..,
    /// "first_frame":..}`: frames follow. `attempt` counts tries since the stream was last up (1: the
    /// first try succeeded), as the log does; `connection` counts connections since the service
    /// started; frame numbers continue from `first_frame`.
    public static func connectedLine(stream: String, input: String, time: Double, attempt: Int,
                                     connection: Int, firstFrame: Int) -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("v", outputSchemaVersion)
        w.field("event", "connected")
        w.field("stream", stream)
        w.field("input", input)
        w.field("time", time)
        w.field("attempt", attempt)
        w.field("connection", connection)
        w.field("first_frame", firstFrame)
        return w.finishLine()
    }
}

/// The `FrameSink` of one connection of a stream: frame records appended to the stream's log.
/// `finish` and `abandon` keep the log open (it outlives connections). Frame numbers are offset by
/// `frameBase` (frames of earlier connections), so they keep counting across reconnects.
/// With `output.segments`, segment records (and with `output.pool` pooled ones) go to the log too,
/// and frame records only with `output.with_frames`, as `run` writes them to stdout.
final class StreamLogSink: FrameSink {
    let log: StreamLog
    let options: EmitOptions
    let frameBase: Int
    let frameLines: Bool
    let name: String
    private var buffer: [UInt8] = []
    private(set) var lastPts: Double?
    init(log: StreamLog, options: EmitOptions, frameBase: Int = 0, frameLines: Bool = true, name: String = "") {
        self.log = log; self.options = options; self.frameBase = frameBase
        self.frameLines = frameLines; self.name = name
    }
    func write(_ record: FrameRecord) throws {
        lastPts = record.pts
        guard frameLines else { return }
        var record = record
        record.frame += frameBase
        buffer = RecordEncoder.frameLine(record, options: options, reusing: buffer)
        try log.append(buffer)
    }
    func writeSegment(_ segment: LabelSegment) throws {
        try log.append(RecordEncoder.segmentLines(input: name, segment, encoding: options.embeddingEncoding))
    }
    func writePooled(mode: PoolMode, frames: Int, embedding: [Float]) throws {
        try log.append(RecordEncoder.pooledLine(input: name, mode: mode, frames: frames, embedding: embedding,
                                                encoding: options.embeddingEncoding))
    }
    func finish(error: String?) throws { log.sync() }
    func abandon() { log.sync() }
}
