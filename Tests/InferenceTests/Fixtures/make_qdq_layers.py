#!/usr/bin/env python3
"""Small QDQ models written node by node with the onnx package (fixed seed), and onnxruntime's
int8 results on them: the smallest cases for checking an int8 runtime against onnxruntime.

Usage: make_qdq_layers.py OUT_DIR

Each case CASE writes OUT_DIR/CASE.onnx (input "input" [N, C, H, W] float32, output "features"),
its input as CASE.input.f32 (raw float32, NCHW) and CASE.input.npy (for `framepipe bench --input`),
and onnxruntime's outputs as raw float32:
  CASE.ort.f32      default optimisation (QDQ fused into QLinearConv / QLinearAdd / ...: int8 kernels)
  CASE.literal.f32  optimisation off (each DequantizeLinear -> float op -> QuantizeLinear as written)
and OUT_DIR/cases.txt: one line per case, "CASE OUTPUT_SCALE OUTPUT_ZERO_POINT".

Cases (weights 7-bit, |w| <= 63, so that u8 x s8 pair sums fit int16 on CPUs without VNNI, where
onnxruntime's own kernels would otherwise saturate):
  first_conv    image-like input (p / 127.5 - 1: every value near a rounding tie), u8 zero point
                128, 3x3 stride 2 with TF-SAME padding (0 top/left, 1 bottom/right), 3 -> 16
                channels, int32 bias, output zero point 0 and the pair's range as ReLU6
  first_conv_odd  the same with an asymmetric output (odd zero point), no activation
  pointwise     1x1, 24 -> 40 channels, odd input and output zero points (unpadded: the input zero
                point may be folded into the bias)
  depthwise     3x3 depthwise, pads 1, input zero point 0, ReLU6-like output range
  residual      1x1 projection with its own QDQ pair, then Add with the block input (QLinearAdd)
  pool_gemm     global average pool, flatten, Gemm 32 -> 10, quantized logits
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BATCH = 4


class Builder:
    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base, array):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(array, n))
        return n

    def qdq(self, x, scale, zero, dtype=np.uint8):
        """QuantizeLinear -> DequantizeLinear of activation x; returns the DequantizeLinear output."""
        s = self.const("scale", np.array(scale, np.float32))
        z = self.const("zp", np.array(zero, dtype))
        q, d = self.name(x + "_q"), self.name(x + "_dq")
        self.nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [q]))
        self.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [d]))
        return d

    def conv(self, x, x_scale, cin, cout, k, stride=1, pads=(0, 0, 0, 0), group=1):
        """DQ(int8 weight, per output channel) and DQ(int32 bias) into a Conv; returns its output."""
        w = self.rng.integers(-63, 64, size=(cout, cin // group, k, k)).astype(np.int8)
        w_scale = (self.rng.uniform(0.5, 1.5, size=cout) * 0.02 / max(1, k)).astype(np.float32)
        b_scale = (np.float32(x_scale) * w_scale).astype(np.float32)
        b = self.rng.integers(-3000, 3000, size=cout).astype(np.int32)
        wq, ws, wz = self.const("w", w), self.const("w_scale", w_scale), self.const("w_zp", np.zeros(cout, np.int8))
        bq, bs, bz = self.const("b", b), self.const("b_scale", b_scale), self.const("b_zp", np.zeros(cout, np.int32))
        wd, bd = self.name("w_dq"), self.name("b_dq")
        self.nodes.append(helper.make_node("DequantizeLinear", [wq, ws, wz], [wd], axis=0))
        self.nodes.append(helper.make_node("DequantizeLinear", [bq, bs, bz], [bd], axis=0))
        y = self.name("conv")
        self.nodes.append(helper.make_node("Conv", [x, wd, bd], [y], kernel_shape=[k, k], strides=[stride, stride],
                                           pads=list(pads), group=group))
        return y

    def model(self, input_shape, output, output_shape):
        # The last DequantizeLinear writes the graph output, as quantize_static's models do.
        for n in self.nodes:
            n.output[:] = ["features" if o == output else o for o in n.output]
        graph = helper.make_graph(
            self.nodes, "qdq_case",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None] + list(input_shape))],
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None] + list(output_shape))],
            self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def image_like(rng, shape):
    return (rng.integers(0, 256, size=shape).astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def first_conv(rng, odd):
    b = Builder(rng)
    x_scale = np.float32(2 / 255)
    x = b.qdq("input", x_scale, 128)
    y = b.conv(x, x_scale, 3, 16, 3, stride=2, pads=(0, 0, 1, 1))
    out_scale, out_zp = (np.float32(0.031), 117) if odd else (np.float32(6 / 255), 0)
    y = b.qdq(y, out_scale, out_zp)
    return b.model([3, 32, 32], y, [16, 16, 16]), image_like(rng, (BATCH, 3, 32, 32)), out_scale, out_zp


def pointwise(rng):
    b = Builder(rng)
    x_scale, x_zp = np.float32(0.05), 119
    x = b.qdq("input", x_scale, x_zp)
    y = b.conv(x, x_scale, 24, 40, 1)
    out_scale, out_zp = np.float32(0.07), 131
    y = b.qdq(y, out_scale, out_zp)
    inp = rng.uniform(-6, 6, size=(BATCH, 24, 14, 14)).astype(np.float32)
    return b.model([24, 14, 14], y, [40, 14, 14]), inp, out_scale, out_zp


def depthwise(rng):
    b = Builder(rng)
    x_scale = np.float32(6 / 255)
    x = b.qdq("input", x_scale, 0)
    y = b.conv(x, x_scale, 32, 32, 3, pads=(1, 1, 1, 1), group=32)
    out_scale = np.float32(6 / 255)
    y = b.qdq(y, out_scale, 0)
    inp = rng.uniform(0, 6, size=(BATCH, 32, 14, 14)).astype(np.float32)
    return b.model([32, 14, 14], y, [32, 14, 14]), inp, out_scale, 0


def residual(rng):
    b = Builder(rng)
    x_scale, x_zp = np.float32(0.06), 125
    x = b.qdq("input", x_scale, x_zp)
    # expand 1x1 (ReLU6 range), project 1x1 with its own pair, then the residual Add.
    e = b.qdq(b.conv(x, x_scale, 16, 48, 1), np.float32(6 / 255), 0)
    p = b.qdq(b.conv(e, np.float32(6 / 255), 48, 16, 1), np.float32(0.045), 121)
    s = b.name("add")
    b.nodes.append(helper.make_node("Add", [p, x], [s]))
    out_scale, out_zp = np.float32(0.08), 127
    y = b.qdq(s, out_scale, out_zp)
    inp = rng.uniform(-7, 7, size=(BATCH, 16, 14, 14)).astype(np.float32)
    return b.model([16, 14, 14], y, [16, 14, 14]), inp, out_scale, out_zp


def pool_gemm(rng):
    b = Builder(rng)
    x_scale = np.float32(6 / 255)
    x = b.qdq("input", x_scale, 0)
    g = b.name("gap")
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], [g]))
    g = b.qdq(g, np.float32(0.02), 3)
    f = b.name("flat")
    b.nodes.append(helper.make_node("Flatten", [g], [f], axis=1))
    w = rng.integers(-63, 64, size=(10, 32)).astype(np.int8)
    w_scale = np.float32(0.01)
    bias = rng.integers(-2000, 2000, size=10).astype(np.int32)
    wd, bd = b.name("w_dq"), b.name("b_dq")
    b.nodes.append(helper.make_node("DequantizeLinear", [b.const("w", w), b.const("ws", w_scale), b.const("wz", np.int8(0))], [wd]))
    b.nodes.append(helper.make_node("DequantizeLinear", [b.const("b", bias), b.const("bs", np.float32(0.02) * w_scale),
                                                          b.const("bz", np.int32(0))], [bd]))
    y = b.name("gemm")
    b.nodes.append(helper.make_node("Gemm", [f, wd, bd], [y], transB=1))
    out_scale, out_zp = np.float32(0.05), 129
    y = b.qdq(y, out_scale, out_zp)
    inp = rng.uniform(0, 6, size=(BATCH, 32, 7, 7)).astype(np.float32)
    return b.model([32, 7, 7], y, [10]), inp, out_scale, out_zp


CASES = {
    "first_conv": lambda rng: first_conv(rng, odd=False),
    "first_conv_odd": lambda rng: first_conv(rng, odd=True),
    "pointwise": pointwise,
    "depthwise": depthwise,
    "residual": residual,
    "pool_gemm": pool_gemm,
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    lines = []
    for i, (case, make) in enumerate(CASES.items()):
        model, inp, scale, zp = make(np.random.default_rng(1200 + i))
        path = os.path.join(out, f"{case}.onnx")
        onnx.save(model, path)
        np.save(os.path.join(out, f"{case}.input.npy"), inp)
        inp.tofile(os.path.join(out, f"{case}.input.f32"))
        for tag, level in [("ort", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                           ("literal", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.graph_optimization_level = level
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            y = session.run(["features"], {"input": inp})[0].astype(np.float32)
            y.tofile(os.path.join(out, f"{case}.{tag}.f32"))
        lines.append(f"{case} {float(scale)!r} {zp}")
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
