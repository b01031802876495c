import Foundation
import Logging
import Output
import Pipeline
import Queue
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// `framepipe serve`: the long-running service, run inside a `ServiceGroup` whose graceful
/// shutdown (SIGTERM/SIGINT) drains the work.
///
/// ```
///  start ─▶ clean temporaries ─▶ load + warm model ─▶ watch inbox, scan it ─▶ streams ─▶ READY=1
///            inbox (inotify) ──names──▶ InboxWorker ── Pipeline per file ──▶ outbox sets, done/ failed/
///            [[streams]] ─────────────▶ StreamWorker ─ live Pipeline, reconnect ─▶ <stream_dir>/NAME.jsonl
///            [queue] PostgreSQL ─jobs─▶ QueueWorker ── Pipeline per job ──▶ local outbox ─▶ framepipe_frames
///            ticker (1 s) ─▶ STATUS=, WATCHDOG=1 while every worker progresses; metrics server
///  SIGHUP ─▶ reread config, reload model if changed, swap settings (next file / reconnect uses them)
///  SIGTERM ─▶ STOPPING=1, no new file, drain in-flight frames, exit 0
/// ```
/// Workers and every blocking wait are threads of their own: blocking FFmpeg/oneDNN calls never run
/// on Swift's cooperative pool, and nothing blocks Dispatch's global queues (whose few threads a
/// blocked wait could starve, stalling shutdown).
public final class Daemon: ServiceLifecycle.Service, @unchecked Sendable {
    private let configPath: String?
    private let loader: EngineLoader
    private let notifier: SDNotifier
    private let log: Logger
    /// Counters and gauges served on `metrics_listen`.
    public let metrics = Metrics()
    private let watchdogInterval: Double?

