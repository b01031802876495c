import Foundation
import Inference
import ONNXProto
import SwiftProtobuf
import Testing
import TestSupport

/// The QDQ model made by onnxruntime's own `quantize_static` from the shared ImageNet model
/// (Fixtures/make_qdq.py, cached under .cache/qdq), and onnxruntime int8 goldens on its inputs.
enum QDQFixture {
    /// u8s8_reduced: 7-bit weights (reduce_range, onnxruntime's setting for CPUs without VNNI);
    /// u8s8_channel: full-range per-channel weights; s8s8_tensor: int8 activations, per-tensor weights.
    static let variants = ["u8s8_reduced", "u8s8_channel", "s8s8_tensor"]

    /// The cache folder, after make_qdq.py ran for `variant` (the model is made once; goldens every run).
    static func directory(_ variant: String) throws -> URL {
        try lock.withLock {
            if let done = made[variant] { return try done.get() }
            let result = Result { () throws -> URL in
                let dir = TestEnv.packageRoot.appendingPathComponent(".cache/qdq")
                let script = TestEnv.packageRoot.appendingPathComponent("Tests/InferenceTests/Fixtures/make_qdq.py").path
                let run = try runProcess(TestEnv.python, [script, dir.path, "--variant", variant], timeout: 900)
                guard run.status == 0 else { throw FixtureError("make_qdq.py failed (\(run.status)): \(run.stderrText)") }
                return dir
            }
            made[variant] = result
            return try result.get()
        }
    }
    nonisolated(unsafe) private static var made: [String: Result<URL, Error>] = [:]
    private static let lock = NSLock()

    static func model(_ variant: String) throws -> String {
        try directory(variant).appendingPathComponent("mobilenet_v2_\(variant).qdq.onnx").path
    }

