import Foundation
import Output

/// Settings of a pipeline run.
public struct PipelineOptions {
    /// Frames per model call; the last batch of an input may be smaller.
    public var batchSize = 16
    /// Decoded frames that may wait for the scaler, per input.
    public var frameLinkCapacity = 8
    /// Batch buffers in flight per concurrent input (bounds scale → infer → emit).
    public var batchesPerJob = 3
    /// Inputs processed at once.
    public var jobs = 1
    /// Live inputs: send a partial batch once its first frame has waited this long (seconds).
    public var maxLatency: Double = 0.5
    /// What each record carries.
    public var emit = EmitOptions()
    public var topK = 5
    public var minScore: Float = 0
    /// Class names in output order (nil: indices only).
    public var labelNames: [String]?
    /// `--segments`: collapse top-1 labels into segments that need this many seconds to open (nil: off).
    public var segmentMin: Double?
    /// Frame records on stdout (false with `--segments` alone: only segment records).
    public var frameLines = true
    /// `--pool`: one pooled embedding per input, as its own record (nil: off).
    public var pool: PoolMode?
    /// `--scene`: keep only scene changes (and the first frame), judged on the scaled sample (nil: off).
    public var scene: (threshold: Double, minGap: Double, std: [Float])?

    public init() {}
}

/// How one input ended.
public struct InputOutcome: Sendable {
    public var name: String
    public var framesDecoded = 0
    public var framesEmitted = 0
    public var decodeErrors = 0
    public var framesDropped = 0
    /// Why the input stopped early (nil: it completed).
    public var error: String?
    /// Files written for it (final names), if any.
    public var files: [String] = []
}

/// What a finished run reports.
public struct PipelineReport: Sendable {
    public var inputs: [InputOutcome]
    /// (stage, items, busy seconds) in pipeline order.
    public var stages: [(name: String, items: Int, busy: Double)]
    public var wallSeconds: Double
    /// True when stdout's reader went away (e.g. `| head`): the run stopped early, quietly.
    public var outputClosed: Bool
    /// True when `cancel()` stopped the run.
    public var cancelled: Bool
    /// Batches run and their median latency (ms).
    public var batches: Int
    public var failedInputs: Int { inputs.filter { $0.error != nil }.count }
}

/// A point-in-time view for progress lines.
public struct PipelineProgress: Sendable {
    public var framesEmitted: Int
    public var elapsed: Double
    /// Sum of known input durations and the latest emitted pts per input, for an ETA.
    public var knownDuration: Double?
    public var emittedMediaTime: Double
}

/// The streaming pipeline: frames of each input flow through five stages joined by bounded links.
///
/// ```
///  per input (up to `jobs` at once)                 shared by all inputs
///  ┌────────┐ frames ┌─────────────┐ batches ┌───────┐ results ┌──────┐
///  │ decode │──link─▶│ scale/batch │──link──▶│ infer │──link──▶│ emit │──▶ stdout / files
///  └────────┘  (8)   └─────────────┘   (2j)  └───────┘  (2j)   └──────┘
///       ▲ FrameReader     │ writes into a         BatchRunner       │ returns each batch
///       │                 ▼ free batch slot                         ▼ to the pool
///       └──────────────── batch pool (3 per job, allocated once) ◀──┘
/// ```
/// - decode: one DispatchQueue per input; owns its `FrameReader`; blocks when the frame link is full
///   (files) or drops the oldest frame (live inputs).
/// - scale/batch: one DispatchQueue per input; owns its `SampleWriter`; takes a free batch from the
///   pool (blocking when all are in flight), writes each frame's sample straight into the next slot,
///   and passes the batch on when full, at end of input, or (live) after `maxLatency`.
/// - infer: one DispatchQueue; owns the `BatchRunner`; blocks when the emit link is full.
/// - emit: one DispatchQueue; labels, writes records in frame order, returns batches to the pool.
/// So a slow consumer of stdout fills the links and the pool, and decoding waits: memory is bounded
/// by link capacities and pool size, whatever the input length.
public final class Pipeline: @unchecked Sendable {
    private let runner: BatchRunner
    private let options: PipelineOptions
    private let stdout: LineWriter?
    private let log: (String) -> Void

    private let decodeStats = StageStats(name: "decode")
    private let scaleStats = StageStats(name: "scale")
    private let inferStats = StageStats(name: "infer")
    private let emitStats = StageStats(name: "emit")

