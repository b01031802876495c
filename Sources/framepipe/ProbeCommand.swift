import ArgumentParser
import Foundation
import Media

/// `framepipe probe INPUT`: the container and its streams as one JSON object.
struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Print an input's container and streams as JSON (codec, size, fps, duration, frames, rotation...).")

    @Argument(help: "Video or image file, '-' for stdin, or a URL.")
    var input: String

    func validate() throws {
        if input.isEmpty { throw Failure.usage("the input is an empty string") }
        try FlagRules.ioTimeout.check(ioTimeout)
    }

    @Flag(name: .long, help: "Print the JSON on one line.")
    var compact = false

    @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: ArgumentHelp(
        "Seconds that opening the input may wait for data (network inputs, FIFOs; 0 = no limit).", valueName: "seconds"))
    var ioTimeout: Double = SourceOptions.defaultIOTimeout

    func run() async throws {
        MediaCLI.quietFFmpeg()
        let info: ProbeInfo
        do {
            info = try ProbeInfo.probe(input, timeout: ioTimeout == 0 ? nil : ioTimeout)
        } catch {
            throw Failure.input(error, input)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = compact ? [.sortedKeys, .withoutEscapingSlashes]
                                           : [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(info)
        try StdoutText.line(String(decoding: data, as: UTF8.self))  // a closed reader: quiet exit 0
    }
}