    static func floats(_ variant: String, _ name: String) throws -> [Float] {
        let data = try Data(contentsOf: directory(variant).appendingPathComponent("\(variant).\(name).f32"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Runs `input` (NCHW floats, 224x224) through `engine` in batches of 16.
    static func run(_ engine: Engine, _ input: [Float]) throws -> (logits: [Float], features: [Float]) {
        let per = 3 * 224 * 224, n = input.count / per
        let c = engine.model.classCount, d = engine.model.embeddingDim
        var logits = [Float](repeating: .nan, count: n * c), features = [Float](repeating: .nan, count: n * d)
        var start = 0
        while start < n {
            let count = min(16, n - start)
            try input.withUnsafeBufferPointer { inp in
                try logits.withUnsafeMutableBufferPointer { l in
                    try features.withUnsafeMutableBufferPointer { f in
                        try engine.run(input: inp.baseAddress! + start * per, count: count,
                                       embeddings: f.baseAddress! + start * d, logits: l.baseAddress! + start * c)
                    }
                }
            }
            start += count
        }
        return (logits, features)
    }
}

/// Agreement of two sets of logits (and features) row by row.
struct Agreement: CustomStringConvertible {
    var rows = 0, sameTop1 = 0
    var worstLogit: Float = 0, worstCosine: Float = 1, sumCosine: Float = 0

    init(_ a: [Float], _ b: [Float], classes c: Int, features fa: [Float] = [], _ fb: [Float] = [], dim d: Int = 0) {
        rows = a.count / c
        for i in 0..<rows {
            let x = a[i * c ..< (i + 1) * c], y = b[i * c ..< (i + 1) * c]
            if Compare.argmax(x) == Compare.argmax(y) { sameTop1 += 1 }
            worstLogit = max(worstLogit, Compare.maxAbsDiff(x, y))
            if d > 0 {
                let cos = Compare.cosine(fa[i * d ..< (i + 1) * d], fb[i * d ..< (i + 1) * d])
                worstCosine = min(worstCosine, cos)
                sumCosine += cos
            }
        }
    }

    var meanCosine: Float { sumCosine / Float(max(rows, 1)) }
    var description: String {
        "top-1 \(sameTop1)/\(rows), worst logit |diff| \(worstLogit), feature cosine mean \(meanCosine) worst \(worstCosine)"
    }
}

/// framepipe int8 against onnxruntime on the same QDQ models: onnxruntime's int8 kernels, and the
/// literal QDQ graph (onnxruntime with optimisation off: float ops between the Q/DQ pairs, the
/// semantics without any int16 saturation).
@Suite(.enabled(if: TestEnv.hasPython && TestEnv.hasAssets), .serialized)
struct Int8Tests {
    /// Logit tolerance against onnxruntime int8 on the 7-bit model, where both compute the exact
    /// integer convolutions on every CPU: what remains is where the residual Add rounds (once
    /// here, twice in onnxruntime: at most one quantization step per block) and the f32 order of
    /// the final dequantized Gemm. Measured worst on AVX2 (Zen 3): see the printed figures.
    static let exactLogitTolerance: Float = 1.5
    /// Against the literal QDQ graph on full-range weights, where this CPU may halve them.
    static let halvedLogitTolerance: Float = 6.0

    struct Run {
        var logits: [Float], features: [Float]
        var imagesLogits: [Float]
        var engine: Engine
    }

    nonisolated(unsafe) static var runs: [String: Run] = [:]
    static func run(_ variant: String) throws -> Run {
        if let r = runs[variant] { return r }
        setenv("FRAMEPIPE_INT8_UNFINISHED", "1", 1)
        let model = try Model.load(path: QDQFixture.model(variant))
        let engine = try Engine(model: model, precision: .int8, maxBatch: 16, threads: 2)
        let (logits, features) = try QDQFixture.run(engine, QDQFixture.floats(variant, "slideshow"))
        let (imagesLogits, _) = try QDQFixture.run(engine, QDQFixture.floats(variant, "images"))
        let r = Run(logits: logits, features: features, imagesLogits: imagesLogits, engine: engine)
        runs[variant] = r
        return r
    }

    @Test("7-bit model: int8 equals onnxruntime int8 on the images' and >= 97% of slideshow_dev's top-1; logits within 1.5; no layer halved")
    func reducedRangeMatchesOnnxruntime() throws {
        let v = "u8s8_reduced"
        let r = try Self.run(v)
        let c = r.engine.model.classCount, d = r.engine.model.embeddingDim
        #expect(r.engine.halvedWeightLayers.isEmpty, "7-bit weights fit int16 pair sums: \(r.engine.halvedWeightLayers)")
        let images = Agreement(r.imagesLogits, try QDQFixture.floats(v, "images_logits"), classes: c)
        let slides = Agreement(r.logits, try QDQFixture.floats(v, "slideshow_logits"), classes: c,
                               features: r.features, try QDQFixture.floats(v, "slideshow_features"), dim: d)
        print("int8 \(v) on \(Engine.cpuISA) vs onnxruntime int8: images \(images); slideshow \(slides)")
        withKnownIssue("issue #12: the int8 lowering differs from the QDQ graph from the first convolution on (16% of its outputs off by 1-6 steps, the same under every ISA)") {
            #expect(images.sameTop1 == images.rows, "images: \(images)")
            #expect(Double(slides.sameTop1) >= 0.97 * Double(slides.rows) && slides.rows == 200, "slideshow: \(slides)")
            #expect(max(images.worstLogit, slides.worstLogit) <= Self.exactLogitTolerance, "\(images); \(slides)")
            #expect(slides.worstCosine >= 0.99, "slideshow: \(slides)")
        }
    }

    @Test("every variant (u8/s8 activations, per-channel/per-tensor weights) agrees with the literal QDQ graph", arguments: QDQFixture.variants)
    func literalQDQ(_ v: String) throws {
        let r = try Self.run(v)
        let c = r.engine.model.classCount, d = r.engine.model.embeddingDim
        let refFeatures = try QDQFixture.floats(v, "slideshow_reference_features")
        let images = Agreement(r.imagesLogits, try QDQFixture.floats(v, "images_reference"), classes: c)
        let slides = Agreement(r.logits, try QDQFixture.floats(v, "slideshow_reference"), classes: c,
                               features: r.features, refFeatures, dim: d)
        // onnxruntime's int8 kernels against the same reference, for comparison (not checked).
        let peer = Agreement(try QDQFixture.floats(v, "slideshow_logits"), try QDQFixture.floats(v, "slideshow_reference"),
                             classes: c, features: try QDQFixture.floats(v, "slideshow_features"), refFeatures, dim: d)
        print("int8 \(v) on \(Engine.cpuISA) vs literal QDQ: images \(images); slideshow \(slides); "
              + "\(r.engine.halvedWeightLayers.count) layers halved. onnxruntime int8 vs literal QDQ: slideshow \(peer)")
        withKnownIssue("issue #12: the int8 lowering differs from the QDQ graph from the first convolution on (16% of its outputs off by 1-6 steps, the same under every ISA)") {
            #expect(Double(slides.sameTop1) >= 0.97 * Double(slides.rows), "slideshow: \(slides)")
            let tolerance = r.engine.halvedWeightLayers.isEmpty ? Self.exactLogitTolerance : Self.halvedLogitTolerance
            #expect(slides.worstLogit <= tolerance, "slideshow: \(slides)")
            #expect(slides.meanCosine >= 0.97, "slideshow: \(slides)")
            if r.engine.halvedWeightLayers.isEmpty {
                #expect(images.sameTop1 == images.rows, "images: \(images)")
            }
        }
    }

    @Test("no int8 primitive is a ref: kernel, and formats need no reorders between layers", arguments: QDQFixture.variants)
    func kernels(_ v: String) throws {
        let engine = try Self.run(v).engine
        #expect(engine.plan == FormatPlan.plan(for: .int8))
        for batch in [1, 16] {
            let ref = try engine.compiledLayers(batch: batch, includeOutputs: true).filter(\.isReference)
            #expect(ref.isEmpty, "batch \(batch) on \(Engine.cpuISA): \(ref)")
            #expect(try engine.interLayerReorders(batch: batch) == 0)
        }
        #expect(engine.referenceLayers.isEmpty)
    }

    @Test("fp32 on a QDQ model (weights dequantized at load) agrees with the literal QDQ graph on the images' top-1")
    func fp32OnQDQ() throws {
        let model = try Model.load(path: QDQFixture.model("u8s8_reduced"))
        let engine = try Engine(model: model, precision: .fp32, maxBatch: 16, threads: 2)
        let (logits, _) = try QDQFixture.run(engine, QDQFixture.floats("u8s8_reduced", "images"))
        let a = Agreement(logits, try QDQFixture.floats("u8s8_reduced", "images_reference"), classes: model.classCount)
        print("fp32 on u8s8_reduced vs literal QDQ: images \(a)")
        #expect(a.sameTop1 == a.rows, "\(a)")
    }

    @Test("int8 is refused while unfinished, naming the issue and the fp32 alternative")
    func unfinishedRefused() throws {
        unsetenv("FRAMEPIPE_INT8_UNFINISHED")
        defer { setenv("FRAMEPIPE_INT8_UNFINISHED", "1", 1) }
        let model = try Model.load(path: QDQFixture.model("u8s8_reduced"))
        #expect { try Engine(model: model, precision: .int8, maxBatch: 1) } throws: { error in
            "\(error)".contains("int8 is not finished") && "\(error)".contains("--precision fp32")
        }
    }

    @Test("int8 on a float model is refused with a hint")
    func floatModel() throws {
        setenv("FRAMEPIPE_INT8_UNFINISHED", "1", 1)
        let model = try Model.load(path: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))
        #expect { try Engine(model: model, precision: .int8, maxBatch: 1) } throws: { error in
            "\(error)".contains("int8 needs a quantized model")
        }
    }
}

