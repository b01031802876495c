import ArgumentParser
import Foundation
import Media
import Pipeline

/// Stream selection, decoder threads, frame sampling and input limits flags, shared by `frames` and `run`
/// (`@OptionGroup var sampling: SamplingFlags`).
struct SamplingFlags: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Video stream index to decode (default: the best video stream).", valueName: "index"))
    var stream: Int?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Keep every Nth frame (after the other sampling flags).", valueName: "n"))
    var every: Int = 1

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Keep at most F frames per second, chosen by timestamp (works with variable frame rate).", valueName: "f"))
    var fps: Double?

    @Flag(name: .long, help: "Decode key frames only (non-key packets are not even decoded).")
    var keyframes = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Start time in seconds (pts): seek, then drop earlier frames.", valueName: "seconds"))
    var start: Double?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("End time in seconds (pts, exclusive): stop reading there.", valueName: "seconds"))
    var end: Double?

    @Option(name: .customLong("frames-per-input"), parsing: .unconditional, help: ArgumentHelp(
        "Keep N frames evenly spaced over each input's duration (or --start..--end), chosen by pts. A file seeks to the "
            + "key frame before each one and decodes only from there; a pipe (stdin, FIFO) or a stream that cannot seek "
            + "decodes everything, and an input that states no duration needs --end. Not with --every, --fps, --keyframes.",
        valueName: "n"))
    var framesPerInput: Int?

    @Option(name: .customLong("decoder-threads"), parsing: .unconditional, help: ArgumentHelp("Decoder threads per input (0 = automatic: FFmpeg chooses for one input; with several at once, the cores shared among them).", valueName: "n"))
    var decoderThreads: Int = 0

    @Option(name: .customLong("max-pixels"), parsing: .unconditional, help: ArgumentHelp(
        "Largest frame accepted, in pixels (width x height), checked before any frame is allocated (default 8192x8192).",
        valueName: "n"))
    var maxPixels: Int = SourceOptions.defaultMaxPixels

    @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: ArgumentHelp(
        "Seconds that opening an input, and then each read, may wait for data before the input fails (network inputs; 0 = no limit).",
        valueName: "seconds"))
    var ioTimeout: Double = SourceOptions.defaultIOTimeout

    /// The flags as the settings type the service config shares (same names and limits).
    var settings: SamplingSettings {
        var s = SamplingSettings()
        s.stream = stream
        s.every = every
        s.framesPerInput = framesPerInput
        s.fps = fps
        s.keyframes = keyframes
        s.start = start
        s.end = end
        s.decoderThreads = decoderThreads
        s.maxPixels = maxPixels
        s.ioTimeout = ioTimeout
        return s
    }

    /// The sampling part alone.
    var sampling: SamplingOptions { settings.sampling }

    /// The options for `FrameSource` (stream, decoder threads, sampling) reading `input`; a live
    /// input (rtsp, udp, ...) decodes with low delay, so each frame is emitted as soon as it is decoded.
    func sourceOptions(for input: String) -> SourceOptions { settings.sourceOptions(for: input) }

    /// Range and cross-field checks (`SamplingSettings.validate`, shared with the service config).
    /// A bad value is a usage error (exit 2).
    func validate() throws {
        try FlagRules.usage { try settings.validate() }
        if let problem = sampling.validationError { throw Failure.usage(problem) }
    }
}
