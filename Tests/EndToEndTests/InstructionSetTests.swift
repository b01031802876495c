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
    /// Keras H5 through scripts/h5_to_onnx.py, the converter written apart from our importer; the
    /// shipped TFLite through the shared ONNX made from it).
    static let referenceScript = #"""
import json, os, runpy, sys
import numpy as np, onnxruntime as ort

model, out, count, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(model, "rb") as f:
    magic = f.read(8)
if magic == b"\x89HDF\r\n\x1a\n":
    onnx_path = out + "/model.onnx"
    runpy.run_path(root + "/scripts/h5_to_onnx.py", run_name="lib")["convert"](model, onnx_path)
elif magic[4:8] == b"TFL3":
    # The shared ONNX was made from the shipped .tflite by dequantizing its weights (assets README),
    # which is what framepipe does with it: onnxruntime on that ONNX is the reference for that file.
    assets = os.environ.get("FRAMEPIPE_ASSETS", root + "/../shared/assets")
    shipped = assets + "/models/mobilenet_v2_1.0_224_quant.tflite"
    if not os.path.exists(shipped) or open(shipped, "rb").read() != open(model, "rb").read():
        sys.exit(f"{model}: a TFLite model other than the shipped one has no onnxruntime reference here; extend InstructionSetTests")
    onnx_path = assets + "/models/mobilenet_v2_1.0_224_imagenet.onnx"
elif model.endswith(".onnx"):
    onnx_path = model
else:
    sys.exit(f"{model}: no reference for this model format here (ONNX, TFLite, Keras H5); extend InstructionSetTests")
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

    /// A small ONNX graph with every layer kind the engine lowers to, standalone where MobileNetV2
    /// fuses them: first 3x3 stride-2 conv (TF "SAME" pads), Relu and Clip as their own eltwise
    /// primitives, an Add of two activations (binary), a 1x1 conv + 3x3 stride-2 depthwise pair
    /// (the fused post-op), a plain 1x1 conv, AveragePool 3x3, GlobalAveragePool, Flatten, Gemm.
    static let allKindsScript = #"""
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(3)
inits, nodes = [], []
def w(name, *shape, scale=0.3):
    inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
    return name
def conv(x, out, cin, cout, k, stride, pads, groups=1):
    nodes.append(helper.make_node("Conv", [x, w(out + "_w", cout, cin // groups, k, k), w(out + "_b", cout)], [out],
                                  kernel_shape=[k, k], strides=[stride, stride], pads=pads, group=groups, name=out))
    return out
def clip(x, out):
    nodes.append(helper.make_node("Clip", [x, "lo", "hi"], [out], name=out))
    return out
inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
y1 = clip(conv("input", "first", 3, 16, 3, 2, [0, 0, 1, 1]), "first_clip")
nodes.append(helper.make_node("Relu", [y1], ["r1"], name="relu_alone"))
clip(y1, "r2")
nodes.append(helper.make_node("Add", ["r1", "r2"], ["a"], name="add_alone"))
e = clip(conv("a", "expand", 16, 32, 1, 1, [0, 0, 0, 0]), "expand_clip")
d = clip(conv(e, "dw", 32, 32, 3, 2, [0, 0, 1, 1], groups=32), "dw_clip")
p = conv(d, "project", 32, 16, 1, 1, [0, 0, 0, 0])
nodes.append(helper.make_node("AveragePool", [p], ["q"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                              count_include_pad=0, name="avgpool"))
nodes.append(helper.make_node("GlobalAveragePool", ["q"], ["g"], name="gap"))
nodes.append(helper.make_node("Flatten", ["g"], ["features"], axis=1, name="flatten"))
nodes.append(helper.make_node("Gemm", ["features", w("fc_w", 10, 16), w("fc_b", 10)], ["logits"], transB=1, name="fc"))
graph = helper.make_graph(nodes, "all_kinds", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
                           helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 16])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
"""#

    static let allKindsModel: Result<String, Error> = Result {
        let dir = try TestEnv.tempDir("framepipe-isa-kinds")
        let script = dir.appendingPathComponent("make.py"), model = dir.appendingPathComponent("all_kinds.onnx")
        try allKindsScript.write(to: script, atomically: true, encoding: .utf8)
        let r = try runProcess(TestEnv.python, [script.path, model.path])
        guard r.status == 0 else { throw ISATestError("all_kinds.onnx: \(r.stderrText)") }
        return model.path
    }

    @Test(arguments: isas) func everyLayerKind(_ isa: String) throws {
        let model = try Self.allKindsModel.get()
        try check(model, isa: isa)
        let r = try framepipe(["inspect", model, "--batch", "3", "--json"], environment: ["ONEDNN_MAX_CPU_ISA": isa.uppercased()])
        try #require(r.status == 0, "\(r.stderrText)")
        let object = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let layers = try #require(object["layers"] as? [[String: String]])
        let kinds = Set(layers.compactMap { $0["kind"] })
        #expect(kinds.isSuperset(of: ["convolution", "eltwise", "binary", "pooling", "inner_product"]), "\(isa): \(kinds)")
        #expect(layers.filter { $0["kind"] == "pooling" }.count == 2, "\(layers)")
        #expect(!layers.contains { $0["implementation"]!.hasPrefix("ref") }, "\(isa): \(layers)")
        print("\(isa) all_kinds: " + layers.map { "\($0["layer"]!)=\($0["implementation"]!)" }.joined(separator: " "))
    }

    @Test func runAndBenchNameReferenceKernelsOnceToo() throws {
        // The small graph keeps reference kernels cheap enough to execute.
        let model = try Self.allKindsModel.get()
        let env = ["ONEDNN_MAX_CPU_ISA": "SSE41", "FRAMEPIPE_ACTIVATION_LAYOUT": "nChw16c"]
        let run = try framepipe(["run", "--model", model, "--quiet", "--every", "10", TestEnv.asset("videos/carphone_pristine.mp4")],
                                environment: env)
        let bench = try framepipe(["bench", "--model", model, "--batch", "2", "--iterations", "1", "--warmup", "0"], environment: env)
        for r in [run, bench] {
            #expect(r.status == 0, "\(r.stderrText)")
            let warnings = r.stderrText.split(separator: "\n").filter { $0.contains("reference kernels") }
            #expect(warnings.count == 1, "\(r.stderrText)")
            #expect(warnings.first?.contains("first (ref:any)") == true, "\(warnings)")
        }
        #expect(run.lines.count == 12, "\(run.lines.count) frames")
        #expect(bench.lines.contains { $0.hasPrefix("kernels (nChw16c activations): ") && $0.contains("ref:any x") }, "\(bench.stdoutText)")
    }

    @Test func bf16IsRefusedClearlyWithoutBF16() throws {
        // AVX2 has no bf16 instructions on any CPU, so the cap makes every machine one without bf16.
        for command in [["bench", "--model", Self.sharedModel, "--precision", "bf16", "--batch", "1", "--iterations", "1"],
                        ["inspect", Self.sharedModel, "--precision", "bf16"]] {
            let r = try framepipe(command, environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
            #expect(r.status == 78, "\(command): \(r.status) \(r.stderrText)")   // the model cannot start (EX_CONFIG)
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
