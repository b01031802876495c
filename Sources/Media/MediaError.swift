import CFFmpeg

/// A failure reading or decoding one input: which input, what operation, and FFmpeg's message.
///
/// `description` is one line, `"<operation>: <message>"`: whoever prints it names the input once
/// (`framepipe: <input>: <operation>: <message>`), so the input never appears twice.
public struct MediaError: Error, CustomStringConvertible, Sendable {
    /// The input as the user named it (path, `-` or URL).
    public let input: String
    /// What failed, e.g. "open input", "read packet", "open decoder".
    public let operation: String
    /// FFmpeg's (or our) explanation, e.g. "No such file or directory".
    public let message: String
    /// The FFmpeg error code (negative AVERROR), or nil when the error is not FFmpeg's.
    public let code: Int32?

    /// Creates an error; `message` defaults to FFmpeg's text for `code`.
    public init(input: String, operation: String, code: Int32? = nil, message: String? = nil) {
        self.input = input
        self.operation = operation
        self.code = code
        self.message = message ?? code.map(ffErrorString) ?? "failed"
    }

    public var description: String { "\(operation): \(message)" }
}

/// FFmpeg's text for an AVERROR code (`av_strerror`).
func ffErrorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    if av_strerror(code, &buffer, buffer.count) < 0 { return "FFmpeg error \(code)" }
    return String(cString: buffer)
}

/// FFmpeg's well-known return codes as Swift values.
enum FFCode {
    static let again = fp_averror_eagain()
    static let eof = fp_averror_eof()
    static let invalidData = fp_averror_invaliddata()
    static let exit = fp_averror_exit()
    static let decoderNotFound = fp_averror_decoder_not_found()
    static let streamNotFound = fp_averror_stream_not_found()
    static let noPTS = fp_nopts_value()
}

/// Checks an FFmpeg return code: negative values throw a `MediaError` naming `input` and `operation`.
@discardableResult
func ff(_ code: Int32, _ operation: @autoclosure () -> String, input: String) throws -> Int32 {
    if code < 0 { throw MediaError(input: input, operation: operation(), code: code) }
    return code
}

/// FFmpeg's own log verbosity (`av_log_set_level`); FFmpeg logs to stderr.
public enum FFmpegLogLevel: String, Sendable, CaseIterable {
    case quiet, panic, fatal, error, warning, info, verbose, debug

    var value: Int32 {
        switch self {
        case .quiet: return AV_LOG_QUIET
        case .panic: return AV_LOG_PANIC
        case .fatal: return AV_LOG_FATAL
        case .error: return AV_LOG_ERROR
        case .warning: return AV_LOG_WARNING
        case .info: return AV_LOG_INFO
        case .verbose: return AV_LOG_VERBOSE
        case .debug: return AV_LOG_DEBUG
        }
    }

    /// Sets FFmpeg's process-wide log level (`av_log_set_level`). The CLI uses `.quiet` so that
    /// a bad input produces framepipe's one-line error, not FFmpeg's decoder chatter.
    public static func set(_ level: FFmpegLogLevel) {
        av_log_set_level(level.value)
        FFmpegLog.setPrintLevel(level.value)
    }
}
