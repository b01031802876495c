import ArgumentParser
import Foundation
import Media
import Output

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

    func validate() throws {
        if input.isEmpty { throw Failure.usage("the input is an empty string") }
    }

    func run() async throws {
        MediaCLI.quietFFmpeg()
        let source: FrameSource
        do {
            source = try FrameSource(input: input, options: sampling.sourceOptions(for: input))
        } catch {
            throw Failure.input(error, input)
        }
        let out = LineWriter()
        var line = ""
        line.reserveCapacity(96)
        do {
            while let frame = try source.next() {
                line.removeAll(keepingCapacity: true)
                line += "{\"index\":\(frame.index),\"pts\":\(MediaCLI.json(frame.pts)),\"keyframe\":\(frame.keyframe)}\n"
                try out.write(Array(line.utf8))
            }
        } catch is LineWriter.Closed {
            return  // the reader went away (`| head -1`): stop decoding, quietly
        } catch {
            MediaCLI.summarise(source)
            throw Failure.input(error, input)
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

    /// A stderr summary when anything was damaged (nothing is printed for a clean input).
    static func summarise(_ source: FrameSource) {
        let s = source.stats
        guard s.decodeErrors > 0 || s.corruptPackets > 0 else { return }
        FileHandle.standardError.write(Data(
            ("framepipe: \(source.input): warning: \(s.decodeErrors) decode error(s), \(s.corruptPackets) corrupt packet(s); "
             + "\(s.packetsRead) packets read, \(s.framesDecoded) frames decoded, \(s.framesKept) kept\n").utf8))
    }

    /// A pts as a JSON number: rounded to microseconds (`FrameRecord.roundedPTS`, as `run` prints
    /// it), in shortest round-trip form; non-finite values become null.
    static func json(_ value: Double) -> String {
        let v = FrameRecord.roundedPTS(value)
        return v.isFinite ? "\(v)" : "null"
    }
}