    private let pool: BoundedLink<Batch>
    private let inferLink: BoundedLink<BatchItem>
    private let emitLink: BoundedLink<BatchItem>
    private let lock = NSLock()
    private var activeJobs: [Job] = []
    private var outcomes: [Int: InputOutcome] = [:]
    private var _cancelled = false
    private var _outputClosed = false
    private var emitted = 0
    private var batchLatencies: [Double] = []
    private var started = DispatchTime.now()

    /// - Parameters:
    ///   - runner: the model; used only from the infer stage's queue.
    ///   - stdout: where JSON lines go (nil: only per-input sinks).
    ///   - log: receives one human-readable line per input error (stderr in the CLI).
    public init(runner: BatchRunner, options: PipelineOptions, stdout: LineWriter?, log: @escaping (String) -> Void) {
        precondition(options.batchSize >= 1 && options.batchSize <= runner.maxBatch, "batch size out of range")
        self.runner = runner
        self.options = options
        self.stdout = stdout
        self.log = log
        let batches = max(2, options.batchesPerJob) * max(1, options.jobs)
        pool = BoundedLink(name: "pool", capacity: batches)
        for _ in 0..<batches {
            pool.push(Batch(capacity: options.batchSize, sampleSize: runner.sampleSize,
                            embeddingDim: runner.embeddingDim, classCount: runner.classCount))
        }
        inferLink = BoundedLink(name: "infer", capacity: 2 * max(1, options.jobs))
        emitLink = BoundedLink(name: "emit", capacity: 2 * max(1, options.jobs))
    }

    /// Stops everything soon: readers are interrupted, links woken, unfinished files dropped.
    public func cancel() {
        lock.lock()
        _cancelled = true
        let jobs = activeJobs
        lock.unlock()
        for job in jobs { job.cancel() }
        inferLink.cancel()
        emitLink.cancel()
        pool.cancel()
    }

