import Foundation
import Inference
import Testing
import TestSupport
@testable import KerasImport

/// The importer on small hand-written Keras H5 files (see `kerasFixtureScript`).
@Suite(.enabled(if: TestEnv.hasPython))
struct KerasImporterTests {
    let dir: URL
    init() throws { dir = try Fixtures.makeSyntheticModels() }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func node(_ graph: Graph, _ name: String) throws -> Node {
        try #require(graph.nodes.first { $0.name == name }, "no node \(name) in \(graph.nodes.map(\.name))")
    }

    @Test func mapsTheNestedFunctionalModelIntoTheIR() throws {
        let graph = try KerasModel.importGraph(path: path("tiny.h5"))
        #expect(graph.inputs == [ValueInfo(name: "image", shape: [-1, 3, 10, 10])])
        // The final softmax is left to the caller: the output is the Dense's raw logits.
        #expect(graph.outputs == [ValueInfo(name: "dense", shape: [-1, 5])])
        #expect(graph.opCounts == ["Conv": 4, "BatchNormalization": 3, "Clip": 2, "Relu": 1, "Add": 1,
                                   "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1])

        // Conv2D 3x3/2 "same" on 10x10: TF SAME puts the one padding pixel at the bottom/right.
        let conv = try node(graph, "backbone/conv")
        guard case .conv(let convAttributes) = conv.op else { Issue.record("not a conv"); return }
        #expect(convAttributes == ConvAttributes(groups: 1, kernel: [3, 3], strides: [2, 2],
                                                 padsBegin: [0, 0], padsEnd: [1, 1]))
        #expect(conv.inputs.count == 2)  // use_bias false
        #expect(graph.initializers[conv.inputs[1]]?.shape == [8, 3, 3, 3])

        // ZeroPadding2D((0,1),(0,1)) + valid depthwise: pads folded, groups = channels, multiplier 2.
        let dw = try node(graph, "backbone/dw")
        guard case .conv(let dwAttributes) = dw.op else { Issue.record("not a conv"); return }
        #expect(dwAttributes == ConvAttributes(groups: 8, kernel: [3, 3], strides: [2, 2],
                                               padsBegin: [0, 0], padsEnd: [1, 1]))
        #expect(graph.initializers[dw.inputs[1]]?.shape == [16, 1, 3, 3])
        #expect(try node(graph, "backbone/conv_relu").op == .clip(min: 0, max: 6))
        #expect(try node(graph, "backbone/branch").outputs == ["backbone/branch/linear"])  // activation="relu"
        #expect(try node(graph, "backbone/conv_bn").op == .batchNorm(epsilon: 0.001))
        let add = try node(graph, "backbone/add")
        #expect(add.inputs == ["backbone/project_bn", "backbone/branch"])
        let dense = try node(graph, "dense")
        #expect(dense.inputs[0] == "pool/flat")  // Dropout is dropped, not an identity node
        #expect(graph.initializers[dense.inputs[1]]?.shape == [12, 5])
        #expect(try node(graph, "pool").outputs == ["pool"])
    }

    @Test func theImportedGraphPassesModelVerification() throws {
        let model = try KerasModel.load(path: path("tiny.h5"))
        #expect(model.inputShape == [3, 10, 10])
        #expect(model.classCount == 5)
        #expect(model.embeddingDim == 12)
        #expect(model.embeddingOutput == "pool")
    }

    @Test func fixedLengthWeightNamesGiveTheSameGraph() throws {
        #expect(try KerasModel.importGraph(path: path("tiny_fixed_names.h5")) == KerasModel.importGraph(path: path("tiny.h5")))
    }

    @Test func unknownLayerFailsNamingFileAndLayer() throws {
        let file = path("unknown.h5")
        let error = try #require(throws: KerasImportError.self) { try KerasModel.importGraph(path: file) }
        #expect(error.layer == "mystery_conv")
        #expect(error.layerClass == "Conv3D")
        #expect(error.description.hasPrefix("\(file): layer 'mystery_conv' (Conv3D): unsupported layer type Conv3D"))
    }

    @Test func wrongWeightShapeFailsNamingLayerAndWeight() throws {
        let error = try #require(throws: KerasImportError.self) { try KerasModel.importGraph(path: path("bad_weight.h5")) }
        #expect(error.layer == "wrong_conv")
        #expect(error.reason == "weight 'kernel' has shape [3, 3, 3, 5], expected [3, 3, 3, 4]")
    }

    @Test func unusedStoredWeightsFailTheImport() throws {
        let error = try #require(throws: KerasImportError.self) { try KerasModel.importGraph(path: path("extra_weight.h5")) }
        #expect(error.reason.contains("wrong_conv/wrong_conv/surplus"))
    }

    @Test func zeroPaddingMayOnlyFeedAConvolution() throws {
        let error = try #require(throws: KerasImportError.self) { try KerasModel.importGraph(path: path("pad_add.h5")) }
        #expect(error.layer == "sum")
        #expect(error.reason.contains("ZeroPadding2D"))
    }

    @Test(arguments: [
        ("not_hdf5.h5", "not an HDF5 file"),
        ("truncated.h5", "could not open HDF5 file"),
        ("plain.h5", "no model_config attribute"),
        ("bad_json.h5", "model_config is not valid JSON"),
        ("absent.h5", "no such readable file"),
    ])
    func badFilesFailWithTheFileNameAndReason(name: String, reason: String) throws {
        let file = path(name)
        let error = try #require(throws: KerasImportError.self) { try KerasModel.load(path: file) }
        #expect(error.path == file)
        #expect(error.description.hasPrefix(file + ": "))
        #expect(error.reason.contains(reason), "\(error)")
    }

    @Test func isHDF5ChecksTheSignature() {
        #expect(KerasModel.isHDF5(path: path("tiny.h5")))
        #expect(KerasModel.isHDF5(path: path("truncated.h5")))
        #expect(!KerasModel.isHDF5(path: path("not_hdf5.h5")))
        #expect(!KerasModel.isHDF5(path: path("absent.h5")))
    }
}
