#!/usr/bin/env python3
"""Converts a Keras H5 model (functional, Keras 3 or 2 config; nested models) to ONNX with h5py + onnx.

A test reference for framepipe's Swift Keras importer, written separately from it and taking the
other road where the formats allow: "same" padding becomes ONNX auto_pad=SAME_UPPER (left to the
ONNX consumer), BatchNormalization stays an ONNX BatchNormalization node, ReLU6 is Clip with
opset-13 inputs. ZeroPadding2D is folded into the next Conv's explicit pads (framepipe's ONNX
importer, like the shared model, has no Pad op).

Outputs: "logits" (the last Dense before its softmax) and "features" (the pooled vector feeding
it); input "input" is float32 NCHW [N, C, H, W].

Usage: h5_to_onnx.py MODEL.h5 OUT.onnx
"""
import json
import sys

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tensor_refs(node):
    """Tensors one call of a layer consumed: [(layer, node, tensor)] in argument order."""
    refs = []

    def walk(v):
        if isinstance(v, dict):
            if v.get("class_name") == "__keras_tensor__":
                h = v["config"]["keras_history"]
                refs.append((h[0], h[1], h[2]))
        elif isinstance(v, list):
            if len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int):
                refs.append((v[0], v[1], v[2]))
            else:
                for x in v:
                    walk(x)

    walk(node["args"] if isinstance(node, dict) else node)
    return refs


def endpoints(v):
    return [tuple(v[:3])] if isinstance(v[0], str) else [tuple(x[:3]) for x in v]


