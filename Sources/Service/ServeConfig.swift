import Foundation
import Media
import Inference
import Output
import Queue
import Pipeline
import TOMLKit

/// A configuration problem, naming the file and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    /// The configuration file (or "<string>").
    public let path: String
    public let message: String

    public init(path: String, _ message: String) { self.path = path; self.message = message }

    public var description: String { "\(path): \(message)" }
}

/// The `[model]` table: the same settings type as the command line's model flags
/// (`ModelSettings`: `path`, `labels`, `precision`, `threads`, `batch`, `size` or `width`/`height`,
/// `mean`, `std`, `resize`), with the same limits. Compared on SIGHUP to decide whether to reload.
public typealias ModelConfig = ModelSettings

extension ModelSettings: Decodable {
    /// `model.path` (`--model`).
    public var path: String? {
        get { modelPath }
        set { modelPath = newValue }
    }
    /// `model.labels` (`--labels`).
    public var labels: String? {
        get { labelsPath }
        set { labelsPath = newValue }
    }
    /// `model.batch` (`--batch`).
    public var batch: Int {
        get { batchSize }
        set { batchSize = newValue }
    }

    enum CodingKeys: String, CodingKey {
        case path, labels, precision, threads, batch, size, width, height, mean, std, resize
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        path = try c.decodeIfPresent(String.self, forKey: .path)
        labels = try c.decodeIfPresent(String.self, forKey: .labels)
        if let p = try c.decodeIfPresent(String.self, forKey: .precision) {
            guard let v = Precision(rawValue: p) else {
                throw SettingError(SettingRules.precision, "must be one of \(Precision.allCases.map(\.rawValue).joined(separator: ", ")) (got \(p))")
            }
            precision = v
        }
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
        batch = try c.decodeIfPresent(Int.self, forKey: .batch) ?? batch
        if let size = try c.decodeIfPresent(Int.self, forKey: .size) {
            try SettingRules.size.validate(size)
            width = size; height = size
        }
        width = try c.decodeIfPresent(Int.self, forKey: .width) ?? width
        height = try c.decodeIfPresent(Int.self, forKey: .height) ?? height
        if let m = try c.decodeNumbers(forKey: .mean) { try setMean(m) }
        if let v = try c.decodeNumbers(forKey: .std) { try setStd(v) }
        if let r = try c.decodeIfPresent(String.self, forKey: .resize) {
            guard let mode = ResizeMode(rawValue: r) else {
                throw SettingError(SettingRules.resize, "must be one of \(ResizeMode.allCases.map(\.rawValue).joined(separator: ", ")) (got \(r))")
            }
            resize = mode
        }
    }
}

extension SamplingSettings: Decodable {
    enum CodingKeys: String, CodingKey {
        case stream, every, framesPerInput = "frames_per_input", fps, keyframes, start, end, decoderThreads = "decoder_threads", maxPixels = "max_pixels",
             ioTimeout = "io_timeout", scene, sceneMinGap = "scene_min_gap"
    }

    /// The `[sampling]` table: the same settings as `run`'s sampling and input-limit flags.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        stream = try c.decodeIfPresent(Int.self, forKey: .stream)
        every = try c.decodeIfPresent(Int.self, forKey: .every) ?? every
        framesPerInput = try c.decodeIfPresent(Int.self, forKey: .framesPerInput)
        fps = try c.decodeNumber(forKey: .fps)
        keyframes = try c.decodeIfPresent(Bool.self, forKey: .keyframes) ?? keyframes
        start = try c.decodeNumber(forKey: .start)
        end = try c.decodeNumber(forKey: .end)
        decoderThreads = try c.decodeIfPresent(Int.self, forKey: .decoderThreads) ?? decoderThreads
        maxPixels = try c.decodeIfPresent(Int.self, forKey: .maxPixels) ?? maxPixels
        ioTimeout = try c.decodeNumber(forKey: .ioTimeout) ?? ioTimeout
        scene = try c.decodeNumber(forKey: .scene)
        sceneMinGap = try c.decodeNumber(forKey: .sceneMinGap) ?? sceneMinGap
    }
}

