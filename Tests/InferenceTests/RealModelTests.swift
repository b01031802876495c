import Foundation
import Inference
import Testing
import TestSupport

/// The shared ImageNet MobileNetV2 on the five shared images against expected_top5.json
/// (onnxruntime reference): same top-1, feature norm within 1%; bf16 keeps the top-1.
@Suite(.enabled(if: TestEnv.hasAssets && TestEnv.hasPython), .serialized)
struct RealModelTests {
    static let images = ["cat.bmp", "bird.bmp", "grace_hopper.bmp", "dragonfly.bmp", "kite_and_cold.jpg"]

    struct Expected: Decodable {
        struct Entry: Decodable { let index: Int; let label: String; let p: Double }
        let top5: [Entry]
        let feature_norm: Double
    }

    /// The five images decoded by Fixtures/decode_images.py, as one batch of 5.
    static let batch: Result<[Float], Error> = Result {
        let dir = try TestEnv.tempDir("framepipe-infer-images")
        let script = TestEnv.packageRoot.appendingPathComponent("Tests/InferenceTests/Fixtures/decode_images.py").path
        let result = try runProcess(TestEnv.python, [script, dir.path, "224"] + images.map { TestEnv.asset("images/\($0)") })
        guard result.status == 0 else { throw FixtureError("decode_images.py failed: \(result.stderrText)") }
        return try images.flatMap { name in
            let data = try Data(contentsOf: dir.appendingPathComponent(name + ".f32"))
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
    }

    func run(_ precision: Precision) throws -> (model: Model, logits: [Float], features: [Float]) {
        let model = try Model.load(path: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))
        #expect(model.inputShape == [3, 224, 224])
        #expect(model.embeddingOutput == "features")
        #expect(model.logitsOutput == "logits")
        #expect(model.classCount == 1001 && model.embeddingDim == 1280)
        let engine = try Engine(model: model, precision: precision, maxBatch: 8, threads: 2)
        let input = try RealModelTests.batch.get()
        var logits = [Float](repeating: .nan, count: 5 * 1001)
        var features = [Float](repeating: .nan, count: 5 * 1280)
        try input.withUnsafeBufferPointer {
            try engine.run(input: $0.baseAddress!, count: 5, embeddings: &features, logits: &logits)
        }
        return (model, logits, features)
    }

    @Test(arguments: Precision.allCases) func noReordersBetweenLayers(_ precision: Precision) throws {
        if precision == .bf16 && !Engine.supportsBF16 { return try BF16Refusal.check() }
        let model = try Model.load(path: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))
        let engine = try Engine(model: model, precision: precision, maxBatch: 16)
        for batch in [1, 16] {
            #expect(try engine.interLayerReorders(batch: batch) == 0)
            // 52 convolutions (Clip and Add fused into them; "a + b" is a 1x1 conv with its
            // depthwise conv fused), the pooling and the classifier.
            let layers = try engine.describe(batch: batch).filter { !$0.contains("(reorder)") }
            #expect(layers.reduce(0) { $0 + ($1.contains(" + ") ? 2 : 1) } == 54, "\(layers)")
            #expect(!layers.contains { $0.contains("ref") }, "a reference (slow) implementation was picked: \(layers)")
        }
    }

    func expected() throws -> [String: Expected] {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("images/expected_top5.json")))
        return try JSONDecoder().decode([String: Expected].self, from: data)
    }

    @Test func fp32TopOneAndFeatureNorms() throws {
        let (_, logits, features) = try run(.fp32)
        let expected = try expected()
        for (i, name) in RealModelTests.images.enumerated() {
            let want = try #require(expected[name])
            let probs = logits[i * 1001 ..< (i + 1) * 1001].withUnsafeBufferPointer { Labels.softmax($0) }
            let top = Labels.topK(probs, k: 5)
            #expect(top[0].index == want.top5[0].index, "\(name): top-1 \(top[0].index), expected \(want.top5[0].index) \(want.top5[0].label)")
            #expect(abs(Double(top[0].score) - want.top5[0].p) < 0.1, "\(name): p \(top[0].score) vs \(want.top5[0].p)")
            let norm = features[i * 1280 ..< (i + 1) * 1280].reduce(0) { $0 + Double($1 * $1) }.squareRoot()
            #expect(abs(norm - want.feature_norm) / want.feature_norm < 0.01, "\(name): feature norm \(norm) vs \(want.feature_norm)")
        }
    }

    @Test func bf16KeepsTopOne() throws {
        guard Engine.supportsBF16 else { return try BF16Refusal.check() }
        let (_, logits, features) = try run(.bf16)
        let (_, refLogits, refFeatures) = try run(.fp32)
        for (i, name) in RealModelTests.images.enumerated() {
            let l = i * 1001 ..< (i + 1) * 1001, f = i * 1280 ..< (i + 1) * 1280
            #expect(Compare.argmax(logits[l]) == Compare.argmax(refLogits[l]), "\(name): bf16 top-1 differs")
            let cos = Compare.cosine(features[f], refFeatures[f])
            #expect(cos >= 0.99, "\(name): bf16 feature cosine \(cos)")
        }
    }
}

/// On a CPU without bf16 (or with `ONEDNN_MAX_CPU_ISA` below it) the bf16 paths cannot run: what
/// must hold there is the clear refusal, so the bf16 tests check that instead of failing.
enum BF16Refusal {
    static func check() throws {
        let model = try Model.load(path: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))
        print("bf16: this CPU has no bf16 (oneDNN reports \(Engine.cpuISA)); checking the refusal instead")
        do {
            _ = try Engine(model: model, precision: .bf16, maxBatch: 1)
            Issue.record("bf16 was accepted on \(Engine.cpuISA), which has no bf16")
        } catch let error as InferenceError {
            #expect("\(error)".contains("bf16") && "\(error)".contains(Engine.cpuISA), "\(error)")
        }
    }
}
