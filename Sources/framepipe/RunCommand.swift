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

/// `framepipe run`: the main job, video in, labels and embeddings out.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Label and embed the frames of one or more videos.",
        discussion: """
            Writes one JSON object per kept frame to stdout (schema: README.md, "Output"), or with \
            --output-dir, NAME.jsonl, NAME.npy and NAME.csv per input. Exit status: 0 when every input \
            succeeded, 1 when some input failed, 2 on a usage error.
            """)

    @Argument(help: "Videos: files, '-' for stdin, or URLs.")
    var inputs: [String]

    @OptionGroup var model: ModelFlags
    @OptionGroup var sampling: SamplingFlags

    @Option(name: .long, help: "Frames per inference batch.")
    var batch = 16

    @Option(name: .long, help: "What to emit: labels, embedding or both.")
    var emit: EmitChoice = .labels

    @Option(name: .customLong("top-k"), help: "Labels per frame.")
    var topK = 5

    @Option(name: .customLong("min-score"), help: "Omit labels scoring below this probability.")
    var minScore: Float = 0

    @Option(name: .customLong("embedding-encoding"), help: "Embeddings as a JSON array (json) or base64 float32 LE.")
    var embeddingEncoding: EmbeddingEncoding = .json

    @Option(name: .customLong("output-dir"), help: "Write NAME.jsonl/.npy/.csv per input here instead of stdout.")
    var outputDir: String?

    @Option(name: .long, help: "Inputs processed at once.")
    var jobs = 1

    @Option(name: .customLong("max-latency"), help: "Live inputs: send a partial batch after this many ms.")
    var maxLatency = 500

    @Option(name: .customLong("frame-queue"), help: "Decoded frames buffered per input.")
    var frameQueue = 8

    @Option(name: .customLong("batches-in-flight"), help: "Batch buffers per concurrent input.")
    var batchesInFlight = 3

    @Flag(name: .shortAndLong, help: "No progress line or summary on stderr.")
    var quiet = false

    func validate() throws {
        if inputs.isEmpty { throw usageFailure("no input given") }
        if batch < 1 || batch > 1024 { throw usageFailure("--batch must be in 1...1024 (got \(batch))") }
        if topK < 0 { throw usageFailure("--top-k must be >= 0") }
        if !(0...1).contains(minScore) { throw usageFailure("--min-score must be in 0...1") }
        if jobs < 1 { throw usageFailure("--jobs must be >= 1") }
        if maxLatency < 1 { throw usageFailure("--max-latency must be >= 1 ms") }
        if frameQueue < 1 || batchesInFlight < 2 {
            throw usageFailure("--frame-queue must be >= 1 and --batches-in-flight >= 2")
        }
        if inputs.filter({ $0 == "-" }).count > 1 { throw usageFailure("'-' (stdin) can be given once") }
        if let outputDir {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: outputDir, isDirectory: &isDir) || !isDir.boolValue {
                throw usageFailure("--output-dir \(outputDir): not a directory")
            }
        }
    }

    func run() throws {
        LineWriter.ignoreSIGPIPE()
        MediaCLI.quietFFmpeg()
        let loaded: LoadedModel
        do {
            loaded = try LoadedModel.load(model.settings(batchSize: batch))
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
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
        if emit != .embedding && loaded.runner.classCount == 0 {
            printError("\(loaded.path): the model has no class output; use --emit embedding")
            throw ExitCode(2)
        }

        var naming = OutputNaming()
        let plans = inputs.map { input -> InputPlan in
            var sink: (() throws -> FrameSink)?
            if let dir = outputDir {
                let stem = naming.uniqueStem(for: input)
                let emitOptions = options.emit
                let dim = emit == .labels ? 0 : loaded.runner.embeddingDim
                let k = emit == .embedding ? 0 : topK
                sink = { try FileSetSink(input: input, directory: dir, stem: stem, options: emitOptions,
                                         embeddingDim: dim, topK: k) }
            }
            return makeInputPlan(input: input, model: loaded, source: sampling.sourceOptions(), sink: sink)
        }

        let pipeline = Pipeline(runner: loaded.runner, options: options,
                                stdout: outputDir == nil ? LineWriter() : nil,
                                log: { printError($0) })
        let signals = SignalCanceller { pipeline.cancel() }
        let progress = ProgressLine(enabled: !quiet && isatty(STDERR_FILENO) == 1) { pipeline.progress }
        progress.start()
        let report = pipeline.run(plans)
        progress.stop()
        signals.stop()

        if report.outputClosed { throw ExitCode(0) }  // the reader went away (`| head`): quiet, done
        if !quiet { printSummary(report) }
        if let sig = signals.received { throw ExitCode(128 + sig) }
        if report.failedInputs > 0 { throw ExitCode(1) }
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

/// `framepipe: <message>` on stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("framepipe: \(message)\n".utf8))
}

/// Turns SIGINT/SIGTERM into a clean cancel (unfinished files are dropped, never left half-written).
final class SignalCanceller: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var _received: Int32?
    var received: Int32? { lock.lock(); defer { lock.unlock() }; return _received }

    init(onSignal: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { [weak self] in
                self?.lock.lock(); self?._received = sig; self?.lock.unlock()
                onSignal()
            }
            src.resume()
            sources.append(src)
        }
    }

    func stop() { sources.forEach { $0.cancel() } }
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