/// What each JSON line carries, which files each inbox input's set has, and the label settings.
/// The two are separate: `emit` is about the lines (`.jsonl`, stream files), `files` about the set.
public struct OutputConfig: Sendable, Equatable, Decodable {
    /// What each JSON line carries: any of "labels", "embedding".
    public var emit: [String] = ["labels"]
    /// Files of an inbox input's set beside `NAME.jsonl` (always written, last): any of "npy"
    /// (float32 embeddings, `[frames, dim]`) and "csv" (top-k per frame).
    public var files: [String] = ["npy", "csv"]
    /// "json" or "base64" for embeddings inside JSON lines.
    public var embeddingEncoding: String = "base64"
    public var topK: Int = 5
    public var minScore: Float = 0
    /// `segments`, `segment_min`, `with_frames`, `pool`: the settings of `run`'s `--segments`,
    /// `--segment-min`, `--with-frames` and `--pool`, with the same rules.
    public var records = RecordSettings()

    public init() {}

    enum CodingKeys: String, CodingKey {
        case emit, files, embeddingEncoding = "embedding_encoding", topK = "top_k", minScore = "min_score",
             segments, segmentMin = "segment_min", withFrames = "with_frames", pool
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        emit = try c.decodeIfPresent([String].self, forKey: .emit) ?? ["labels"]
        files = try c.decodeIfPresent([String].self, forKey: .files) ?? ["npy", "csv"]
        embeddingEncoding = try c.decodeIfPresent(String.self, forKey: .embeddingEncoding) ?? "base64"
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? 5
        minScore = Float(try c.decodeNumber(forKey: .minScore) ?? 0)
        records.segments = try c.decodeIfPresent(Bool.self, forKey: .segments) ?? records.segments
        records.segmentMin = try c.decodeNumber(forKey: .segmentMin) ?? records.segmentMin
        records.withFrames = try c.decodeIfPresent(Bool.self, forKey: .withFrames) ?? records.withFrames
        if let p = try c.decodeIfPresent(String.self, forKey: .pool) {
            guard let mode = PoolMode(rawValue: p) else {
                throw SettingError(SettingRules.pool, "must be one of \(PoolMode.allCases.map(\.rawValue).joined(separator: ", ")) (got \(p))")
            }
            records.pool = mode
        }
    }

    /// What each JSON line carries, as the Output target understands it.
    public var emitOptions: EmitOptions {
        EmitOptions(labels: emit.contains("labels"), embedding: emit.contains("embedding"),
                    embeddingEncoding: EmbeddingEncoding(rawValue: embeddingEncoding) ?? .base64)
    }

    /// What the pipeline must compute for an inbox set: the lines' contents plus embeddings for
    /// the `.npy` and labels for the `.csv`.
    public var setComputeOptions: EmitOptions {
        var o = emitOptions
        if files.contains("npy") { o.embedding = true }
        if files.contains("csv") && topK > 0 { o.labels = true }
        return o
    }
}

/// One live stream: processed continuously, lines appended to `<stream_dir>/<name>.jsonl`.
public struct StreamConfig: Sendable, Equatable, Decodable {
    /// Names the output file and the metrics; letters, digits, `-`, `_`, `.`.
    public var name: String
    /// rtsp://, http(s)://, udp://, file path...
    public var url: String
    /// Rotate the JSONL file once it exceeds this many bytes.
    public var rotateBytes: Int = 64 << 20
    /// Rotated files kept (`NAME.1.jsonl` ... `NAME.K.jsonl`).
    public var keepFiles: Int = 5
    /// First reconnect delay and the cap of the exponential backoff (seconds).
    public var reconnectInitial: Double = 0.5
    public var reconnectMax: Double = 30
    /// No frame for this long counts as a disconnect (seconds).
    public var stallTimeout: Double = 10
    /// Longest wait for a connection to deliver its first frame before the attempt counts as
    /// failed (seconds). Listening inputs (udp://, rtp://) are not cut short while they may be
    /// probing a sender; a silent wait there ends after `stall_timeout` and the next attempt starts
    /// at once, without backoff.
    public var connectTimeout: Double = 5

    public init(name: String, url: String) { self.name = name; self.url = url }

