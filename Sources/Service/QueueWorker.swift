import Foundation
import Logging
import Output
import Pipeline
import Queue

/// Takes jobs from the PostgreSQL queue (`[queue]`) one at a time on its own thread, like the
/// inbox worker takes files: a claimed job becomes one `Pipeline` run whose sink is a
/// `ResultsSink` (rows buffered to the local outbox, then committed with the job's completion in
/// one transaction).
///
/// ```
///  loop: commit sealed outbox files ─▶ claim (SKIP LOCKED) ─▶ LeaseKeeper renews ─▶ Pipeline ─▶ ResultsSink
///        database down: pause claiming, retry with backoff (0.5 s doubling to 10 s); sealed results stay in the outbox
/// ```
/// A kill at any moment loses nothing: a job being worked on comes back to the queue when its
/// lease runs out; a result sealed but not yet committed is committed at the next start (or
/// dropped if another worker committed the job meanwhile).
final class QueueWorker: @unchecked Sendable {
    let config: QueueConfig
    let worker: String
    let metrics: Metrics
    let log: Logger
    let liveness = Liveness()
    private let jobs: JobQueue
    private let leaseDB: Database
    private let committer: ResultCommitter
    private let outbox: ResultOutbox
    private let settings: () -> WorkSettings
    private let lock = NSLock()
    private var stopping = false
    private var current: Pipeline?
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var _doneCount = 0
    /// Read from the status thread; written under `lock`.
    var doneCount: Int { lock.lock(); defer { lock.unlock() }; return _doneCount }
    private var _failedCount = 0
    /// Read from the status thread; written under `lock`.
    var failedCount: Int { lock.lock(); defer { lock.unlock() }; return _failedCount }
    private var _pending = 0
    /// Jobs waiting in the database at the last poll (status thread reads it).
    var pending: Int { lock.lock(); defer { lock.unlock() }; return _pending }
    private var lastDepth = 0.0

    init(config: QueueConfig, outbox: String, metrics: Metrics, log: Logger, settings: @escaping () -> WorkSettings) throws {
        self.config = config
        worker = config.resolvedWorkerID
        let url = try DatabaseURL(config.url)
        jobs = JobQueue(db: Database(url: url, log: log))
        leaseDB = Database(url: url, log: log)
        self.outbox = try ResultOutbox(directory: outbox)
        committer = ResultCommitter(queue: jobs, outbox: self.outbox)
        self.metrics = metrics; self.log = log; self.settings = settings
    }

    func start() {
        Thread.detachNewThread { [self] in
            loop()
            jobs.db.close(); leaseDB.close()
            finished.signal()
        }
    }

