import Foundation
import Logging
import Output
import Pipeline

/// Processes one live stream continuously on its own thread: connect, run a live `Pipeline`
/// (frames dropped oldest-first when inference falls behind; partial batches after 0.5 s) whose
/// records are appended to the stream's `StreamLog`; when the stream ends, fails or stalls
/// (no frame for `stall_timeout`), write a gap line saying why (`cause`: ended, stalled, error) and
/// reconnect: after `reconnect_initial` once a live connection is lost, then with a capped
/// exponential backoff (doubling up to `reconnect_max`, the time spent connecting included) while
/// attempts fail. An attempt that delivers nothing within `connect_timeout` fails. Frame numbers
/// continue across connections (the `connected` line gives the first one), restarting at 0 only
/// when the service restarts.
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

    /// Called by the watchdog ticker: counts emitted frames as progress, detects stalls and
    /// connections that take longer than `connect_timeout`, and refreshes the queue gauges (0
    /// between connections).
    func sample() {
        lock.lock(); let c = current; lock.unlock()
        var depths: [String: Int] = [:]
        if let c {
            liveness.observe(emitted: c.pipeline.progress.framesEmitted)
            for (queue, depth) in c.pipeline.queueDepths { depths[queue] = depth }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - c.started.uptimeNanoseconds) / 1e9
            if let r = c.reader, r.frameCount > 0 {
                if r.secondsSinceFrame > config.stallTimeout {
                    r.interrupt("no frame for \(StreamWorker.seconds(config.stallTimeout)) s")
                }
            } else if Self.isListener(config.url) {
                // A listener may be probing a sender that just started: never cut that short. Its
                // silent waits end with the read timeout (stall_timeout); an open stuck beyond that
                // is given up.
                if c.reader == nil && elapsed > 2 * config.stallTimeout + config.connectTimeout {
                    lock.lock(); connectTimedOut = true; lock.unlock()
                    c.pipeline.cancel()
                }
            } else if elapsed > config.connectTimeout {
                // No first frame within connect_timeout: this attempt failed; the loop tries again.
                lock.lock(); connectTimedOut = true; lock.unlock()
                if let r = c.reader { r.interrupt("no frame within connect_timeout") } else { c.pipeline.cancel() }
            }
        }
        lock.lock()
        for q in depths.keys { pipelineQueues.insert(q) }
        let known = pipelineQueues
        lock.unlock()
        for q in known {
            metrics.set("framepipe_queue_depth", ["queue": q, "source": config.name], Double(depths[q] ?? 0))
        }
    }
    private var pipelineQueues = Set<String>()
    private var connectTimedOut = false

    static func seconds(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v) }

    /// The URL as opened: UDP inputs get FFmpeg's read `timeout` (µs) so a silent sender ends the read.
    static func effectiveURL(_ url: String, stallTimeout: Double) -> String {
        guard url.hasPrefix("udp://"), !url.contains("timeout=") else { return url }
        let usec = Int(stallTimeout * 1_000_000)
        return url + (url.contains("?") ? "&" : "?") + "timeout=\(usec)"
    }

    /// Inputs that wait for a sender rather than connect to one: a timeout there only means
    /// silence, so the next attempt starts at once (the socket is closed during a backoff, and
    /// packets sent meanwhile would be lost).
    static func isListener(_ url: String) -> Bool { url.hasPrefix("udp://") || url.hasPrefix("rtp://") }

    /// Why a connection that delivered frames ended, as the gap line's `cause` and `reason`.
    /// A listener's read that times out (FFmpeg's udp `timeout`, set to `stall_timeout`) fails
    /// with EIO, which the media layer reports as damage: for a listener it means silence.
    static func lossReason(error: String?, stalledBy interruption: Bool, secondsSinceFrame: Double,
                           stallTimeout: Double, listener: Bool = false) -> (cause: String, reason: String) {
        guard let error else { return ("ended", "the sender ended the stream") }
        let silent = listener && ["Input/output error", "timed out", "Connection timed out"].contains { error.contains($0) }
        if interruption || silent || secondsSinceFrame >= stallTimeout * 0.9 {
            return ("stalled", "no frame for \(seconds(stallTimeout)) s (the sender stopped or the network is down)")
        }
        return ("error", error)
    }

    /// Attempts logged at warning level: the 1st, 2nd, 4th, 8th ... of a run of failures (the
    /// others at info), so a camera that never connects is visible without flooding the journal.
    static func warns(attempt: Int) -> Bool { attempt > 0 && attempt & (attempt - 1) == 0 }

    private func loop() {
        var attempt = 0       // consecutive attempts since the stream was last up (1 = first try)
        var tries = 0         // all attempts
        var connection = 0    // connections that came up
        var frameBase = 0     // frames decoded by earlier connections: numbering continues
        while !isStopping {
            liveness.beat()
            let s = settings()
            let options = s.pipelineOptions(live: true)
            let sink = StreamLogSink(log: streamLog, options: options.emit, frameBase: frameBase,
                                     frameLines: options.frameLines, name: config.name)
            let source = config.name
            let metrics = self.metrics
            let url = Self.effectiveURL(config.url, stallTimeout: config.stallTimeout)
            attempt += 1
            tries += 1
            connects = tries
            if tries > 1 { metrics.add("framepipe_reconnects_total", ["source": source]) }
            let thisAttempt = attempt
            let base = frameBase
            var opened: WatchedReader?
            let drops = DropTally()
            var plan = s.engine.plan(input: url, live: true, sampling: s.config.sampling, sink: { CountingSink(sink, metrics: metrics, source: source, drops: drops) })
            plan.name = config.name
            let open = plan.openReader
            plan.openReader = { [weak self] in
                let r = WatchedReader(try open(), metrics: metrics, source: source)
                guard let self else { return r }
                self.lock.lock(); self.current?.reader = r; opened = r; self.lock.unlock()
                // Connected once frames flow (an open can succeed on a silent socket).
                r.onFirstFrame = { [weak self] in
                    guard let self else { return }
                    self.lock.lock()
                    self.up = true
                    connection += 1
                    let n = connection
                    self.lock.unlock()
                    metrics.set("framepipe_stream_up", ["source": source], 1)
                    try? self.streamLog.append(StreamLog.connectedLine(stream: source, input: self.config.url,
                                                                       time: Date().timeIntervalSince1970, attempt: thisAttempt,
                                                                       connection: n, firstFrame: base))
                    self.log.info("stream \(source) connected", metadata: ["attempt": "\(thisAttempt)", "connection": "\(n)"])
                }
                if self.isStopping { r.finish() }
                return r
            }
            let pipeline = Pipeline(service: s.service, options: options, stdout: nil, log: { _ in })
            let started = DispatchTime.now()
            lock.lock(); current = (pipeline, nil, started); connectTimedOut = false; lock.unlock()
            if isStopping { lock.lock(); current = nil; lock.unlock(); break }
            let report = pipeline.run([plan])
            lock.lock()
            current = nil; let wasUp = up; up = false
            let timedOut = connectTimedOut; let reader = opened
            lock.unlock()
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            metrics.set("framepipe_stream_up", ["source": source], 0)
            let outcome = report.inputs[0]
            // Drops go into the metrics as they happen (the sink's tally); here only those the
            // output never heard of (dropped after the last frame it was given).
            let uncounted = outcome.framesDropped - drops.counted
            if uncounted > 0 { metrics.add("framepipe_frames_dropped_total", ["source": source], by: Double(uncounted)) }
            if let reader { frameBase += reader.framesDecoded }
            if isStopping { break }

            if wasUp {
                let (cause, reason) = Self.lossReason(error: outcome.error, stalledBy: reader?.wasInterrupted ?? false,
                                                      secondsSinceFrame: reader?.secondsSinceFrame ?? 0,
                                                      stallTimeout: config.stallTimeout, listener: Self.isListener(config.url))
                if cause == "error" { metrics.add("framepipe_errors_total", ["source": source, "kind": "input"]) }
                let delay = Self.isListener(config.url) ? 0 : config.reconnectInitial
                attempt = 0
                try? streamLog.append(StreamLog.gapLine(stream: source, input: config.url, cause: cause, reason: reason,
                                                        time: Date().timeIntervalSince1970, lastPts: sink.lastPts,
                                                        frames: outcome.framesEmitted, connection: connection, retryIn: delay))
                streamLog.sync()
                log.warning("stream \(source) lost (\(cause)): \(reason); reconnecting in \(Self.seconds(delay)) s",
                            metadata: ["connection": "\(connection)"])
                wait(delay)
                continue
            }
            metrics.add("framepipe_connect_failures_total", ["source": source])
            // A listener that heard nothing is waiting for its sender, not failing to reach it.
            let silent = Self.isListener(config.url) && (timedOut || Self.lossReason(error: outcome.error, stalledBy: false,
                secondsSinceFrame: 0, stallTimeout: config.stallTimeout, listener: true).cause == "stalled")
            let reason = timedOut ? "no frame within connect_timeout (\(Self.seconds(config.connectTimeout)) s)"
                : (outcome.error ?? "the stream ended before its first frame")
            // The time spent connecting counts toward the backoff; a silent listener retries at once.
            let backoff = Self.backoff(failures: attempt, initial: config.reconnectInitial, cap: config.reconnectMax)
            let delay = silent ? 0 : max(0, backoff - elapsed)
            let message = "stream \(source): cannot connect (attempt \(attempt)): \(reason); next attempt in \(Self.seconds((delay * 10).rounded() / 10)) s"
            let meta: Logger.Metadata = ["attempt": "\(attempt)", "input": "\(config.url)"]
            if Self.warns(attempt: attempt) { log.warning("\(message)", metadata: meta) } else { log.info("\(message)", metadata: meta) }
            wait(delay)
        }
    }

    /// Waits `delay` seconds, waking at once on stop; waiting on purpose counts as alive.
    private func wait(_ delay: Double) {
        stopCondition.lock()
        let deadline = Date(timeIntervalSinceNow: delay)
        while !stopping && Date() < deadline {
            _ = stopCondition.wait(until: min(deadline, Date(timeIntervalSinceNow: 1)))
            liveness.beat()
        }
        stopCondition.unlock()
    }

    /// `initial * 2^(failures-1)`, capped at `cap`.
    static func backoff(failures: Int, initial: Double, cap: Double) -> Double {
        min(cap, initial * pow(2, Double(max(0, min(failures - 1, 30)))))
    }
}
