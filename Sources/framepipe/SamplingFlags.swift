import ArgumentParser
import Foundation
import Media

/// Stream selection, decoder threads, frame sampling and input limits flags, shared by `frames` and `run`
/// (`@OptionGroup var sampling: SamplingFlags`).
struct SamplingFlags: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Video stream index to decode (default: the best video stream).", valueName: "index"))
    var stream: Int?

    @Option(name: .long, help: ArgumentHelp("Keep every Nth frame (after the other sampling flags).", valueName: "n"))
    var every: Int = 1

    @Option(name: .long, help: ArgumentHelp("Keep at most F frames per second, chosen by timestamp (works with variable frame rate).", valueName: "f"))
    var fps: Double?

    @Flag(name: .long, help: "Decode key frames only (non-key packets are not even decoded).")
    var keyframes = false

    @Option(name: .long, help: ArgumentHelp("Start time in seconds (pts): seek, then drop earlier frames.", valueName: "seconds"))
    var start: Double?

    @Option(name: .long, help: ArgumentHelp("End time in seconds (pts, exclusive): stop reading there.", valueName: "seconds"))
    var end: Double?

    @Option(name: .customLong("decoder-threads"), help: ArgumentHelp("Decoder threads (0 = FFmpeg chooses).", valueName: "n"))
    var decoderThreads: Int = 0

    @Option(name: .customLong("max-pixels"), help: ArgumentHelp(
        "Largest frame accepted, in pixels (width x height), checked before any frame is allocated (default 8192x8192).",
        valueName: "n"))
    var maxPixels: Int = SourceOptions.defaultMaxPixels

    @Option(name: .customLong("io-timeout"), help: ArgumentHelp(
        "Seconds that opening an input, and then each read, may wait for data before the input fails (network inputs; 0 = no limit).",
        valueName: "seconds"))
    var ioTimeout: Double = SourceOptions.defaultIOTimeout

    /// The sampling part alone.
    var sampling: SamplingOptions {
        SamplingOptions(every: every, fps: fps, keyframesOnly: keyframes, start: start, end: end)
    }

    /// The options for `FrameSource` (stream, decoder threads, sampling).
    func sourceOptions() -> SourceOptions {
        SourceOptions(streamIndex: stream, decoderThreads: decoderThreads, sampling: sampling,
                      maxPixels: maxPixels, ioTimeout: ioTimeout == 0 ? nil : ioTimeout)
    }

    /// Cross-field checks. A bad value is a usage error: message on stderr, exit status 2.
    func validate() throws {
        var problem = sampling.validationError
        if let stream, stream < 0 { problem = "--stream must be >= 0 (got \(stream))" }
        if decoderThreads < 0 { problem = "--decoder-threads must be >= 0 (got \(decoderThreads))" }
        if maxPixels < 1 { problem = "--max-pixels must be at least 1 (got \(maxPixels))" }
        if !(ioTimeout >= 0 && ioTimeout.isFinite) { problem = "--io-timeout must be >= 0 seconds (got \(ioTimeout))" }
        if let problem { throw usageFailure(problem) }
    }
}

/// Reports a command-line usage error as `framepipe: error: <message>` on stderr and returns the
/// exit code (2) to throw from `validate()`: ArgumentParser then exits with it, printing nothing more.
/// (Its own parse errors, e.g. a non-number for `--every`, keep ArgumentParser's status 64.)
func usageFailure(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("framepipe: error: \(message)\nSee 'framepipe --help'.\n".utf8))
    return ExitCode(2)
}
