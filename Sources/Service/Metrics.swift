import Foundation

/// The daemon's counters, gauges and the batch latency histogram, rendered in the Prometheus text
/// exposition format (version 0.0.4). Thread-safe; updated by the workers, read by the HTTP server.
///
/// Labels: `source` is `inbox` for watched files (one label value for all of them, so the series
/// count stays bounded however many files pass through) or the stream's name.
public final class Metrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [Key: Double] = [:]
    private var gauges: [Key: Double] = [:]
    /// Upper bounds (seconds) of the batch latency buckets.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private var latencyCounts = [Int](repeating: 0, count: Metrics.latencyBuckets.count)
    private var latencySum = 0.0
    private var latencyCount = 0

    struct Key: Hashable, Comparable {
        var name: String
        var labels: [String]  // alternating name, value, sorted by name
        static func < (a: Key, b: Key) -> Bool { (a.name, a.labels.joined(separator: "\u{1}")) < (b.name, b.labels.joined(separator: "\u{1}")) }
    }

    /// HELP text and type of each metric family.
    static let families: [(name: String, type: String, help: String)] = [
        ("framepipe_frames_decoded_total", "counter", "Frames decoded and kept, by source."),
        ("framepipe_frames_emitted_total", "counter", "Frame records written, by source."),
        ("framepipe_frames_dropped_total", "counter", "Frames dropped to stay live (dropOldest), by source."),
        ("framepipe_errors_total", "counter", "Errors by source and kind: decode (damaged packets skipped), input (an inbox file failed, a stream connection ended with an error)."),
        ("framepipe_inputs_total", "counter", "Inbox files finished, by result (done, failed)."),
        ("framepipe_reconnects_total", "counter", "Stream connection attempts after the first, by source."),
        ("framepipe_connect_failures_total", "counter", "Stream connection attempts that delivered no frame, by source."),
        ("framepipe_queue_depth", "gauge", "Items waiting, by queue: inbox (files ready, not counting the one in progress), inbox_settling (files still being written or waiting for a retry), db_pending and db_running (queue jobs, all workers); per source, decoded frames, batches before infer and emit, free batch buffers (0 between inputs)."),
        ("framepipe_inbox_in_progress", "gauge", "1 while an inbox file is being processed, else 0."),
        ("framepipe_stream_up", "gauge", "1 while a stream is delivering frames, else 0."),
        ("framepipe_ready", "gauge", "1 once the model is compiled and inputs are armed."),
        ("framepipe_jobs_total", "counter", "Queue jobs ended by this worker, by result: done (committed), failed (max_attempts reached), retry (input failed, claimable again), duplicate (another worker committed it first)."),
        ("framepipe_lease_renewals_total", "counter", "Job lease renewals (heartbeats) that succeeded."),
        ("framepipe_queue_database_up", "gauge", "1 while the queue database answers, 0 during an outage (claiming paused)."),
        ("framepipe_batches_mixed_total", "counter", "Model calls (batches) holding frames of more than one input (inbox files and streams share one inference service)."),
        ("framepipe_batch_latency_seconds", "histogram", "Time of one model call (one batch)."),
    ]

    public init() {}

    private static func key(_ name: String, _ labels: [String: String]) -> Key {
        Key(name: name, labels: labels.keys.sorted().flatMap { [$0, labels[$0]!] })
    }

    /// Adds `by` to a counter.
    public func add(_ name: String, _ labels: [String: String] = [:], by v: Double = 1) {
        let k = Self.key(name, labels)
        lock.lock(); counters[k, default: 0] += v; lock.unlock()
    }

    /// Sets a gauge.
    public func set(_ name: String, _ labels: [String: String] = [:], _ v: Double) {
        let k = Self.key(name, labels)
        lock.lock(); gauges[k] = v; lock.unlock()
    }

    /// A counter's or gauge's current value (0 when never touched).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        let k = Self.key(name, labels)
        lock.lock(); defer { lock.unlock() }
        return counters[k] ?? gauges[k] ?? 0
    }

    /// The sum of a counter over all its label values.
    public func total(_ name: String) -> Double {
        lock.lock(); defer { lock.unlock() }
        return counters.filter { $0.key.name == name }.reduce(0) { $0 + $1.value }
    }

    /// Records one batch's model time.
    public func observeBatch(seconds: Double) {
        lock.lock()
        for (i, b) in Self.latencyBuckets.enumerated() where seconds <= b { latencyCounts[i] += 1 }
        latencySum += seconds
        latencyCount += 1
        lock.unlock()
    }

    /// Batches observed so far.
    public var batches: Int { lock.lock(); defer { lock.unlock() }; return latencyCount }

    /// The exposition text.
    public func render() -> String {
        lock.lock(); defer { lock.unlock() }
        var out = ""
        for f in Self.families {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.type)\n"
            if f.type == "histogram" {
                for (i, b) in Self.latencyBuckets.enumerated() {
                    out += "\(f.name)_bucket{le=\"\(Self.number(b))\"} \(latencyCounts[i])\n"
                }
                out += "\(f.name)_bucket{le=\"+Inf\"} \(latencyCount)\n"
                out += "\(f.name)_sum \(Self.number(latencySum))\n\(f.name)_count \(latencyCount)\n"
                continue
            }
            let table = f.type == "counter" ? counters : gauges
            for (k, v) in table.filter({ $0.key.name == f.name }).sorted(by: { $0.key < $1.key }) {
                out += k.name + Self.labelText(k.labels) + " " + Self.number(v) + "\n"
            }
        }
        return out
    }

    static func labelText(_ l: [String]) -> String {
        guard !l.isEmpty else { return "" }
        var parts: [String] = []
        var i = 0
        while i + 1 < l.count {
            let v = l[i + 1].replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
            parts.append("\(l[i])=\"\(v)\"")
            i += 2
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    static func number(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}
