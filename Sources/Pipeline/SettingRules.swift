/// A setting's two spellings: the command-line flag (`--decoder-threads`) and the config key
/// (`sampling.decoder_threads`). One rule per setting, whichever of the two sets it.
public struct SettingName: Sendable, Equatable {
    /// The word itself, as the flag writes it (`decoder-threads`).
    public let word: String
    /// The config table holding it (`model`, `sampling`, `output`), nil for command-line-only settings.
    public let table: String?

    public init(_ word: String, table: String? = nil) { self.word = word; self.table = table }

    /// `--decoder-threads`.
    public var flag: String { "--" + word }
    /// `sampling.decoder_threads` (`decoder_threads` without a table).
    public var key: String {
        let k = word.replacingOccurrences(of: "-", with: "_")
        return table.map { $0 + "." + k } ?? k
    }
}

/// A value outside its setting's rule. `problem` is the same text for the command line and the
/// config file (`must be in 1...1024 (got 2000)`); each names the setting its own way.
public struct SettingError: Error, CustomStringConvertible, Sendable, Equatable {
    public let name: SettingName
    /// What is wrong, after the setting's name.
    public let problem: String
    /// A second setting the problem is about (`--start ... must be before --end ...`).
    public let other: SettingName?

    public init(_ name: SettingName, _ problem: String, other: SettingName? = nil) {
        self.name = name; self.problem = problem; self.other = other
    }

    /// As the command line says it: `--batch must be in 1...1024 (got 2000)`.
    public var flagMessage: String { render { $0.flag } }
    /// As a config file says it: `` `model.batch` must be in 1...1024 (got 2000) ``.
    public var keyMessage: String { render { "`\($0.key)`" } }
    public var description: String { flagMessage }

    private func render(_ spell: (SettingName) -> String) -> String {
        var text = spell(name) + " " + problem
        if let other { text = text.replacingOccurrences(of: "{other}", with: spell(other)) }
        return text
    }
}

/// An integer setting's accepted range.
public struct IntRule: Sendable {
    public let name: SettingName
    public let range: ClosedRange<Int>
    public let unit: String

    public init(_ name: SettingName, _ range: ClosedRange<Int>, unit: String = "") {
        self.name = name; self.range = range; self.unit = unit
    }

    /// The flag (`--batch`).
    public var flag: String { name.flag }

    /// Throws naming the setting, its range and the value given.
    public func validate(_ value: Int?) throws {
        guard let value, !range.contains(value) else { return }
        throw SettingError(name, "must be in \(range.lowerBound)...\(range.upperBound)\(unit) (got \(value))")
    }
}

/// A floating-point setting's accepted range; `openLow` excludes the lower bound (`fps` > 0).
public struct DoubleRule: Sendable {
    public let name: SettingName
    public let range: ClosedRange<Double>
    public let openLow: Bool
    public let unit: String

    public init(_ name: SettingName, _ range: ClosedRange<Double>, openLow: Bool = false, unit: String = "") {
        self.name = name; self.range = range; self.openLow = openLow; self.unit = unit
    }

    /// The flag (`--fps`).
    public var flag: String { name.flag }

    /// Throws naming the setting, its range and the value given (NaN and infinities fail).
    public func validate(_ value: Double?) throws {
        guard let value else { return }
        let ok = value.isFinite && range.contains(value) && !(openLow && value == range.lowerBound)
        guard !ok else { return }
        let low = openLow ? "> \(Self.text(range.lowerBound)) and <= " : "in \(Self.text(range.lowerBound))..."
        throw SettingError(name, "must be \(low)\(Self.text(range.upperBound))\(unit) (got \(Self.text(value)))")
    }

    public func validate(_ value: Float?) throws { try validate(value.map(Double.init)) }

