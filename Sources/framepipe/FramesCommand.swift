import ArgumentParser
import Foundation
import Media

/// `framepipe frames INPUT`: one JSON line per kept frame (`index`, `pts`, `keyframe`), flushed per line.
struct FramesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frames",
        abstract: "Decode a video and print one JSON line per kept frame: index, pts (s), keyframe.",
        discussion: """
            INPUT is a file, '-' for stdin, or a URL. Errors go to stderr as one line \
            ('framepipe: <input>: <what failed>') with a non-zero exit status; decoding errors in an \
            otherwise readable input are counted and summarised on stderr. FFmpeg's own log is \
            silenced; set FRAMEPIPE_FFMPEG_LOG=warning (or error, info, debug) to see it.
            """)

    @Argument(help: "Video or image file, '-' for stdin, or a URL.")
    var input: String

    @OptionGroup var sampling: SamplingFlags

    func run() async throws {
        MediaCLI.quietFFmpeg()
        let source: FrameSource
        do {
            source = try FrameSource(input: input, options: sampling.sourceOptions())
        } catch {
            throw MediaCLI.fail(error)
        }
        var line = ""
        line.reserveCapacity(96)
        do {
            while let frame = try source.next() {
                line.removeAll(keepingCapacity: true)
                line += "{\"index\":\(frame.index),\"pts\":\(MediaCLI.json(frame.pts)),\"keyframe\":\(frame.keyframe)}\n"
                fputs(line, stdout)
                fflush(stdout)
            }
        } catch {
            MediaCLI.summarise(source)
            throw MediaCLI.fail(error)
        }
        MediaCLI.summarise(source)
    }
}

/// Small helpers shared by the media commands.
enum MediaCLI {
    /// Silences FFmpeg's own logging unless `FRAMEPIPE_FFMPEG_LOG` names a level (error, warning, debug...).
    static func quietFFmpeg() {
        let wanted = ProcessInfo.processInfo.environment["FRAMEPIPE_FFMPEG_LOG"].flatMap(FFmpegLogLevel.init(rawValue:))
        FFmpegLogLevel.set(wanted ?? .quiet)
    }

    /// Prints `framepipe: <error>` on stderr and returns exit status 1.
    static func fail(_ error: Error) -> ExitCode {
        FileHandle.standardError.write(Data("framepipe: \(error)\n".utf8))
        return ExitCode(1)
    }

    /// A stderr summary when anything was damaged (nothing is printed for a clean input).
    static func summarise(_ source: FrameSource) {
        let s = source.stats
        guard s.decodeErrors > 0 || s.corruptPackets > 0 else { return }
        FileHandle.standardError.write(Data(
            ("framepipe: \(source.input): warning: \(s.decodeErrors) decode error(s), \(s.corruptPackets) corrupt packet(s); "
             + "\(s.packetsRead) packets read, \(s.framesDecoded) frames decoded, \(s.framesKept) kept\n").utf8))
    }

    /// A JSON number for a finite Double (shortest round-trip form); non-finite values become null.
    static func json(_ value: Double) -> String {
        value.isFinite ? "\(value)" : "null"
    }
}
