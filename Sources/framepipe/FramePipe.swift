import ArgumentParser
import Foundation

/// The `framepipe` command line: video frames in, MobileNetV2 embeddings and labels out.
@main
struct FramePipe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "framepipe",
        abstract: "Turn video into per-frame MobileNetV2 embeddings and labels (FFmpeg + oneDNN).",
        version: FramePipeVersion.string,
        subcommands: [
            RunCommand.self,
            ProbeCommand.self,
            FramesCommand.self,
            CheckCommand.self,
            InspectCommand.self,
            BenchCommand.self,
            ServeCommand.self,
        ]
    )
}

/// The version printed by `framepipe --version`.
enum FramePipeVersion {
    static let string = "0.1.0"
}
