import CFFmpeg
import Foundation

/// What FFmpeg may open on behalf of one input: which protocols (`protocol_whitelist`) and which
/// demuxers (`format_whitelist`). Both are inherited by every nested open FFmpeg makes (HLS
/// segments, concat entries, `subfile:`/`concat:` URLs), so a playlist cannot reach further than
/// the input itself.
///
/// - A local path (or `file://` URL) may use the `file` protocol only, and `-` only `pipe`. Local
///   inputs are opened as `file:PATH`, so a name like `concat:a|b` or `subfile:...` is a file name,
///   never a protocol.
/// - A URL may use the protocols of its own scheme (and what they are built on: `https` uses `tls`
///   and `tcp`; HLS over http(s) may use `crypto` for AES segments).
/// - Demuxers that read further files named inside the input (HLS, DASH, concat lists, IMF, SDP)
///   are refused for local, stdin and in-memory inputs; concat lists are refused everywhere.
struct InputPolicy: Equatable {
    /// The URL handed to FFmpeg.
    let url: String
    /// Comma-separated protocol names (`protocol_whitelist`).
    let protocols: String
    /// True for network inputs (URL with a network scheme): enables `avformat_network_init`.
    let network: Bool
    /// Demuxers refused for this input (names as in `AVInputFormat.name`).
    let refusedFormats: Set<String>

    /// Demuxers that open further inputs named inside the file.
    static let referencingFormats: Set<String> = ["hls", "applehttp", "dash", "concat", "imf", "sdp"]

    /// The policy for a user-facing input name (a path, `-`, or a URL).
    static func forInput(_ input: String) -> InputPolicy {
        if input == "-" {
            // Redirected from a regular file (`- < clip.mp4`), stdin can seek: read it as that file,
            // so an MP4 with its index at the end works too.
            var st = stat()
            if fstat(STDIN_FILENO, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG {
                return InputPolicy(url: "file:/dev/stdin", protocols: "file", network: false, refusedFormats: referencingFormats)
            }
            return InputPolicy(url: "pipe:0", protocols: "pipe", network: false, refusedFormats: referencingFormats)
        }
        guard let scheme = urlScheme(input) else {
            return InputPolicy(url: "file:" + input, protocols: "file", network: false, refusedFormats: referencingFormats)
        }
        let protocols: [String]
        switch scheme {
        case "file": return InputPolicy(url: input, protocols: "file", network: false, refusedFormats: referencingFormats)
        case "http", "https": protocols = ["http", "https", "tls", "tcp", "crypto"]
        case "rtsp", "rtsps": protocols = ["rtsp", "rtsps", "rtp", "srtp", "udp", "tcp", "tls"]
        case "rtmp", "rtmps", "rtmpt", "rtmpts": protocols = ["rtmp", "rtmps", "rtmpt", "rtmpts", "http", "https", "tls", "tcp"]
        case "rtp": protocols = ["rtp", "udp"]
        case "tls": protocols = ["tls", "tcp"]
        default: protocols = [scheme] + ["tcp", "udp"].filter { $0 != scheme }  // udp, srt, tcp, ...
        }
        return InputPolicy(url: input, protocols: protocols.joined(separator: ","), network: true, refusedFormats: ["concat"])
    }

    /// The local file path this policy opens (`file:PATH` or a `file://` URL), nil otherwise.
    var localPath: String? {
        guard protocols == "file" else { return nil }
        if url.hasPrefix("file://") { return URL(string: url)?.path }
        if url.hasPrefix("file:") { return String(url.dropFirst(5)) }
        return nil
    }

    /// The policy for bytes in memory (fuzzing, tests): no protocol at all, no referencing demuxer.
    static let memory = InputPolicy(url: "", protocols: "none", network: false, refusedFormats: referencingFormats)

    /// `scheme` of `scheme://...` (lower case), or nil for a plain path.
    static func urlScheme(_ input: String) -> String? {
        guard let r = input.range(of: "://") else { return nil }
        let scheme = input[..<r.lowerBound]
        guard let first = scheme.first, first.isASCII, first.isLetter,
              scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+.-".contains($0)) }) else { return nil }
        return scheme.lowercased()
    }

    /// `format_whitelist`: every demuxer of this FFmpeg build except the refused ones.
    var formatWhitelist: String {
        InputPolicy.demuxerNames.filter { !refusedFormats.contains($0) }.joined(separator: ",")
    }

    /// Every demuxer name of this FFmpeg build (`av_demuxer_iterate`; a comma list like
    /// "mov,mp4,m4a" gives each name).
    static let demuxerNames: [String] = {
        var names: [String] = []
        var opaque: UnsafeMutableRawPointer?
        while let f = av_demuxer_iterate(&opaque) {
            names += String(cString: f.pointee.name).split(separator: ",").map(String.init)
        }
        return names
    }()
}
