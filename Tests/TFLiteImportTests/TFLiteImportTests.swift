import Foundation
import Inference
import Testing
import TestSupport
@testable import TFLiteImport

enum TFLiteFixtures {
    /// The scripts (make_models.py, litert_reference.py).
    static let scripts = TestEnv.packageRoot.appendingPathComponent("Tests/TFLiteImportTests/Fixtures")
    /// The tiny models, generated once per test process by make_models.py (never committed).
    static let dir: URL = {
        do {
            let out = try TestEnv.tempDir("framepipe-tflite-fixtures")
            let r = try runProcess(TestEnv.python, [scripts.appendingPathComponent("make_models.py").path, out.path], timeout: 300)
            if r.status != 0 { FileHandle.standardError.write(Data("make_models.py failed: \(r.stderrText)\n".utf8)) }
            return out
        } catch {
            FileHandle.standardError.write(Data("make_models.py could not run: \(error)\n".utf8))
            return scripts.appendingPathComponent("not-generated")
        }
    }()
    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: dir.appendingPathComponent(name))) }
    /// The default model as committed in models/.
    static let defaultModel = TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path

    static var hasLiteRT: Bool {
        guard TestEnv.hasPython else { return false }
        let ok = (try? runProcess(TestEnv.python, ["-c", "import ai_edge_litert"], timeout: 60))?.status == 0
        if !ok { FileHandle.standardError.write(Data("WARNING: ai-edge-litert not in the venv (scripts/setup): LiteRT comparisons SKIPPED\n".utf8)) }
        return ok
    }

    /// LiteRT's output for a seeded uniform(-1, 1) input (NHWC), from Fixtures/litert_reference.py.
    static func litert(_ model: String, seed: Int) throws -> (input: [Float], output: [Float]) {
        let script = scripts.appendingPathComponent("litert_reference.py").path
        let r = try runProcess(TestEnv.python, [script, "tensor", model, String(seed)], timeout: 120)
        guard r.status == 0 else { throw TestFailure("litert_reference.py failed: \(r.stderrText)") }
        let o = try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
        return ((o["input"] as! [Double]).map(Float.init), (o["output"] as! [Double]).map(Float.init))
    }

    /// Runs `model` on one NHWC sample with the engine; returns (softmax of logits, embedding).
    static func run(_ model: Model, nhwc: [Float]) throws -> (probs: [Float], embedding: [Float]) {
        let (c, h, w) = (model.inputShape[0], model.inputShape[1], model.inputShape[2])
        var nchw = [Float](repeating: 0, count: c * h * w)
        for y in 0..<h { for x in 0..<w { for k in 0..<c { nchw[(k * h + y) * w + x] = nhwc[(y * w + x) * c + k] } } }
        let engine = try Engine(model: model, maxBatch: 1, threads: 1)
        var logits = [Float](repeating: 0, count: model.classCount)
        var embedding = [Float](repeating: 0, count: model.embeddingDim)
        try nchw.withUnsafeBufferPointer { input in
            try logits.withUnsafeMutableBufferPointer { l in
                try embedding.withUnsafeMutableBufferPointer { e in
                    try engine.run(input: input.baseAddress!, count: 1, embeddings: e.baseAddress!, logits: l.baseAddress!)
                }
            }
        }
        return (logits.withUnsafeBufferPointer { Labels.softmax($0) }, embedding)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The importer on the tiny generated models (Fixtures/make_models.py): structure, attributes,
/// dequantization, and numbers against LiteRT.
@Suite struct TFLiteImporterTests {
    @Test func importsTheFloatFixture() throws {
        let graph = try TFLiteModel.importGraph(path: TFLiteFixtures.path("tiny_float.tflite"))
        #expect(graph.inputs == [ValueInfo(name: "input", shape: [-1, 3, 8, 8])])
        #expect(graph.outputs.map(\.name) == ["probabilities", "features"])
        #expect(graph.opCounts == ["Conv": 3, "Clip": 2, "Relu": 1, "Add": 1, "GlobalAveragePool": 1, "Flatten": 1,
                                   "Gemm": 1, "Softmax": 1])
        // TF SAME on an even size: 3x3 stride 2 on 8 pads 0 before and 1 after (bottom/right).
        let conv1 = try #require(graph.nodes.first { $0.name == "conv1" && $0.op.name == "Conv" })
        guard case .conv(let a) = conv1.op else { Issue.record("not a conv"); return }
        #expect(a.padsBegin == [0, 0] && a.padsEnd == [1, 1] && a.strides == [2, 2] && a.groups == 1)
        #expect(graph.initializers[conv1.inputs[1]]?.shape == [4, 3, 3, 3])
        let dw = try #require(graph.nodes.first { $0.name == "dw" && $0.op.name == "Conv" })
        guard case .conv(let d) = dw.op else { Issue.record("not a conv"); return }
        #expect(d.groups == 4 && d.padsBegin == [1, 1] && d.padsEnd == [1, 1])
        #expect(graph.initializers[dw.inputs[1]]?.shape == [8, 1, 3, 3])

        let model = try Model(graph: graph, source: "tiny_float")
        #expect(model.logitsOutput == "logits")
        #expect(model.embeddingOutput == "features")
        #expect(model.classCount == 5 && model.embeddingDim == 8)
    }

    @Test func importsTheDequantizeFixtureWithPerChannelScales() throws {
        let graph = try TFLiteModel.importGraph(path: TFLiteFixtures.path("tiny_dequant.tflite"))
        // MEAN becomes the same global pool; DEQUANTIZE of constants leaves no node behind.
        #expect(graph.opCounts == ["Conv": 3, "Clip": 2, "Relu": 1, "Add": 1, "GlobalAveragePool": 1, "Flatten": 1,
                                   "Gemm": 1, "Softmax": 1])
        let floatGraph = try TFLiteModel.importGraph(path: TFLiteFixtures.path("tiny_float.tflite"))
        // Dequantized int8 per-channel weights are within half a step of the float ones.
        let conv = { (g: Graph) in g.initializers[g.nodes.first { $0.name == "conv1" && $0.op.name == "Conv" }!.inputs[1]]! }
        let q = conv(graph), f = conv(floatGraph)
        #expect(q.shape == f.shape)
        for o in 0..<4 {
            let slice = (o * 27)..<((o + 1) * 27)
            let step = f.data[slice].map(abs).max()! / 127
            #expect(zip(q.data[slice], f.data[slice]).allSatisfy { abs($0 - $1) <= step / 2 + 1e-6 }, "channel \(o)")
        }
    }

    @Test(.enabled(if: TFLiteFixtures.hasLiteRT), arguments: ["tiny_float.tflite", "tiny_dequant.tflite"])
    func matchesLiteRT(_ name: String) throws {
        let model = try TFLiteModel.load(path: TFLiteFixtures.path(name))
        for seed in [1, 2, 3] {
            let ref = try TFLiteFixtures.litert(TFLiteFixtures.path(name), seed: seed)
            let got = try TFLiteFixtures.run(model, nhwc: ref.input).probs
            let diff = zip(got, ref.output).map { abs($0 - $1) }.max()!
            #expect(diff < 1e-5, "\(name) seed \(seed): max |p - p_litert| = \(diff)")
        }
    }

    @Test func errorsNameTheFileAndTheOperator() throws {
        var bytes = try TFLiteFixtures.bytes("tiny_float.tflite")
        // Turn the AVERAGE_POOL_2D (builtin 1) operator code into MAX_POOL_2D (17): unsupported.
        let file = try TFLiteFile(bytes: bytes)
        #expect(file.operators.contains { $0.code == 1 })
        _ = try #require(patchOperatorCode(&bytes, from: 1, to: 17))
        #expect {
            try TFLiteModel.importGraph(bytes: bytes, source: "m.tflite")
        } throws: { error in
            "\(error)".hasPrefix("m.tflite: pool (builtin operator 17): operator is not supported")
        }
    }

    /// Rewrites the `builtin_code` of the operator code equal to `from` in place.
    private func patchOperatorCode(_ bytes: inout [UInt8], from: Int32, to: Int32) -> Int? {
        let fb = FlatBuffer(bytes)
        guard let model = try? fb.root(), let codes = try? model.vector(1, elementSize: 4, "codes") else { return nil }
        for i in 0..<codes.count {
            guard let t = try? codes.table(i), (try? t.i32(3)) == from,
                  let at = try? t.field(3, size: 4), let dep = try? t.field(0, size: 1) else { continue }
            bytes[dep] = UInt8(to)
            for k in 0..<4 { bytes[at + k] = UInt8((Int(to) >> (8 * k)) & 0xFF) }
            return i
        }
        return nil
    }
}

