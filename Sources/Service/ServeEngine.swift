import Foundation
import Output
import Pipeline

/// A loaded, warmed-up model and the recipe for turning an input into an `InputPlan` with it.
/// The daemon runs one `InferenceService` on `runner` (its only caller, from one thread); the
/// inbox worker and every stream feed that service, so their frames share batches.
public protocol ServeEngine: AnyObject {
    /// The shared model runner.
    var runner: BatchRunner { get }
    /// Class names in output order (nil: indices only).
    var labels: [String]? { get }
    /// The plan for one input: a file path (`live` false) or a stream URL (`live` true), decoded
    /// and sampled as the config's `[sampling]` says.
    func plan(input: String, live: Bool, sampling: SamplingSettings, sink: (() throws -> FrameSink)?) -> InputPlan
}

/// Builds an engine from the model part of the config (compiling and warming it up).
public typealias EngineLoader = (ModelConfig) throws -> ServeEngine

/// Wraps an input's reader: counts frames into the metrics, remembers when the last frame came
/// (for stall detection), and can be asked to end the input cleanly (`finish`: the next read
/// reports end of stream, so frames already read are still drained to the outputs) or to give up
/// (`interrupt`: the next read throws `reason`).
final class WatchedReader: FrameReader, @unchecked Sendable {
    private let inner: FrameReader
    private let metrics: Metrics
    private let source: String
    private let lock = NSLock()
    private var finishing = false
    private var interruption: String?
    private var lastFrame = DispatchTime.now().uptimeNanoseconds
    private var reportedDecodeErrors = 0
    private(set) var frames = 0
    /// Called once, on the reading thread, when the first frame has been read (before it is
    /// passed on): a live stream counts as connected from then.
    var onFirstFrame: (() -> Void)? {
        get { lock.lock(); defer { lock.unlock() }; return _onFirstFrame }
        set { lock.lock(); _onFirstFrame = newValue; lock.unlock() }
    }
    private var _onFirstFrame: (() -> Void)?
    /// Frames read so far.
    var frameCount: Int { lock.lock(); defer { lock.unlock() }; return frames }

    init(_ inner: FrameReader, metrics: Metrics, source: String) {
        self.inner = inner; self.metrics = metrics; self.source = source
    }

    func next() throws -> PipelineFrame? {
        lock.lock(); let stop = finishing; let why = interruption; lock.unlock()
        if let why { throw ServiceError(why) }
        if stop { return nil }
        do {
            let f = try inner.next()
            lock.lock(); let why2 = interruption; lock.unlock()
            if let why2 { throw ServiceError(why2) }
            if f != nil {
                lock.lock(); lastFrame = DispatchTime.now().uptimeNanoseconds; frames += 1; let first = frames == 1; let hook = _onFirstFrame; lock.unlock()
                if first { hook?() }
                metrics.add("framepipe_frames_decoded_total", ["source": source])
            }
            let errs = inner.decodeErrors
            if errs > reportedDecodeErrors {
                metrics.add("framepipe_errors_total", ["source": source, "kind": "decode"], by: Double(errs - reportedDecodeErrors))
                reportedDecodeErrors = errs
            }
            return f
        } catch {
            lock.lock(); let stop2 = finishing; lock.unlock()
            if stop2 { return nil }  // cancelled by finish(): a clean end
            throw error
        }
    }

    func cancel() { inner.cancel() }
    var framesDecoded: Int { inner.framesDecoded }
    var decodeErrors: Int { inner.decodeErrors }
    var duration: Double? { inner.duration }

    /// Seconds since the last frame (or since opening).
    var secondsSinceFrame: Double {
        lock.lock(); defer { lock.unlock() }
        return Double(DispatchTime.now().uptimeNanoseconds - lastFrame) / 1e9
    }

    /// Ends the input at the next read, as if the stream had ended.
    func finish() {
        lock.lock(); finishing = true; lock.unlock()
        inner.cancel()
    }

    /// True once `interrupt` was called (a stall the worker detected).
    var wasInterrupted: Bool { lock.lock(); defer { lock.unlock() }; return interruption != nil }

    /// Fails the input at the next read with `reason`.
    func interrupt(_ reason: String) {
        lock.lock(); if interruption == nil { interruption = reason }; lock.unlock()
        inner.cancel()
    }
}

/// Live frames dropped during one connection, as far as the metrics have counted them already.
final class DropTally: @unchecked Sendable {
    private let lock = NSLock()
    private var _counted = 0
    var counted: Int { lock.lock(); defer { lock.unlock() }; return _counted }
    func add(_ n: Int) { lock.lock(); _counted += n; lock.unlock() }
}

/// Counts emitted records (and, with a `DropTally`, dropped live frames as they are dropped)
/// into the metrics, passing the records on.
final class CountingSink: FrameSink {
    let inner: FrameSink
    let metrics: Metrics
    let source: String
    let drops: DropTally?
    init(_ inner: FrameSink, metrics: Metrics, source: String, drops: DropTally? = nil) {
        self.inner = inner; self.metrics = metrics; self.source = source; self.drops = drops
    }
    func noteDropped(_ dropped: Int) {
        guard let drops else { return }
        drops.add(dropped)
        metrics.add("framepipe_frames_dropped_total", ["source": source], by: Double(dropped))
    }
    func write(_ record: FrameRecord) throws {
        try inner.write(record)
        metrics.add("framepipe_frames_emitted_total", ["source": source])
    }
    func finish(error: String?) throws { try inner.finish(error: error) }
    func finish(error: String?, completion: @escaping @Sendable (Error?) -> Void) {
        inner.finish(error: error, completion: completion)
    }
    var outputPaths: [String] { inner.outputPaths }
    func writeSegment(_ segment: LabelSegment) throws { try inner.writeSegment(segment) }
    func writePooled(mode: PoolMode, frames: Int, embedding: [Float]) throws {
        try inner.writePooled(mode: mode, frames: frames, embedding: embedding)
    }
    func abandon() { inner.abandon() }
}

/// When a worker last showed signs of life; read by the watchdog.
final class Liveness: @unchecked Sendable {
    private let lock = NSLock()
    private var last = DispatchTime.now().uptimeNanoseconds
    private var lastEmitted = -1

    /// The worker is alive now.
    func beat() { lock.lock(); last = DispatchTime.now().uptimeNanoseconds; lock.unlock() }

    /// Counts a pipeline's emitted frames as progress when they grew.
    func observe(emitted: Int) {
        lock.lock()
        if emitted != lastEmitted { lastEmitted = emitted; last = DispatchTime.now().uptimeNanoseconds }
        lock.unlock()
    }

    /// Seconds since the last sign of life.
    var age: Double {
        lock.lock(); defer { lock.unlock() }
        return Double(DispatchTime.now().uptimeNanoseconds - last) / 1e9
    }
}