    private var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled }

    /// Items waiting now in each link: decoded frames (all inputs), batches before inference,
    /// batches before emitting; and free batch buffers in the pool. For metrics (any thread).
    public var queueDepths: [String: Int] {
        lock.lock(); let jobs = activeJobs; lock.unlock()
        return ["frames": jobs.reduce(0) { $0 + $1.frameLink.depth }, "infer": inferLink.depth,
                "emit": emitLink.depth, "free_batches": pool.depth]
    }

    /// A snapshot for progress display (any thread).
    public var progress: PipelineProgress {
        lock.lock(); defer { lock.unlock() }
        var known = 0.0, media = 0.0, allKnown = !activeJobs.isEmpty
        for job in activeJobs {
            if let d = job.duration { known += d } else { allKnown = false }
            media += job.lastPts
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        return PipelineProgress(framesEmitted: emitted, elapsed: elapsed,
                                knownDuration: allKnown ? known : nil, emittedMediaTime: media)
    }

    /// Processes every input and returns when all are done (or the run was cancelled).
    public func run(_ plans: [InputPlan]) -> PipelineReport {
        started = DispatchTime.now()
        let jobSlots = DispatchSemaphore(value: max(1, options.jobs))
        let scaleGroup = DispatchGroup()
        // Every stage thread, so that run() returns only when none is still inside FFmpeg or oneDNN
        // (a process exiting under a running primitive would tear down its globals mid-call).
        let stages = DispatchGroup()
        let done = DispatchSemaphore(value: 0)

        let inferQueue = DispatchQueue(label: "framepipe.infer", qos: .userInitiated)
        let emitQueue = DispatchQueue(label: "framepipe.emit", qos: .userInitiated)
        stages.enter()
        inferQueue.async { self.inferLoop(); stages.leave() }
        emitQueue.async { self.emitLoop(jobSlots: jobSlots); done.signal() }

        let coordinator = DispatchQueue(label: "framepipe.inputs")
        coordinator.async {
            for (n, plan) in plans.enumerated() {
                jobSlots.wait()
                if self.isCancelled {
                    self.record(InputOutcome(name: plan.name, error: "cancelled before start"), at: n)
                    jobSlots.signal()
                    continue
                }
                let job = Job(number: n, plan: plan,
                              frameLink: BoundedLink(name: "frames-\(n)", capacity: self.options.frameLinkCapacity,
                                                     policy: plan.live ? .dropOldest : .block))
                self.lock.lock(); self.activeJobs.append(job); self.lock.unlock()
                scaleGroup.enter()
                stages.enter()
                DispatchQueue(label: "framepipe.decode.\(n)", qos: .userInitiated).async {
                    self.decodeLoop(job)
                    stages.leave()
                }
                stages.enter()
                DispatchQueue(label: "framepipe.scale.\(n)", qos: .userInitiated).async {
                    self.scaleLoop(job)
                    scaleGroup.leave()
                    stages.leave()
                }
            }
            scaleGroup.wait()
            self.inferLink.close()
        }
        done.wait()
        // After a cancel the other stages stop within a frame or a batch; a read blocked on a
        // silent network input ends by its I/O time limit. Don't wait forever for that one.
        if stages.wait(timeout: .now() + 15) == .timedOut {
            log("some stage did not stop within 15 s of the end of the run")
        }

        lock.lock(); defer { lock.unlock() }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        var inputs: [InputOutcome] = []
        for n in plans.indices {
            inputs.append(outcomes[n] ?? InputOutcome(name: plans[n].name, error: "not processed (run stopped)"))
        }
        return PipelineReport(
            inputs: inputs,
            stages: [decodeStats, scaleStats, inferStats, emitStats].map { ($0.name, $0.items, $0.busySeconds) },
            wallSeconds: wall, outputClosed: _outputClosed, cancelled: _cancelled,
            batches: batchLatencies.count)
    }

    private func record(_ outcome: InputOutcome, at n: Int) {
        lock.lock(); outcomes[n] = outcome; lock.unlock()
    }

    // MARK: decode

    private func decodeLoop(_ job: Job) {
        let reader: FrameReader
        do {
            reader = try decodeStats.measure(items: 0) { try job.plan.openReader() }
        } catch {
            job.frameLink.push(.end(error: "\(error)"))
            job.frameLink.close()
            return
        }
        job.attach(reader)
        var endError: String?
        while !job.isCancelled {
            do {
                guard let frame = try decodeStats.measure(items: 0, { try reader.next() }) else { break }
                decodeStats.count(1)
                if !job.frameLink.push(.frame(frame)) { break }
            } catch {
                endError = "\(error)"
                break
            }
        }
        job.finishReading(decoded: reader.framesDecoded, errors: reader.decodeErrors,
                          dropped: job.frameLink.drops)
        job.frameLink.push(.end(error: endError))
        job.frameLink.close()
    }

    // MARK: scale / batch

    private func scaleLoop(_ job: Job) {
        var writer: SampleWriter?
        var current: Batch?
        var deadline: Date?
        var scene = options.scene.map { SceneFilter(threshold: $0.threshold, minGap: $0.minGap, std: $0.std) }
        func flush() {
            if let b = current {
                if !inferLink.push(.batch(b)) { pool.push(b) }
                current = nil
                deadline = nil
            }
        }
        loop: while true {
            switch job.frameLink.pop(until: job.plan.live ? deadline : nil) {
            case .timedOut:
                flush()
            case .finished:
                break loop  // cancelled
            case .item(.end(let error)):
                flush()
                inferLink.push(.end(job, error: error))
                return
            case .item(.frame(let frame)):
                if job.failed { continue }  // drain quietly after a failure
                if current == nil {
                    guard case .item(let b) = pool.pop() else { break loop }
                    b.job = job
                    current = b
                    if job.plan.live { deadline = Date(timeIntervalSinceNow: options.maxLatency) }
                }
                let batch = current!
                do {
                    if writer == nil { writer = try job.plan.makeWriter() }
                    try scaleStats.measure { try writer!.write(frame, to: batch.nextSlot) }
                    // A frame that is no scene change leaves its slot free for the next one.
                    if scene?.keep(sample: UnsafeBufferPointer(start: batch.nextSlot, count: batch.sampleSize),
                                   pts: frame.meta.pts) == false { continue }
                    batch.metas.append(frame.meta)
                } catch {
                    job.fail("\(error)")
                    job.cancelReader()
                    continue
                }
                if batch.isFull { flush() }
            }
        }
        // Cancelled: give the batch back and still report the end so the emitter can finish the job.
        if let b = current { b.reset(); pool.push(b) }
        inferLink.push(.end(job, error: "cancelled"))
    }

    // MARK: infer

    private func inferLoop() {
        while case .item(let item) = inferLink.pop() {
            if case .batch(let b) = item, b.error == nil, b.count > 0 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                do {
                    try inferStats.measure(items: b.count) {
                        try runner.run(input: b.input, count: b.count, embeddings: b.embeddings, logits: b.logits)
                    }
                } catch {
                    b.error = "inference failed: \(error)"
                }
                let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                lock.lock(); batchLatencies.append(ms); lock.unlock()
            }
            if !emitLink.push(item) {
                if case .batch(let b) = item { b.reset(); pool.push(b) }
                break
            }
        }
        emitLink.close()
    }

    // MARK: emit

    private func emitLoop(jobSlots: DispatchSemaphore) {
        var labeler = Labeler(names: options.labelNames, topK: options.emit.labels ? options.topK : 0,
                              minScore: options.minScore)
        var line: [UInt8] = []
        var sinks: [Int: FrameSink] = [:]
        var finished = Set<Int>()
        var trackers: [Int: SegmentTracker] = [:]
        var poolers: [Int: EmbeddingPooler] = [:]

        /// A segment record goes to stdout (or the input's files) as soon as it closes.
        func emitSegment(_ job: Job, _ segment: LabelSegment?) {
            guard let segment else { return }
            if let stdout, job.plan.makeSink == nil {
                do { try stdout.write(RecordEncoder.segmentLine(input: job.plan.name, segment)) } catch {
                    lock.lock(); _outputClosed = true; lock.unlock()
                    cancel()
                }
            }
            if let fs = sinks[job.number] as? FileSetSink {
                do { try fs.writeSegment(segment) } catch {
                    fs.abandon()
                    sinks[job.number] = nil
                    job.sinkFailed = true
                    job.fail("\(error)")
                    job.cancelReader()
                }
            }
        }

        func sink(for job: Job) -> FrameSink? {
            if let s = sinks[job.number] { return s }
            guard let make = job.plan.makeSink, !job.sinkFailed else { return nil }
            do {
                let s = try make()
                sinks[job.number] = s
                return s
            } catch {
                job.sinkFailed = true
                job.fail("\(error)")
                job.cancelReader()
                return nil
            }
        }

        func finishJob(_ job: Job, error endError: String?) {
            let error = job.failure ?? endError
            var outcome = job.outcome
            outcome.error = error
            if let tracker = trackers.removeValue(forKey: job.number), !isCancelled {
                var t = tracker
                emitSegment(job, t.finish())
            }
            if let pooler = poolers.removeValue(forKey: job.number), !isCancelled, let e = pooler.result {
                if let stdout, job.plan.makeSink == nil {
                    try? stdout.write(RecordEncoder.pooledLine(input: job.plan.name, mode: pooler.mode, frames: pooler.frames,
                                                               embedding: e, encoding: options.emit.embeddingEncoding))
                }
                if let fs = sinks[job.number] as? FileSetSink {
                    do { try fs.writePooled(mode: pooler.mode, frames: pooler.frames, embedding: e) } catch {
                        fs.abandon()
                        sinks[job.number] = nil
                        job.sinkFailed = true
                        job.fail("\(error)")
                    }
                }
            }
            outcome.framesEmitted = job.emitted
            if let error, !(isCancelled && error == "cancelled") {
                log("\(job.plan.name): \(error)")
                if let stdout, job.plan.makeSink == nil {
                    try? stdout.write(RecordEncoder.errorLine(input: job.plan.name, message: error,
                                                              framesEmitted: job.emitted))
                }
            }
            if let s = sink(for: job) {
                if isCancelled {
                    s.abandon()
                } else {
                    do {
                        try s.finish(error: error)
                        if let fs = s as? FileSetSink { outcome.files = fs.paths }
                    } catch {
                        outcome.error = outcome.error ?? "\(error)"
                        log("\(job.plan.name): \(error)")
                    }
                }
            }
            sinks[job.number] = nil
            finished.insert(job.number)
            record(outcome, at: job.number)
            lock.lock(); activeJobs.removeAll { $0 === job }; lock.unlock()
            jobSlots.signal()
        }

        while case .item(let item) = emitLink.pop() {
            switch item {
            case .end(let job, let error):
                finishJob(job, error: error)
            case .batch(let b):
                let job = b.job!
                if let e = b.error { job.fail(e); job.cancelReader() }
                if !job.failed {
                    emitStats.measure(items: b.count) {
                        let s = sink(for: job)
                        for i in 0..<b.count {
                            let meta = b.metas[i]
                            let labels = b.logits.map {
                                labeler.labels(UnsafeBufferPointer(start: $0 + i * b.classCount, count: b.classCount))
                            } ?? []
                            let emb = b.embeddings.map {
                                UnsafeBufferPointer(start: $0 + i * b.embeddingDim, count: b.embeddingDim)
                            }
                            let rec = FrameRecord(input: job.plan.name, frame: meta.index, pts: meta.pts,
                                                  keyframe: meta.keyframe, labels: labels, embedding: emb)
                            if let mode = options.pool, let emb {
                                poolers[job.number, default: EmbeddingPooler(mode: mode)].add(emb)
                            }
                            if let min = options.segmentMin {
                                let closed = trackers[job.number, default: SegmentTracker(minDuration: min)]
                                    .add(pts: meta.pts, top: labels.first)
                                emitSegment(job, closed)
                            }
                            if let stdout, job.plan.makeSink == nil, options.frameLines {
                                line = RecordEncoder.frameLine(rec, options: options.emit, reusing: line)
                                do {
                                    try stdout.write(line)
                                } catch {
                                    lock.lock(); _outputClosed = true; lock.unlock()
                                    cancel()
                                    return
                                }
                            }
                            if let s {
                                do { try s.write(rec) } catch {
                                    s.abandon()
                                    sinks[job.number] = nil
                                    job.sinkFailed = true
                                    job.fail("\(error)")
                                    job.cancelReader()
                                    break
                                }
                            }
                            job.emitted += 1
                            job.lastPts = meta.pts
                            lock.lock(); emitted += 1; lock.unlock()
                        }
                    }
                }
                b.reset()
                pool.push(b)
            }
        }
        // Cancelled: jobs whose end never arrived still release their files and slots.
        lock.lock(); let left = activeJobs; lock.unlock()
        for job in left where !finished.contains(job.number) {
            finishJob(job, error: "cancelled")
        }
    }
}

