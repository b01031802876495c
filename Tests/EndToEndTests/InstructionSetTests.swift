import Foundation
import Testing
import TestSupport

/// The engine under every instruction set this machine can emulate: for SSE41, AVX2, AVX512_CORE
/// and the native ISA (those the CPU has; oneDNN's `ONEDNN_MAX_CPU_ISA` caps it, read once per
/// process, so each runs in its own `framepipe` process), the shared ImageNet model and the default
/// model compile without a reference kernel and their fp32 logits match onnxruntime within 1e-3.
@Suite(.enabled(if: TestEnv.hasAssets && TestEnv.hasPython), .serialized)
struct InstructionSetTests {
    /// oneDNN 2.6's `dnnl_cpu_isa_t` masks (dnnl_types.h): an ISA is available when the native mask contains it.
    static let masks: [String: UInt32] = [
        "sse41": 0x1, "avx": 0x3, "avx2": 0x7, "avx2_vnni": 0x407, "avx512_core": 0x27,
        "avx512_core_vnni": 0x67, "avx512_core_bf16": 0xe7, "avx512_core_amx": 0x3e7,
    ]

    static var sharedModel: String { TestEnv.asset("models/mobilenet_v2_1.0_224_imagenet.onnx") }

    /// What `framepipe inspect --json` reports without a cap: the ISA and the default model's path.
    static let native: (isa: String, defaultModel: String?) = {
        let shared = try? framepipe(["inspect", "--json", sharedModel])
        let object = shared.flatMap { try? JSONSerialization.jsonObject(with: $0.stdout) as? [String: Any] }
        let isa = object?["isa"] as? String ?? "unknown"
        let d = try? framepipe(["inspect", "--json"], environment: ["FRAMEPIPE_MODEL": ""])
        let model = d.flatMap { try? JSONSerialization.jsonObject(with: $0.stdout) as? [String: Any] }?["model"] as? String
        if model == nil {
            FileHandle.standardError.write(Data("WARNING: no default model installed (run scripts/setup): its ISA tests are SKIPPED\n".utf8))
        }
        return (isa, model)
    }()

    /// SSE41, AVX2, AVX512_CORE and the native ISA, keeping only those the CPU has.
    static var isas: [String] {
        let native = Self.native.isa
        guard let nativeMask = masks[native] else { return ["sse41", "avx2", "avx512_core", native] }   // fails below, loudly
        var list = ["sse41", "avx2", "avx512_core"].filter { masks[$0]! & nativeMask == masks[$0]! }
        if !list.contains(native) { list.append(native) }
        return list
    }

