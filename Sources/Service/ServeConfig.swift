import Foundation
import Media
import Output
import TOMLKit

/// A configuration problem, naming the file and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    /// The configuration file (or "<string>").
    public let path: String
    public let message: String

    public init(path: String, _ message: String) { self.path = path; self.message = message }

    public var description: String { "\(path): \(message)" }
}

/// What the model part of the config asks for; compared on SIGHUP to decide whether to reload.
public struct ModelConfig: Sendable, Equatable, Decodable {
    /// Model file (ONNX, TFLite or Keras .h5); nil: the default model (the same lookup as `run`).
    public var path: String?
    /// Labels file, one per line (nil: the model's own or indices only).
    public var labels: String?
    /// "fp32" or "bf16".
    public var precision: String = "fp32"
    /// oneDNN threads (nil: all cores).
    public var threads: Int?
    /// Frames per model call.
    public var batch: Int = 16
    public var width: Int?
    public var height: Int?
    /// Per-channel mean and std on 0..255 pixels.
    public var mean: [Float]?
    public var std: [Float]?
    /// "stretch", "center-crop" or "letterbox" (nil: the model's default).
    public var resize: String?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case path, labels, precision, threads, batch, width, height, mean, std, resize
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decodeIfPresent(String.self, forKey: .path)
        labels = try c.decodeIfPresent(String.self, forKey: .labels)
        precision = try c.decodeIfPresent(String.self, forKey: .precision) ?? "fp32"
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
        batch = try c.decodeIfPresent(Int.self, forKey: .batch) ?? 16
        width = try c.decodeIfPresent(Int.self, forKey: .width)
        height = try c.decodeIfPresent(Int.self, forKey: .height)
        mean = try c.decodeNumbers(forKey: .mean)
        std = try c.decodeNumbers(forKey: .std)
        resize = try c.decodeIfPresent(String.self, forKey: .resize)
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

    public init() {}

    enum CodingKeys: String, CodingKey {
        case emit, files, embeddingEncoding = "embedding_encoding", topK = "top_k", minScore = "min_score"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        emit = try c.decodeIfPresent([String].self, forKey: .emit) ?? ["labels"]
        files = try c.decodeIfPresent([String].self, forKey: .files) ?? ["npy", "csv"]
        embeddingEncoding = try c.decodeIfPresent(String.self, forKey: .embeddingEncoding) ?? "base64"
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? 5
        minScore = Float(try c.decodeNumber(forKey: .minScore) ?? 0)
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
    public var output = OutputConfig()
    public var streams: [StreamConfig] = []

    public init() {}

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
        if let v = raw.output { c.output = v }
        c.streams = raw.streams ?? []
        try c.validate(path: path)
        return c
    }

    /// Cross-field checks; each failure names the key.
    public func validate(path: String) throws {
        func fail(_ m: String) -> ConfigError { ConfigError(path: path, m) }
        if inbox == nil && streams.isEmpty { throw fail("nothing to do: set `inbox` or add a [[streams]] entry") }
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
        if !["fp32", "bf16", "int8"].contains(model.precision) { throw fail("`model.precision` must be \"fp32\", \"bf16\" or \"int8\"") }
        if model.batch < 1 || model.batch > 256 { throw fail("`model.batch` must be 1...256") }
        if let t = model.threads, t < 1 { throw fail("`model.threads` must be at least 1") }
        for (key, v) in [("mean", model.mean), ("std", model.std)] {
            if let v, v.count != 1 && v.count != 3 { throw fail("`model.\(key)` must have 1 or 3 values") }
        }
        if let s = model.std, s.contains(where: { $0 <= 0 }) { throw fail("`model.std` values must be positive") }
        if let r = model.resize, ResizeMode(rawValue: r) == nil {
            throw fail("`model.resize` must be \"stretch\", \"center-crop\" or \"letterbox\"")
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
        if output.topK < 0 || output.topK > 100 { throw fail("`output.top_k` must be 0...100") }
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
    var output: OutputConfig?
    var streams: [StreamConfig]?

    enum CodingKeys: String, CodingKey {
        case stateDir = "state_dir", inbox, outbox, doneDir = "done_dir", failedDir = "failed_dir",
             streamDir = "stream_dir", maxAttempts = "max_attempts", drainTimeout = "drain_timeout",
             settleTime = "settle_time", retries, retryDelay = "retry_delay", metricsListen = "metrics_listen", logLevel = "log_level", model, output, streams
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
        output = try c.decodeIfPresent(OutputConfig.self, forKey: .output)
        streams = try c.decodeIfPresent([StreamConfig].self, forKey: .streams)
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