    private let lock = NSLock()
    private var settings: WorkSettings?
    private var inboxWorker: InboxWorker?
    private var watcher: InboxWatcher?
    private var streams: [StreamWorker] = []
    private var queueWorker: QueueWorker?
    private var metricsServer: MetricsServer?
    private var ticker: DispatchSourceTimer?
    private let reloadQueue = DispatchQueue(label: "framepipe.reload")
    private var initialConfig: ServeConfig
    private var lastEmitted = 0.0
    private var lastTick = DispatchTime.now().uptimeNanoseconds
    private var rate = 0.0
    private var _stopping = false
    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return _stopping }

    /// - Parameters:
    ///   - config: the checked configuration.
    ///   - configPath: reread on SIGHUP (nil: SIGHUP only logs).
    ///   - loader: compiles the model (real: `PipelineEngine.load`; tests may pass a fake).
    ///   - notifier: `$NOTIFY_SOCKET` speaker.
    public init(config: ServeConfig, configPath: String?, loader: @escaping EngineLoader,
                notifier: SDNotifier = SDNotifier(), log: Logger,
                watchdogInterval: Double? = SDNotifier.watchdogInterval()) {
        self.initialConfig = config
        self.configPath = configPath
        self.loader = loader
        self.notifier = notifier
        self.log = log
        self.watchdogInterval = watchdogInterval
    }

    private func current() -> WorkSettings {
        lock.lock(); defer { lock.unlock() }
        return settings!
    }

    /// Runs until graceful shutdown; throws (exit non-zero) only when startup fails.
    public func run() async throws {
        // Model compilation blocks: keep it off Swift's cooperative pool.
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            Thread.detachNewThread {
                do { try self.start(); c.resume() } catch { c.resume(throwing: error) }
            }
        }
        log.debug("running until graceful shutdown")
        await withGracefulShutdownHandler {
            await waitForShutdownSignal()
        } onGracefulShutdown: { [self] in
            self.log.debug("graceful shutdown requested")
            self.shutdownRequested()
        }
        log.debug("graceful shutdown: stopping")
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { self.stop(); c.resume() }
        }
    }

    private let shutdownSemaphore = DispatchSemaphore(value: 0)
    private func shutdownRequested() { shutdownSemaphore.signal() }
    private func waitForShutdownSignal() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { self.shutdownSemaphore.wait(); c.resume() }
        }
    }

    /// Everything up to READY=1 (synchronous; throws a message naming what failed).
    public func start() throws {
        let config = initialConfig
        for d in [config.stateDir, config.outbox, config.resolvedStreamDir].compactMap({ $0 }) {
            do { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) } catch {
                throw ServiceError("\(d): cannot create folder: \(error.localizedDescription)")
            }
        }
        // Temporaries of a run that was killed: never complete, never final names.
        var cleaned: [String] = []
        for d in [config.outbox, config.resolvedStreamDir, config.stateDir, config.resolvedFailedDir,
                  config.resolvedDoneDir].compactMap({ $0 }) {
            cleaned += AtomicFile.removeLeftovers(in: d)
        }
        if !cleaned.isEmpty { log.notice("removed \(cleaned.count) unfinished temporary file(s) of an earlier run") }

        let t0 = DispatchTime.now().uptimeNanoseconds
        let engine: ServeEngine
        do { engine = try loader(config.model) } catch { throw ServiceError("cannot load model: \(error)") }
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let modelPath = (engine as? PipelineEngine)?.loaded.path ?? config.model.path ?? "(default)"
        log.info("model ready", metadata: ["model.path": "\(modelPath)",
                                           "seconds": "\(String(format: "%.2f", loadSeconds))"])
        let service = WorkSettings.makeService(engine: engine, config: config, metrics: metrics)
        lock.lock(); settings = WorkSettings(engine: engine, config: config, service: service); lock.unlock()

        if let listen = config.metricsListen {
            let (host, port) = try ServeConfig.parseListen(listen)
            let server = MetricsServer(metrics: metrics, log: log)
            try server.start(host: host, port: port)
            metricsServer = server
            log.info("metrics on http://\(host):\(server.port)/metrics")
        }

        if let dir = config.inbox, let outbox = config.outbox {
            let inbox = Inbox(directory: dir, doneDir: config.resolvedDoneDir!, failedDir: config.resolvedFailedDir!)
            inbox.settleSeconds = config.settleTime
            try inbox.prepare()
            let attempts = AttemptsRecord(path: config.stateDir + "/attempts.json")
            if let w = attempts.warning { log.warning("\(w)") }
            let worker = InboxWorker(inbox: inbox, outbox: outbox, attempts: attempts, metrics: metrics, log: log,
                                     settings: { [unowned self] in self.current() })
            // Watch first, then scan: a file completed in between is seen twice and queued once.
            let w = InboxWatcher(directory: dir) { inbox.enqueue($0, atomic: $1) }
            try w.start()
            let existing = inbox.existingFiles()
            for n in existing { inbox.enqueue(n) }
            try? attempts.prune(keeping: Set(existing))
            if !existing.isEmpty { log.info("\(existing.count) file(s) waiting in the inbox") }
            watcher = w
            inboxWorker = worker
            worker.start()
        }
        try startStreams(config.streams)
        if let q = config.queue, let dir = config.resolvedQueueOutbox {
            let worker = try QueueWorker(config: q, outbox: dir, metrics: metrics, log: log,
                                         settings: { [unowned self] in self.current() })
            lock.lock(); queueWorker = worker; lock.unlock()
            worker.start()
            log.info("queue worker \(worker.worker) on \((try? DatabaseURL(q.url))?.description ?? "?")")
        }
        startTicker()
        metrics.set("framepipe_ready", [:], 1)
        notifier.ready(status: statusLine())
        log.info("ready", metadata: ["inbox": "\(config.inbox ?? "-")", "streams": "\(config.streams.count)"])
    }

    private func startStreams(_ list: [StreamConfig]) throws {
        let dir = current().config.resolvedStreamDir
        var made: [StreamWorker] = []
        for s in list {
            made.append(try StreamWorker(config: s, directory: dir, metrics: metrics, log: log,
                                         settings: { [unowned self] in self.current() }))
        }
        lock.lock(); streams = made; lock.unlock()
        for w in made { w.start() }
    }

    // MARK: watchdog and status

    private func startTicker() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "framepipe.ticker"))
        let period = min(1.0, (watchdogInterval ?? 2) / 4)
        t.schedule(deadline: .now() + period, repeating: period)
        t.setEventHandler { [weak self] in self?.tick() }
        t.resume()
        ticker = t
    }

    /// Samples progress; sends WATCHDOG=1 only while every worker showed life within the watchdog
    /// interval (a wedged pipeline stops the pings and systemd restarts the service).
    private func tick() {
        lock.lock(); let inbox = inboxWorker; let streams = self.streams; let queue = queueWorker; lock.unlock()
        inbox?.sample()
        queue?.sample()
        for s in streams { s.sample() }
        let limit = max(1, (watchdogInterval ?? 30) * 0.75)
        var stalled: [String] = []
        if let inbox, inbox.liveness.age > limit { stalled.append("inbox") }
        if let queue, queue.liveness.age > limit { stalled.append("queue") }
        for s in streams where s.liveness.age > limit { stalled.append(s.config.name) }
        if stalled.isEmpty {
            if watchdogInterval != nil { notifier.watchdog() }
        } else {
            log.warning("no progress for \(Int(limit)) s in: \(stalled.joined(separator: ", "))")
        }
        let now = DispatchTime.now().uptimeNanoseconds
        let emitted = metrics.total("framepipe_frames_emitted_total")
        let dt = Double(now - lastTick) / 1e9
        if dt >= 0.9 {
            rate = (emitted - lastEmitted) / dt
            lastEmitted = emitted; lastTick = now
            notifier.status(statusLine())
        }
    }

    /// The short line shown by `systemctl status`.
    func statusLine() -> String {
        lock.lock(); let inbox = inboxWorker; let streams = self.streams; let queue = queueWorker; lock.unlock()
        var parts: [String] = []
        if let queue { parts.append("queue \(queue.doneCount) done, \(queue.failedCount) failed, \(queue.pending) pending") }
        if let inbox {
            parts.append("inbox \(inbox.doneCount) done, \(inbox.failedCount) failed, \(inbox.inbox.depth) queued")
        }
        if !streams.isEmpty { parts.append("streams \(streams.filter(\.isUp).count)/\(streams.count) up") }
        parts.append(String(format: "%.0f frames/s", rate))
        return parts.joined(separator: "; ")
    }

    // MARK: reload

    /// SIGHUP: reloads on the reload queue (ignored, with a note, before startup finished).
    public func requestReload() {
        reloadQueue.async { [self] in
            lock.lock(); let ready = settings != nil; lock.unlock()
            if ready { reload() } else { log.notice("SIGHUP during startup ignored: the configuration is being loaded") }
        }
    }

    /// SIGHUP: rereads the config; reloads the model only if its settings changed; the inbox
    /// worker uses the new settings from its next file, streams reconnect with them. A bad config
    /// or model is logged and the old one kept. Folder changes need a restart.
    public func reload() {
        if isStopping { return }
        guard let path = configPath else { log.notice("SIGHUP: no config file to reread"); return }
        notifier.reloading()
        defer { notifier.reloaded(status: statusLine()) }
        let new: ServeConfig
        do { new = try ServeConfig.load(path: path) } catch {
            log.error("reload failed, keeping the running configuration: \(error)")
            return
        }
        let old = current()
        var engine = old.engine
        if new.model != old.config.model {
            do { engine = try loader(new.model) } catch {
                log.error("reload failed, keeping the running model: cannot load model: \(error)")
                return
            }
            log.info("model reloaded", metadata: ["model.path": "\(new.model.path ?? "(default)")"])
        }
        var applied = new
        let fixed: [(String, Bool)] = [
            ("inbox", new.inbox != old.config.inbox), ("outbox", new.outbox != old.config.outbox),
            ("state_dir", new.stateDir != old.config.stateDir), ("metrics_listen", new.metricsListen != old.config.metricsListen),
            ("done_dir", new.resolvedDoneDir != old.config.resolvedDoneDir),
            ("failed_dir", new.resolvedFailedDir != old.config.resolvedFailedDir),
            ("stream_dir", new.resolvedStreamDir != old.config.resolvedStreamDir),
        ]
        let changed = fixed.filter(\.1).map(\.0)
        if !changed.isEmpty {
            log.warning("reload: \(changed.joined(separator: ", ")) changed; restart the service to apply")
            applied.inbox = old.config.inbox; applied.outbox = old.config.outbox
            applied.stateDir = old.config.stateDir; applied.metricsListen = old.config.metricsListen
            applied.doneDir = old.config.doneDir; applied.failedDir = old.config.failedDir
            applied.streamDir = old.config.streamDir
        }
        var service = old.service
        if engine !== old.engine || new.model.batch != old.config.model.batch {
            service = WorkSettings.makeService(engine: engine, config: applied, metrics: metrics)
            // The old service ends once the inputs still feeding it have (shutdown waits for them).
            Thread.detachNewThread { old.service.shutdown() }
        }
        lock.lock(); settings = WorkSettings(engine: engine, config: applied, service: service); let running = streams; let iw = inboxWorker; lock.unlock()
        iw?.inbox.settleSeconds = applied.settleTime
        if new.streams != old.config.streams || engine !== old.engine || new.output != old.config.output {
            for w in running { w.stop(drainTimeout: applied.drainTimeout) }
            do { try startStreams(applied.streams) } catch { log.error("reload: cannot start streams: \(error)") }
        }
        log.info("configuration reloaded")
    }

    // MARK: shutdown

    /// Graceful stop (synchronous): STOPPING=1, no new work, in-flight frames drained to the
    /// outputs (the file in progress completes, or after `drain_timeout` stays in the inbox).
    public func stop() {
        lock.lock(); let already = _stopping; _stopping = true; lock.unlock()
        if already { return }
        notifier.stopping()
        log.info("stopping: draining in-flight work")
        reloadQueue.sync {}  // a reload in progress finishes before the workers are stopped
        lock.lock(); let inbox = inboxWorker; let streams = self.streams; let w = watcher; let queue = queueWorker; lock.unlock()
        let drain = current().config.drainTimeout
        w?.stop()
        let group = DispatchGroup()
        if let queue {
            group.enter()
            Thread.detachNewThread { queue.stop(drainTimeout: drain); group.leave() }
        }
        if let inbox {
            group.enter()
            Thread.detachNewThread { inbox.stop(drainTimeout: drain); group.leave() }
        }
        for s in streams {
            group.enter()
            Thread.detachNewThread { s.stop(drainTimeout: drain); group.leave() }
        }
        group.wait()
        lock.lock(); let last = settings; lock.unlock()
        last?.service.shutdown()  // every input has ended: no oneDNN call is running after this
        ticker?.cancel()
        metricsServer?.stop()
        log.info("stopped")
    }
}
