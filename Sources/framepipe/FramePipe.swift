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
            ModelsCommand.self,
            BenchCommand.self,
            ServeCommand.self,
        ]
    )

    /// Parses and runs the subcommand; every usage error (unknown flag, bad value, failed
    /// validation) exits with status 2, like other Unix tools, instead of ArgumentParser's 64.
    static func main() async {
        OpenMPPolicy.ensurePassiveWaiting()
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                let message = fullMessage(for: error)
                if !message.isEmpty {
                    FileHandle.standardError.write(Data((message + "\n").utf8))
                }
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// GNU OpenMP spins at every barrier by default. On a small machine the spinning oneDNN threads
/// steal the cores the decoder needs (measured here: `run` 15-20% slower, `bench` under load up to
/// 4x slower). The policy is read when libgomp loads, before `main`, so when the user has not chosen
/// one, framepipe sets `OMP_WAIT_POLICY=passive` and re-executes itself once.
enum OpenMPPolicy {
    static func ensurePassiveWaiting() {
        guard getenv("OMP_WAIT_POLICY") == nil else { return }
        setenv("OMP_WAIT_POLICY", "passive", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed (no /proc?): carry on with OpenMP's default policy.
    }
}

/// The version printed by `framepipe --version`.
enum FramePipeVersion {
    static let string = "0.1.0"
}
