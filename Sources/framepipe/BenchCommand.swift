import ArgumentParser
import Foundation
import Inference
import Media
import Output
import Pipeline

/// `framepipe bench`: images/s and ms per batch of the oneDNN engine on random input.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure inference speed: images/s and ms per batch (median over timed runs after warm-up).",
        discussion: """
            Prints the instruction set oneDNN uses (ONEDNN_MAX_CPU_ISA caps it) and the kernel families \
            the layers compiled to; a layer that fell back to a reference kernel is named on stderr.

            With --input FILE.npy (float32 [N, C, H, W], the model's preprocessing already applied), times \
            those N images instead of random ones; --save-outputs DIR then writes the last run's \
            embeddings.npy and logits.npy (float32 [N, dim]), to compare with a reference.

            With --decode VIDEO, measures decoding and scaling into the model's input instead (frames/s, \
            no inference): with the inference rate, the bound a pipeline on the same cores can reach.
            """)

    @Option(help: "Model file (ONNX, Keras H5 or TFLite); default: $FRAMEPIPE_MODEL, then the default model (see `framepipe models`).")
    var model: String?
    @Option(help: "Measure decode + scale of this video instead of inference.") var decode: String?
    @Option(name: .customLong("io-timeout"), parsing: .unconditional,
            help: "With --decode: seconds opening the video may wait for data (0 = no limit).")
    var ioTimeout: Double = SourceOptions.defaultIOTimeout
    @Option(parsing: .unconditional, help: "Images per batch (1...1024, as for run; default 16, or the first dimension of --input).")
    var batch: Int?
    @Option(help: "A float32 .npy [N, C, H, W] to run instead of random input.") var input: String?
    @Option(help: "Write the last run's embeddings.npy and logits.npy into this folder.") var saveOutputs: String?
    @Option(help: "Precision: fp32, bf16 or int8 (int8 needs a quantized QDQ model).") var precision: Precision = .fp32
    @Option(parsing: .unconditional, help: "oneDNN (OpenMP) threads; default: OpenMP's default (all cores or OMP_NUM_THREADS).") var threads: Int?
    @Option(parsing: .unconditional, help: "Timed runs (after warm-up).") var iterations: Int = 20
    @Option(parsing: .unconditional, help: "Warm-up runs.") var warmup: Int = 3
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Flag(help: "List the compiled primitives (oneDNN implementation per layer).") var verbose = false

    func validate() throws {
        try FlagRules.batch.check(batch)
        try FlagRules.iterations.check(iterations)
        try FlagRules.warmup.check(warmup)
        try FlagRules.threads.check(threads)
        try FlagRules.ioTimeout.check(ioTimeout)
        if decode == "" { throw Failure.usage("--decode is an empty string") }
        if decode != nil, input != nil || saveOutputs != nil {
            throw Failure.usage("--input and --save-outputs measure inference; they cannot be used with --decode")
        }
    }

    func run() async throws {
        if let threads { setInferenceThreads(threads) }
        let started = Date()
        let path = try ModelPath.resolve(self.model)
        let model: Model
        do { model = try loadModelFile(path) } catch { throw Failure.model(error, path: path) }
        if let video = decode {
            try benchDecode(video, model: model, modelPath: path)
            return
        }
        let perImage = model.inputShape.reduce(1, *)
        var given: [Float]?
        if let file = self.input {
            let array = try NPYArray(path: file)
            guard array.shape.count == 4, Array(array.shape.dropFirst()) == model.inputShape, array.shape[0] > 0 else {
                throw Failure(.input, subject: file, "shape \(array.shape), the model takes [N, \(model.inputShape.map(String.init).joined(separator: ", "))]")
            }
            if let batch, batch != array.shape[0] {
                throw Failure.usage("--batch \(batch) but \(file) holds \(array.shape[0]) images")
            }
            given = array.values
        }
        let batch = given.map { $0.count / perImage } ?? self.batch ?? 16
        let engine: Engine
        do {
            engine = try Engine(model: model, precision: precision, maxBatch: batch, threads: threads)
        } catch {
            throw Failure.model(error, path: path)
        }
        let loadMs = Date().timeIntervalSince(started) * 1000
        let layers = try engine.compiledLayers(batch: batch)
        if verbose { for l in layers { FileHandle.standardError.write(Data("\(l.layer): \(l.implementation)\n".utf8)) } }
        warnAboutReferenceKernels(engine)

        let size = perImage * batch
        var rng = SystemRandomNumberGenerator()
        let input = given ?? (0..<size).map { _ in Float.random(in: -1...1, using: &rng) }
        var embeddings = [Float](repeating: 0, count: batch * model.embeddingDim)
        var logits = [Float](repeating: 0, count: batch * max(model.classCount, 1))
        var times: [Double] = []
        try input.withUnsafeBufferPointer { x in
            for i in 0..<(warmup + iterations) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try engine.run(input: x.baseAddress!, count: batch, embeddings: &embeddings, logits: &logits)
                let t1 = DispatchTime.now().uptimeNanoseconds
                if i >= warmup { times.append(Double(t1 - t0) / 1e6) }
            }
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        let rate = Double(batch) / (median / 1000)
        let threadCount = threads ?? inferenceThreads() ?? 0
        if let dir = saveOutputs {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try save(embeddings, dim: model.embeddingDim, to: dir + "/embeddings.npy")
            if model.classCount > 0 { try save(logits, dim: model.classCount, to: dir + "/logits.npy") }
        }
        let families = CompiledLayer.families(layers.filter { $0.kind != .reorder })
        let reorders = layers.filter { $0.kind == .reorder }.count
        if json {
            let kernels = families.map { #"{"implementation":\#(JSON.quoted($0.implementation)),"count":\#($0.count)}"# }
            let reference = engine.referenceLayers.map { layerJSON($0) }
            try StdoutText.line(#"{"model":\#(JSON.quoted(path)),"precision":"\#(precision.rawValue)","batch":\#(batch),"threads":\#(threadCount),"iterations":\#(iterations),"#
                + #""median_ms":\#(fmt(median)),"min_ms":\#(fmt(times.first!)),"max_ms":\#(fmt(times.last!)),"images_per_s":\#(fmt(rate)),"load_ms":\#(fmt(loadMs)),"#
                + #""isa":"\#(Engine.cpuISA)","activations":"\#(engine.plan.activations.rawValue)","kernels":[\#(kernels.joined(separator: ","))],"#
                + #""reorders":\#(reorders),"reference_layers":[\#(reference.joined(separator: ","))]}"#)
        } else {
            try StdoutText.line("model \(path), \(precision.rawValue), batch \(batch), \(threadCount) threads, oneDNN \(Engine.oneDNNVersion) \(Engine.cpuISA)")
            try StdoutText.line("kernels (\(engine.plan.activations.rawValue) activations): "
                  + families.map { "\($0.implementation) x\($0.count)" }.joined(separator: ", ")
                  + (reorders > 0 ? "; \(reorders) reorders" : ""))
            try StdoutText.line("load+compile \(fmt(loadMs)) ms; \(iterations) runs after \(warmup) warm-up")
            try StdoutText.line("median \(fmt(median)) ms/batch (min \(fmt(times.first!)), max \(fmt(times.last!))): \(fmt(rate)) images/s")
        }
    }

    /// Writes `values` as a float32 [rows, dim] .npy.
    private func save(_ values: [Float], dim: Int, to path: String) throws {
        let writer = try NPYWriter(path: path, dim: dim)
        do {
            try values.withUnsafeBufferPointer { all in
                for r in 0..<(values.count / dim) { try writer.append(UnsafeBufferPointer(rebasing: all[(r * dim)..<((r + 1) * dim)])) }
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// Decodes every frame of `video` and scales it into the model's input (the preprocessing its
    /// sidecar or input shape implies, as `run` would), timing the whole loop.
    private func benchDecode(_ video: String, model: Model, modelPath: String) throws {
        MediaCLI.quietFFmpeg()
        let preprocess: Preprocess
        do {
            preprocess = try ModelInputSetup(model: model, path: modelPath, settings: ModelSettings()).preprocess
        } catch {
            throw Failure.model(error, path: modelPath)
        }
        let slot = UnsafeMutablePointer<Float>.allocate(capacity: preprocess.floatsPerImage)
        defer { slot.deallocate() }
        let scaler = TensorScaler(preprocess: preprocess)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var frames = 0
        do {
            let source = try FrameSource(input: video, options: SourceOptions(ioTimeout: ioTimeout == 0 ? nil : ioTimeout))
            while let frame = try source.next() {
                try scaler.write(frame, to: slot)
                frames += 1
            }
        } catch {
            throw Failure.input(error, video)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let rate = Double(frames) / seconds
        if json {
            try StdoutText.line(#"{"mode":"decode","input":\#(JSON.quoted(video)),"frames":\#(frames),"seconds":\#(fmt(seconds)),"frames_per_s":\#(fmt(rate)),"#
                + #""width":\#(preprocess.width),"height":\#(preprocess.height)}"#)
        } else {
            try StdoutText.line("decode+scale \(video) to \(preprocess.width)x\(preprocess.height): \(frames) frames in \(fmt(seconds)) s: \(fmt(rate)) frames/s")
        }
    }

    private func fmt(_ v: Double) -> String { String(format: "%.2f", v) }
}

/// One compiled layer as a JSON object (`{"layer":...,"kind":...,"implementation":...}`).
func layerJSON(_ l: CompiledLayer) -> String {
    #"{"layer":\#(JSON.quoted(l.layer)),"kind":"\#(l.kind.rawValue)","implementation":\#(JSON.quoted(l.implementation))}"#
}

/// Says on stderr, once per process, which layers oneDNN runs with a reference kernel (correct
/// but 100-1000x slower than its jit kernels): the model has a layer shape or the CPU an
/// instruction set the engine's format table does not cover.
func warnAboutReferenceKernels(_ engine: Engine) {
    let slow = engine.referenceLayers
    guard !slow.isEmpty, ReferenceWarning.shouldPrint() else { return }
    let names = slow.map { "\($0.layer) (\($0.implementation))" }.joined(separator: ", ")
    printError("warning: \(slow.count) layer(s) of \(engine.model.source) run oneDNN reference kernels on this CPU "
               + "(\(Engine.cpuISA), \(engine.precision.rawValue)), which are very slow: \(names)")
}

/// The once-per-process flag of `warnAboutReferenceKernels`.
enum ReferenceWarning {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var printed = false
    static func shouldPrint() -> Bool {
        lock.lock(); defer { lock.unlock() }
        defer { printed = true }
        return !printed
    }
}

/// A float32 little-endian, C-order `.npy` file read whole (NumPy format 1.0-3.0, numpy/lib/format.py).
struct NPYArray {
    let shape: [Int]
    let values: [Float]

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(.input, subject: path, "cannot read file") }
        let bytes = [UInt8](data)
        func fail(_ why: String) -> Failure { Failure(.input, subject: path, "not a float32 .npy file (\(why))") }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else { throw fail("no NUMPY magic") }
        let major = bytes[6]
        let lengthBytes = major == 1 ? 2 : 4
        guard major >= 1 && major <= 3, bytes.count >= 8 + lengthBytes else { throw fail("version \(major)") }
        let headerLength = bytes[8..<(8 + lengthBytes)].reversed().reduce(0) { $0 << 8 | Int($1) }
        let start = 8 + lengthBytes + headerLength
        guard bytes.count >= start, let header = String(bytes: bytes[(8 + lengthBytes)..<start], encoding: .utf8) else {
            throw fail("truncated header")
        }
        let compact = header.filter { !$0.isWhitespace }
        guard compact.contains("'descr':'<f4'") else { throw fail("dtype is not '<f4'") }
        guard compact.contains("'fortran_order':False") else { throw fail("Fortran order") }
        guard let open = compact.range(of: "'shape':("), let close = compact[open.upperBound...].firstIndex(of: ")") else {
            throw fail("no shape")
        }
        let dims = compact[open.upperBound..<close].split(separator: ",").map { Int($0) }
        guard !dims.contains(nil) else { throw fail("bad shape") }
        shape = dims.map { $0! }
        let count = shape.reduce(1, *)
        guard bytes.count - start == count * 4 else { throw fail("\(bytes.count - start) data bytes for shape \(shape)") }
        values = data.subdata(in: start..<data.count).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}
