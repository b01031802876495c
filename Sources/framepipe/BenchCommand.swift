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
            With --decode VIDEO, measures decoding and scaling into the model's input instead (frames/s, \
            no inference): with the inference rate, the bound a pipeline on the same cores can reach.
            """)

    @Option(help: "Model file (ONNX or Keras H5); default: $FRAMEPIPE_MODEL, then the installed default model.")
    var model: String?
    @Option(help: "Measure decode + scale of this video instead of inference.") var decode: String?
    @Option(help: "Images per batch.") var batch: Int = 16
    @Option(help: "Precision: fp32, bf16 or int8 (int8 needs a quantized QDQ model).") var precision: String = "fp32"
    @Option(help: "oneDNN (OpenMP) threads; default: OpenMP's default (all cores or OMP_NUM_THREADS).") var threads: Int?
    @Option(help: "Timed runs (after warm-up).") var iterations: Int = 20
    @Option(help: "Warm-up runs.") var warmup: Int = 3
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Flag(help: "List the compiled primitives (oneDNN implementation per layer).") var verbose = false

    func validate() throws {
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        guard iterations > 0, warmup >= 0 else { throw ValidationError("--iterations must be positive, --warmup non-negative") }
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive") }
        guard Precision(rawValue: precision) != nil else { throw ValidationError("--precision must be fp32, bf16 or int8") }
    }

    func run() async throws {
        let precision = Precision(rawValue: precision)!
        if let threads { setInferenceThreads(threads) }
        let started = Date()
        let path = try LoadedModel.resolvePath(self.model)
        let model = try loadModelFile(path)
        if let video = decode {
            try benchDecode(video, model: model, modelPath: path)
            return
        }
        let engine = try Engine(model: model, precision: precision, maxBatch: batch, threads: threads)
        let loadMs = Date().timeIntervalSince(started) * 1000
        if verbose { for line in try engine.describe(batch: batch) { FileHandle.standardError.write(Data((line + "\n").utf8)) } }

        let size = model.inputShape.reduce(1, *) * batch
        var rng = SystemRandomNumberGenerator()
        let input = (0..<size).map { _ in Float.random(in: -1...1, using: &rng) }
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
        if json {
            print(#"{"model":\#(JSON.quoted(path)),"precision":"\#(precision.rawValue)","batch":\#(batch),"threads":\#(threadCount),"iterations":\#(iterations),"#
                + #""median_ms":\#(fmt(median)),"min_ms":\#(fmt(times.first!)),"max_ms":\#(fmt(times.last!)),"images_per_s":\#(fmt(rate)),"load_ms":\#(fmt(loadMs)),"isa":"\#(Engine.cpuISA)"}"#)
        } else {
            print("model \(path), \(precision.rawValue), batch \(batch), \(threadCount) threads, oneDNN \(Engine.oneDNNVersion) \(Engine.cpuISA)")
            print("load+compile \(fmt(loadMs)) ms; \(iterations) runs after \(warmup) warm-up")
            print("median \(fmt(median)) ms/batch (min \(fmt(times.first!)), max \(fmt(times.last!))): \(fmt(rate)) images/s")
        }
    }

    /// Decodes every frame of `video` and scales it into the model's input (the preprocessing its
    /// sidecar or input shape implies, as `run` would), timing the whole loop.
    private func benchDecode(_ video: String, model: Model, modelPath: String) throws {
        MediaCLI.quietFFmpeg()
        let preprocess = try ModelInputSetup(model: model, path: modelPath, settings: ModelSettings()).preprocess
        let slot = UnsafeMutablePointer<Float>.allocate(capacity: preprocess.floatsPerImage)
        defer { slot.deallocate() }
        let scaler = TensorScaler(preprocess: preprocess)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let source = try FrameSource(input: video)
        var frames = 0
        while let frame = try source.next() {
            try scaler.write(frame, to: slot)
            frames += 1
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let rate = Double(frames) / seconds
        if json {
            print(#"{"mode":"decode","input":\#(JSON.quoted(video)),"frames":\#(frames),"seconds":\#(fmt(seconds)),"frames_per_s":\#(fmt(rate)),"#
                + #""width":\#(preprocess.width),"height":\#(preprocess.height)}"#)
        } else {
            print("decode+scale \(video) to \(preprocess.width)x\(preprocess.height): \(frames) frames in \(fmt(seconds)) s: \(fmt(rate)) frames/s")
        }
    }

    private func fmt(_ v: Double) -> String { String(format: "%.2f", v) }
}