class Converter:
    def __init__(self, h5):
        self.h5 = h5
        root = h5["model_weights"] if "model_weights" in h5 else h5
        self.weights = {}  # (group, layer) -> {variable: array}
        for group in root.attrs.get("layer_names", list(root.keys())):
            group = group.decode() if isinstance(group, bytes) else group
            g = root[group]
            for wn in g.attrs.get("weight_names", []):
                wn = wn.decode() if isinstance(wn, bytes) else wn
                parts = wn.split("/")
                layer = parts[-2] if len(parts) >= 2 else group
                var = parts[-1].split(":")[0]
                self.weights.setdefault((group, layer), {})[var] = np.asarray(g[wn], dtype=np.float32)
        self.nodes, self.inits, self.inputs = [], [], []
        self.shapes = {}  # onnx value name -> NHWC-free per-sample shape [C, H, W] or [C]
        self.count = 0

    def fresh(self, base):
        self.count += 1
        return f"{base}__{self.count}"

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, shape, name, **attrs):
        out = self.fresh(name)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def w(self, group, layer):
        return self.weights.get((group, layer), {})

    # value: (onnx name, pending pads [top, left, bottom, right])
    def model(self, cfg, inputs, group):
        c = cfg["config"]
        values = {}
        if cfg["class_name"] == "Sequential":
            raise SystemExit("Sequential models are not handled by this converter")
        in_refs = endpoints(c["input_layers"])
        for layer in c["layers"]:
            if layer["class_name"] == "InputLayer":
                ref = (layer["name"], 0, 0)
                if inputs is None:
                    lc = layer["config"]
                    _, h, w_, ch = lc.get("batch_shape") or lc["batch_input_shape"]
                    self.inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", ch, h, w_]))
                    self.shapes["input"] = [ch, h, w_]
                    values[ref] = ("input", [0, 0, 0, 0])
                else:
                    values[ref] = inputs[in_refs.index(ref)]
        for layer in c["layers"]:
            if layer["class_name"] == "InputLayer":
                continue
            for n, inbound in enumerate(layer["inbound_nodes"]):
                args = [values[r] for r in tensor_refs(inbound)]
                outs = self.layer(layer, args, group)
                for t, v in enumerate(outs):
                    values[(layer["name"], n, t)] = v
        return [values[r] for r in endpoints(c["output_layers"])]

    def layer(self, layer, args, group):
        cls, name, lc = layer["class_name"], layer["name"], layer["config"]
        if cls in ("Functional", "Model"):
            return self.model(layer, args, group or name)
        g = group or name
        wts = self.w(g, name)
        x, pads = args[0]
        shape = self.shapes[x]
        if cls == "ZeroPadding2D":
            (t, b), (l, r) = lc["padding"]
            return [(x, [pads[0] + t, pads[1] + l, pads[2] + b, pads[3] + r])]
        assert pads == [0, 0, 0, 0] or cls in ("Conv2D", "DepthwiseConv2D"), f"{name}: padded input"
        act = lc.get("activation", "linear")
        if cls in ("Conv2D", "DepthwiseConv2D"):
            k = wts.get("kernel", wts.get("depthwise_kernel"))
            if cls == "Conv2D":
                weight = k.transpose(3, 2, 0, 1)  # HWIO -> OIHW
                group_count = lc.get("groups", 1)
            else:
                kh, kw, ch, m = k.shape
                weight = k.transpose(2, 3, 0, 1).reshape(ch * m, 1, kh, kw)  # c*M + m
                group_count = ch
            ins = [x, self.init(name + ".W", weight)]
            if lc.get("use_bias", True):
                ins.append(self.init(name + ".B", wts["bias"]))
            sh, sw = lc["strides"]
            attrs = dict(kernel_shape=list(weight.shape[2:]), strides=[sh, sw], group=group_count,
                         dilations=list(lc.get("dilation_rate", [1, 1])))
            H, W = shape[1] + pads[0] + pads[2], shape[2] + pads[1] + pads[3]
            if lc["padding"] == "same":
                assert pads == [0, 0, 0, 0], f"{name}: padding then same"
                attrs["auto_pad"] = "SAME_UPPER"
                oh, ow = -(-H // sh), -(-W // sw)
            else:
                attrs["pads"] = [pads[0], pads[1], pads[2], pads[3]]
                oh, ow = (H - weight.shape[2]) // sh + 1, (W - weight.shape[3]) // sw + 1
            y = self.node("Conv", ins, [weight.shape[0], oh, ow], name, **attrs)
            return [(self.activation(y, act, name), [0, 0, 0, 0])]
        if cls == "BatchNormalization":
            ch = shape[0]
            ins = [x, self.init(name + ".g", wts.get("gamma", np.ones(ch))),
                   self.init(name + ".b", wts.get("beta", np.zeros(ch))),
                   self.init(name + ".m", wts["moving_mean"]), self.init(name + ".v", wts["moving_variance"])]
            return [(self.node("BatchNormalization", ins, shape, name, epsilon=lc["epsilon"]), [0, 0, 0, 0])]
        if cls == "ReLU":
            return [(self.activation(x, "relu6" if lc.get("max_value") == 6 else "relu", name), [0, 0, 0, 0])]
        if cls == "Activation":
            return [(self.activation(x, lc["activation"], name), [0, 0, 0, 0])]
        if cls == "Add":
            y = args[0][0]
            for other, _ in args[1:]:
                y = self.node("Add", [y, other], shape, name)
            return [(y, [0, 0, 0, 0])]
        if cls == "GlobalAveragePooling2D":
            p = self.node("GlobalAveragePool", [x], [shape[0], 1, 1], name)
            return [(self.node("Flatten", [p], [shape[0]], name, axis=1), [0, 0, 0, 0])]
        if cls == "Dropout":
            return [args[0]]
        if cls == "Dense":
            ins = [x, self.init(name + ".W", wts["kernel"])]
            if lc.get("use_bias", True):
                ins.append(self.init(name + ".B", wts["bias"]))
            y = self.node("Gemm", ins, [lc["units"]], name)
            self.last_dense = (x, y)
            return [(self.activation(y, act, name), [0, 0, 0, 0])]
        raise SystemExit(f"{name}: layer type {cls} is not handled by this converter")

    def activation(self, x, act, name):
        if act == "linear":
            return x
        if act == "relu":
            return self.node("Relu", [x], self.shapes[x], name + "_relu")
        if act == "relu6":
            lo = self.init(self.fresh("zero"), np.array(0, dtype=np.float32))
            hi = self.init(self.fresh("six"), np.array(6, dtype=np.float32))
            return self.node("Clip", [x, lo, hi], self.shapes[x], name + "_relu6")
        if act == "softmax":
            return self.node("Softmax", [x], self.shapes[x], name + "_softmax", axis=1)
        raise SystemExit(f"{name}: activation {act} is not handled by this converter")


def convert(src, dst):
    with h5py.File(src, "r") as h5:
        cfg = h5.attrs["model_config"]
        cfg = json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg)
        conv = Converter(h5)
        conv.last_dense = None
        conv.model(cfg, None, None)
    if conv.last_dense is None:
        raise SystemExit("no Dense layer: cannot name logits/features outputs")
    features, logits = conv.last_dense
    for n in conv.nodes:  # rename the two outputs
        n.output[:] = ["logits" if o == logits else "features" if o == features else o for o in n.output]
        n.input[:] = ["logits" if i == logits else "features" if i == features else i for i in n.input]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", conv.shapes[logits][0]]),
               helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", conv.shapes[features][0]])]
    # Drop nodes nothing needs (the final softmax).
    needed, keep = {"logits", "features"}, []
    for n in reversed(conv.nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(n.input)
    graph = helper.make_graph(list(reversed(keep)), "keras_h5", conv.inputs, outputs, conv.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="h5_to_onnx.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    convert(sys.argv[1], sys.argv[2])