/// Hostile and damaged files: every one gives an `InferenceError`, never a crash.
@Suite struct TFLiteHostileTests {
    func outcome(_ bytes: [UInt8], _ name: String) -> String {
        do {
            let graph = try TFLiteModel.importGraph(bytes: bytes, source: name)
            _ = try Model(graph: graph, source: name)
            return "ok"
        } catch let error as InferenceError {
            #expect(error.source == name)
            #expect(!error.reason.isEmpty)
            return "error"
        } catch {
            Issue.record("\(name): unexpected error type \(type(of: error)): \(error)")
            return "other"
        }
    }

    @Test func everyTruncationIsAnError() throws {
        let bytes = try TFLiteFixtures.bytes("tiny_float.tflite")
        var errors = 0
        for length in Swift.stride(from: 0, to: bytes.count, by: 7) {
            if outcome(Array(bytes.prefix(length)), "truncated-\(length)") == "error" { errors += 1 }
        }
        // Every prefix misses the tables at the end of the buffer or the weights they point to.
        #expect(errors == (bytes.count + 6) / 7)
    }

    @Test func truncatedDefaultModelSaysMalformed() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: TFLiteFixtures.defaultModel)))
        // (The last few KB hold data the import does not need, so only deep cuts must fail.)
        for length in [8, 100, 4096, bytes.count / 4, bytes.count / 2] {
            do {
                _ = try TFLiteModel.importGraph(bytes: Array(bytes.prefix(length)), source: "t")
                Issue.record("the first \(length) bytes imported")
            } catch { #expect(error is InferenceError) }
        }
        #expect {
            try TFLiteModel.importGraph(bytes: Array(bytes.prefix(4096)), source: "half.tflite")
        } throws: { "\($0)".hasPrefix("half.tflite: malformed TFLite file:") }
    }

    @Test func garbledBytesNeverCrash() throws {
        var counts: [String: Int] = [:]
        var state: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt64 { state &+= 0x9E3779B97F4A7C15; var z = state; z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) &* 0x94D049BB133111EB; return z ^ (z >> 31) }
        for name in ["tiny_float.tflite", "tiny_dequant.tflite"] {
            let clean = try TFLiteFixtures.bytes(name)
            for n in 0..<300 {
                var bytes = clean
                for _ in 0...(n % 8) {
                    let at = Int(next() % UInt64(bytes.count))
                    bytes[at] = n % 3 == 0 ? UInt8(truncatingIfNeeded: next()) : bytes[at] ^ UInt8(1 << (next() % 8))
                }
                counts[outcome(bytes, "\(name)-flip-\(n)"), default: 0] += 1
            }
        }
        FileHandle.standardError.write(Data("note: garbled .tflite outcomes: \(counts)\n".utf8))
        #expect(counts["other"] == nil)
        #expect((counts["error"] ?? 0) > 0)
    }

    @Test func fuzzRegressionsReplay() throws {
        let dir = TestEnv.packageRoot.appendingPathComponent("fuzz/regressions-tflite")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".b64") }
        for name in names.sorted() {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            let data = try #require(Data(base64Encoded: text, options: .ignoreUnknownCharacters), "\(name): not base64")
            _ = outcome([UInt8](data), name)
        }
        FileHandle.standardError.write(Data("note: replayed \(names.count) saved TFLite fuzz input(s)\n".utf8))
    }

    /// One stored filter read by 1200 operators would expand to far more weights than the file holds.
    @Test func weightsSharedByManyOperatorsAreBounded() throws {
        let bytes = try TFLiteFixtures.bytes("shared_weights.tflite")
        #expect {
            try TFLiteModel.importGraph(bytes: bytes, source: "shared.tflite")
        } throws: { "\($0)".contains("the operators' weights add up to more elements than the file could hold") }
    }

    @Test func specificDamageHasSpecificMessages() throws {
        let clean = try TFLiteFixtures.bytes("tiny_float.tflite")
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try TFLiteModel.importGraph(bytes: bytes, source: "x"); return "no error" } catch { return "\(error)" }
        }
        var noID = clean; noID[4] = UInt8(ascii: "X")
        #expect(message(noID).contains("no \"TFL3\" file identifier"))
        var root = clean; root[0] = 0xF0; root[1] = 0xFF; root[2] = 0xFF; root[3] = 0x7F
        #expect(message(root).contains("malformed TFLite file: root table"))
        #expect(message([]).contains("no \"TFL3\" file identifier"))
    }
}

