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

    @Test func inspectRejectsNonModel() throws {
        let dir = try TestEnv.tempDir()
        let path = dir.appendingPathComponent("junk.onnx").path
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: path))
        let r = try framepipe(["inspect", path])
        #expect(r.status != 0 && !r.signaled)
        #expect(r.stderrText.contains("\(path): not an ONNX model"), "\(r.stderrText)")
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
