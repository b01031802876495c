import Foundation
import Output

/// A pipeline run: each input's frames flow through typed stages joined by bounded links, and
/// every input's frames meet in one `InferenceService`.
///
/// ```
///  per input (up to `jobs` at once)                         shared by every input of the service
///  ┌────────┐ FrameItem ┌─────────────────┐ slot  ┌────────────────────────────────────────┐
///  │ decode │──link────▶│ scale (+filter) │──────▶│ batcher ─▶ infer ─link─▶ label         │
///  └────────┘ (8, block │ writes into the │       │ (fixed batch pool, latency cap, policy) │
///   FrameReader  or drop│ service's batch │       └──────────────────────────┬─────────────┘
///                oldest)└─────────────────┘                                  │ InputEvent link (per input)
///                                          ┌────────────────────────────┐    ▼
///                            stdout/files ◀│ output: processors ▶ sink  │◀───┘
///                                          └────────────────────────────┘
/// ```
/// Each stage runs on a queue or thread its owner creates (`InputRun`, `InferenceService`,
/// `OutputStage` document theirs). A slow sink fills its event link, then the label stage, the
/// pool, and decoding waits: memory is bounded by link capacities and the pool, whatever the
/// input length or count. `run` returns only when every stage thread of its inputs has finished
/// (and, for a service the pipeline made itself, the service's threads too): no FFmpeg or oneDNN
/// call is still running then.
public final class Pipeline: @unchecked Sendable {
    public let service: InferenceService
    private let ownsService: Bool
    private let options: PipelineOptions
    private let stdout: LineWriter?
    private let log: (String) -> Void
    private let stats = PipelineStats()

    private let lock = NSLock()
    private var active: [InputRun] = []
    private var outcomes: [Int: InputOutcome] = [:]
    private var finishedEmitted = 0
    private var _cancelled = false
    private var _outputClosed = false
    private var started = DispatchTime.now()

    /// A pipeline with its own inference service on `runner` (shut down at the end of `run`).
    /// - Parameters:
    ///   - runner: the model; used only from the service's infer thread.
    ///   - stdout: where JSON lines go for inputs without a sink of their own (nil: none).
    ///   - log: receives one human-readable line per input error (stderr in the CLI).
    public convenience init(runner: BatchRunner, options: PipelineOptions, stdout: LineWriter?,
                            log: @escaping (String) -> Void) {
        let service = InferenceService(runner: runner, batchSize: options.batchSize, maxLatency: options.maxLatency,
                                       policy: options.policy, poolSize: options.batchesPerJob)
        self.init(service: service, owns: true, options: options, stdout: stdout, log: log)
    }

    /// A pipeline feeding a shared `service` (e.g. the daemon's, shared by the inbox and every
    /// stream); `options.batchSize`, `maxLatency`, `policy` and `batchesPerJob` are the service's.
    public convenience init(service: InferenceService, options: PipelineOptions, stdout: LineWriter?,
                            log: @escaping (String) -> Void) {
        self.init(service: service, owns: false, options: options, stdout: stdout, log: log)
    }

    private init(service: InferenceService, owns: Bool, options: PipelineOptions, stdout: LineWriter?,
                 log: @escaping (String) -> Void) {
        self.service = service
        ownsService = owns
        var o = options
        o.batchSize = service.batchSize
        self.options = o
        self.stdout = stdout
        self.log = log
    }

    /// Stops everything soon: readers are interrupted, links woken, unfinished files dropped.
    public func cancel() {
        lock.lock(); _cancelled = true; let runs = active; lock.unlock()
        // A writer blocked on a reader that stopped reading would hold the output stage, and so
        // the run, forever: a cancelled run gives stdout up.
        stdout?.abandon()
        for r in runs { r.cancel() }
    }

