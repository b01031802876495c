import Foundation
import Logging
import Output
import Pipeline

/// Processes one live stream continuously on its own thread: connect, run a live `Pipeline`
/// (frames dropped oldest-first when inference falls behind; partial batches after 0.5 s) whose
/// records are appended to the stream's `StreamLog`; when the stream ends, fails or stalls
/// (no frame for `stall_timeout`), write a gap line and reconnect after a capped exponential
/// backoff (`reconnect_initial` doubling up to `reconnect_max`; reset once frames flow again).
final class StreamWorker: @unchecked Sendable {
    let config: StreamConfig
    let streamLog: StreamLog
    let metrics: Metrics
    let log: Logger
    let liveness = Liveness()
    private let settings: () -> WorkSettings
    private let stopCondition = NSCondition()
    private var stopping = false
    private var current: (pipeline: Pipeline, reader: WatchedReader?, started: DispatchTime)?
    private let lock = NSLock()
    private let finished = DispatchSemaphore(value: 0)
    /// Drain deadlines fire here (a queue of our own, never starved by blocked global-queue work).
    static let timers = DispatchQueue(label: "framepipe.drain-timers")
    private var up = false
    /// Connection attempts so far (tests and status).
    private(set) var connects = 0

    init(config: StreamConfig, directory: String, metrics: Metrics, log: Logger,
         settings: @escaping () -> WorkSettings) throws {
        self.config = config
        streamLog = try StreamLog(directory: directory, name: config.name,
                                  rotateBytes: config.rotateBytes, keepFiles: config.keepFiles)
        self.metrics = metrics
        var l = log
        l[metadataKey: "stream.name"] = "\(config.name)"
        self.log = l
        self.settings = settings
    }

    var isUp: Bool { lock.lock(); defer { lock.unlock() }; return up }

    func start() {
        Thread.detachNewThread { [self] in
            self.loop()
            self.finished.signal()
        }
    }

    /// Ends the current connection cleanly (frames already read are drained to the log) and
    /// waits for the thread; if draining takes longer than `drainTimeout`, cancels.
    func stop(drainTimeout: Double) {
        stopCondition.lock(); stopping = true; stopCondition.broadcast(); stopCondition.unlock()
        lock.lock(); let c = current; lock.unlock()
        if let c {
            c.reader?.finish()
            Self.timers.asyncAfter(deadline: .now() + drainTimeout) { [weak p = c.pipeline] in p?.cancel() }
        }
        finished.wait()
    }

    private var isStopping: Bool { stopCondition.lock(); defer { stopCondition.unlock() }; return stopping }

    /// Called by the watchdog ticker: counts emitted frames as progress and detects stalls.
    func sample() {
        lock.lock(); let c = current; lock.unlock()
        guard let c else { return }
        liveness.observe(emitted: c.pipeline.progress.framesEmitted)
        for (queue, depth) in c.pipeline.queueDepths {
            metrics.set("framepipe_queue_depth", ["queue": queue, "source": config.name], Double(depth))
        }
        if let r = c.reader, r.secondsSinceFrame > config.stallTimeout {
            r.interrupt("no frame for \(String(format: "%.1f", config.stallTimeout)) s")
        } else if c.reader == nil,
                  Double(DispatchTime.now().uptimeNanoseconds - c.started.uptimeNanoseconds) / 1e9 > 2 * config.stallTimeout {
            // Still connecting after twice the stall time (an open that cannot be interrupted):
            // give up on this connection; the reconnect loop tries again.
            log.debug("stream \(config.name): connect timed out")
            c.pipeline.cancel()
        }
    }

    /// The URL as opened: UDP inputs get FFmpeg's read `timeout` (µs) so a silent sender ends the read.
    static func effectiveURL(_ url: String, stallTimeout: Double) -> String {
        guard url.hasPrefix("udp://"), !url.contains("timeout=") else { return url }
        let usec = Int(stallTimeout * 1_000_000)
        return url + (url.contains("?") ? "&" : "?") + "timeout=\(usec)"
    }

    private func loop() {
        var failures = 0
        while !isStopping {
            liveness.beat()
            let s = settings()
            let runner = TimedRunner(s.engine.runner, metrics: metrics)
            let options = s.pipelineOptions(live: true)
            let sink = StreamLogSink(log: streamLog, options: options.emit)
            let source = config.name
            let metrics = self.metrics
            let url = Self.effectiveURL(config.url, stallTimeout: config.stallTimeout)
            connects += 1
            metrics.add("framepipe_reconnects_total", ["source": source], by: connects > 1 ? 1 : 0)
            let attempt = connects
            var plan = s.engine.plan(input: url, live: true, sink: { CountingSink(sink, metrics: metrics, source: source) })
            plan.name = config.name
            let open = plan.openReader
            plan.openReader = { [weak self] in
                let r = WatchedReader(try open(), metrics: metrics, source: source)
                guard let self else { return r }
                self.lock.lock()
                self.current?.reader = r
                self.up = true
                self.lock.unlock()
                metrics.set("framepipe_stream_up", ["source": source], 1)
                try? self.streamLog.append(StreamLog.connectedLine(stream: source, input: self.config.url,
                                                                   time: Date().timeIntervalSince1970, attempt: attempt))
                self.log.info("stream \(source) connected", metadata: ["attempt": "\(attempt)"])
                if self.isStopping { r.finish() }
                return r
            }
            let pipeline = Pipeline(runner: runner, options: options, stdout: nil, log: { _ in })
            lock.lock(); current = (pipeline, nil, DispatchTime.now()); lock.unlock()
            if isStopping { lock.lock(); current = nil; lock.unlock(); break }
            let report = pipeline.run([plan])
            lock.lock(); current = nil; let wasUp = up; up = false; lock.unlock()
            metrics.set("framepipe_stream_up", ["source": source], 0)
            let outcome = report.inputs[0]
            metrics.add("framepipe_frames_dropped_total", ["source": source], by: Double(outcome.framesDropped))
            if isStopping { break }

            failures = outcome.framesEmitted > 0 ? 1 : failures + 1
            let delay = Self.backoff(failures: failures, initial: config.reconnectInitial, cap: config.reconnectMax)
            let reason = outcome.error ?? "end of stream"
            metrics.add("framepipe_errors_total", ["source": source, "kind": wasUp ? "input" : "reconnect"])
            if wasUp {
                try? streamLog.append(StreamLog.gapLine(stream: source, input: config.url, reason: reason,
                                                        time: Date().timeIntervalSince1970, lastPts: sink.lastPts,
                                                        frames: outcome.framesEmitted, retryIn: delay))
                streamLog.sync()
                log.warning("stream \(source) lost: \(reason); reconnecting in \(String(format: "%.1f", delay)) s")
            } else {
                log.info("stream \(source): cannot connect: \(reason); retry \(failures) in \(String(format: "%.1f", delay)) s")
            }
            // Wait for the backoff, waking at once on stop.
            stopCondition.lock()
            let deadline = Date(timeIntervalSinceNow: delay)
            while !stopping && Date() < deadline {
                _ = stopCondition.wait(until: min(deadline, Date(timeIntervalSinceNow: 1)))
                liveness.beat()  // waiting on purpose is alive
            }
            stopCondition.unlock()
        }
    }

    /// `initial * 2^(failures-1)`, capped at `cap`.
    static func backoff(failures: Int, initial: Double, cap: Double) -> Double {
        min(cap, initial * pow(2, Double(max(0, min(failures - 1, 30)))))
    }
}
