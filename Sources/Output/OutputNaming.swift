import Foundation

/// Turns input names (paths, `-`, URLs) into safe file stems inside an output folder.
///
/// The stem never contains `/`, never starts with `.`, is never empty, `.` or `..`, and is at most
/// 120 bytes, so `DIR/STEM.ext` always stays directly inside DIR whatever the input name.
/// Two inputs with the same stem in one run get `-2`, `-3`, ... suffixes.
public struct OutputNaming {
    private var used: Set<String> = []

    public init() {}

    /// The bare, sanitised stem for `input` (no collision handling).
    public static func stem(for input: String) -> String {
        var base: String
        if input == "-" {
            base = "stdin"
        } else if let url = URL(string: input), let scheme = url.scheme, scheme.count > 1, input.contains("://") {
            // A URL: host plus last path component, e.g. "rtsp://cam/x/stream" -> "cam-stream".
            let last = url.lastPathComponent
            base = [url.host ?? scheme, last == "/" ? "" : last].filter { !$0.isEmpty }.joined(separator: "-")
        } else {
            base = (input as NSString).lastPathComponent
        }
        // Drop the media extension: "clip.mp4" -> "clip".
        if let dot = base.lastIndex(of: "."), dot != base.startIndex {
            base = String(base[..<dot])
        }
        var out = ""
        for scalar in base.unicodeScalars {
            let c = Character(scalar)
            if c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." {
                out.append(c)
            } else {
                out.append("_")
            }
        }
        while out.hasPrefix(".") { out.removeFirst() }
        while out.utf8.count > 120 { out.removeLast() }
        if out.isEmpty { out = "input" }
        return out
    }

    /// A stem for `input` that no earlier call in this run returned.
    public mutating func uniqueStem(for input: String) -> String {
        let base = Self.stem(for: input)
        var candidate = base
        var n = 1
        while used.contains(candidate) {
            n += 1
            candidate = "\(base)-\(n)"
        }
        used.insert(candidate)
        return candidate
    }
}
