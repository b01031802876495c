import Foundation
import Inference
import Testing
import TestSupport

/// Models that must be rejected at load with a message naming the model, the node and the reason.
@Suite struct BadModelTests {
    func loadError(_ path: String) throws -> String {
        do {
            let model = try Model.load(path: path)
            _ = try Engine(model: model, maxBatch: 1)
            Issue.record("\(path) loaded without error")
            return ""
        } catch let error as InferenceError {
            #expect(error.source == path)
            return error.description
        }
    }

    @Test func notONNX() throws {
        let dir = try TestEnv.tempDir()
        let path = dir.appendingPathComponent("notes.onnx").path
        try Data("this is a text file, not a model\n".utf8).write(to: URL(fileURLWithPath: path))
        let message = try loadError(path)
        #expect(message.contains("not an ONNX model"), "\(message)")
    }

    @Test func missingFile() throws {
        let message = try loadError("/nonexistent/model.onnx")
        #expect(message.contains("/nonexistent/model.onnx") && message.contains("cannot read"), "\(message)")
    }

    @Test(.enabled(if: TestEnv.hasAssets)) func truncated() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")))
        let dir = try TestEnv.tempDir()
        for fraction in [0.5, 0.999] {
            let path = dir.appendingPathComponent("truncated-\(fraction).onnx").path
            try data.prefix(Int(Double(data.count) * fraction)).write(to: URL(fileURLWithPath: path))
            let message = try loadError(path)
            #expect(message.contains("not an ONNX model"), "\(message)")
        }
    }

    @Test(.enabled(if: TestEnv.hasPython)) func unsupportedOperator() throws {
        let message = try loadError(Fixtures.path("bad_unsupported_op.onnx"))
        #expect(message.contains("weird_activation (HardSigmoid): unsupported operator"), "\(message)")
    }

    @Test(.enabled(if: TestEnv.hasPython)) func wrongInputRank() throws {
        let message = try loadError(Fixtures.path("bad_input_rank.onnx"))
        #expect(message.contains("input (input): input must have rank 1 to 4"), "\(message)")
    }

    @Test func hdf5IsRedirected() throws {
        let dir = try TestEnv.tempDir()
        let path = dir.appendingPathComponent("model.h5").path
        try Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]).write(to: URL(fileURLWithPath: path))
        #expect(try loadError(path).contains("Keras"))
    }

    @Test func graphWithMismatchedWeights() throws {
        // Conv weight for 4 input channels on a 3-channel input.
        let graph = Graph(inputs: [ValueInfo(name: "x", shape: [-1, 3, 8, 8])], outputs: [ValueInfo(name: "y", shape: [])],
                          nodes: [Node(name: "conv0", op: .conv(ConvAttributes(kernel: [1, 1])), inputs: ["x", "w"], outputs: ["y"])],
                          initializers: ["w": Tensor(shape: [2, 4, 1, 1], data: Array(repeating: 1, count: 8))])
        #expect {
            try Model(graph: graph, source: "handmade")
        } throws: { error in
            "\(error)".contains("handmade: conv0 (Conv): weight [2, 4, 1, 1]")
        }
    }

    @Test func unusedWeightIsReported() throws {
        let graph = Graph(inputs: [ValueInfo(name: "x", shape: [-1, 3, 8, 8])], outputs: [ValueInfo(name: "y", shape: [])],
                          nodes: [Node(name: "gap", op: .globalAvgPool, inputs: ["x"], outputs: ["y"])],
                          initializers: ["stray": Tensor(shape: [1], data: [0])])
        #expect {
            try Model(graph: graph, source: "handmade")
        } throws: { error in
            "\(error)".contains("stray (initializer): weight is not used")
        }
    }
}
