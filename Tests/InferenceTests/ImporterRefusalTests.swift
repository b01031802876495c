import Foundation
import Inference
import ONNXProto
import SwiftProtobuf
import Testing

/// Graphs the node tests do not build, where a lenient importer would compute a wrong answer:
/// each must be refused at load, naming the node, or computed right.
@Suite struct ImporterRefusalTests {
    static func tensor(_ name: String, _ dims: [Int], _ values: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims.map(Int64.init)
        t.dataType = 1
        t.floatData = values
        return t
    }

    static func model(input: [Int], nodes: [Onnx_NodeProto], initializers: [Onnx_TensorProto], output: String) throws -> Data {
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        m.opsetImport = [opset]
        var x = Onnx_ValueInfoProto()
        x.name = "x"
        x.type.tensorType.elemType = 1
        x.type.tensorType.shape.dim = input.map { var d = Onnx_TensorShapeProto.Dimension(); d.dimValue = Int64($0); return d }
        var y = Onnx_ValueInfoProto()
        y.name = output
        m.graph.input = [x]
        m.graph.output = [y]
        m.graph.node = nodes
        m.graph.initializer = initializers
        return try m.serializedBytes()
    }

    static func node(_ op: String, _ inputs: [String], _ output: String, ints: [String: [Int]] = [:]) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = output
        n.input = inputs
        n.output = [output]
        n.attribute = ints.map { key, values in
            var a = Onnx_AttributeProto()
            a.name = key
            a.type = .ints
            a.ints = values.map(Int64.init)
            return a
        }
        return n
    }

    func refusal(_ data: Data) throws -> InferenceError {
        do {
            let model = try Model(graph: ONNXImporter(source: "t.onnx").convert(data), source: "t.onnx")
            _ = try Engine(model: model, maxBatch: 1)
        } catch let error as InferenceError {
            return error
        }
        throw InferenceError(source: "t.onnx", reason: "loaded without error")
    }

    /// A [C] constant added to a Conv's [N, C, H, W] output broadcasts along W in ONNX, so it is
    /// not the per-channel bias it looks like ([C, 1, 1] is, and is fused: see ParityTests).
    /// Here W == C, so the graph is valid: it must load and add along W.
    @Test func vectorAddAfterConvIsAddedAlongW() throws {
        let w = Self.tensor("w", [2, 2, 1, 1], [1, 0, 0, 1])
        let b = Self.tensor("b", [2], [5, 7])
        let data = try Self.model(input: [1, 2, 3, 2], nodes: [Self.node("Conv", ["x", "w"], "c"), Self.node("Add", ["c", "b"], "y")],
                                  initializers: [w, b], output: "y")
        let model = try Model(graph: ONNXImporter(source: "t.onnx").convert(data), source: "t.onnx")
        let engine = try Engine(model: model, maxBatch: 1)
        let x = (0..<12).map(Float.init)
        var y = [Float](repeating: .nan, count: 12)
        try x.withUnsafeBufferPointer { try engine.run(input: $0.baseAddress!, count: 1, embeddings: &y, logits: nil) }
        #expect(y == x.enumerated().map { i, v in v + [5, 7][i % 2] })
    }

    /// A Reshape to a non-flat per-sample shape keeps its input's memory: a Conv reading it
    /// would see the old dimensions, so the graph is refused.
    @Test func reshapeFeedingConvIsRefused() throws {
        let shape = Onnx_TensorProto.with { $0.name = "s"; $0.dims = [4]; $0.dataType = 7; $0.int64Data = [0, 4, 2, 2] }
        let w = Self.tensor("w", [1, 4, 1, 1], [1, 1, 1, 1])
        let data = try Self.model(input: [1, 2, 4, 2], nodes: [Self.node("Reshape", ["x", "s"], "r"), Self.node("Conv", ["r", "w"], "y")],
                                  initializers: [shape, w], output: "y")
        let error = try refusal(data)
        #expect(error.op == "Reshape" && error.reason.contains("Conv"), "\(error)")
    }

    /// A Gemm bias with one row per sample ([M, N]) only fits one batch size.
    @Test func matrixGemmBiasIsRefused() throws {
        let b = Self.tensor("b", [3, 2], [Float](repeating: 1, count: 6))
        let c = Self.tensor("c", [2, 2], [1, 2, 3, 4])
        let data = try Self.model(input: [2, 3], nodes: [Self.node("Gemm", ["x", "b", "c"], "y")], initializers: [b, c], output: "y")
        let error = try refusal(data)
        #expect(error.op == "Gemm" && error.reason.contains("bias C"), "\(error)")
    }
}
