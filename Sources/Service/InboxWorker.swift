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
    /// The one inference service on `engine`, fed by the inbox and every stream.
    public var service: InferenceService
    public init(engine: ServeEngine, config: ServeConfig, service: InferenceService) {
        self.engine = engine; self.config = config; self.service = service
    }

    /// The service for `engine` under `config`: batches of `model.batch` frames (at most the
    /// engine's), the live latency cap, each model call timed into `metrics` and batches holding
    /// frames of more than one input counted.
    public static func makeService(engine: ServeEngine, config: ServeConfig, metrics: Metrics) -> InferenceService {
        InferenceService(runner: engine.runner, batchSize: min(config.model.batch, engine.runner.maxBatch),
                         maxLatency: 0.5, policy: .throughput, poolSize: 3,
                         onBatch: { _, inputs, seconds in
                             metrics.observeBatch(seconds: seconds)
                             if inputs > 1 { metrics.add("framepipe_batches_mixed_total") }
                         })
    }

    /// Pipeline options for one input under these settings.
    func pipelineOptions(live: Bool) -> PipelineOptions {
        var o = PipelineOptions()
        o.batchSize = service.batchSize
        o.jobs = 1
        o.emit = config.output.emitOptions
        o.topK = config.output.topK
        o.minScore = config.output.minScore
        o.labelNames = engine.labels
        config.output.records.apply(to: &o)
        if live { o.maxLatency = 0.5 }
        return o
    }
}