    enum CodingKeys: String, CodingKey {
        case name, url, rotateBytes = "rotate_bytes", keepFiles = "keep_files",
             reconnectInitial = "reconnect_initial", reconnectMax = "reconnect_max", stallTimeout = "stall_timeout",
             connectTimeout = "connect_timeout"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        url = try c.decode(String.self, forKey: .url)
        rotateBytes = try c.decodeIfPresent(Int.self, forKey: .rotateBytes) ?? 64 << 20
        keepFiles = try c.decodeIfPresent(Int.self, forKey: .keepFiles) ?? 5
        reconnectInitial = try c.decodeNumber(forKey: .reconnectInitial) ?? 0.5
        reconnectMax = try c.decodeNumber(forKey: .reconnectMax) ?? 30
        stallTimeout = try c.decodeNumber(forKey: .stallTimeout) ?? 10
        connectTimeout = try c.decodeNumber(forKey: .connectTimeout) ?? 5
    }
}

/// `[queue]`: take jobs from a PostgreSQL queue shared by several workers (README, "Scale-out").
public struct QueueConfig: Sendable, Equatable, Decodable {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `?host=/socket/folder`).
    public var url: String
    /// Names this worker in the jobs table (default: the host name). Workers may share a name;
    /// each must have its own `state_dir` (the local outbox lives there).
    public var workerID: String?
    /// A claimed job is the worker's for this long; renewed every third of it while it runs. A
    /// worker that dies loses its jobs to the others after at most this long.
    public var leaseSeconds: Double = 30
    /// A job is claimed at most this many times (failed input or lost lease), then marked failed.
    public var maxAttempts = 3
    /// A job whose input failed is claimable again after this many seconds.
    public var retryDelay: Double = 10
    /// How often an idle worker looks for a job (seconds).
    public var pollInterval: Double = 1
    /// Finished results not yet committed (default `<state_dir>/queue-outbox`).
    public var outbox: String?

    public init(url: String) { self.url = url }

    enum CodingKeys: String, CodingKey {
        case url, workerID = "worker_id", leaseSeconds = "lease_seconds", maxAttempts = "max_attempts",
             retryDelay = "retry_delay", pollInterval = "poll_interval", outbox
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        url = try c.decode(String.self, forKey: .url)
        workerID = try c.decodeIfPresent(String.self, forKey: .workerID)
        leaseSeconds = try c.decodeNumber(forKey: .leaseSeconds) ?? 30
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? 3
        retryDelay = try c.decodeNumber(forKey: .retryDelay) ?? 10
        pollInterval = try c.decodeNumber(forKey: .pollInterval) ?? 1
        outbox = try c.decodeIfPresent(String.self, forKey: .outbox)
    }

    /// The worker's name in the jobs table.
    public var resolvedWorkerID: String { workerID ?? ProcessInfo.processInfo.hostName }
}

/// The whole `framepipe serve` configuration (TOML; see systemd/framepipe.toml.example).
public struct ServeConfig: Sendable, Equatable {
    /// The default config path.
    public static let defaultPath = "/etc/framepipe/framepipe.toml"

    /// Attempts record and default place of the stream files (default: `$STATE_DIRECTORY`, else
    /// /var/lib/framepipe).
    public var stateDir = "/var/lib/framepipe"
    /// Watched folder (nil: no inbox, streams only).
    public var inbox: String?
    /// Per-input output sets.
    public var outbox: String?
    /// Processed inputs (default `<inbox>/done`, `<inbox>/failed`).
    public var doneDir: String?
    public var failedDir: String?
    /// Per-stream JSONL files (default `<state_dir>/streams`).
    public var streamDir: String?
    /// A file whose processing was started this many times without finishing goes to failed/.
    public var maxAttempts = 3
    /// On SIGTERM, how long the file in progress may take to complete before it is left for the next start.
    public var drainTimeout: Double = 20
    /// A file written in place (not moved in) is processed once its size and mtime have not
    /// changed for this many seconds.
    public var settleTime: Double = 2
    /// A file that fails as unreadable is tried again this many times, `retry_delay` seconds later
    /// (and whenever it changes), before it goes to failed/.
    public var retries = 1
    public var retryDelay: Double = 10
    /// `host:port` of the Prometheus endpoint (nil: off).
    public var metricsListen: String?
    /// "trace" ... "critical".
    public var logLevel = "info"
    public var model = ModelConfig()
    /// `[sampling]`: which frames of each input (inbox files and streams) are processed, and the
    /// input limits; the same settings and limits as `run`'s `--every`, `--fps`, `--keyframes`,
    /// `--start`/`--end`, `--stream`, `--decoder-threads`, `--max-pixels`, `--io-timeout`,
    /// `--frames-per-input`, `--scene`, `--scene-min-gap`.
    public var sampling = SamplingSettings()
    public var output = OutputConfig()
    public var streams: [StreamConfig] = []
    /// `[queue]` (nil: no queue worker).
    public var queue: QueueConfig?

