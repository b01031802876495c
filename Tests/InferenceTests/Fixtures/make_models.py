#!/usr/bin/env python3
"""Generates MobileNetV2-shaped ONNX test models from a fixed seed and their onnxruntime goldens.

Usage: make_models.py OUT_DIR [--batches 1,3,16]

Writes, per model NAME:
  NAME.onnx                   the model (built with the onnx package; random but well-scaled weights)
  NAME.input_bB.f32           B input images, float32 NCHW, little endian
  NAME.logits_bB.f32          onnxruntime logits (B x classes)
  NAME.features_bB.f32        onnxruntime pooled features (B x 1280)
and manifest.json describing shapes. Models:
  tv_opset10   torchvision layout: Conv (no bias) + BatchNormalization + Clip(min/max attributes),
               symmetric pads, Add, GlobalAveragePool, Flatten, Dropout, Gemm(transB), 1000 classes, 224x224,
               weights in typed float_data fields
  tv_opset13   the same layout at opset 13: Clip bounds as inputs, the model zoo's
               Shape/Gather/Unsqueeze/Concat/Reshape head, 160x160 input
  tf2onnx_small  a small tf2onnx-style graph (Conv + Add bias, Relu, padded AveragePool, Reshape,
               MatMul + Add) with 10 classes, 33x33 input (odd sizes, SAME_UPPER auto_pad)
  tf_shared    the shared ImageNet model's layout: Conv with bias and TF-"SAME" asymmetric pads,
               Clip(0, 6) with bounds from Constant nodes, Add, GlobalAveragePool, Flatten, Gemm, outputs `logits` (1001) and `features`
Weights use He initialisation and realistic batch-norm statistics so activations neither vanish
nor explode; the classifier is scaled so logits spread over several units and top-1 is meaningful.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BETA = 0.1
GAMMA = (0.6, 1.0)  # batch-norm scale (larger values make the random network chaotic)
BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class Builder:
    def __init__(self, rng, layout, opset):
        self.rng, self.layout, self.opset = rng, layout, opset
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def init(self, prefix, array):
        name = self.name(prefix)
        array = np.asarray(array, dtype=np.float32)
        if self.opset < 11:
            # Typed float_data fields instead of raw_data, as older exporters wrote them.
            self.inits.append(helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.flatten().tolist()))
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def constant(self, prefix, value):
        """A Constant node (instead of an initializer), as the TF converters emit for Clip bounds."""
        name = self.name(prefix)
        self.nodes.append(helper.make_node("Constant", [], [name], name=name,
                                           value=numpy_helper.from_array(np.array(value, dtype=np.float32))))
        return name

    def conv(self, x, cin, cout, k, stride, groups, size, relu6=True):
        fan_in = (cin // groups) * k * k
        gain = 2.0 if relu6 else 1.0
        w = self.rng.normal(0, np.sqrt(gain / fan_in), (cout, cin // groups, k, k))
        out_size = (size + stride - 1) // stride
        if self.layout == "tf":
            total = max(0, (out_size - 1) * stride + k - size)
            pads = [total // 2, total // 2, total - total // 2, total - total // 2]
        else:
            pads = [k // 2] * 4
        inputs = [x, self.init("w", w)]
        if self.layout == "tf":
            inputs.append(self.init("b", self.rng.normal(0, 0.05, cout)))
        y = self.name("conv")
        self.nodes.append(helper.make_node("Conv", inputs, [y], name=y, kernel_shape=[k, k], strides=[stride, stride],
                                           pads=pads, group=groups, dilations=[1, 1]))
        if self.layout == "torchvision":
            bn = self.name("bn")
            gamma = self.rng.uniform(*GAMMA, cout)
            beta = self.rng.normal(BETA if relu6 else 0.0, 0.1, cout)
            mean = self.rng.normal(0, 0.1, cout)
            var = self.rng.uniform(0.7, 1.3, cout)
            self.nodes.append(helper.make_node("BatchNormalization",
                                               [y, self.init("gamma", gamma), self.init("beta", beta),
                                                self.init("mean", mean), self.init("var", var)],
                                               [bn], name=bn, epsilon=1e-5))
            y = bn
        if relu6:
            c = self.name("clip")
            if self.opset < 11:
                self.nodes.append(helper.make_node("Clip", [y], [c], name=c, min=0.0, max=6.0))
            else:
                bound = self.constant if self.layout == "tf" else self.init
                self.nodes.append(helper.make_node("Clip", [y, bound("min", 0.0), bound("max", 6.0)], [c], name=c))
            y = c
        return y, out_size

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=y))
        return y


def mobilenet_v2(seed, layout, opset, size, classes):
    rng = np.random.default_rng(seed)
    b = Builder(rng, layout, opset)
    x, s = b.conv("input", 3, 32, 3, 2, 1, size)
    cin = 32
    for t, c, n, stride in BLOCKS:
        for i in range(n):
            st = stride if i == 0 else 1
            h = x
            hidden = cin * t
            if t != 1:
                h, _ = b.conv(h, cin, hidden, 1, 1, 1, s)
            h, s2 = b.conv(h, hidden, hidden, 3, st, hidden, s)
            h, _ = b.conv(h, hidden, c, 1, 1, 1, s2, relu6=False)
            if st == 1 and cin == c:
                h = b.add(h, x)
            x, s, cin = h, s2, c
    x, _ = b.conv(x, cin, 1280, 1, 1, 1, s)
    pooled = "pooled"
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled], name="gap"))
    outputs = []
    if layout == "torchvision" and opset >= 13:
        # The model zoo / older torch export head: Reshape(pooled, Concat(Gather(Shape(pooled), 0), [-1])).
        b.nodes += [helper.make_node("Shape", [pooled], ["shape"], name="shape"),
                    helper.make_node("Constant", [], ["zero"], name="zero", value=numpy_helper.from_array(np.array(0, dtype=np.int64))),
                    helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
                    helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsqueeze"),
                    helper.make_node("Constant", [], ["minus1"], name="minus1", value=numpy_helper.from_array(np.array([-1], dtype=np.int64))),
                    helper.make_node("Concat", ["batch1", "minus1"], ["target"], name="concat", axis=0),
                    helper.make_node("Reshape", [pooled, "target"], ["flat"], name="reshape")]
        b.inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"))
        head = "flat"
    else:
        flat = "features" if layout == "tf" else "flat"
        b.nodes.append(helper.make_node("Flatten", [pooled], [flat], name="flatten", axis=1))
        head = flat
        if layout == "torchvision":
            b.nodes.append(helper.make_node("Dropout", [flat], ["dropped"], name="dropout"))
            head = "dropped"
    # Classifier scaled so logits have a spread of a few units.
    w = rng.normal(0, 3.0 / np.sqrt(1280), (classes, 1280))
    bias = rng.normal(0, 0.1, classes)
    b.nodes.append(helper.make_node("Gemm", [head, b.init("fc_w", w), b.init("fc_b", bias)], ["logits"], name="fc", transB=1))
    outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]))
    if layout == "tf":
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1280]))
    graph = helper.make_graph(b.nodes, f"mobilenet_v2_{layout}", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
                              outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="framepipe-tests")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def images(rng, count, size):
    """Synthetic images in roughly [-2, 2] that differ in content, not only in noise: each is a sum
    of three colour gratings with its own frequency, orientation and phase, plus a colour cast and
    fine noise (random noise images all pool to nearly the same features in a random network)."""
    yy, xx = np.meshgrid(np.arange(size) / size, np.arange(size) / size, indexing="ij")
    out = np.empty((count, 3, size, size), dtype=np.float32)
    for i in range(count):
        img = np.zeros((3, size, size))
        for _ in range(3):
            freq = rng.uniform(1, 24)
            angle = rng.uniform(0, np.pi)
            wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
            img += rng.normal(0, 0.8, (3, 1, 1)) * wave
        img += rng.normal(0, 0.6, (3, 1, 1)) + rng.normal(0, 0.2, img.shape)
        out[i] = img
    return out


def fc_rows(inits, fc):
    return numpy_helper.to_array(inits[fc.input[1]])


def calibrate_classifier(model, layout, size, rng):
    """Sets the classifier from a calibration batch: logits = W (f - mean f) with W reading the
    principal directions of feature variation and a spread of about 3 units, so top-1 depends on
    the image rather than on the feature mean every image shares in a random network."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = sess.run(["pooled"], {"input": images(rng, 64, size)})[0].reshape(64, -1)
    inits = {t.name: t for t in model.graph.initializer}
    fc = next(n for n in model.graph.node if n.name == "fc")
    # Read the 16 directions the images' features vary most in (PCA of the calibration batch)
    # through a random projection to the classes.
    centred = feats - feats.mean(0)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:16]
    w = rng.normal(0, 1, (len(fc_rows(inits, fc)), 16)) @ basis
    w = w * (3.0 / (centred @ w.T).std())
    bias = -(w @ feats.mean(0)) + rng.normal(0, 0.1, w.shape[0])
    inits[fc.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), fc.input[1]))
    inits[fc.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), fc.input[2]))


