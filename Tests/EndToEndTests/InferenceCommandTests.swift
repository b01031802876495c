import Foundation
import Testing
import TestSupport

/// `framepipe inspect` and `framepipe bench` run as a user would.
@Suite struct InferenceCommandTests {
    static let model = TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx")

    @Test(.enabled(if: TestEnv.hasAssets)) func inspectSharedModel() throws {
        let r = try framepipe(["inspect", Self.model])
        #expect(r.status == 0, "\(r.stderrText)")
        let text = r.stdoutText
        #expect(text.contains("input: input [N, 3, 224, 224]"))
        #expect(text.contains("output: features [N, 1280] (embedding)"))
        #expect(text.contains("output: logits [N, 1001] (logits)"))
        #expect(text.contains("Conv 52") && text.contains("Clip 35") && text.contains("Add 10"))
        #expect(text.contains("MACs per image: 300"))
        #expect(text.contains("x / 127.5 - 1"))
        #expect(text.contains("52 convolutions (35 activations and 10 residual adds fused)"))
    }

    @Test(.enabled(if: TestEnv.hasAssets)) func inspectJSON() throws {
        let r = try framepipe(["inspect", "--json", Self.model])
        #expect(r.status == 0, "\(r.stderrText)")
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        #expect(json["embedding"] as? String == "features")
        #expect(json["classes"] as? Int == 1001)
        #expect(json["parameters"] as? Int == 3_489_097)
    }

    /// Names from the file system and from the model file are JSON-escaped, not pasted in.
    @Test(.enabled(if: TestEnv.hasAssets)) func inspectJSONEscapesNames() throws {
        let dir = try TestEnv.tempDir().appendingPathComponent("a \"quoted\\ folder\tx")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let copy = dir.appendingPathComponent("model.onnx").path
        try FileManager.default.copyItem(atPath: Self.model, toPath: copy)
        let r = try framepipe(["inspect", "--json", copy])
        #expect(r.status == 0, "\(r.stderrText)")
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any], "\(r.stdoutText)")
        #expect(json["model"] as? String == copy)
    }

    @Test func inspectRejectsNonModel() throws {
        let dir = try TestEnv.tempDir()
        let path = dir.appendingPathComponent("junk.onnx").path
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: path))
        let r = try framepipe(["inspect", path])
        #expect(r.status != 0 && !r.signaled)
        #expect(r.stderrText.contains("\(path): is a text file (starts with \"not a model\"): not an ONNX protobuf"), "\(r.stderrText)")
    }

    /// The registry picks the importer by content: a TFLite file named .onnx is still read as TFLite.
    @Test func inspectPicksTheImporterByContent() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("renamed.onnx").path
        try FileManager.default.copyItem(atPath: TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path,
                                         toPath: path)
        let r = try framepipe(["inspect", path])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("[N, 3, 224, 224]"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("output: features [N, 1280] (embedding)"), "\(r.stdoutText)")
    }

    /// Without a sidecar, a quantized TFLite model's input quantization gives its normalisation.
    @Test(.enabled(if: TestEnv.hasAssets)) func quantizedTFLiteInputGivesItsOwnScaling() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bare.tflite").path
        try FileManager.default.copyItem(atPath: TestEnv.packageRoot.appendingPathComponent("models/mobilenet_v2_1.0_224_quant.tflite").path,
                                         toPath: path)
        let r = try framepipe(["check", "--model", path, TestEnv.asset("images/cat.bmp")])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stderrText.contains("mean [128.0, 128.0, 128.0], std [128.0, 128.0, 128.0]"), "\(r.stderrText)")
        #expect(r.stderrText.contains("mean: model input quantization"), "\(r.stderrText)")
        #expect(r.stdoutText.contains("\"index\":286"))
    }

    @Test func modelLoadingMessagesSayWhatTheFileIs() throws {
        let dir = try TestEnv.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pb = dir.appendingPathComponent("frozen_graph.pb").path
        try Data([0x0A, 0x1A, 0x0A, 0x05] + Array("input".utf8) + [0x12, 0x0B] + Array("Placeholder".utf8) + [0x2A, 0x00])
            .write(to: URL(fileURLWithPath: pb))
        let h5 = dir.appendingPathComponent("model.h5").path
        try Data("<!DOCTYPE html>\n<title>404</title>\n".utf8).write(to: URL(fileURLWithPath: h5))
        let lfs = dir.appendingPathComponent("model.tflite").path
        try Data("version https://git-lfs.github.com/spec/v1\noid sha256:7aad\nsize 3577760\n".utf8).write(to: URL(fileURLWithPath: lfs))
        let empty = dir.appendingPathComponent("empty.tflite").path
        try Data().write(to: URL(fileURLWithPath: empty))
        let cases: [(String, String)] = [
            (pb, "\(pb): TensorFlow GraphDef is not supported; convert with tf2onnx"),
            (h5, "\(h5): is a text file (starts with \"<!DOCTYPE html>\"): no HDF5 signature, so not a Keras H5 model"),
            (lfs, "\(lfs): is a Git LFS pointer, not the model itself"),
            (empty, "\(empty): is empty (0 bytes), not a model file"),
            (dir.path, "\(dir.path): is a directory, not a model file"),
            ("/dev/null", "/dev/null: is a character device, not a model file"),
        ]
        for (model, message) in cases {
            let r = try framepipe(["inspect", model])
            #expect(r.status != 0 && !r.signaled)
            #expect(r.stderrText.contains(message), "\(model): \(r.stderrText)")
        }
    }

    @Test(.enabled(if: TestEnv.hasAssets)) func benchReportsRate() throws {
        let r = try framepipe(["bench", "--model", Self.model, "--batch", "2", "--threads", "1",
                               "--iterations", "2", "--warmup", "1", "--json"])
        #expect(r.status == 0, "\(r.stderrText)")
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        #expect((json["images_per_s"] as? Double ?? 0) > 0)
        #expect(json["batch"] as? Int == 2 && json["threads"] as? Int == 1)
    }

    @Test(.enabled(if: TestEnv.hasAssets)) func bf16WithoutCPUSupportIsAClearError() throws {
        // oneDNN honours ONEDNN_MAX_CPU_ISA: AVX512_CORE hides the bf16 instructions.
        let r = try framepipe(["bench", "--model", Self.model, "--batch", "1", "--precision", "bf16", "--iterations", "1"],
                              environment: ["ONEDNN_MAX_CPU_ISA": "AVX512_CORE"])
        #expect(r.status != 0 && !r.signaled)
        #expect(r.stderrText.contains("bf16 needs a CPU with AVX512-BF16 or AMX"), "\(r.stderrText)")
    }

    @Test func benchHelpNamesOptions() throws {
        let r = try framepipe(["bench", "--help"])
        for option in ["--model", "--batch", "--precision", "--threads", "--iterations"] {
            #expect(r.stdoutText.contains(option), "help lacks \(option)")
        }
    }
}