    public init() {}

    /// The queue worker's local outbox.
    public var resolvedQueueOutbox: String? { queue.map { $0.outbox ?? stateDir + "/queue-outbox" } }

    /// Resolved folders.
    public var resolvedDoneDir: String? { doneDir ?? inbox.map { $0 + "/done" } }
    public var resolvedFailedDir: String? { failedDir ?? inbox.map { $0 + "/failed" } }
    public var resolvedStreamDir: String { streamDir ?? stateDir + "/streams" }

    /// Reads and checks the TOML file at `path`. `state_dir` defaults to systemd's
    /// `$STATE_DIRECTORY` when set (so `framepipe@NAME` instances get `/var/lib/framepipe/NAME`);
    /// relative folder paths (`inbox = "inbox"`) are taken inside `state_dir`, so one config
    /// works for the main service and for every instance.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServeConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(path: path, "cannot read the configuration file (\(String(cString: strerror(errno))))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(path: path, "not UTF-8 text")
        }
        return try parse(text, path: path, environment: environment)
    }

    /// Parses and checks TOML text; `path` only names the source in errors.
    public static func parse(_ text: String, path: String = "<string>",
                             environment: [String: String] = [:]) throws -> ServeConfig {
        let raw: RawConfig
        do {
            raw = try TOMLDecoder(strictDecoding: true).decode(RawConfig.self, from: text)
        } catch let e as TOMLParseError {
            throw ConfigError(path: path, "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch let e as UnexpectedKeysError {
            let keys = e.keys.values.map { $0.map(\.stringValue).joined(separator: ".") }.sorted()
            throw ConfigError(path: path, "unknown key(s): \(keys.joined(separator: ", "))")
        } catch let e as DecodingError {
            throw ConfigError(path: path, Self.describe(e))
        } catch let e as SettingError {
            throw ConfigError(path: path, e.keyMessage)
        }
        var c = ServeConfig()
        if let sd = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !sd.isEmpty { c.stateDir = String(sd) }
        if let v = raw.stateDir { c.stateDir = v }
        func inState(_ p: String?) -> String? {
            guard let p, !p.isEmpty else { return p }
            return p.hasPrefix("/") ? p : (c.stateDir as NSString).appendingPathComponent(p)
        }
        c.inbox = inState(raw.inbox)
        c.outbox = inState(raw.outbox)
        c.doneDir = inState(raw.doneDir)
        c.failedDir = inState(raw.failedDir)
        c.streamDir = inState(raw.streamDir)
        if let v = raw.maxAttempts { c.maxAttempts = v }
        if let v = raw.drainTimeout { c.drainTimeout = v }
        if let v = raw.settleTime { c.settleTime = v }
        if let v = raw.retries { c.retries = v }
        if let v = raw.retryDelay { c.retryDelay = v }
        c.metricsListen = raw.metricsListen.flatMap { $0.isEmpty ? nil : $0 }
        if let v = raw.logLevel { c.logLevel = v }
        if let v = raw.model { c.model = v }
        if let v = raw.sampling { c.sampling = v }
        if let v = raw.output { c.output = v }
        c.streams = raw.streams ?? []
        c.queue = raw.queue
        if let o = c.queue?.outbox { c.queue?.outbox = inState(o) }
        try c.validate(path: path)
        return c
    }

    /// Cross-field checks; each failure names the key.
    public func validate(path: String) throws {
        func fail(_ m: String) -> ConfigError { ConfigError(path: path, m) }
        if inbox == nil && streams.isEmpty && queue == nil { throw fail("nothing to do: set `inbox`, add a [[streams]] entry or a [queue]") }
        if let q = queue {
            do { _ = try DatabaseURL(q.url) } catch { throw fail("`queue.url`: \(error)") }
            if q.leaseSeconds < 1 { throw fail("`queue.lease_seconds` must be at least 1") }
            if q.maxAttempts < 1 { throw fail("`queue.max_attempts` must be at least 1") }
            if q.retryDelay < 0 { throw fail("`queue.retry_delay` must not be negative") }
            if q.pollInterval <= 0 { throw fail("`queue.poll_interval` must be positive") }
            if let w = q.workerID, w.isEmpty || w.utf8.count > 200 { throw fail("`queue.worker_id` must be 1...200 bytes") }
        }
        if inbox != nil && outbox == nil { throw fail("`inbox` is set but `outbox` is not") }
        if let i = inbox, let o = outbox, URL(fileURLWithPath: i).standardized == URL(fileURLWithPath: o).standardized {
            throw fail("`inbox` and `outbox` must be different folders")
        }
        if maxAttempts < 1 { throw fail("`max_attempts` must be at least 1") }
        if drainTimeout < 0 { throw fail("`drain_timeout` must not be negative") }
        if settleTime < 0 { throw fail("`settle_time` must not be negative") }
        if retries < 0 { throw fail("`retries` must not be negative") }
        if retryDelay < 0 { throw fail("`retry_delay` must not be negative") }
        if !stateDir.hasPrefix("/") { throw fail("`state_dir` must be an absolute path (got \"\(stateDir)\")") }
        if let m = metricsListen, (try? Self.parseListen(m)) == nil {
            throw fail("`metrics_listen` must be IPv4:port, like \"127.0.0.1:9464\" (got \"\(m)\")")
        }
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) {
            throw fail("`log_level` must be one of trace, debug, info, notice, warning, error, critical")
        }
        // The model, sampling and label settings follow the command line's rules (`SettingRules`).
        do {
            try model.validate()
            try sampling.validate()
            try SettingRules.topK.validate(output.topK)
            try SettingRules.minScore.validate(output.minScore)
            try output.records.validate(labels: output.emit.contains("labels"), embeddings: output.emit.contains("embedding"))
        } catch let e as SettingError {
            throw fail(e.keyMessage)
        }
        for e in output.emit where !["labels", "embedding"].contains(e) {
            throw fail("`output.emit` entries must be \"labels\" or \"embedding\" (got \"\(e)\")")
        }
        for f in output.files where !["npy", "csv"].contains(f) {
            throw fail("`output.files` entries must be \"npy\" or \"csv\" (got \"\(f)\"; NAME.jsonl is always written)")
        }
        if EmbeddingEncoding(rawValue: output.embeddingEncoding) == nil {
            throw fail("`output.embedding_encoding` must be \"json\" or \"base64\"")
        }
        var names = Set<String>()
        for s in streams {
            let ok = !s.name.isEmpty && !s.name.hasPrefix(".") && s.name.utf8.count <= 100
                && s.name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0) }
            if !ok { throw fail("stream name \"\(s.name)\" must be letters, digits, '-', '_' or '.' (not starting with '.')") }
            if !names.insert(s.name).inserted { throw fail("stream name \"\(s.name)\" is used twice") }
            if s.url.isEmpty { throw fail("stream \"\(s.name)\": `url` is empty") }
            if s.rotateBytes < 4096 { throw fail("stream \"\(s.name)\": `rotate_bytes` must be at least 4096") }
            if s.keepFiles < 0 { throw fail("stream \"\(s.name)\": `keep_files` must not be negative") }
            if s.reconnectInitial <= 0 || s.reconnectMax < s.reconnectInitial {
                throw fail("stream \"\(s.name)\": need 0 < `reconnect_initial` <= `reconnect_max`")
            }
            if s.stallTimeout <= 0 { throw fail("stream \"\(s.name)\": `stall_timeout` must be positive") }
            if s.connectTimeout <= 0 { throw fail("stream \"\(s.name)\": `connect_timeout` must be positive") }
        }
    }

    /// Splits "a.b.c.d:port" (IPv4 only; the endpoint is meant for loopback or a private address).
    public static func parseListen(_ s: String) throws -> (host: String, port: UInt16) {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]), port > 0 else {
            throw ConfigError(path: "metrics_listen", "bad address \(s)")
        }
        let host = String(s[..<colon])
        var addr = in_addr()
        guard inet_pton(AF_INET, host, &addr) == 1 else { throw ConfigError(path: "metrics_listen", "bad IPv4 address \(host)") }
        return (host, port)
    }

    static func describe(_ e: DecodingError) -> String {
        func keyPath(_ ctx: DecodingError.Context) -> String {
            ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .typeMismatch(let t, let ctx): return "`\(keyPath(ctx))` has the wrong type (expected \(t))"
        case .valueNotFound(_, let ctx): return "`\(keyPath(ctx))` is missing a value"
        case .keyNotFound(let k, let ctx):
            // TOMLKit reports a value of the wrong type as a missing key (the path then ends in it).
            if ctx.codingPath.last?.stringValue == k.stringValue {
                return "`\(keyPath(ctx))` is missing or has the wrong type"
            }
            let p = keyPath(ctx)
            return "missing key `\(p.isEmpty ? "" : p + ".")\(k.stringValue)`"
        case .dataCorrupted(let ctx): return "`\(keyPath(ctx))`: \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

/// The file as written: every key optional, snake_case.
private struct RawConfig: Decodable {
    var stateDir: String?
    var inbox: String?
    var outbox: String?
    var doneDir: String?
    var failedDir: String?
    var streamDir: String?
    var maxAttempts: Int?
    var drainTimeout: Double?
    var settleTime: Double?
    var retries: Int?
    var retryDelay: Double?
    var metricsListen: String?
    var logLevel: String?
    var model: ModelConfig?
    var sampling: SamplingSettings?
    var output: OutputConfig?
    var streams: [StreamConfig]?
    var queue: QueueConfig?

    enum CodingKeys: String, CodingKey {
        case stateDir = "state_dir", inbox, outbox, doneDir = "done_dir", failedDir = "failed_dir",
             streamDir = "stream_dir", maxAttempts = "max_attempts", drainTimeout = "drain_timeout",
             settleTime = "settle_time", retries, retryDelay = "retry_delay", metricsListen = "metrics_listen", logLevel = "log_level", model, sampling, output, streams, queue
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stateDir = try c.decodeIfPresent(String.self, forKey: .stateDir)
        inbox = try c.decodeIfPresent(String.self, forKey: .inbox)
        outbox = try c.decodeIfPresent(String.self, forKey: .outbox)
        doneDir = try c.decodeIfPresent(String.self, forKey: .doneDir)
        failedDir = try c.decodeIfPresent(String.self, forKey: .failedDir)
        streamDir = try c.decodeIfPresent(String.self, forKey: .streamDir)
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts)
        drainTimeout = try c.decodeNumber(forKey: .drainTimeout)
        settleTime = try c.decodeNumber(forKey: .settleTime)
        retries = try c.decodeIfPresent(Int.self, forKey: .retries)
        retryDelay = try c.decodeNumber(forKey: .retryDelay)
        metricsListen = try c.decodeIfPresent(String.self, forKey: .metricsListen)
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel)
        model = try c.decodeIfPresent(ModelConfig.self, forKey: .model)
        sampling = try c.decodeIfPresent(SamplingSettings.self, forKey: .sampling)
        output = try c.decodeIfPresent(OutputConfig.self, forKey: .output)
        streams = try c.decodeIfPresent([StreamConfig].self, forKey: .streams)
        queue = try c.decodeIfPresent(QueueConfig.self, forKey: .queue)
    }
}

extension KeyedDecodingContainer {
    /// A TOML float or integer (`drain_timeout = 20` means 20.0).
    func decodeNumber(forKey key: Key) throws -> Double? {
        guard contains(key) else { return nil }
        if let d = try? decode(Double.self, forKey: key) { return d }
        return Double(try decode(Int.self, forKey: key))
    }

    /// An array of TOML floats or integers.
    func decodeNumbers(forKey key: Key) throws -> [Float]? {
        guard contains(key) else { return nil }
        if let d = try? decode([Double].self, forKey: key) { return d.map(Float.init) }
        if let i = try? decode([Int].self, forKey: key) { return i.map(Float.init) }
        var nested = try nestedUnkeyedContainer(forKey: key)
        var out: [Float] = []
        while !nested.isAtEnd {
            if let d = try? nested.decode(Double.self) { out.append(Float(d)) } else { out.append(Float(try nested.decode(Int.self))) }
        }
        return out
    }
}
