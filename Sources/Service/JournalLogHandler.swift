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

    /// The line for a message (without the trailing newline).
    public static func format(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "<\(priority(level))>" + message.replacingOccurrences(of: "\n", with: " ")
        for key in metadata.keys.sorted() {
            let v = "\(metadata[key]!)"
            let quoted = v.contains(" ") || v.isEmpty ? "\"" + v.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : v
            line += " \(key)=\(quoted)"
        }
        return line
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