    /// 1e9 as "1000000000", 0.5 as "0.5".
    static func text(_ v: Double) -> String {
        if v.isFinite, v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

/// The rules of every setting the command line and the service config share (model,
/// preprocessing, sampling, input limits, labels): one range per setting, whichever sets it.
public enum SettingRules {
    public static let batch = IntRule(SettingName("batch", table: "model"), 1...1024)
    public static let threads = IntRule(SettingName("threads", table: "model"), 1...1024)
    public static let size = IntRule(SettingName("size", table: "model"), 8...4096)
    /// Config only (a non-square input); the same range as `size`.
    public static let width = IntRule(SettingName("width", table: "model"), 8...4096)
    public static let height = IntRule(SettingName("height", table: "model"), 8...4096)
    public static let mean = SettingName("mean", table: "model")
    public static let std = SettingName("std", table: "model")
    public static let precision = SettingName("precision", table: "model")
    public static let resize = SettingName("resize", table: "model")

    public static let topK = IntRule(SettingName("top-k", table: "output"), 1...100_000)
    public static let minScore = DoubleRule(SettingName("min-score", table: "output"), 0...1)

    public static let stream = IntRule(SettingName("stream", table: "sampling"), 0...65_535)
    public static let every = IntRule(SettingName("every", table: "sampling"), 1...1_000_000_000)
    public static let framesPerInput = IntRule(SettingName("frames-per-input", table: "sampling"), 1...1_000_000)
    public static let fps = DoubleRule(SettingName("fps", table: "sampling"), 0...1_000_000, openLow: true)
    /// Up to ~31 years: the pts arithmetic (seek target in stream time base units) stays in Int64.
    public static let start = DoubleRule(SettingName("start", table: "sampling"), 0...1e9, unit: " s")
    public static let end = DoubleRule(SettingName("end", table: "sampling"), 0...1e9, openLow: true, unit: " s")
    /// FFmpeg clamps larger counts to its MAX_THREADS (64) with a warning.
    public static let decoderThreads = IntRule(SettingName("decoder-threads", table: "sampling"), 0...64)
    public static let maxPixels = IntRule(SettingName("max-pixels", table: "sampling"), 1...(1 << 40))
    /// 0 = no limit; the deadline arithmetic is in nanoseconds (UInt64).
    public static let ioTimeout = DoubleRule(SettingName("io-timeout", table: "sampling"), 0...1e6, unit: " s")

    /// `--scene T` / `sampling.scene`: a score like ffmpeg's `scene`.
    public static let scene = DoubleRule(SettingName("scene", table: "sampling"), 0...1)
    /// Up to a day between kept frames.
    public static let sceneMinGap = DoubleRule(SettingName("scene-min-gap", table: "sampling"), 0...86_400, unit: " s")

    public static let emit = SettingName("emit", table: "output")
    public static let segments = SettingName("segments", table: "output")
    /// Up to a day for a label to hold.
    public static let segmentMin = DoubleRule(SettingName("segment-min", table: "output"), 0...86_400, unit: " s")
    public static let withFrames = SettingName("with-frames", table: "output")
    public static let pool = SettingName("pool", table: "output")

    /// Cross-setting rules of scene sampling: a gap needs a threshold, and scene changes and
    /// `frames-per-input` both choose the frames.
    public static func checkScene(scene: Double?, minGap: Double, framesPerInput: Int?) throws {
        if scene != nil && framesPerInput != nil {
            throw SettingError(Self.scene.name, "and {other} both choose the frames: give one of them",
                               other: Self.framesPerInput.name)
        }
        if minGap > 0 && scene == nil { throw SettingError(sceneMinGap.name, "goes with {other}", other: Self.scene.name) }
    }

    /// Cross-setting rules of segments and pooling: segments need labels, pooling embeddings,
    /// frame records beside segments need segments.
    public static func checkRecords(segments: Bool, withFrames: Bool, pool: Bool, labels: Bool, embeddings: Bool) throws {
        if segments && !labels { throw SettingError(Self.segments, "needs labels: {other} must include labels", other: emit) }
        if pool && !embeddings { throw SettingError(Self.pool, "needs embeddings: {other} must include embedding", other: emit) }
        if withFrames && !segments { throw SettingError(Self.withFrames, "goes with {other}", other: Self.segments) }
    }

    /// Cross-setting rule of `start` and `end`.
    public static func checkWindow(start: Double?, end: Double?) throws {
        if let start, let end, !(start < end) {
            throw SettingError(Self.start.name, "(\(DoubleRule.text(start))) must be before {other} (\(DoubleRule.text(end)))",
                               other: Self.end.name)
        }
    }

    /// One number for all three channels or three (R,G,B): the three values, or a problem.
    public static func triple(_ values: [Float], _ name: SettingName, positive: Bool, given: String) throws -> [Float] {
        guard values.count == 1 || values.count == 3, values.allSatisfy(\.isFinite) else {
            throw SettingError(name, "takes one number or three numbers, R,G,B (got \(given))")
        }
        if positive, values.contains(where: { $0 <= 0 }) {
            throw SettingError(name, "values must be positive (got \(given))")
        }
        return values.count == 1 ? [values[0], values[0], values[0]] : values
    }
}