/// The default model (models/, the Coral MobileNetV2 quant): structure, and the same numbers as the
/// shared ONNX made from the same file.
@Suite struct DefaultTFLiteModelTests {
    @Test func importsMobileNetV2WithFeaturesAndLogits() throws {
        let graph = try TFLiteModel.importGraph(path: TFLiteFixtures.defaultModel)
        #expect(graph.inputs == [ValueInfo(name: "input", shape: [-1, 3, 224, 224])])
        #expect(graph.opCounts == ["Conv": 52, "Clip": 35, "Add": 10, "GlobalAveragePool": 1, "Flatten": 1,
                                   "Gemm": 1, "Softmax": 1])
        #expect(graph.parameterCount == 3_489_097)   // the same count `inspect` gives the shared ONNX
        let model = try Model(graph: graph, source: TFLiteFixtures.defaultModel)
        #expect(model.embeddingOutput == "features" && model.embeddingDim == 1280)
        #expect(model.logitsOutput == "logits" && model.classCount == 1001)
    }

    @Test(.enabled(if: TestEnv.hasAssets)) func sameLogitsAsTheSharedONNX() throws {
        let tfl = try TFLiteModel.load(path: TFLiteFixtures.defaultModel)
        let onnx = try Model.load(path: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx"))
        var state: UInt32 = 12345
        let input = (0..<(224 * 224 * 3)).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) * 2 - 1
        }
        let a = try TFLiteFixtures.run(tfl, nhwc: input), b = try TFLiteFixtures.run(onnx, nhwc: input)
        let pDiff = zip(a.probs, b.probs).map { abs($0 - $1) }.max()!
        let eDiff = zip(a.embedding, b.embedding).map { abs($0 - $1) }.max()!
        FileHandle.standardError.write(Data("note: TFLite vs ONNX import: max |dp| \(pDiff), max |d feature| \(eDiff)\n".utf8))
        #expect(Labels.topK(a.probs, k: 1)[0].index == Labels.topK(b.probs, k: 1)[0].index)
        #expect(pDiff < 1e-3)
        #expect(eDiff < 1e-2)
    }
}
