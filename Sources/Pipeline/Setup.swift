import Foundation
import Inference
import KerasImport
import Media
import Output
import TFLiteImport

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

    /// The model to load: `explicit` (`--model`, or the service config's `model.path`) when given,
    /// then `$FRAMEPIPE_MODEL`, then the default model (`DefaultModel`: XDG data folder,
    /// /usr/local/share/framepipe/models, the checkout's `models/`).
    public static func resolvePath(_ explicit: String?) throws -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let found = DefaultModel.locate() { return found }
        throw SetupError("""
            no model: pass --model PATH (ONNX, Keras H5 or TFLite) or set FRAMEPIPE_MODEL; the default model \
            \(DefaultModel.fileName) was not found in \(DefaultModel.searchDirectories().joined(separator: ", ")) \
            (scripts/setup installs it into /usr/local/share/framepipe/models)
            """)
    }

    /// Loads, verifies, optimises and compiles the model and works out its preprocessing.
    public static func load(_ s: ModelSettings) throws -> LoadedModel {
        let p = try prepare(s)
        let engine = try Engine(model: p.model, precision: s.precision, maxBatch: s.batchSize, threads: s.threads)
        try engine.warmUp()
        return LoadedModel(path: p.path, model: p.model, runner: EngineRunner(engine: engine), preprocess: p.preprocess,
                           labels: p.labels, provenance: p.provenance)
    }

    /// Everything `load` works out except the compiled engine: the model file (resolved), the
    /// verified model, its preprocessing and labels, and where each setting came from.
    public static func prepare(_ s: ModelSettings) throws -> PreparedModel {
        let path = try resolvePath(s.modelPath)
        let model = try loadModelFile(path)
        let setup = try ModelInputSetup(model: model, path: path, settings: s)
        var prov = setup.provenance
        let labels = try loadLabels(settings: s, sidecar: setup.sidecar.map { ($0, ModelSidecar.path(forModel: path)) },
                                    modelPath: path, classCount: model.classCount, provenance: &prov)
        return PreparedModel(path: path, model: model, preprocess: setup.preprocess, sidecar: setup.sidecar,
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

/// A model file resolved, imported and verified, with its preprocessing and labels (not compiled).
public struct PreparedModel {
    public let path: String
    public let model: Model
    public let preprocess: Preprocess
    public let sidecar: ModelSidecar?
    public let labels: [String]?
    /// Setting name -> where its value came from.
    public let provenance: [String: String]
}

/// Loads a model file with the importer its content calls for (`ModelFormat.detect`), verified
/// and optimised. Throws `SetupError` for a file that is no model framepipe can read.
public func loadModelFile(_ path: String) throws -> Model {
    switch try ModelFormat.detect(path: path) {
    case .onnx: return try Model.load(path: path)
    case .kerasH5: return try KerasModel.load(path: path)
    case .tflite: return try TFLiteModel.load(path: path)
    }
}

/// Imports a model file's graph as its importer produced it (before `Model`'s passes), for `inspect`.
public func importModelGraph(_ path: String) throws -> Graph {
    switch try ModelFormat.detect(path: path) {
    case .onnx: return try ONNXImporter.load(path: path)
    case .kerasH5: return try KerasModel.importGraph(path: path)
    case .tflite: return try TFLiteModel.importGraph(path: path)
    }
}

/// The model formats framepipe imports, recognised by content (never by file extension).
public enum ModelFormat: String, Sendable {
    /// ONNX `ModelProto` (protobuf).
    case onnx = "ONNX"
    /// Keras H5 (HDF5 signature).
    case kerasH5 = "Keras H5"
    /// TFLite flatbuffer (file identifier `TFL3`).
    case tflite = "TFLite"

    /// Tells the format of the file at `path` from its first bytes, or says what the file is when
    /// it is not a model framepipe can import (missing, a folder, a device, empty, text, a
    /// TensorFlow GraphDef or SavedModel, a ZIP archive...).
    public static func detect(path: String) throws -> ModelFormat {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw SetupError("\(path): model file not found")
        }
        if isDir.boolValue {
            if FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("saved_model.pb")) {
                throw SetupError("\(path): a TensorFlow SavedModel folder is not supported; convert it with tf2onnx "
                                 + "(python -m tf2onnx.convert --saved-model DIR --output model.onnx) or to .tflite")
            }
            throw SetupError("\(path): is a directory, not a model file (ONNX, Keras H5 or TFLite)")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let type = attributes?[.type] as? FileAttributeType, type != .typeRegular {
            let kind = type == .typeCharacterSpecial ? "a character device" : type == .typeBlockSpecial ? "a block device"
                : type == .typeSocket ? "a socket" : type == .typeSymbolicLink ? "a dangling link" : "a FIFO or other special file"
            throw SetupError("\(path): is \(kind), not a model file")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SetupError("\(path): cannot open the model file for reading (permission denied?)")
        }
        let head = [UInt8]((try? handle.read(upToCount: 512)) ?? Data())
        try? handle.close()
        return try detect(head: head, path: path, isHDF5: { KerasModel.isHDF5(path: path) })
    }

    /// Classifies a file from its first (up to 512) bytes; `isHDF5` checks the HDF5 signature at
    /// every offset HDF5 allows (a user block moves it past offset 0).
    static func detect(head: [UInt8], path: String, isHDF5: () -> Bool) throws -> ModelFormat {
        guard !head.isEmpty else { throw SetupError("\(path): is empty (0 bytes), not a model file") }
        if TFLiteModel.hasIdentifier(head) { return .tflite }
        if isHDF5() { return .kerasH5 }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            throw SetupError("\(path): is a ZIP archive (a Keras 3 .keras file or a PyTorch checkpoint?), which is "
                             + "not supported; export the model to ONNX, save it as Keras H5, or convert it to TFLite")
        }
        if (path as NSString).lastPathComponent == "saved_model.pb" {
            throw SetupError("\(path): a TensorFlow SavedModel is not supported; convert its folder with tf2onnx "
                             + "(python -m tf2onnx.convert --saved-model DIR --output model.onnx)")
        }
        if head.starts(with: Array("version https://git-lfs.github.com/spec/".utf8)) {
            throw SetupError("\(path): is a Git LFS pointer, not the model itself; fetch it with `git lfs pull`")
        }
        if isText(head) {
            let first = String(decoding: head.prefix(40), as: UTF8.self)
                .split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            let ext = (path as NSString).pathExtension.lowercased()
            let hint = ["h5", "hdf5"].contains(ext) ? ": no HDF5 signature, so not a Keras H5 model"
                : ext == "tflite" ? ": no TFL3 identifier, so not a TFLite model" : ext == "onnx" ? ": not an ONNX protobuf" : ""
            throw SetupError("\(path): is a text file (starts with \"\(first)\")\(hint), not a model file (ONNX, Keras H5 or TFLite)")
        }
        if head.count >= 4, head[0] == 0x0A, looksLikeGraphDef(head) {
            throw SetupError("\(path): TensorFlow GraphDef is not supported; convert with tf2onnx "
                             + "(python -m tf2onnx.convert --input FILE.pb --inputs ... --outputs ... --output model.onnx)")
        }
        // ONNX ModelProto: a protobuf whose first field is one of ModelProto's (usually ir_version, tag 0x08).
        let modelProtoTags: Set<UInt8> = [0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72]
        if modelProtoTags.contains(head[0]) { return .onnx }
        let hex = head.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        throw SetupError("\(path): unknown model format (first bytes \(hex)); framepipe reads ONNX, Keras H5 (HDF5) "
                         + "and TFLite (TFL3) files")
    }

    /// A GraphDef starts with field 1 (`node`, a NodeDef) whose own first field is its name (tag 0x0A).
    private static func looksLikeGraphDef(_ head: [UInt8]) -> Bool {
        var i = 1, length = 0, shift = 0
        while i < head.count, i < 6 {
            length |= Int(head[i] & 0x7F) << shift
            shift += 7
            i += 1
            if head[i - 1] & 0x80 == 0 { break }
        }
        return length > 0 && i < head.count && head[i] == 0x0A
    }

    /// True when the bytes are UTF-8 text without control characters other than whitespace.
    private static func isText(_ head: [UInt8]) -> Bool {
        // Cut a multi-byte sequence split at the end of the sample before validating.
        var sample = head
        while let last = sample.last, last & 0xC0 == 0x80 || last >= 0xC0 { sample.removeLast(); if last >= 0xC0 { break } }
        guard String(validatingUTF8: sample.map { CChar(bitPattern: $0) } + [0]) != nil else { return false }
        return !sample.contains { $0 < 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }
    }
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
        // A quantized TFLite input states its own scaling (scale, zero point); otherwise [-1, 1].
        let quant = (try? ModelFormat.detect(path: path)) == .tflite ? TFLiteModel.inputNormalisation(path: path) : nil
        let why = quant != nil ? "model input quantization" : "default ([-1, 1] scaling)"
        let mean = from("mean", s.mean, side.mean, quant.map { [$0.mean, $0.mean, $0.mean] } ?? [127.5, 127.5, 127.5], why)
        let std = from("std", s.std, side.std, quant.map { [$0.std, $0.std, $0.std] } ?? [127.5, 127.5, 127.5], why)
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

/// The engine as the pipeline's `BatchRunner`. Runs only batch sizes compiled by `prepare` (powers
/// of two up to `maxBatch`, and `maxBatch`): a partial batch of 13 runs as 8 + 4 + 1 rows, so no
/// network is compiled mid-run, on the infer thread, while frames wait.
public final class EngineRunner: BatchRunner, @unchecked Sendable {
    public let engine: Engine
    public let sampleSize: Int
    public let embeddingDim: Int
    public let classCount: Int
    public var maxBatch: Int { engine.maxBatch }
    /// Compiled batch sizes, largest first.
    public let sizes: [Int]

    public init(engine: Engine) {
        self.engine = engine
        sampleSize = engine.model.inputShape.reduce(1, *)
        embeddingDim = engine.model.embeddingDim
        classCount = engine.model.classCount
        var s = [engine.maxBatch]
        var p = 1
        while p < engine.maxBatch { s.append(p); p *= 2 }
        sizes = s.sorted(by: >)
    }

    /// Compiles the network for every size in `sizes`: call once before a pipeline starts (after
    /// checking that its buffers fit), so nothing compiles mid-run.
    public func prepare() throws {
        for n in sizes { _ = try engine.compiledLayers(batch: n) }
    }

    public func run(input: UnsafePointer<Float>, count: Int,
                    embeddings: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?) throws {
        var done = 0
        while done < count {
            let n = sizes.first { $0 <= count - done }!
            try engine.run(input: input + done * sampleSize, count: n, embeddings: embeddings.map { $0 + done * embeddingDim },
                           logits: logits.map { $0 + done * classCount })
            done += n
        }
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
