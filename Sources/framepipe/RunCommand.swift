import ArgumentParser
import Foundation
import Inference
import Media
import Output
import Pipeline

/// What each output line carries.
enum EmitChoice: String, ExpressibleByArgument, CaseIterable {
    case labels, embedding, both
}

extension EmbeddingEncoding: ExpressibleByArgument {}
extension PoolMode: ExpressibleByArgument {}

/// `framepipe run`: the main job, video in, labels and embeddings out.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Label and embed the frames of one or more videos.",
        discussion: """
            Writes one JSON object per kept frame to stdout (schema: README.md, "Output"), or with \
            --output-dir, NAME.jsonl, NAME.npy and NAME.csv per input. Exit status: 0 when every input \
            succeeded, 1 when some input failed, 2 on a usage error, 78 when the model or the output \
            folder stops it from starting.
            """)

    @Argument(help: "Videos: files, '-' for stdin, or URLs.")
    var inputs: [String]

    @OptionGroup var model: ModelFlags
    @OptionGroup var sampling: SamplingFlags

    @Option(name: .long, parsing: .unconditional, help: "Frames per inference batch.")
    var batch = 16

    @Option(name: .long, help: "What to emit: labels, embedding or both.")
    var emit: EmitChoice = .labels

    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Labels per frame.")
    var topK = 5

    @Option(name: .customLong("min-score"), parsing: .unconditional, help: "Omit labels scoring below this probability.")
    var minScore: Float = 0

    @Option(name: .customLong("embedding-encoding"), help: "Embeddings as a JSON array (json) or base64 float32 LE.")
    var embeddingEncoding: EmbeddingEncoding = .json

    @Option(name: .customLong("output-dir"), help: "Write NAME.jsonl/.npy/.csv per input here instead of stdout (created if missing).")
    var outputDir: String?

    @Option(name: .long, parsing: .unconditional, help: "Inputs processed at once.")
    var jobs = 1

    @Option(name: .customLong("max-latency"), parsing: .unconditional, help: "Send a partial batch once its first frame waited this many ms (inputs share batches).")
    var maxLatency = 500

    @Option(name: .customLong("frame-queue"), parsing: .unconditional, help: "Decoded frames buffered, shared by the inputs running at once (each gets an equal part, at least 2).")
    var frameQueue = 8

    @Option(name: .customLong("batches-in-flight"), parsing: .unconditional, help: "Batch buffers of the inference service (shared by all inputs).")
    var batchesInFlight = 3

    @Flag(name: .long, help: "Write label segments (runs of one top-1 label) instead of frame records; each as soon as it closes.")
    var segments = false

    @Option(name: .customLong("segment-min"), parsing: .unconditional, help: ArgumentHelp(
        "Seconds a label must hold top-1 before it opens a new segment (shorter runs stay in the current one).",
        valueName: "seconds"))
    var segmentMin = 0.5

    @Flag(name: .customLong("with-frames"), help: "With --segments: frame records too, interleaved with the segment records.")
    var withFrames = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp(
        "Keep the first frame and each scene change scoring at least T (0..1, like ffmpeg's scene score) against the previous frame.",
        valueName: "T"))
    var scene: Double?

    @Option(name: .customLong("scene-min-gap"), parsing: .unconditional, help: ArgumentHelp(
        "With --scene: seconds at least between two kept frames.", valueName: "seconds"))
    var sceneMinGap = 0.0

    @Option(name: .long, help: "With --emit embedding or both: one pooled (mean or max) embedding per input, as its own record (NAME.pooled.npy with --output-dir); with --segments also one per segment (NAME.segments.npy).")
    var pool: PoolMode?

    @Flag(name: .shortAndLong, help: "No progress line or summary on stderr.")
    var quiet = false

    func validate() throws {
        if inputs.isEmpty { throw Failure.usage("no input given") }
        try FlagRules.batch.check(batch)
        try FlagRules.topK.check(topK)
        try FlagRules.minScore.check(minScore)
        try FlagRules.jobs.check(jobs)
        try FlagRules.maxLatency.check(maxLatency)
        try FlagRules.frameQueue.check(frameQueue)
        try FlagRules.batchesInFlight.check(batchesInFlight)
        if inputs.filter({ $0 == "-" }).count > 1 { throw Failure.usage("'-' (stdin) can be given once") }
        if inputs.contains("") { throw Failure.usage("an input is an empty string") }
        if outputDir == "" { throw Failure.usage("--output-dir is an empty string") }
        // The same rules as the service config's `sampling.scene*` and `output.segments`/`pool` keys.
        try FlagRules.usage {
            try samplingSettings.validate()
            try records.validate(labels: emit != .embedding, embeddings: emit != .labels)
        }
    }

    /// The sampling flags with `--scene`/`--scene-min-gap` (which only `run` has).
    var samplingSettings: SamplingSettings {
        var s = sampling.settings
        s.scene = scene
        s.sceneMinGap = sceneMinGap
        return s
    }

    /// `--segments`, `--segment-min`, `--with-frames`, `--pool` as the settings type the service shares.
    var records: RecordSettings {
        var r = RecordSettings()
        r.segments = segments
        r.segmentMin = segmentMin
        r.withFrames = withFrames
        r.pool = pool
        return r
    }

    func run() throws {
        MediaCLI.quietFFmpeg()
        let signals = SignalCanceller()
        let outputDir = try self.outputDir.map(OutputFolder.prepare)
        let loaded = try model.load(batchSize: batch)
        if emit != .embedding && loaded.runner.classCount == 0 {
            throw Failure(.cannotStart, subject: loaded.path, "the model has no class output; use --emit embedding")
        }
        try checkBatchMemory(loaded)
        try loaded.runner.prepare()
        warnAboutReferenceKernels(loaded.runner.engine)

        var options = PipelineOptions()
        options.batchSize = batch
        options.jobs = jobs
        options.frameLinkCapacity = frameQueue
        options.batchesPerJob = batchesInFlight
        options.maxLatency = Double(maxLatency) / 1000
        options.emit = EmitOptions(labels: emit != .embedding, embedding: emit != .labels,
                                   embeddingEncoding: embeddingEncoding)
        options.topK = topK
        options.minScore = minScore
        options.labelNames = loaded.labels
        records.apply(to: &options)
        samplingSettings.applyScene(to: &options, std: loaded.preprocess.std)

        var naming = OutputNaming()
        let plans = inputs.map { input -> InputPlan in
            var sink: (() throws -> FrameSink)?
            if let dir = outputDir {
                let stem = naming.uniqueStem(for: input)
                let emitOptions = options.emit
                let dim = emit == .labels ? 0 : loaded.runner.embeddingDim
                let k = emit == .embedding ? 0 : topK
                let withSegments = segments, frameLines = options.frameLines
                sink = { try FileSetSink(input: input, directory: dir, stem: stem, options: emitOptions,
                                         embeddingDim: dim, topK: k, segments: withSegments, frameLines: frameLines) }
            }
            var source = sampling.sourceOptions(for: input)
            source.decoderThreads = PipelineOptions.decoderThreads(
                requested: source.decoderThreads, concurrentInputs: min(jobs, inputs.count),
                cores: ProcessInfo.processInfo.activeProcessorCount)
            return makeInputPlan(input: input, model: loaded, source: source, sink: sink)
        }

        let pipeline = Pipeline(runner: loaded.runner, options: options,
                                stdout: outputDir == nil ? LineWriter() : nil,
                                log: { printError($0) })
        // A signal during startup (model compile) ends the run here, before any input is opened.
        if signals.attach(pipeline), let sig = signals.received { throw ExitCode(128 + sig) }
        let progress = ProgressLine(enabled: !quiet && isatty(STDERR_FILENO) == 1) { pipeline.progress }
        progress.start()
        let report = pipeline.run(plans)
        progress.stop()

        if report.outputClosed { return }  // the reader went away (`| head`): quiet, done
        if !quiet { printSummary(report) }
        if let sig = signals.received { throw ExitCode(128 + sig) }
        if report.failedInputs > 0 { throw ExitCode(ExitStatus.inputFailed.rawValue) }  // each failure already reported
    }

    /// The batch pool is allocated up front: `--batches-in-flight` (at least 3) batches of `--batch`
    /// images at the model's input size, shared by all `--jobs` inputs. A combination that cannot fit is a usage error, not an
    /// allocation failure (the bound: half of this machine's memory).
    private func checkBatchMemory(_ loaded: LoadedModel) throws {
        let r = loaded.runner
        let floats = Double(r.sampleSize + r.embeddingDim + r.classCount)
        let bytes = Double(max(3, batchesInFlight)) * Double(batch) * floats * 4
        let budget = Double(ProcessInfo.processInfo.physicalMemory) / 2
        guard bytes > budget else { return }
        let gib = { (v: Double) in String(format: "%.1f GiB", v / Double(1 << 30)) }
        throw Failure(.usage, "--batches-in-flight \(batchesInFlight) x --batch \(batch) buffers of "
                      + "\(loaded.preprocess.width)x\(loaded.preprocess.height) images need \(gib(bytes)), more than half of "
                      + "this machine's memory (\(gib(budget * 2))); lower one of them")
    }

    private func printSummary(_ r: PipelineReport) {
        let decoded = r.inputs.reduce(0) { $0 + $1.framesDecoded }
        let emitted = r.inputs.reduce(0) { $0 + $1.framesEmitted }
        let errors = r.inputs.reduce(0) { $0 + $1.decodeErrors }
        let dropped = r.inputs.reduce(0) { $0 + $1.framesDropped }
        var s = String(format: "framepipe: %d input(s), %d failed; frames decoded %d, emitted %d, decode errors %d",
                       r.inputs.count, r.failedInputs, decoded, emitted, errors)
        if dropped > 0 { s += ", dropped \(dropped)" }
        s += String(format: "; %.2f s, %.1f frames/s\n", r.wallSeconds, r.wallSeconds > 0 ? Double(emitted) / r.wallSeconds : 0)
        s += "framepipe: busy time per stage:"
        for st in r.stages { s += String(format: " %@ %.2fs/%d", st.name, st.busy, st.items) }
        for input in r.inputs {
            for f in input.files { s += "\nframepipe: wrote \(f)" }
        }
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }
}