def bad_models(out):
    """Small models that must be rejected at load: an unsupported operator and a rank-5 input."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("HardSigmoid", ["c"], ["h"], name="weird_activation"),
             helper.make_node("GlobalAveragePool", ["h"], ["features"], name="gap")]
    graph = helper.make_graph(nodes, "bad_op", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), f"{out}/bad_unsupported_op.onnx")
    nodes = [helper.make_node("Relu", ["input"], ["features"], name="relu0")]
    graph = helper.make_graph(nodes, "bad_rank", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8, 8])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), f"{out}/bad_input_rank.onnx")


def small_tf2onnx(seed):
    """A small tf2onnx-style graph: Conv without bias + Add(per-channel constant), Relu,
    AveragePool (padded, count_include_pad=0), GlobalAveragePool, Reshape, MatMul + Add."""
    rng = np.random.default_rng(seed)
    c = 24
    inits = [numpy_helper.from_array(rng.normal(0, np.sqrt(2 / 27), (c, 3, 3, 3)).astype(np.float32), "k"),
             numpy_helper.from_array(rng.normal(0, 0.1, (1, c, 1, 1)).astype(np.float32), "kb"),
             numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(c), (c, 10)).astype(np.float32), "dense"),
             numpy_helper.from_array(rng.normal(0, 0.1, (10,)).astype(np.float32), "dense_b"),
             numpy_helper.from_array(np.array([-1, c], dtype=np.int64), "flat_shape")]
    nodes = [helper.make_node("Conv", ["input", "k"], ["conv"], name="conv", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
             helper.make_node("Add", ["conv", "kb"], ["biased"], name="bias_add"),
             helper.make_node("Relu", ["biased"], ["relu"], name="relu"),
             helper.make_node("AveragePool", ["relu"], ["avg"], name="avg", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["avg"], ["pooled"], name="gap"),
             helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "dense"], ["mm"], name="dense"),
             helper.make_node("Add", ["mm", "dense_b"], ["logits"], name="dense_bias")]
    graph = helper.make_graph(nodes, "tf2onnx_small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 33, 33])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def main():
    out = sys.argv[1]
    bad_models(out)
    batches = [1, 3, 16]
    if "--batches" in sys.argv:
        batches = [int(v) for v in sys.argv[sys.argv.index("--batches") + 1].split(",")]
    specs = [("tv_opset10", "torchvision", 10, 224, 1000, 101), ("tv_opset13", "torchvision", 13, 160, 1000, 102),
             ("tf_shared", "tf", 13, 224, 1001, 103), ("tf2onnx_small", "small", 13, 33, 10, 104)]
    manifest = {}
    for name, layout, opset, size, classes, seed in specs:
        if layout == "small":
            model = small_tf2onnx(seed)
        else:
            model = mobilenet_v2(seed, layout, opset, size, classes)
            calibrate_classifier(model, layout, size, np.random.default_rng(seed + 500))
        onnx.save(model, f"{out}/{name}.onnx")
        # Golden run with the pooled features exposed as an extra output.
        golden = onnx.ModelProto()
        golden.CopyFrom(model)
        if layout != "tf":
            golden.graph.output.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None))
        sess = ort.InferenceSession(golden.SerializeToString(), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(seed + 1000)
        entry = {"size": size, "classes": classes, "features": 24 if layout == "small" else 1280, "batches": batches, "stats": {}}
        for bsz in batches:
            x = images(rng, bsz, size)
            logits, feats = sess.run(["logits", "features" if layout == "tf" else "pooled"], {"input": x})
            feats = feats.reshape(bsz, -1)
            x.tofile(f"{out}/{name}.input_b{bsz}.f32")
            logits.astype(np.float32).tofile(f"{out}/{name}.logits_b{bsz}.f32")
            feats.astype(np.float32).tofile(f"{out}/{name}.features_b{bsz}.f32")
            top2 = np.sort(logits, axis=1)[:, -2:]
            unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
            entry["stats"][str(bsz)] = {"logit_std": float(logits.std()), "feature_mean": float(feats.mean()),
                                        "top1": [int(v) for v in logits.argmax(1)],
                                        "mean_pairwise_cosine": float((unit @ unit.T).mean()),
                                        "feature_std": float(feats.std()),
                                        "min_top1_margin": float((top2[:, 1] - top2[:, 0]).min())}
        manifest[name] = entry
    with open(f"{out}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