    /// Writes a seeded input batch and onnxruntime's logits and features for `model` (ONNX as is;
    /// Keras H5 through scripts/h5_to_onnx.py, the converter written apart from our importer).
    static let referenceScript = #"""
import json, runpy, sys
import numpy as np, onnxruntime as ort

model, out, count, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(model, "rb") as f:
    magic = f.read(8)
if magic == b"\x89HDF\r\n\x1a\n":
    onnx_path = out + "/model.onnx"
    runpy.run_path(root + "/scripts/h5_to_onnx.py", run_name="lib")["convert"](model, onnx_path)
elif model.endswith(".onnx"):
    onnx_path = model
else:
    sys.exit(f"{model}: no reference for this model format here (ONNX and Keras H5 only); extend InstructionSetTests")
session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0]
# Symbolic spatial sizes take the other spatial size, or 224 (as framepipe does).
_, c, h, w = [d if isinstance(d, int) else None for d in inp.shape]
h, w = h or w or 224, w or h or 224
names = [o.name for o in session.get_outputs()]
x = np.random.default_rng(10).uniform(-1, 1, (count, c, h, w)).astype(np.float32)
np.save(out + "/input.npy", x)
logits, features = session.run(["logits", "features"], {inp.name: x})
np.save(out + "/logits.npy", logits.astype(np.float32))
np.save(out + "/features.npy", features.astype(np.float32).reshape(count, -1))
print(json.dumps({"outputs": names}))
"""#

    struct Reference {
        var dir: URL
        var logits: [Float]
        var features: [Float]
        var input: String { dir.appendingPathComponent("input.npy").path }
    }

    /// The reference for `model`, computed once per model.
    nonisolated(unsafe) static var references: [String: Reference] = [:]
    static func reference(_ model: String) throws -> Reference {
        if let r = references[model] { return r }
        let dir = try TestEnv.tempDir("framepipe-isa-reference")
        let script = dir.appendingPathComponent("reference.py")
        try referenceScript.write(to: script, atomically: true, encoding: .utf8)
        let result = try runProcess(TestEnv.python, [script.path, model, dir.path, "3", TestEnv.packageRoot.path], timeout: 300)
        guard result.status == 0 else { throw ISATestError("reference for \(model) failed: \(result.stderrText)") }
        let r = Reference(dir: dir, logits: try NPY.floats(dir.appendingPathComponent("logits.npy").path),
                          features: try NPY.floats(dir.appendingPathComponent("features.npy").path))
        references[model] = r
        return r
    }

    /// Runs `model` on the reference input in a framepipe process capped at `isa` and checks the
    /// ISA took effect, no layer is a reference kernel, and the logits and features match.
    func check(_ model: String, isa: String) throws {
        let ref = try Self.reference(model)
        let out = try TestEnv.tempDir("framepipe-isa-\(isa)")
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try framepipe(["bench", "--model", model, "--input", ref.input, "--save-outputs", out.path,
                               "--threads", "2", "--iterations", "1", "--warmup", "0", "--json"],
                              environment: ["ONEDNN_MAX_CPU_ISA": isa.uppercased()], timeout: 300)
        try #require(r.status == 0, "\(isa): \(r.stderrText)")
        let report = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        #expect(report["isa"] as? String == isa, "ONEDNN_MAX_CPU_ISA=\(isa.uppercased()) but oneDNN used \(report["isa"] ?? "?")")
        let kernels = (report["kernels"] as? [[String: Any]] ?? []).compactMap { $0["implementation"] as? String }
        #expect(!kernels.isEmpty)
        #expect(!kernels.contains { $0.hasPrefix("ref") }, "\(isa): reference kernels \(kernels)")
        #expect((report["reference_layers"] as? [Any])?.isEmpty == true, "\(isa): \(report["reference_layers"] ?? "?")")
        #expect(!r.stderrText.contains("reference kernels"), "\(isa): \(r.stderrText)")
        let logits = try NPY.floats(out.appendingPathComponent("logits.npy").path)
        let features = try NPY.floats(out.appendingPathComponent("embeddings.npy").path)
        try #require(logits.count == ref.logits.count && features.count == ref.features.count)
        let dl = zip(logits, ref.logits).map { abs($0 - $1) }.max() ?? .infinity
        let df = zip(features, ref.features).map { abs($0 - $1) }.max() ?? .infinity
        print("\(isa) \(URL(fileURLWithPath: model).lastPathComponent): kernels \(kernels.joined(separator: ", ")); "
              + "logits max |diff| \(dl), features \(df) vs onnxruntime")
        #expect(dl <= 1e-3, "\(isa): logits max |diff| \(dl) vs onnxruntime")
        #expect(df <= 1e-3, "\(isa): features max |diff| \(df) vs onnxruntime")
    }

    @Test func theListOfInstructionSetsComesFromTheMachine() {
        #expect(Self.masks[Self.native.isa] != nil, "oneDNN reports an unknown ISA \(Self.native.isa)")
        #expect(Self.isas.first == "sse41" && Self.isas.contains("avx2") == (Self.masks[Self.native.isa]! & 0x7 == 0x7))
    }

    @Test(arguments: isas) func sharedModel(_ isa: String) throws {
        try check(Self.sharedModel, isa: isa)
    }

    @Test(.enabled(if: native.defaultModel != nil), arguments: isas) func defaultModel(_ isa: String) throws {
        try check(try #require(Self.native.defaultModel), isa: isa)
    }

    @Test func bf16IsRefusedClearlyWithoutBF16() throws {
        // AVX2 has no bf16 instructions on any CPU, so the cap makes every machine one without bf16.
        for command in [["bench", "--model", Self.sharedModel, "--precision", "bf16", "--batch", "1", "--iterations", "1"],
                        ["inspect", Self.sharedModel, "--precision", "bf16"]] {
            let r = try framepipe(command, environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
            #expect(r.status == 1, "\(command): \(r.status) \(r.stderrText)")
            #expect(r.stderrText.contains("bf16 needs a CPU with AVX512-BF16 or AMX (oneDNN reports avx2)"), "\(r.stderrText)")
        }
    }

    @Test func inspectListsTheImplementationOfEveryLayer() throws {
        let text = try framepipe(["inspect", Self.sharedModel, "--batch", "2"])
        let json = try framepipe(["inspect", Self.sharedModel, "--batch", "2", "--json"])
        try #require(text.status == 0 && json.status == 0, "\(text.stderrText) \(json.stderrText)")
        let object = try #require(try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any])
        let layers = try #require(object["layers"] as? [[String: String]])
        // 52 convolutions (some 1x1 + depthwise pairs fused into one primitive), the pooling, the classifier.
        #expect(layers.count >= 37 && layers.count <= 54, "\(layers.count) layers")
        let kinds = Set(layers.compactMap { $0["kind"] })
        #expect(kinds.isSuperset(of: ["convolution", "pooling", "inner_product"]), "\(kinds)")
        #expect(object["isa"] as? String == Self.native.isa && object["batch"] as? Int == 2)
        for layer in layers {
            let name = try #require(layer["layer"]), impl = try #require(layer["implementation"])
            #expect(!impl.isEmpty && impl != "?")
            #expect(text.lines.contains { $0.hasPrefix("  \(name) ") && $0.hasSuffix(" \(impl)") }, "\(name): \(impl) not in the text")
        }
        #expect(text.lines.contains { $0.hasPrefix("compiled for \(Self.native.isa) ") })
    }

    @Test func referenceKernelsAreNamedOnStderrOnce() throws {
        // nChw16c activations have no jit kernel below AVX-512: every convolution falls to ref:any.
        // inspect only compiles, so this stays fast.
        let r = try framepipe(["inspect", Self.sharedModel],
                              environment: ["ONEDNN_MAX_CPU_ISA": "SSE41", "FRAMEPIPE_ACTIVATION_LAYOUT": "nChw16c"])
        #expect(r.status == 0, "\(r.stderrText)")
        let warnings = r.stderrText.split(separator: "\n").filter { $0.contains("reference kernels") }
        #expect(warnings.count == 1, "\(r.stderrText)")
        #expect(warnings.first?.contains("t56_pre (ref:any)") == true, "\(warnings)")
        #expect(warnings.first?.contains("sse41") == true)
        #expect(r.lines.contains { $0.hasPrefix("  t56_pre ") && $0.hasSuffix(" ref:any") })
    }
}

/// Reads float32 .npy files (NumPy format 1.0: magic, version, u16 header length, dict, data).
enum NPY {
    static func floats(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count >= 10, data[0] == 0x93 else { throw ISATestError("\(path): not an .npy file") }
        let start = 10 + (Int(data[8]) | Int(data[9]) << 8)
        let header = String(decoding: data[10..<start], as: UTF8.self)
        guard header.contains("'<f4'") else { throw ISATestError("\(path): not float32: \(header)") }
        return data.subdata(in: start..<data.count).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// A fixture step of these tests failed (the message says which and why).
struct ISATestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
