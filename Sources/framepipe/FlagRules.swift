import ArgumentParser

/// The accepted range of every numeric flag, one rule per flag whichever command takes it
/// (`--top-k` is >= 1 in `run` and `check`; `--batch` is capped the same in `run` and `bench`).
///
/// Numeric options are declared with `parsing: .unconditional`, so `--fps -1` reads -1 as the
/// value and the rule rejects it with its range, instead of ArgumentParser taking `-1` for a flag.
/// Every rule runs in `validate()`, before any model or input is opened.
enum FlagRules {
    static let batch = IntRule("--batch", 1...1024)
    static let topK = IntRule("--top-k", 1...100_000)
    static let jobs = IntRule("--jobs", 1...256)
    static let maxLatency = IntRule("--max-latency", 1...3_600_000, unit: " ms")
    static let frameQueue = IntRule("--frame-queue", 1...4096)
    static let batchesInFlight = IntRule("--batches-in-flight", 2...64)
    static let threads = IntRule("--threads", 1...1024)
    static let size = IntRule("--size", 8...4096)
    static let iterations = IntRule("--iterations", 1...1_000_000)
    static let warmup = IntRule("--warmup", 0...1_000_000)
    static let stream = IntRule("--stream", 0...65_535)
    static let every = IntRule("--every", 1...1_000_000_000)
    static let framesPerInput = IntRule("--frames-per-input", 1...1_000_000)
    /// FFmpeg clamps larger counts to its MAX_THREADS (64) with a warning.
    static let decoderThreads = IntRule("--decoder-threads", 0...64)
    static let maxPixels = IntRule("--max-pixels", 1...(1 << 40))
    static let minScore = DoubleRule("--min-score", 0...1)
    static let fps = DoubleRule("--fps", 0...1_000_000, openLow: true)
    /// Up to ~31 years: the pts arithmetic (seek target in stream time base units) stays in Int64.
    static let start = DoubleRule("--start", 0...1e9, unit: " s")
    static let end = DoubleRule("--end", 0...1e9, openLow: true, unit: " s")
    /// 0 = no limit; the deadline arithmetic is in nanoseconds (UInt64).
    static let ioTimeout = DoubleRule("--io-timeout", 0...1e6, unit: " s")

    /// Cross-flag rule of `--start` and `--end`.
    static func checkWindow(start: Double?, end: Double?) throws {
        if let start, let end, !(start < end) {
            throw Failure.usage("--start (\(start)) must be before --end (\(end))")
        }
    }
}

/// An integer flag's accepted range.
struct IntRule {
    let flag: String
    let range: ClosedRange<Int>
    let unit: String

    init(_ flag: String, _ range: ClosedRange<Int>, unit: String = "") {
        self.flag = flag; self.range = range; self.unit = unit
    }

    /// Throws a usage error naming the flag, its range and the value given.
    func check(_ value: Int?) throws {
        guard let value, !range.contains(value) else { return }
        throw Failure.usage("\(flag) must be in \(range.lowerBound)...\(range.upperBound)\(unit) (got \(value))")
    }
}

/// A floating-point flag's accepted range; `openLow` excludes the lower bound (`--fps` > 0).
struct DoubleRule {
    let flag: String
    let range: ClosedRange<Double>
    let openLow: Bool
    let unit: String

    init(_ flag: String, _ range: ClosedRange<Double>, openLow: Bool = false, unit: String = "") {
        self.flag = flag; self.range = range; self.openLow = openLow; self.unit = unit
    }

    /// Throws a usage error naming the flag, its range and the value given (NaN and infinities fail).
    func check(_ value: Double?) throws {
        guard let value else { return }
        let ok = value.isFinite && range.contains(value) && !(openLow && value == range.lowerBound)
        guard !ok else { return }
        let low = openLow ? "> \(Self.text(range.lowerBound)) and <= " : "in \(Self.text(range.lowerBound))..."
        throw Failure.usage("\(flag) must be \(low)\(Self.text(range.upperBound))\(unit) (got \(Self.text(value)))")
    }

    func check(_ value: Float?) throws { try check(value.map(Double.init)) }

    /// 1e9 as "1000000000", 0.5 as "0.5".
    private static func text(_ v: Double) -> String {
        if v.isFinite, v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