/// The `--output-dir` folder: created (with its parents, like `mkdir -p`) when missing, before
/// the model is loaded; a path that is not a folder or cannot be created stops the run (78).
enum OutputFolder {
    /// Returns the folder without trailing slashes (so files are named `out/x.jsonl`).
    static func prepare(_ given: String) throws -> String {
        var dir = given
        while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw Failure(.cannotStart, subject: given, operation: "--output-dir", "exists and is not a folder")
            }
        } else if mkdirParents(dir) != 0 {
            throw Failure(.cannotStart, subject: given, operation: "--output-dir",
                          "cannot create the folder: \(String(cString: strerror(errno)))")
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            throw Failure(.cannotStart, subject: given, operation: "--output-dir",
                          "cannot write there: \(String(cString: strerror(errno)))")
        }
        return dir
    }

    /// `mkdir -p`: 0, or -1 with errno set by the `mkdir(2)` that failed.
    private static func mkdirParents(_ path: String) -> Int32 {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
            if mkdir(prefix, 0o777) != 0 && errno != EEXIST { return -1 }
        }
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) || !isDir.boolValue {
            errno = ENOTDIR
            return -1
        }
        return 0
    }
}

/// Turns SIGINT/SIGTERM (through the shared `SignalRelay`, as `serve`) into a clean cancel
/// (unfinished files are dropped, never left half-written). A signal before the pipeline exists is
/// remembered: `attach` then says so and the run stops before it starts.
final class SignalCanceller: @unchecked Sendable {
    private let lock = NSLock()
    private var pipeline: Pipeline?

