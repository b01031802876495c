import CFFmpeg
import Foundation

/// framepipe's FFmpeg log callback (`av_log_set_callback`): it prints what the user asked for
/// (`FFmpegLogLevel.set`, FRAMEPIPE_FFMPEG_LOG) and keeps the error lines logged while a thread
/// opens an input, so that the error message can give FFmpeg's precise reason ("moov atom not
/// found", "Picture size 99999999x2 is invalid") instead of only the generic code it returned.
///
/// FFmpeg calls the callback on the thread that logs. Opening an input (`avformat_open_input`,
/// `avformat_find_stream_info`) logs on the calling thread, so a capture is per thread: inputs
/// opened at once by other threads never mix their lines.
enum FFmpegLog {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var printLevel = AV_LOG_INFO
    nonisolated(unsafe) private static var captures: [pthread_t: [String]] = [:]
    nonisolated(unsafe) private static var installed = false

    /// Installs the callback (once) and sets the level printed on stderr.
    static func setPrintLevel(_ level: Int32) {
        lock.lock(); defer { lock.unlock() }
        printLevel = level
        installIfNeeded()
    }

    private static func installIfNeeded() {
        guard !installed else { return }
        installed = true
        av_log_set_callback { ptr, level, fmt, args in
            guard let args else { return }
            FFmpegLog.receive(ptr, level, fmt, args)
        }
    }

    /// Runs `body` collecting the error-level lines FFmpeg logs on this thread meanwhile;
    /// `lines` receives them (also when `body` throws).
    static func capturing<T>(_ lines: inout [String], _ body: () throws -> T) rethrows -> T {
        let me = pthread_self()
        lock.lock()
        installIfNeeded()
        captures[me] = []
        lock.unlock()
        defer {
            lock.lock()
            lines = captures.removeValue(forKey: me) ?? []
            lock.unlock()
        }
        return try body()
    }

    private static func receive(_ ptr: UnsafeMutableRawPointer?, _ level: Int32, _ fmt: UnsafePointer<CChar>?,
                                _ args: CVaListPointer) {
        guard let fmt else { return }
        lock.lock()
        let show = level <= printLevel
        let capture = level <= AV_LOG_ERROR && captures[pthread_self()] != nil
        lock.unlock()
        guard show || capture else { return }
        var buffer = [CChar](repeating: 0, count: 1024)
        var printPrefix: Int32 = 1
        _ = av_log_format_line2(ptr, level, fmt, args, &buffer, Int32(buffer.count), &printPrefix)
        if show { fputs(buffer, stderr) }
        guard capture else { return }
        // The message without its "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...] " context prefix.
        var text = String(cString: buffer)
        if text.hasPrefix("["), let close = text.range(of: "] ") { text = String(text[close.upperBound...]) }
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !line.isEmpty else { return }
        lock.lock()
        if var list = captures[pthread_self()], list.count < 8, !list.contains(line) {
            list.append(line)
            captures[pthread_self()] = list
        }
        lock.unlock()
    }
}
