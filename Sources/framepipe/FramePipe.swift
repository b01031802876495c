import ArgumentParser
import Foundation
import Output
import Pipeline

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
            EnqueueCommand.self,
            JobsCommand.self,
        ]
    )

    /// Parses and runs the subcommand. Every error, whichever command throws it, is printed and
    /// turned into an exit status by `Report` (the table in `ExitStatus`): usage errors exit 2,
    /// not ArgumentParser's 64. SIGPIPE is ignored for every command, so a closed stdout
    /// (`| head -1`) is an EPIPE that ends the command quietly with 0.
    static func main() async {
        OpenMPPolicy.ensurePassiveWaiting()
        LineWriter.ignoreSIGPIPE()
        let arguments = Array(CommandLine.arguments.dropFirst())
        // `run` and `serve` stop cleanly on SIGTERM/SIGINT: catch them from the start, so one that
        // comes while flags are parsed or the model compiles is kept for the command, not fatal.
        switch arguments.first {
        case "run": SignalRelay.shared.catchSignals([SIGINT, SIGTERM])
        case "serve" where !arguments.contains("--check-config"): SignalRelay.shared.catchSignals([SIGINT, SIGTERM, SIGHUP])
        default: break
        }
        // Whatever the exec above left blocked and the relay did not take is delivered as usual.
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        var status = ExitStatus.ok.rawValue
        do {
            try checkHelpTopic(arguments)
            var command = try parseAsRoot(arguments)
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            status = Report.status(for: error)
        }
        fflush(stdout)
        Foundation.exit(status)
    }

    /// `framepipe help NAME` for a NAME that is not a command is a usage error (ArgumentParser
    /// would print the top-level help and exit 0).
    private static func checkHelpTopic(_ arguments: [String]) throws {
        guard arguments.first == "help", arguments.count > 1 else { return }
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        for name in arguments.dropFirst() where !names.contains(name) && !name.hasPrefix("-") {
            throw Failure(.usage, "unknown command '\(name)' (commands: \(names.joined(separator: ", ")))")
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
        // SIGINT/SIGTERM/SIGHUP stay blocked across the exec (the mask is inherited), so one sent
        // while the new image loads waits for its handler (SignalRelay unblocks what it catches;
        // main unblocks the rest) instead of killing the process.
        var set = sigset_t(), old = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, &old)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed (no /proc?): carry on with OpenMP's default policy.
        pthread_sigmask(SIG_SETMASK, &old, nil)
    }
}

/// The version printed by `framepipe --version`.
enum FramePipeVersion {
    static let string = "0.1.0"
}