enum FrameItem {
    case frame(PipelineFrame)
    case end(error: String?)
}

enum BatchItem {
    case batch(Batch)
    case end(Job, error: String?)
}

/// One input in flight: its plan, frame link, reader and counters.
final class Job: @unchecked Sendable {
    let number: Int
    let plan: InputPlan
    let frameLink: BoundedLink<FrameItem>
    private let lock = NSLock()
    private var reader: FrameReader?
    private var _cancelled = false
    private var _failure: String?
    private var _outcome: InputOutcome
    var outcome: InputOutcome { lock.lock(); defer { lock.unlock() }; return _outcome }
    /// Touched by the emit stage only.
    var emitted = 0
    var sinkFailed = false
    var lastPts = 0.0
    var duration: Double? { lock.lock(); defer { lock.unlock() }; return reader?.duration }

    init(number: Int, plan: InputPlan, frameLink: BoundedLink<FrameItem>) {
        self.number = number; self.plan = plan; self.frameLink = frameLink
        _outcome = InputOutcome(name: plan.name)
    }

    func attach(_ r: FrameReader) {
        lock.lock(); reader = r; let c = _cancelled; lock.unlock()
        if c { r.cancel() }
    }

    var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled || _failure != nil }
    var failed: Bool { lock.lock(); defer { lock.unlock() }; return _failure != nil }
    var failure: String? { lock.lock(); defer { lock.unlock() }; return _failure }

    /// Records the first failure of this input.
    func fail(_ message: String) {
        lock.lock(); if _failure == nil { _failure = message }; lock.unlock()
    }

    /// Interrupts the reader, or its opening (the decode loop then ends this input).
    func cancelReader() {
        lock.lock(); let r = reader; lock.unlock()
        if let r { r.cancel() } else { plan.cancelOpen?() }
    }

    /// Stops the whole input.
    func cancel() {
        lock.lock(); _cancelled = true; let r = reader; lock.unlock()
        if let r { r.cancel() } else { plan.cancelOpen?() }
        frameLink.cancel()
    }

    func finishReading(decoded: Int, errors: Int, dropped: Int) {
        lock.lock()
        _outcome.framesDecoded = decoded
        _outcome.decodeErrors = errors
        _outcome.framesDropped = dropped
        lock.unlock()
    }
}
