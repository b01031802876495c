import ArgumentParser
import Foundation
import Logging
import Output
import Queue
import Pipeline
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

    @Flag(name: .long, help: """
        Check the configuration and exit: its syntax; that the model exists, is readable by the \
        service's user and loads and compiles; that drain_timeout is below the unit's TimeoutStopSec. \
        Exit status 78 on any problem.
        """)
    var checkConfig = false

    @Option(name: .long, help: """
        With --check-config: the systemd unit to check against (default: the installed \
        framepipe.service, or framepipe@NAME.service for /etc/framepipe/NAME.toml, else the shipped one).
        """)
    var unit: String?

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
            do {
                for line in try Self.check(cfg, configPath: config, unitPath: unit) { print(line) }
            } catch {
                FileHandle.standardError.write(Data("<3>framepipe serve: \(config): \(error)\n".utf8))
                throw ExitCode(78)
            }
            return
        }
        let level = Logger.Level(rawValue: logLevel ?? cfg.logLevel) ?? .info
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, level: level) }
        LineWriter.ignoreSIGPIPE()
        MediaCLI.quietFFmpeg()  // FFmpeg's own per-packet chatter stays out of the journal
        let log = Logger(label: "framepipe.serve")
        let daemon = Daemon(config: cfg, configPath: config, loader: PipelineEngine.load, log: log)
        // Signals through the shared relay (see SignalRelay for why not the group's signal sources):
        // SIGTERM/SIGINT start the group's graceful shutdown, SIGHUP reloads. One that came during
        // startup was kept by the relay and is handed over here.
        let group = ServiceGroup(services: [daemon], gracefulShutdownSignals: [], cancellationSignals: [], logger: log)
        let relay = SignalRelay.shared
        relay.catchSignals([SIGTERM, SIGINT, SIGHUP])
        relay.setHandler { sig in
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
            // Stopped before the group ran (a SIGTERM during startup): nothing to drain.
            if relay.received != nil { return }
            log.critical("\(error)")
            throw ExitCode.failure
        }
    }

    /// `--check-config` for `[queue]`: the database answers and its schema is one this binary can use.
    static func checkQueue(_ q: QueueConfig) throws -> String {
        let url = try DatabaseURL(q.url)
        let db = Database(url: url, log: Logger(label: "framepipe.check") { _ in SwiftLogNoOpLogHandler() })
        defer { db.close() }
        guard let v = try Schema.version(db) else {
            return "queue: \(url): reachable as worker \(q.resolvedWorkerID); no framepipe tables yet (the first worker creates them)"
        }
        if v > Schema.currentVersion {
            throw ServiceError("queue: \(url): the schema is at version \(v), newer than this framepipe's \(Schema.currentVersion): upgrade framepipe")
        }
        return "queue: \(url): reachable as worker \(q.resolvedWorkerID); schema version \(v)" + (v < Schema.currentVersion ? " (migrated to \(Schema.currentVersion) at start)" : "")
    }

    /// `--check-config`: the lines it prints on success; throws the first problem.
    static func check(_ cfg: ServeConfig, configPath: String, unitPath: String?) throws -> [String] {
        var out: [String] = []
        let unit = try ConfigCheck.findUnit(forConfig: configPath, explicit: unitPath)
        // The service (non-root, HOME=/) finds the default model where it is installed, not in the
        // caller's ~/.local/share: look it up as it will.
        var serviceEnv: [String: String]?
        if let unit, unit.runsUnprivileged {
            serviceEnv = ["HOME": "/"]
            if let m = unit.environment["FRAMEPIPE_MODEL"] { serviceEnv?["FRAMEPIPE_MODEL"] = m }
        }
        let model = try ConfigCheck.resolveModel(cfg.model, configPath: configPath, serviceEnvironment: serviceEnv)
        try ConfigCheck.checkReadable(model, what: "model", unit: unit)
        if let labels = cfg.model.labels { try ConfigCheck.checkReadable(labels, what: "labels file", unit: unit) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        var modelConfig = cfg.model
        modelConfig.path = model
        do { _ = try PipelineEngine.load(modelConfig) } catch { throw ServiceError("cannot load model \(model): \(error)") }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        out.append("model: \(model)\(cfg.model.path == nil ? " (the default model)" : ""): loads and compiles (\(String(format: "%.1f", seconds)) s)")
        if let unit {
            let stop = unit.timeoutStopSec
            let stopText = stop.map { $0.isInfinite ? "infinity" : "\($0) s" } ?? "infinity"
            let source = "\(unit.path) (\(unit.origin))" + (unit.dropIns.isEmpty ? "" : " with \(unit.dropIns.joined(separator: ", "))")
            if let stop, !stop.isInfinite, cfg.drainTimeout >= stop {
                throw ServiceError("drain_timeout = \(cfg.drainTimeout) s must be below TimeoutStopSec = \(stopText) of \(source): systemd would kill the service mid-drain")
            }
            out.append("unit: \(source): TimeoutStopSec \(stopText) > drain_timeout \(cfg.drainTimeout) s")
        } else {
            out.append("unit: none found (looked for \(ConfigCheck.unitNames(forConfig: configPath).joined(separator: ", ")) in the systemd folders and beside the binary); drain_timeout not checked against TimeoutStopSec")
        }
        if let q = cfg.queue { out.append(try checkQueue(q)) }
        out.append("\(configPath): OK")
        return out
    }
}
