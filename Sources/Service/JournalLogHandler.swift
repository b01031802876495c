import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler writing one line per message to stderr, prefixed with the sd-daemon(3)
/// priority (`<6>` info ... `<3>` error) so journald files each line at the right level; no
/// timestamp (journald adds its own). Metadata follows as `key=value`.
///
/// Example: `<6>done carphone.mp4 frames=120 seconds=0.61 input.path=/var/lib/framepipe/inbox/carphone.mp4`
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let fd: Int32

    /// - Parameters:
    ///   - label: the logger's label (not printed; journald has the unit name).
    ///   - level: the lowest level written.
    public init(label: String, level: Logger.Level = .info, fd: Int32 = STDERR_FILENO) {
        self.label = label; self.logLevel = level; self.fd = fd
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The sd-daemon priority of a swift-log level.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// The line for a message (without the trailing newline). The message and every metadata value
    /// pass through `escape`, so nothing from outside (a file name, an FFmpeg error, a stream URL) can
    /// start a line of its own: a name like `evil\n<0>FORGED.mp4` stays inside its field.
    public static func format(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "<\(priority(level))>" + escape(message)
        for key in metadata.keys.sorted() {
            let v = escape("\(metadata[key]!)")
            let needsQuotes = v.isEmpty || v.contains(" ") || v.contains("\"") || v.contains("=")
            line += " \(escape(key))=" + (needsQuotes ? "\"" + v.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : v)
        }
        return line
    }

    /// `text` with every control character written as an escape: `\n`, `\r`, `\t`, a backslash as
    /// `\\`, other C0/C1 controls, DEL and the Unicode line/paragraph separators as `\xHH` or
    /// `\u{HHHH}`. The result is one line of printable text.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for u in text.unicodeScalars {
            switch u.value {
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x5C: out += "\\\\"
            case 0x00..<0x20, 0x7F:
                out += "\\x" + String(format: "%02x", u.value)
            case 0x80..<0xA0, 0x2028, 0x2029:
                out += "\\u{" + String(u.value, radix: 16) + "}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    public func log(event: LogEvent) {
        var extra = event.metadata ?? [:]
        if let e = event.error { extra["error"] = "\(e)" }
        write(level: event.level, message: event.message, metadata: extra)
    }

    private func write(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?) {
        let all = extra.map { metadata.merging($0) { _, new in new } } ?? metadata
        let text = Self.format(level: level, message: message.description, metadata: all) + "\n"
        text.utf8CString.withUnsafeBufferPointer { p in
            _ = Glibc.write(fd, p.baseAddress, p.count - 1)  // one write: lines from threads never interleave
        }
    }
}
