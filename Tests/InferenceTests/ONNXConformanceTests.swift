import Foundation
import Inference
import ONNXProto
import SwiftProtobuf
import Testing

/// ONNX's own backend node tests (Debian `libonnx-testdata`, ONNX 1.12) through our importer and
/// engine: every node test that uses an operator of `ONNXImporter.supportedOps` either matches the
/// test's expected outputs within `|got - want| <= atol + rtol * |want|`, or is refused at load
/// with an `InferenceError` naming the node and the reason. Importing fine and computing a wrong
/// answer fails the test, as does any other error.
///
/// The engine compiles weights in and takes one activation input, so a test's first input is fed
/// at run time and its other inputs (weights, bounds, shapes: graph inputs in the node tests) are
/// bound as constants, the way an exporter stores them as initializers.
@Suite struct ONNXConformanceTests {
    static let data = ProcessInfo.processInfo.environment["FRAMEPIPE_ONNX_TESTDATA"]
        ?? "/usr/share/libonnx-testdata/data"
    static var installed: Bool { FileManager.default.fileExists(atPath: data + "/node") }
    static let atol: Float = 1e-5
    static let rtol: Float = 1e-4

    enum Outcome {
        /// `reference`: primitives that compiled to oneDNN reference kernels (reported, not failed here).
        case pass(maxError: Float, reference: [String])
        case rejected(String)
        case wrong(String)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// `node`: one operator per test; `pytorch-converted` / `pytorch-operator`: PyTorch modules
    /// (depthwise, grouped, dilated, strided convolutions, Linear...); `simple`: small graphs.
    @Test(.enabled(if: installed, "libonnx-testdata is not installed (scripts/setup installs it); ONNX conformance NOT checked"),
          arguments: ["node", "pytorch-converted", "pytorch-operator", "simple"])
    func backendTests(_ suite: String) throws {
        let root = Self.data + "/" + suite
        let dirs = try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasPrefix("test_") }.sorted()
        var perOp: [String: (pass: Int, rejected: Int)] = [:]
        var rejections: [(String, String)] = []
        var wrong: [(String, String)] = []
        var slow: [(String, String)] = []
        var checked = 0
        for name in dirs {
            let dir = root + "/" + name
            let modelData = try Data(contentsOf: URL(fileURLWithPath: dir + "/model.onnx"))
            let proto = try Onnx_ModelProto(serializedBytes: modelData)
            let ops = Set(proto.graph.node.map(\.opType)).intersection(ONNXImporter.supportedOps)
            guard !ops.isEmpty else { continue }
            checked += 1
            let outcome = run(name: name, dir: dir, proto: proto)
            for op in ops {
                switch outcome {
                case .pass: perOp[op, default: (0, 0)].pass += 1
                case .rejected: perOp[op, default: (0, 0)].rejected += 1
                case .wrong: break
                }
            }
            switch outcome {
            case .pass(_, let reference): if !reference.isEmpty { slow.append((name, reference.joined(separator: "; "))) }
            case .rejected(let why): rejections.append((name, why))
            case .wrong(let why): wrong.append((name, why)); Issue.record("\(name): \(why)")
            }
        }

        var report = "ONNX backend conformance, \(suite) (\(root)): \(checked) tests use a supported operator; "
            + "tolerance |got - want| <= \(Self.atol) + \(Self.rtol) * |want|\n"
        report += "\(checked - rejections.count - wrong.count) pass, \(rejections.count) rejected, \(wrong.count) wrong; "
            + "a test counts under every supported op in its graph\n"
        report += "| op | pass | rejected |\n|---|---|---|\n"
        for op in perOp.keys.sorted() { report += "| \(op) | \(perOp[op]!.pass) | \(perOp[op]!.rejected) |\n" }
        report += "rejected at load:\n" + rejections.map { "  \($0.0): \($0.1)" }.joined(separator: "\n") + "\n"
        if !slow.isEmpty { report += "passing with oneDNN reference kernels:\n" + slow.map { "  \($0.0): \($0.1)" }.joined(separator: "\n") + "\n" }
        if !wrong.isEmpty { report += "WRONG ANSWERS:\n" + wrong.map { "  \($0.0): \($0.1)" }.joined(separator: "\n") + "\n" }
        print(report)

        // The suite is not allowed to pass by refusing everything: the cases the importer handles today.
        let floors = ["pytorch-converted": ["Conv": 11, "AveragePool": 2, "BatchNormalization": 2, "Softmax": 2, "Gemm": 1],
                      "pytorch-operator": ["Conv": 1, "Flatten": 2, "Gemm": 1], "simple": ["Relu": 1], "node": ["Add": 1, "Conv": 6, "AveragePool": 10, "BatchNormalization": 2, "Relu": 1, "Clip": 7, "GlobalAveragePool": 2,
                     "Flatten": 3, "Gemm": 8, "MatMul": 1, "Softmax": 2, "Dropout": 4, "Identity": 1, "Reshape": 6,
                     "Squeeze": 1, "Unsqueeze": 7]]
        for (op, n) in floors[suite] ?? [:] {
            #expect((perOp[op]?.pass ?? 0) >= n, "\(op): \(perOp[op]?.pass ?? 0) node tests pass, expected at least \(n)")
        }
        #expect(suite != "node" || checked >= 150, "only \(checked) node tests found under \(root)")
    }

