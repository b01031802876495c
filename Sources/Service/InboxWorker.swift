import Foundation
import Logging
import Output
import Pipeline
#if canImport(Glibc)
import Glibc
#endif

/// The model and settings a worker uses for its next input (swapped by SIGHUP).
public struct WorkSettings {
    public var engine: ServeEngine
    public var config: ServeConfig
    public init(engine: ServeEngine, config: ServeConfig) { self.engine = engine; self.config = config }

    /// Pipeline options for one input under these settings.
    func pipelineOptions(live: Bool) -> PipelineOptions {
        var o = PipelineOptions()
        o.batchSize = min(config.model.batch, engine.runner.maxBatch)
        o.jobs = 1
        o.emit = config.output.emitOptions
        o.topK = config.output.topK
        o.minScore = config.output.minScore
        o.labelNames = engine.labels
        if live { o.maxLatency = 0.5 }
        return o
    }
}

/// Processes inbox files one at a time on its own thread: each file is one `Pipeline` run writing
/// an output set into the outbox (`FileSetSink`: temp names, `.jsonl` committed last), then the
/// file moves to done/, or to failed/ with `NAME.error` saying why.
///
/// Crash safety: the attempt is counted in the `AttemptsRecord` before the work starts; a kill
/// leaves the file in the inbox and only temporaries in the outbox (cleaned at the next start),
/// so the next run redoes it and replaces any earlier set whole. A file started `max_attempts`
/// times without finishing goes to failed/ instead of looping.
final class InboxWorker: @unchecked Sendable {
    let inbox: Inbox
    let outbox: String
    let attempts: AttemptsRecord
    let metrics: Metrics
    let log: Logger
    let liveness = Liveness()
    private let settings: () -> WorkSettings
    private let lock = NSLock()
    private var stopping = false
    private var current: Pipeline?
    private let finished = DispatchSemaphore(value: 0)
    /// Drain deadlines fire here (a queue of our own, never starved by blocked global-queue work).
    static let timers = DispatchQueue(label: "framepipe.drain-timers")
    private(set) var doneCount = 0
    private(set) var failedCount = 0

    init(inbox: Inbox, outbox: String, attempts: AttemptsRecord, metrics: Metrics, log: Logger,
         settings: @escaping () -> WorkSettings) {
        self.inbox = inbox; self.outbox = outbox; self.attempts = attempts
        self.metrics = metrics; self.log = log; self.settings = settings
    }

    /// Starts the worker thread.
    func start() {
        Thread.detachNewThread { [self] in
            self.loop()
            self.finished.signal()
        }
    }

    /// Takes no new file; lets the one in progress finish for up to `drainTimeout` seconds, then
    /// cancels it (its file stays in the inbox for the next start). Returns when the thread ended.
    func stop(drainTimeout: Double) {
        lock.lock(); stopping = true; let p = current; lock.unlock()
        inbox.close()
        if let p {
            Self.timers.asyncAfter(deadline: .now() + drainTimeout) { [weak p] in p?.cancel() }
        }
        finished.wait()
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// Called by the watchdog ticker: counts frames emitted by the running pipeline as progress.
    func sample() {
        lock.lock(); let p = current; lock.unlock()
        if let p {
            liveness.observe(emitted: p.progress.framesEmitted)
            for (queue, depth) in p.queueDepths {
                metrics.set("framepipe_queue_depth", ["queue": queue, "source": "inbox"], Double(depth))
            }
        }
    }

    private func loop() {
        while !isStopping {
            liveness.beat()
            metrics.set("framepipe_queue_depth", ["queue": "inbox"], Double(inbox.depth))
            guard let name = inbox.next(timeout: 0.5) else { continue }
            process(name)
            liveness.beat()
        }
    }

    /// Processes one inbox file (on the worker thread).
    func process(_ name: String) {
        let path = inbox.directory + "/" + name
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }  // gone already
        let size = Int64(st.st_size)
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        let s = settings()
        let max = s.config.maxAttempts
        var meta: Logger.Metadata = ["input.path": "\(path)"]

        if let e = attempts.entry(name, size: size, mtime: mtime), e.attempts >= max {
            let reason = "\(name): gave up after \(e.attempts) attempt(s) that did not finish"
                + (e.lastError.map { "; last error: \($0)" } ?? " (the daemon stopped or crashed during each)")
            fail(name, reason: reason, meta: meta)
            return
        }
        let attempt: Int
        do {
            attempt = try attempts.begin(name, size: size, mtime: mtime)
        } catch {
            log.error("cannot record attempt: \(error)", metadata: meta)
            return
        }
        meta["attempt"] = "\(attempt)"
        log.debug("processing \(name)", metadata: meta)

        let stem = OutputNaming.stem(for: name)
        let runner = TimedRunner(s.engine.runner, metrics: metrics)
        let options = s.pipelineOptions(live: false)
        let topK = options.emit.labels && runner.classCount > 0 ? options.topK : 0
        let metrics = self.metrics
        var plan = s.engine.plan(input: path, live: false, sink: { [outbox] in
            CountingSink(try FileSetSink(input: name, directory: outbox, stem: stem, options: options.emit,
                                         embeddingDim: options.emit.embedding ? runner.embeddingDim : 0, topK: topK),
                         metrics: metrics, source: "inbox")
        })
        plan.name = name
        let open = plan.openReader
        plan.openReader = { WatchedReader(try open(), metrics: metrics, source: "inbox") }

        let pipeline = Pipeline(runner: runner, options: options, stdout: nil, log: { [log] m in
            log.debug("\(m)", metadata: meta)
        })
        lock.lock()
        current = pipeline
        let stopNow = stopping
        lock.unlock()
        if stopNow {
            lock.lock(); current = nil; lock.unlock()
            try? attempts.undo(name)
            return
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let report = pipeline.run([plan])
        lock.lock(); current = nil; lock.unlock()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let outcome = report.inputs[0]
        metrics.add("framepipe_frames_dropped_total", ["source": "inbox"], by: Double(outcome.framesDropped))

        if report.cancelled {
            try? attempts.undo(name)
            log.notice("stopped during \(name); it stays in the inbox and is redone at the next start", metadata: meta)
            return
        }
        if let error = outcome.error {
            metrics.add("framepipe_errors_total", ["source": "inbox", "kind": "input"])
            try? attempts.noteError(name, error)
            fail(name, reason: "\(name): \(error)", meta: meta)
            return
        }
        do {
            try inbox.moveToDone(name)
            try attempts.clear(name)
        } catch {
            log.error("\(name): processed, but \(error)", metadata: meta)
            return
        }
        lock.lock(); doneCount += 1; lock.unlock()
        metrics.add("framepipe_inputs_total", ["result": "done"])
        meta["frames"] = "\(outcome.framesEmitted)"
        meta["seconds"] = "\(String(format: "%.2f", seconds))"
        log.info("done \(name)", metadata: meta)
    }

    private func fail(_ name: String, reason: String, meta: Logger.Metadata) {
        do {
            try inbox.moveToFailed(name, reason: reason)
            try attempts.clear(name)
        } catch {
            log.error("\(name): cannot move to failed/: \(error)", metadata: meta)
            return
        }
        lock.lock(); failedCount += 1; lock.unlock()
        metrics.add("framepipe_inputs_total", ["result": "failed"])
        log.error("failed \(reason)", metadata: meta)
    }
}
