import Foundation
import Inference
import KerasImport
import Media
import Output

/// What the user chose about the model (flags or config); nil fields come from the sidecar, then
/// from the model itself, then from framepipe's defaults.
public struct ModelSettings: Sendable, Equatable {
    /// Model file (ONNX or Keras H5); nil: `FRAMEPIPE_MODEL`, then the installed default model.
    public var modelPath: String?
    public var precision: Precision = .fp32
    /// oneDNN (OpenMP) threads; nil: oneDNN's default (all cores).
    public var threads: Int?
    /// Largest batch the engine is compiled for.
    public var batchSize = 16
    public var width: Int?
    public var height: Int?
    /// Per RGB channel, on 0...255 pixel values.
    public var mean: [Float]?
    public var std: [Float]?
    public var resize: ResizeMode?
    /// A text file with one class name per line, in output order.
    public var labelsPath: String?

    public init() {}
}

/// A setup problem the user must fix (bad model path, mismatched flags...).
public struct SetupError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A model loaded, compiled and warmed up, with everything needed to feed it frames.
public final class LoadedModel: @unchecked Sendable {
    /// The model file.
    public let path: String
    public let model: Model
    /// The compiled engine, as the pipeline's infer stage sees it.
    public let runner: EngineRunner
    /// How frames are turned into its input.
    public let preprocess: Preprocess
    /// Class names, when known.
    public let labels: [String]?
    /// Where each setting came from, for `framepipe check` and logs.
    public let provenance: [String: String]

    init(path: String, model: Model, runner: EngineRunner, preprocess: Preprocess, labels: [String]?,
         provenance: [String: String]) {
        self.path = path; self.model = model; self.runner = runner; self.preprocess = preprocess
        self.labels = labels; self.provenance = provenance
    }

    /// Where the model comes from when no path is given: `FRAMEPIPE_MODEL`, then the default model.
    public static func resolvePath(_ explicit: String?) throws -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = ProcessInfo.processInfo.environment["FRAMEPIPE_MODEL"], !env.isEmpty { return env }
        if let found = DefaultModel.locate() { return found }
        throw SetupError("""
            no model: pass --model PATH (ONNX or Keras H5) or set FRAMEPIPE_MODEL; \
            scripts/setup installs a default model (looked in: \(DefaultModel.searchPaths().joined(separator: ", ")))
            """)
    }

    /// Loads, verifies, optimises and compiles the model and works out its preprocessing.
    public static func load(_ s: ModelSettings) throws -> LoadedModel {
        let path = try resolvePath(s.modelPath)
        guard FileManager.default.fileExists(atPath: path) else {
            throw SetupError("\(path): model file not found")
        }
        let model = try loadModelFile(path)
        let setup = try ModelInputSetup(model: model, path: path, settings: s)
        var prov = setup.provenance
        let labels = try loadLabels(settings: s, sidecar: setup.sidecar.map { ($0, ModelSidecar.path(forModel: path)) },
                                    modelPath: path, classCount: model.classCount, provenance: &prov)
        let engine = try Engine(model: model, precision: s.precision, maxBatch: s.batchSize, threads: s.threads)
        try engine.warmUp()
        return LoadedModel(path: path, model: model, runner: EngineRunner(engine: engine), preprocess: setup.preprocess,
                           labels: labels, provenance: prov)
    }

    private static func loadLabels(settings s: ModelSettings, sidecar: (ModelSidecar, String)?, modelPath: String,
                                   classCount: Int, provenance prov: inout [String: String]) throws -> [String]? {
        func readLines(_ file: String) throws -> [String] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw SetupError("\(file): cannot read labels file")
            }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            while lines.last == "" { lines.removeLast() }
            return lines
        }
        func checked(_ labels: [String], _ source: String) throws -> [String] {
            if classCount > 0 && labels.count != classCount {
                throw SetupError("\(source): has \(labels.count) labels but the model has \(classCount) classes")
            }
            return labels
        }
        if let file = s.labelsPath {
            prov["labels"] = "flag \(file)"
            return try checked(readLines(file), file)
        }
        if let (car, carPath) = sidecar {
            if let names = car.labels {
                prov["labels"] = "sidecar \(carPath)"
                return try checked(names, carPath)
            }
            if let file = car.labelsFile {
                let full = file.hasPrefix("/") ? file
                    : URL(fileURLWithPath: carPath).deletingLastPathComponent().appendingPathComponent(file).path
                prov["labels"] = "sidecar \(carPath) -> \(full)"
                return try checked(readLines(full), full)
            }
        }
        // No explicit labels: a single *labels*.txt beside the model with exactly one line per class.
        guard classCount > 0 else { return nil }
        let dir = URL(fileURLWithPath: modelPath).deletingLastPathComponent()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        let matches = names.filter { $0.lowercased().contains("labels") && $0.hasSuffix(".txt") }.compactMap { name -> String? in
            let full = dir.appendingPathComponent(name).path
            return (try? readLines(full)).map { $0.count == classCount } == true ? full : nil
        }
        if matches.count == 1 {
            prov["labels"] = "found beside the model: \(matches[0])"
            return try readLines(matches[0])
        }
        prov["labels"] = "none (class indices only; pass --labels FILE)"
        return nil
    }
}

/// Loads an ONNX or Keras H5 model file (told apart by content), verified and optimised.
public func loadModelFile(_ path: String) throws -> Model {
    KerasModel.isHDF5(path: path) ? try KerasModel.load(path: path) : try Model.load(path: path)
}