/// Processes inbox files one at a time on its own thread: each file is one `Pipeline` run writing
/// an output set into the outbox (`FileSetSink`: temp names, `.jsonl` committed last), then the
/// file moves to done/, or to failed/ with `NAME.error` saying why.
///
/// Crash safety: the attempt (with the output stem and the input's SHA-256) is recorded in the
/// `AttemptsRecord` before the work starts. A kill mid-file leaves the file in the inbox and only
/// temporaries in the outbox (cleaned at the next start), so the next run redoes it; a kill after
/// the set was committed leaves a complete set, which the next run recognises and keeps (it only
/// finishes the move). A file started `max_attempts` times without finishing goes to failed/
/// instead of looping; one that fails as unreadable is retried `retries` times first.
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
    private var _doneCount = 0
    /// Read from the status thread; written under `lock`.
    var doneCount: Int { lock.lock(); defer { lock.unlock() }; return _doneCount }
    private var _failedCount = 0
    /// Read from the status thread; written under `lock`.
    var failedCount: Int { lock.lock(); defer { lock.unlock() }; return _failedCount }

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

    /// Called by the watchdog ticker: counts frames emitted by the running pipeline as progress and
    /// refreshes the queue gauges (also when idle, so an empty pipeline reads as empty, not stale).
    func sample() {
        lock.lock(); let p = current; lock.unlock()
        metrics.set("framepipe_queue_depth", ["queue": "inbox"], Double(inbox.depth))
        metrics.set("framepipe_queue_depth", ["queue": "inbox_settling"], Double(inbox.settlingCount))
        metrics.set("framepipe_inbox_in_progress", [:], p == nil ? 0 : 1)
        var depths: [String: Int] = [:]
        if let p {
            liveness.observe(emitted: p.progress.framesEmitted)
            for (queue, depth) in p.queueDepths { depths[queue] = depth }
        }
        lock.lock()
        for q in depths.keys { pipelineQueues.insert(q) }
        let known = pipelineQueues
        lock.unlock()
        for q in known {
            metrics.set("framepipe_queue_depth", ["queue": q, "source": "inbox"], Double(depths[q] ?? 0))
        }
    }
    /// Pipeline queue names seen so far (their gauges read 0 between files).
    private var pipelineQueues = Set<String>()
    /// Retries done per file name (in memory: a restart gives every file a fresh try).
    private var retried: [String: Int] = [:]

    private func loop() {
        while !isStopping {
            liveness.beat()
            guard let name = inbox.next(timeout: 0.5) else { continue }
            process(name)
            liveness.beat()
        }
    }

    /// Processes one inbox file (on the worker thread).
    ///
    /// Exactly once: the output stem and the input's SHA-256 are recorded in the attempts record
    /// before the work starts. After a kill, a complete set (`STEM.jsonl`, committed last) for the
    /// same size, mtime and hash is kept: the manifest is written and the move finished, the file is
    /// not redone. A name used before gets a fresh stem (`clip-2`) and done/ name, never replacing
    /// the earlier set or file.
    func process(_ name: String) {
        let path = inbox.directory + "/" + name
        guard let (size, mtime) = Inbox.identity(path) else { return }  // gone already
        let s = settings()
        let max = s.config.maxAttempts
        var meta: Logger.Metadata = ["input.path": "\(path)"]
        let previous = attempts.entry(name, size: size, mtime: mtime)

        let sha256: String
        do { sha256 = try SHA256.file(path) } catch {
            log.error("\(error)", metadata: meta)
            inbox.enqueue(name, delay: s.config.retryDelay)
            return
        }
        if let e = previous, let stem = e.stem, e.sha256 == sha256, SetManifest.isComplete(outbox: outbox, stem: stem) {
            meta["stem"] = "\(stem)"
            log.notice("\(name): its set \(stem) was complete before the restart; finishing the move to done/", metadata: meta)
            let frames = lineCount(outbox + "/" + stem + ".jsonl")
            finish(name, stem: stem, size: size, mtime: mtime, sha256: sha256, frames: frames, seconds: nil, meta: meta)
            return
        }
        if let e = previous, e.attempts >= max {
            let reason = "\(name): gave up after \(e.attempts) attempt(s) that did not finish"
                + (e.lastError.map { "; last error: \($0)" } ?? " (the daemon stopped or crashed during each)")
            fail(name, reason: reason, meta: meta)
            return
        }
        // The stem of an earlier try of this name is reused (its set is replaced) unless that set is
        // complete and from other content: a set consumers may have read is never rewritten.
        let earlier = attempts.recordedStem(name).flatMap { stem -> String? in
            if previous?.sha256 == sha256 { return stem }
            return SetManifest.isComplete(outbox: outbox, stem: stem) ? nil : stem
        }
        let stem = earlier ?? SetManifest.freeStem(for: name, outbox: outbox, claimed: attempts.stemsClaimed(except: name))
        let attempt: Int
        do {
            attempt = try attempts.begin(name, size: size, mtime: mtime, stem: stem, sha256: sha256)
        } catch {
            log.error("cannot record attempt: \(error)", metadata: meta)
            return
        }
        meta["attempt"] = "\(attempt)"
        meta["stem"] = "\(stem)"
        log.debug("processing \(name)", metadata: meta)

        let runner = s.engine.runner
        var options = s.pipelineOptions(live: false)
        let lines = s.config.output.emitOptions
        options.emit = s.config.output.setComputeOptions
        let files = s.config.output.files
        let topK = files.contains("csv") && options.emit.labels && runner.classCount > 0 ? options.topK : 0
        let dim = files.contains("npy") ? runner.embeddingDim : 0
        let metrics = self.metrics
        let withSegments = options.segmentMin != nil, frameLines = options.frameLines
        var plan = s.engine.plan(input: path, live: false, sampling: s.config.sampling, sink: { [outbox] in
            CountingSink(try FileSetSink(input: name, directory: outbox, stem: stem, options: lines,
                                         embeddingDim: dim, topK: topK, segments: withSegments, frameLines: frameLines),
                         metrics: metrics, source: "inbox")
        })
        plan.name = name
        let open = plan.openReader
        plan.openReader = { WatchedReader(try open(), metrics: metrics, source: "inbox") }

        let pipeline = Pipeline(service: s.service, options: options, stdout: nil, log: { [log] m in
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
            // Changed while we read it (still being written): wait for it to settle, no failure.
            if let now = Inbox.identity(path), now != (size, mtime) {
                try? attempts.undo(name)
                log.notice("\(name) changed while it was read; waiting for it to settle", metadata: meta)
                inbox.enqueue(name)
                return
            }
            lock.lock(); let done = retried[name, default: 0]; lock.unlock()
            if done < s.config.retries {
                lock.lock(); retried[name] = done + 1; lock.unlock()
                try? attempts.undo(name)
                try? attempts.noteError(name, error)
                log.notice("\(name): \(error); trying again in \(Self.seconds(s.config.retryDelay)) s (retry \(done + 1) of \(s.config.retries))",
                           metadata: meta)
                inbox.enqueue(name, delay: s.config.retryDelay)
                return
            }
            metrics.add("framepipe_errors_total", ["source": "inbox", "kind": "input"])
            try? attempts.noteError(name, error)
            let tries = done + 1
            fail(name, reason: "\(name): \(error)" + (tries > 1 ? " (\(tries) tries)" : ""), meta: meta)
            return
        }
        finish(name, stem: stem, size: size, mtime: mtime, sha256: sha256, frames: outcome.framesEmitted,
               seconds: seconds, meta: meta)
    }

    static func seconds(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v) }

    /// Writes the set's manifest, moves the input to done/ (under a free name) and forgets it.
    private func finish(_ name: String, stem: String, size: Int64, mtime: Double, sha256: String, frames: Int,
                        seconds: Double?, meta: Logger.Metadata) {
        var meta = meta
        do {
            let target = Inbox.freeName(name, in: inbox.doneDir)
            try SetManifest.describe(outbox: outbox, stem: stem, input: name, size: size, mtime: mtime, sha256: sha256,
                                     frames: frames, done: target).write(outbox: outbox)
            let used = try inbox.moveToDone(name)
            try attempts.clear(name)
            if used != name { meta["done"] = "\(used)" }
        } catch {
            log.error("\(name): processed, but \(error)", metadata: meta)
            return
        }
        lock.lock(); _doneCount += 1; retried[name] = nil; lock.unlock()
        metrics.add("framepipe_inputs_total", ["result": "done"])
        meta["frames"] = "\(frames)"
        if let seconds { meta["seconds"] = "\(String(format: "%.2f", seconds))" }
        log.info("done \(name)", metadata: meta)
    }

    private func lineCount(_ path: String) -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        return data.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
    }

    private func fail(_ name: String, reason: String, meta: Logger.Metadata) {
        do {
            try inbox.moveToFailed(name, reason: reason)
            try attempts.clear(name)
        } catch {
            log.error("\(name): cannot move to failed/: \(error)", metadata: meta)
            return
        }
        lock.lock(); _failedCount += 1; retried[name] = nil; lock.unlock()
        metrics.add("framepipe_inputs_total", ["result": "failed"])
        log.error("failed \(reason)", metadata: meta)
    }
}