/// QDQ graphs that cannot mean what they say are refused at load, naming the node and the fault.
@Suite struct BadQDQTests {
    typealias R = ImporterRefusalTests

    /// An integer tensor (TensorProto.DataType `type`: 2 uint8, 3 int8, 6 int32) in int32_data.
    static func ints(_ name: String, _ dims: [Int], _ values: [Int32], type: Int32) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims.map(Int64.init)
        t.dataType = type
        t.int32Data = values
        return t
    }

    /// x [1, 2, 4, 4] -> Q -> DQ -> Conv(1x1, DQ(int8 weight)) -> y, with the pieces replaceable.
    static func graph(quantize: [String] = ["x", "s", "z"], dequantize: [String] = ["xq", "s", "z"],
                      scale: [Float] = [0.05], zero: [Int32] = [128], zeroType: Int32 = 2,
                      weightScale: [Float] = [0.01, 0.02], weightZero: [Int32] = [0, 0]) throws -> Data {
        let nodes = [
            R.node("QuantizeLinear", quantize, "xq"),
            R.node("DequantizeLinear", dequantize, "xd"),
            R.node("DequantizeLinear", ["wq", "ws", "wz"], "w"),
            R.node("Conv", ["xd", "w"], "y"),
        ]
        let inits = [
            R.tensor("s", scale.count == 1 ? [] : [scale.count], scale),
            ints("z", zero.count == 1 ? [] : [zero.count], zero, type: zeroType),
            ints("wq", [2, 2, 1, 1], [10, -20, 30, 127], type: 3),
            R.tensor("ws", [weightScale.count], weightScale),
            ints("wz", [weightZero.count], weightZero, type: 3),
        ]
        return try R.model(input: [1, 2, 4, 4], nodes: nodes, initializers: inits, output: "y")
    }

    func refusal(_ data: Data) -> String? {
        do {
            let model = try Model(graph: ONNXImporter(source: "q.onnx").convert(data), source: "q.onnx")
            _ = try Engine(model: model, precision: .int8, maxBatch: 1)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func wellFormedGraphLoads() throws {
        let data = try Self.graph()
        let model = try Model(graph: ONNXImporter(source: "q.onnx").convert(data), source: "q.onnx")
        #expect(!model.graph.quantization.isEmpty)
        #expect(model.graph.quantization.weights["w"]?.values == [10, -20, 30, 127])
    }

    @Test func missingScale() throws {
        let e = refusal(try Self.graph(quantize: ["x"]))
        #expect(e?.contains("missing scale") == true && e?.contains("xq") == true, "\(e ?? "loaded")")
    }

    @Test func zeroPointOutOfRange() throws {
        let e = refusal(try Self.graph(zero: [300]))
        #expect(e?.contains("zero point 300 is out of range for uint8") == true, "\(e ?? "loaded")")
        let s = refusal(try Self.graph(zero: [-129], zeroType: 3))
        #expect(s?.contains("zero point -129 is out of range for int8") == true, "\(s ?? "loaded")")
    }

    @Test func mixedPerAxis() throws {
        let e = refusal(try Self.graph(weightZero: [0]))
        #expect(e?.contains("mixed per-axis parameters: 2 scale(s) but 1 zero point(s)") == true, "\(e ?? "loaded")")
        let a = refusal(try Self.graph(scale: [0.05, 0.05], zero: [128, 128]))
        #expect(a?.contains("per-axis parameters on an activation") == true, "\(a ?? "loaded")")
    }

    @Test func scaleThatIsNotAConstant() throws {
        let e = refusal(try Self.graph(dequantize: ["xq", "s2", "z"]))
        #expect(e?.contains("scale 's2' must be a constant float initializer") == true && e?.contains("xd") == true, "\(e ?? "loaded")")
    }
}

/// The smallest int8 cases (Fixtures/make_qdq_layers.py: one QDQ layer or block each, written with
/// the onnx package from a fixed seed, 7-bit weights) against onnxruntime's int8 kernels on them,
/// compared in output steps (the case's output scale).
@Suite(.enabled(if: TestEnv.hasPython), .serialized)
struct Int8LayerTests {
    static let directory: Result<URL, Error> = Result {
        let dir = TestEnv.packageRoot.appendingPathComponent(".cache/qdq-layers")
        let script = TestEnv.packageRoot.appendingPathComponent("Tests/InferenceTests/Fixtures/make_qdq_layers.py").path
        let run = try runProcess(TestEnv.python, [script, dir.path], timeout: 300)
        guard run.status == 0 else { throw FixtureError("make_qdq_layers.py failed (\(run.status)): \(run.stderrText)") }
        return dir
    }

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: directory.get().appendingPathComponent(name))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// framepipe int8 on `name`, and the output steps by which it differs from `reference`.
    static func steps(_ name: String, against reference: String = "ort") throws -> (differing: Int, worst: Int, count: Int) {
        let cases = try String(contentsOf: directory.get().appendingPathComponent("cases.txt"), encoding: .utf8)
        guard let line = cases.split(separator: "\n").first(where: { $0.hasPrefix(name + " ") }),
              let scale = Float(line.split(separator: " ")[1]) else { throw FixtureError("no case \(name)") }
        setenv("FRAMEPIPE_INT8_UNFINISHED", "1", 1)
        let model = try Model.load(path: directory.get().appendingPathComponent("\(name).onnx").path)
        let input = try floats("\(name).input.f32")
        let n = input.count / model.inputShape.reduce(1, *)
        let engine = try Engine(model: model, precision: .int8, maxBatch: n, threads: 2)
        var out = [Float](repeating: .nan, count: n * model.embeddingDim)
        try input.withUnsafeBufferPointer { try engine.run(input: $0.baseAddress!, count: n, embeddings: &out, logits: nil) }
        let want = try floats("\(name).\(reference).f32")
        #expect(want.count == out.count)
        var differing = 0, worst = 0
        for (a, b) in zip(out, want) {
            let d = abs(Int(((a - b) / scale).rounded()))
            if d != 0 { differing += 1 }
            worst = max(worst, d)
        }
        print("int8 \(name) on \(Engine.cpuISA) vs onnxruntime \(reference): \(differing) of \(out.count) outputs differ, worst by \(worst) step(s)")
        return (differing, worst, out.count)
    }

    @Test("one QDQ convolution equals onnxruntime's int8 result exactly", arguments: ["first_conv", "first_conv_odd", "pointwise", "depthwise"])
    func convolution(_ name: String) throws {
        let r = try Self.steps(name)
        #expect(r.differing == 0, "\(r.differing) of \(r.count) outputs differ, worst by \(r.worst)")
    }

    /// onnxruntime's QLinearAdd computes in fixed point (MLAS: 22-bit multipliers), the runtime in
    /// f32: one step apart on a few outputs that sit near a rounding tie.
    @Test("a residual block (QLinearConv x2 + QLinearAdd) is within one step of onnxruntime on >= 99% of outputs")
    func residual() throws {
        let r = try Self.steps("residual")
        #expect(r.worst <= 1 && Double(r.differing) <= 0.01 * Double(r.count), "\(r)")
    }

    /// onnxruntime keeps this Gemm in float (no QGemm fusion after a Flatten); the runtime's integer
    /// inner product differs only by f32 rounding.
    @Test("global average pool + Gemm is within one step of onnxruntime on >= 99% of outputs")
    func poolGemm() throws {
        let r = try Self.steps("pool_gemm")
        #expect(r.worst <= 1 && Double(r.differing) <= 0.01 * Double(r.count), "\(r)")
    }
}
