import ArgumentParser
import Foundation
import Logging
import Output
import Service
import ServiceLifecycle

/// `framepipe serve`: the systemd service (inbox folder, live streams, sd_notify, metrics).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run as a service: watch an inbox folder and live streams (see docs/serve.md).",
        discussion: """
        Reads a TOML config (model, output, inbox/outbox folders, [[streams]], metrics_listen). \
        Speaks systemd's notify protocol when NOTIFY_SOCKET is set: READY=1 once the model is warm and \
        the inbox is watched, WATCHDOG=1 while work progresses. SIGTERM drains and exits 0; SIGHUP \
        reloads the config (and the model if it changed). Logs go to stderr with <N> priority \
        prefixes for journald.
        """
    )

    @Option(name: .long, help: "The configuration file.")
    var config: String = ServeConfig.defaultPath

    @Option(name: .long, help: "Override the config's log_level (trace, debug, info, notice, warning, error).")
    var logLevel: String?

    @Flag(name: .long, help: "Check the configuration and exit.")
    var checkConfig = false

    func validate() throws {
        if let l = logLevel, Logger.Level(rawValue: l) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let cfg: ServeConfig
        do {
            cfg = try ServeConfig.load(path: config)
        } catch {
            FileHandle.standardError.write(Data("<3>framepipe serve: \(error)\n".utf8))
            throw ExitCode(78)  // EX_CONFIG: systemd shows it; Restart=on-failure retries
        }
        if checkConfig {
            print("\(config): OK")
            return
        }
        let level = Logger.Level(rawValue: logLevel ?? cfg.logLevel) ?? .info
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, level: level) }
        LineWriter.ignoreSIGPIPE()
        MediaCLI.quietFFmpeg()  // FFmpeg's own per-packet chatter stays out of the journal
        let log = Logger(label: "framepipe.serve")
        let daemon = Daemon(config: cfg, configPath: config, loader: PipelineEngine.load, log: log)
        // Signals through our own handler (see SignalRelay for why not the group's signal sources):
        // SIGTERM/SIGINT start the group's graceful shutdown, SIGHUP reloads.
        let group = ServiceGroup(services: [daemon], gracefulShutdownSignals: [], cancellationSignals: [], logger: log)
        let relay = SignalRelay(signals: [SIGTERM, SIGINT, SIGHUP]) { sig in
            log.debug("signal \(sig) received")
            if sig == SIGHUP {
                daemon.requestReload()
            } else {
                Task { await group.triggerGracefulShutdown() }
            }
        }
        do {
            try await group.run()
        } catch {
            log.critical("\(error)")
            throw ExitCode.failure
        }
        withExtendedLifetime(relay) {}
    }
}