    private var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled }

    private func closeOutput() {
        lock.lock(); _outputClosed = true; lock.unlock()
        cancel()
    }

    /// Items waiting now: decoded frames (this run's inputs), sealed batches before inference,
    /// labelled results before the sinks, and free batch buffers of the service. For metrics.
    public var queueDepths: [String: Int] {
        lock.lock(); let runs = active; lock.unlock()
        let d = service.depths
        return ["frames": runs.reduce(0) { $0 + $1.frameLink.depth }, "infer": d.sealed,
                "emit": d.label + runs.reduce(0) { $0 + $1.route.events.depth }, "free_batches": d.free]
    }

    /// A snapshot for progress display (any thread).
    public var progress: PipelineProgress {
        lock.lock(); let runs = active; let done = finishedEmitted; lock.unlock()
        var known = 0.0, media = 0.0, allKnown = !runs.isEmpty, emitted = done
        for r in runs {
            if let d = r.duration { known += d } else { allKnown = false }
            media += r.lastPts
            emitted += r.emitted
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        return PipelineProgress(framesEmitted: emitted, elapsed: elapsed,
                                knownDuration: allKnown ? known : nil, emittedMediaTime: media)
    }

    /// Processes every input (up to `jobs` at once) and returns when all are done or the run was
    /// cancelled, and no stage of it is still inside FFmpeg or oneDNN.
    public func run(_ plans: [InputPlan]) -> PipelineReport {
        started = DispatchTime.now()
        let before = service.batchCounts
        let slots = DispatchSemaphore(value: max(1, options.jobs))
        let concurrent = max(1, min(options.jobs, plans.count))
        let stages = DispatchGroup()
        for (n, plan) in plans.enumerated() {
            slots.wait()
            if isCancelled {
                record(InputOutcome(name: plan.name, error: "cancelled before start"), at: n, emitted: 0)
                slots.signal()
                continue
            }
            var plan = plan
            if plan.makeFilter == nil, let scene = options.scene {
                plan.sampleScenes(threshold: scene.threshold, minGap: scene.minGap, std: scene.std)
            }
            let run = InputRun(number: n, plan: plan, service: service, options: options, stats: stats,
                               concurrentInputs: concurrent)
            let makeSink: (() throws -> FrameSink)? = plan.makeSink ?? stdout.map { writer in
                { [options, plan] in
                    JSONLinesSink(writer: writer, input: plan.name, options: options.emit, frameLines: options.frameLines)
                }
            }
            let output = OutputStage(
                run: run, makeSink: makeSink, options: options, stats: stats, runCancelled: { [unowned self] in isCancelled },
                outputClosed: { [unowned self] in closeOutput() }, log: log,
                finished: { [unowned self, unowned run] outcome in
                    record(outcome, at: n, emitted: outcome.framesEmitted)
                    lock.lock(); active.removeAll { $0 === run }; lock.unlock()
                    slots.signal()
                })
            lock.lock(); active.append(run); let stop = _cancelled; lock.unlock()
            run.start(group: stages, output: output)
            if stop { run.cancel() }
        }
        // Every stage thread of every input: none is still inside FFmpeg (a cancelled read returns
        // at the next interrupt check) or waiting on the service.
        stages.wait()
        if ownsService { service.shutdown() }
        let after = service.batchCounts

        lock.lock(); defer { lock.unlock() }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        let inputs = plans.indices.map { outcomes[$0] ?? InputOutcome(name: plans[$0].name, error: "not processed (run stopped)") }
        return PipelineReport(
            inputs: inputs,
            stages: [stats.decode, stats.scale, service.inferStats, stats.emit].map { ($0.name, $0.items, $0.busySeconds) },
            wallSeconds: wall, outputClosed: _outputClosed, cancelled: _cancelled,
            batches: after.batches - before.batches, mixedBatches: after.mixed - before.mixed)
    }

    private func record(_ outcome: InputOutcome, at n: Int, emitted: Int) {
        lock.lock(); outcomes[n] = outcome; finishedEmitted += emitted; lock.unlock()
    }
}