/// A model's effective input preprocessing: flags over sidecar over the model's own input shape
/// over framepipe's defaults, with where each setting came from. Also checks that the sidecar
/// describes this model.
public struct ModelInputSetup {
    public let preprocess: Preprocess
    public let sidecar: ModelSidecar?
    /// Setting name -> where its value came from ("flag", "sidecar PATH", "model input", "default").
    public let provenance: [String: String]

    public init(model: Model, path: String, settings s: ModelSettings) throws {
        let sidecar = try ModelSidecar.load(forModel: path)
        let sidecarPath = ModelSidecar.path(forModel: path)
        let side = sidecar ?? ModelSidecar()
        var prov: [String: String] = [:]
        func from<T>(_ key: String, _ flag: T?, _ car: T?, _ fallback: T, _ fallbackWhy: String) -> T {
            if let flag { prov[key] = "flag"; return flag }
            if let car { prov[key] = "sidecar \(sidecarPath)"; return car }
            prov[key] = fallbackWhy
            return fallback
        }
        var sideResize: ResizeMode?
        if let r = side.resize {
            guard let mode = ResizeMode(rawValue: r) else {
                throw SetupError("\(sidecarPath): unknown resize mode '\(r)' (stretch, center-crop, letterbox)")
            }
            sideResize = mode
        }
        // Output names in the sidecar are a check that it describes this model.
        if let e = side.embedding, e != model.embeddingOutput {
            throw SetupError("\(sidecarPath): says the embedding is '\(e)', but the model's is '\(model.embeddingOutput)'")
        }
        if let l = side.logits, l != model.logitsOutput {
            throw SetupError("\(sidecarPath): says the logits are '\(l)', but the model's are '\(model.logitsOutput ?? "none")'")
        }

        let shape = model.inputShape  // [C, H, W]
        guard shape.count == 3, shape[0] == 3 else {
            throw SetupError("\(path): input '\(model.inputName)' has shape \(shape); framepipe feeds RGB images [3, H, W]")
        }
        let modelH = shape[1] > 0 ? shape[1] : nil, modelW = shape[2] > 0 ? shape[2] : nil
        let width = from("width", s.width, side.width, modelW ?? 224, modelW != nil ? "model input" : "default")
        let height = from("height", s.height, side.height, modelH ?? 224, modelH != nil ? "model input" : "default")
        if let mw = modelW, let mh = modelH, mw != width || mh != height {
            throw SetupError("\(path): the model takes \(mw)x\(mh) images, but \(width)x\(height) was asked for")
        }
        let mean = from("mean", s.mean, side.mean, [127.5, 127.5, 127.5], "default ([-1, 1] scaling)")
        let std = from("std", s.std, side.std, [127.5, 127.5, 127.5], "default ([-1, 1] scaling)")
        for (name, v) in [("mean", mean), ("std", std)] where v.count != 3 {
            throw SetupError("--\(name) needs 3 values (R,G,B), got \(v.count)")
        }
        if std.contains(where: { $0 <= 0 }) { throw SetupError("--std values must be positive") }
        let resize = from("resize", s.resize, sideResize, ResizeMode.stretch, "default")
        self.preprocess = Preprocess(width: width, height: height, mode: resize, mean: mean, std: std)
        self.sidecar = sidecar
        self.provenance = prov
    }
}

/// The engine as the pipeline's `BatchRunner`.
public final class EngineRunner: BatchRunner, @unchecked Sendable {
    public let engine: Engine
    public let sampleSize: Int
    public let embeddingDim: Int
    public let classCount: Int
    public var maxBatch: Int { engine.maxBatch }

    public init(engine: Engine) {
        self.engine = engine
        sampleSize = engine.model.inputShape.reduce(1, *)
        embeddingDim = engine.model.embeddingDim
        classCount = engine.model.classCount
    }

    public func run(input: UnsafePointer<Float>, count: Int,
                    embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        try engine.run(input: input, count: count, embeddings: embeddings, logits: logits)
    }
}

/// Lets several pipelines (e.g. the service's inbox and live streams) share one engine: calls are
/// serialised by a lock, since an engine is used by one thread at a time.
public final class SerializedRunner: BatchRunner, @unchecked Sendable {
    private let base: BatchRunner
    private let lock = NSLock()
    public var sampleSize: Int { base.sampleSize }
    public var embeddingDim: Int { base.embeddingDim }
    public var classCount: Int { base.classCount }
    public var maxBatch: Int { base.maxBatch }

    public init(_ base: BatchRunner) { self.base = base }

    public func run(input: UnsafePointer<Float>, count: Int,
                    embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        lock.lock(); defer { lock.unlock() }
        try base.run(input: input, count: count, embeddings: embeddings, logits: logits)
    }
}

/// True for inputs that are live streams (network URLs other than plain http(s) files are treated
/// as live: rtsp, rtmp, udp, rtp, srt, tcp).
public func isLiveInput(_ input: String) -> Bool {
    guard let colon = input.range(of: "://") else { return false }
    let scheme = input[..<colon.lowerBound].lowercased()
    return ["rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"].contains(scheme)
}

/// The pipeline plan for one input: FFmpeg decoding with `source`, scaling with the model's
/// preprocessing, and optionally a per-input sink.
public func makeInputPlan(input: String, model: LoadedModel, source: SourceOptions, live: Bool? = nil,
                          sink: (() throws -> FrameSink)? = nil) -> InputPlan {
    let preprocess = model.preprocess
    let token = CancellationToken()
    var options = source
    options.cancellation = token
    var plan = InputPlan(
        name: input,
        live: live ?? isLiveInput(input),
        openReader: { [options] in MediaReader(try FrameSource(input: input, options: options)) },
        makeWriter: { ScalerWriter(TensorScaler(preprocess: preprocess)) },
        makeSink: sink)
    plan.cancelOpen = { token.cancel() }
    return plan
}