    init() {
        SignalRelay.shared.catchSignals([SIGINT, SIGTERM])
        SignalRelay.shared.setHandler { [self] _ in
            lock.lock(); let p = pipeline; lock.unlock()
            p?.cancel()
        }
    }

    /// The first SIGINT/SIGTERM received.
    var received: Int32? { SignalRelay.shared.received }

    /// The pipeline to cancel on a signal; true when a signal already came (the caller stops).
    func attach(_ p: Pipeline) -> Bool {
        lock.lock(); pipeline = p; lock.unlock()
        return received != nil
    }
}

/// A one-line progress display on a terminal's stderr, redrawn twice a second.
final class ProgressLine: @unchecked Sendable {
    private let enabled: Bool
    private let snapshot: () -> PipelineProgress
    private var timer: DispatchSourceTimer?

    init(enabled: Bool, snapshot: @escaping () -> PipelineProgress) {
        self.enabled = enabled; self.snapshot = snapshot
    }

    func start() {
        guard enabled else { return }
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + 0.5, repeating: 0.5)
        t.setEventHandler { [snapshot] in
            let p = snapshot()
            let fps = p.elapsed > 0 ? Double(p.framesEmitted) / p.elapsed : 0
            var line = String(format: "\r\u{1B}[K%d frames  %.1f fps  %.0fs", p.framesEmitted, fps, p.elapsed)
            if let total = p.knownDuration, total > 0, p.emittedMediaTime > 0 {
                let rate = p.emittedMediaTime / p.elapsed
                line += String(format: "  %.0f%%  ETA %.0fs", min(100, 100 * p.emittedMediaTime / total),
                               max(0, (total - p.emittedMediaTime) / max(rate, 1e-6)))
            }
            FileHandle.standardError.write(Data(line.utf8))
        }
        t.resume()
        timer = t
    }

    func stop() {
        guard let timer else { return }
        timer.cancel()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
