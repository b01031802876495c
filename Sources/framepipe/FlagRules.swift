import ArgumentParser
import Pipeline

/// The accepted range of every numeric flag, one rule per flag whichever command takes it
/// (`--top-k` is >= 1 in `run` and `check`; `--batch` is capped the same in `run` and `bench`).
///
/// Numeric options are declared with `parsing: .unconditional`, so `--fps -1` reads -1 as the
/// value and the rule rejects it with its range, instead of ArgumentParser taking `-1` for a flag.
/// Every rule runs in `validate()`, before any model or input is opened.
enum FlagRules {
    // Shared with the service config (`SettingRules`: the same limits under `model.*`, `output.*`, `sampling.*`).
    static let batch = SettingRules.batch
    static let topK = SettingRules.topK
    static let threads = SettingRules.threads
    static let size = SettingRules.size
    static let stream = SettingRules.stream
    static let every = SettingRules.every
    static let framesPerInput = SettingRules.framesPerInput
    static let decoderThreads = SettingRules.decoderThreads
    static let maxPixels = SettingRules.maxPixels
    static let minScore = SettingRules.minScore
    static let fps = SettingRules.fps
    static let start = SettingRules.start
    static let end = SettingRules.end
    static let ioTimeout = SettingRules.ioTimeout

    // Command line only.
    static let jobs = IntRule(SettingName("jobs"), 1...256)
    static let maxLatency = IntRule(SettingName("max-latency"), 1...3_600_000, unit: " ms")
    static let frameQueue = IntRule(SettingName("frame-queue"), 1...4096)
    static let batchesInFlight = IntRule(SettingName("batches-in-flight"), 2...64)
    static let iterations = IntRule(SettingName("iterations"), 1...1_000_000)
    static let warmup = IntRule(SettingName("warmup"), 0...1_000_000)

    /// Cross-flag rule of `--start` and `--end`.
    static func checkWindow(start: Double?, end: Double?) throws {
        try usage { try SettingRules.checkWindow(start: start, end: end) }
    }

    /// Runs `body`, turning a `SettingError` into a usage error worded with the flag's name.
    static func usage<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as SettingError {
            throw Failure.usage(e.flagMessage)
        }
    }
}

extension IntRule {
    /// Throws a usage error naming the flag, its range and the value given.
    func check(_ value: Int?) throws { try FlagRules.usage { try validate(value) } }
}

extension DoubleRule {
    /// Throws a usage error naming the flag, its range and the value given (NaN and infinities fail).
    func check(_ value: Double?) throws { try FlagRules.usage { try validate(value) } }
    func check(_ value: Float?) throws { try FlagRules.usage { try validate(value) } }
}