    /// One node test: import (first input live, the others bound as constants), then every data set.
    func run(name: String, dir: String, proto: Onnx_ModelProto) -> Outcome {
        let model: Model
        let sets: [String]
        do {
            sets = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("test_data_set_") }.sorted()
            guard !sets.isEmpty else { return .wrong("no test_data_set_* directory") }
        } catch { return .wrong("cannot list \(dir): \(error)") }
        var bound = proto
        let initialized = Set(proto.graph.initializer.map(\.name))
        let inputs = proto.graph.input.filter { !initialized.contains($0.name) }
        do {
            for (k, input) in inputs.enumerated().dropFirst() {
                var t = try Onnx_TensorProto(serializedBytes: Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(sets[0])/input_\(k).pb")))
                t.name = input.name
                bound.graph.initializer.append(t)
            }
        } catch { return .wrong("cannot read the test's inputs: \(error)") }

        do {
            let data: Data = try bound.serializedBytes()
            model = try Model(graph: ONNXImporter(source: name).convert(data), source: name)
        } catch let error as InferenceError {
            guard error.node != nil || error.op != nil else { return .wrong("refused without naming a node: \(error)") }
            return .rejected(error.description.replacingOccurrences(of: name + ": ", with: ""))
        } catch {
            return .wrong("unexpected error \(error)")
        }

        var worst: Float = 0
        var reference: [String] = []
        for set in sets {
            do {
                // Only the live input varies between data sets; the bound ones must match data set 0.
                for k in inputs.indices.dropFirst() {
                    let a = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(sets[0])/input_\(k).pb"))
                    let b = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(set)/input_\(k).pb"))
                    guard a == b else { return .wrong("\(set): input \(k) differs from \(sets[0]); cannot bind it as a constant") }
                }
                let input = try Self.floats("\(dir)/\(set)/input_0.pb")
                let want = try Self.floats("\(dir)/\(set)/output_0.pb")
                let got = try run(model, input)
                reference = got.reference
                guard got.values.count == want.values.count else {
                    return .wrong("\(set): \(got.values.count) values, expected \(want.values.count) (shape \(want.shape))")
                }
                for i in want.values.indices {
                    let e = abs(got.values[i] - want.values[i])
                    guard e <= Self.atol + Self.rtol * abs(want.values[i]) else {
                        return .wrong("\(set): value \(i) is \(got.values[i]), expected \(want.values[i]) (output \(got.name), shape \(want.shape))")
                    }
                    worst = max(worst, e)
                }
            } catch let error as InferenceError {
                return .wrong("imported, then failed: \(error)")
            } catch {
                return .wrong("\(set): \(error)")
            }
        }
        return .pass(maxError: worst, reference: reference)
    }

    /// Runs one batch and returns the graph's single output (softmax applied when the optimiser
    /// moved a final Softmax out of the network, as `Labels` does for the product's scores).
    func run(_ model: Model, _ input: (shape: [Int], values: [Float])) throws -> (name: String, values: [Float], reference: [String]) {
        guard model.graph.outputs.count == 1 else { throw Failure("the graph has \(model.graph.outputs.count) outputs; one is checked") }
        guard let n = input.shape.first, n > 0, Array(input.shape.dropFirst()) == model.inputShape else {
            throw Failure("input shape \(input.shape) does not match the model's [N] + \(model.inputShape)")
        }
        let output = model.graph.outputs[0].name
        let engine = try Engine(model: model, maxBatch: n, threads: 1)
        let reference = try engine.describe(batch: n).filter { $0.contains("ref") }
        var values: [Float]
        if output == model.logitsOutput {
            values = [Float](repeating: .nan, count: n * model.classCount)
            try input.values.withUnsafeBufferPointer { try engine.run(input: $0.baseAddress!, count: n, embeddings: nil, logits: &values) }
        } else if output == model.embeddingOutput {
            values = [Float](repeating: .nan, count: n * model.embeddingDim)
            try input.values.withUnsafeBufferPointer { try engine.run(input: $0.baseAddress!, count: n, embeddings: &values, logits: nil) }
        } else {
            throw Failure("output \(output) is neither the embedding (\(model.embeddingOutput)) nor the logits (\(model.logitsOutput ?? "none"))")
        }
        if model.graph.softmaxRemoved[output] != nil {
            let k = values.count / n
            values = values.withUnsafeBufferPointer { all in
                (0..<n).flatMap { Labels.softmax(UnsafeBufferPointer(rebasing: all[($0 * k)..<($0 * k + k)])) }
            }
        }
        return (model.graph.softmaxRemoved[output] ?? output, values, reference)
    }

    /// A float32 or float64 TensorProto file (`input_0.pb`, `output_0.pb`).
    static func floats(_ path: String) throws -> (shape: [Int], values: [Float]) {
        let t = try Onnx_TensorProto(serializedBytes: Data(contentsOf: URL(fileURLWithPath: path)))
        let shape = t.dims.map { Int($0) }
        let count = shape.reduce(1, *)
        func raw<T>(_: T.Type) -> [T] {
            t.rawData.withUnsafeBytes { b in (0..<(b.count / MemoryLayout<T>.size)).map { b.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
        }
        let values: [Float]
        switch t.dataType {
        case 1: values = t.rawData.isEmpty ? t.floatData : raw(Float.self)
        case 11: values = (t.rawData.isEmpty ? t.doubleData : raw(Double.self)).map { Float($0) }
        default: throw Failure("\(path): element type \(t.dataType) is not float (the engine computes float32 only)")
        }
        guard values.count == count else { throw Failure("\(path): \(values.count) values for shape \(shape)") }
        return (shape, values)
    }
}