    /// Claims nothing more; the job in progress may finish (and commit) for `drainTimeout`
    /// seconds, then it is cancelled and given back to the queue. Returns when the thread ended.
    func stop(drainTimeout: Double) {
        lock.lock(); stopping = true; let p = current; lock.unlock()
        wake.signal()
        if let p { InboxWorker.timers.asyncAfter(deadline: .now() + drainTimeout) { [weak p] in p?.cancel() } }
        finished.wait()
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// Watchdog ticker: frames emitted count as progress.
    func sample() {
        lock.lock(); let p = current; lock.unlock()
        if let p { liveness.observe(emitted: p.progress.framesEmitted) }
    }

    private func pause(_ seconds: Double) { _ = wake.wait(timeout: .now() + seconds) }

    private func loop() {
        var backoff = 0.5
        var migrated = false
        var outage: String?
        var lastStatus = 0.0
        while !isStopping {
            liveness.beat()
            do {
                if !migrated {
                    let before = try Schema.migrate(jobs.db)
                    if before < Schema.currentVersion { log.notice("queue schema migrated from version \(before) to \(Schema.currentVersion)") }
                    migrated = true
                }
                try commitSealed()
                let now = Date().timeIntervalSince1970
                if now - lastStatus >= 2 { try refreshStatus(); lastStatus = now }
                if outage != nil {
                    log.notice("database reachable again; claiming jobs")
                    outage = nil
                }
                metrics.set("framepipe_queue_database_up", [:], 1)
                backoff = 0.5
                guard let job = try jobs.claim(worker: worker, leaseSeconds: config.leaseSeconds, maxAttempts: config.maxAttempts) else {
                    pause(config.pollInterval)
                    continue
                }
                process(job)
            } catch {
                let e = error as? QueueError
                metrics.set("framepipe_queue_database_up", [:], 0)
                if e?.isConnection ?? true {
                    if outage == nil { log.warning("database unavailable, claiming paused (retrying with backoff): \(error)") }
                    outage = "\(error)"
                } else {
                    log.error("queue: \(error)")
                }
                metrics.add("framepipe_errors_total", ["source": "queue", "kind": "database"])
                pause(backoff)
                backoff = min(backoff * 2, 10)
            }
        }
    }

    /// Commits every sealed outbox file (oldest job first); throws on the first database failure.
    private func commitSealed() throws {
        for path in outbox.sealed() {
            try commitOne(path)
        }
    }

    private func commitOne(_ path: String) throws {
        switch try committer.commit(path) {
        case .committed(let job, let frames):
            lock.lock(); _doneCount += 1; lock.unlock()
            metrics.add("framepipe_jobs_total", ["result": "done"])
            log.info("done job \(job)", metadata: ["job": "\(job)", "frames": "\(frames)"])
        case .duplicate(let job):
            metrics.add("framepipe_jobs_total", ["result": "duplicate"])
            log.notice("job \(job) was committed by another worker first (its lease had expired); this result is dropped",
                       metadata: ["job": "\(job)"])
        case .rejected(let moved, let reason):
            log.error("\(reason); moved to \(moved)")
        }
    }

    private func refreshStatus() throws {
        let st = try jobs.status()
        metrics.set("framepipe_queue_depth", ["queue": "db_pending"], Double(st.count("pending")))
        metrics.set("framepipe_queue_depth", ["queue": "db_running"], Double(st.count("running")))
        lock.lock(); _pending = st.count("pending"); lock.unlock()
    }

    /// Runs one claimed job to its end: committed, retried/failed with its error, or given back.
    private func process(_ job: ClaimedJob) {
        let s = settings()
        let meta: Logger.Metadata = ["job": "\(job.id)", "input.path": "\(job.input)", "attempt": "\(job.attempt)"]
        log.debug("claimed job \(job.id)", metadata: meta)
        let keeper = LeaseKeeper(database: leaseDB, job: job, worker: worker, leaseSeconds: config.leaseSeconds, log: log)
        let metrics = self.metrics
        keeper.onRenewal = { metrics.add("framepipe_lease_renewals_total") }
        keeper.start()
        defer { keeper.stop() }

        var options = s.pipelineOptions(live: false)
        let emit = s.config.output.emitOptions
        options.emit = emit
        let worker = self.worker, outbox = self.outbox
        let claimed = DispatchTime.now().uptimeNanoseconds
        var plan = s.engine.plan(input: job.input, live: false, sampling: s.config.sampling, sink: { [self] in
            CountingSink(try ResultsSink(job: job, worker: worker, outbox: outbox, emit: emit, started: claimed, onSealed: { path in
                do { try self.commitOne(path) } catch {
                    self.log.warning("job \(job.id): result kept in the local outbox until the database takes it: \(error)", metadata: meta)
                }
            }), metrics: metrics, source: "queue")
        })
        plan.name = job.input
        let open = plan.openReader
        plan.openReader = { WatchedReader(try open(), metrics: metrics, source: "queue") }
        let pipeline = Pipeline(service: s.service, options: options, stdout: nil, log: { [log] m in log.debug("\(m)", metadata: meta) })
        lock.lock(); current = pipeline; let stopNow = stopping; lock.unlock()
        if stopNow {
            lock.lock(); current = nil; lock.unlock()
            try? jobs.release(job, worker: worker)
            return
        }
        let report = pipeline.run([plan])
        lock.lock(); current = nil; lock.unlock()
        let outcome = report.inputs[0]
        if report.cancelled {
            do { try jobs.release(job, worker: worker) } catch {
                log.notice("job \(job.id): stopped; cannot give it back (\(error)): it is claimable again when its lease runs out", metadata: meta)
                return
            }
            log.notice("stopped during job \(job.id); given back to the queue", metadata: meta)
            return
        }
        guard let error = outcome.error else { return }  // the sink sealed and offered the result
        metrics.add("framepipe_errors_total", ["source": "queue", "kind": "input"])
        do {
            let state = try jobs.fail(job, worker: worker, error: error, maxAttempts: config.maxAttempts, retryDelay: config.retryDelay)
            switch state {
            case "failed":
                lock.lock(); _failedCount += 1; lock.unlock()
                metrics.add("framepipe_jobs_total", ["result": "failed"])
                log.error("failed job \(job.id) \(job.input): \(error) (attempt \(job.attempt) of \(config.maxAttempts))", metadata: meta)
            case "pending":
                metrics.add("framepipe_jobs_total", ["result": "retry"])
                log.notice("job \(job.id) \(job.input): \(error); claimable again in \(InboxWorker.seconds(config.retryDelay)) s (attempt \(job.attempt) of \(config.maxAttempts))", metadata: meta)
            default:
                log.notice("job \(job.id): \(error); the job is no longer ours (its lease was taken over)", metadata: meta)
            }
        } catch {
            log.warning("job \(job.id): cannot record its failure (\(error)); it is claimable again when its lease runs out", metadata: meta)
        }
    }
}
