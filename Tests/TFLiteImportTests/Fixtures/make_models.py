#!/usr/bin/env python3
"""Writes the tiny .tflite fixtures of TFLiteImportTests (and the fuzz seeds), with the `tflite`
package's flatbuffer builders, and checks each runs in LiteRT.

    .venv/bin/python Tests/TFLiteImportTests/Fixtures/make_models.py   # regenerates *.tflite here

tiny_float.tflite:   float32 [1, 8, 8, 3] -> CONV_2D 3x3/2 SAME (even size: pads 0 top/left, 1 bottom/right) RELU6
                     -> DEPTHWISE_CONV_2D 3x3/1 SAME x2 RELU -> CONV_2D 1x1 -> ADD (residual) RELU6
                     -> AVERAGE_POOL_2D 4x4 VALID (global) -> RESHAPE [1, 8] -> FULLY_CONNECTED 5 -> SOFTMAX
tiny_dequant.tflite: the same graph with int8 per-channel conv/depthwise filters, a uint8 per-tensor
                     FC weight (zero point 117) and a float16 bias, each through DEQUANTIZE; MEAN over
                     [1, 2] instead of AVERAGE_POOL_2D.
shared_weights.tflite: hostile: 1200 CONV_2D 1x1 in a chain, all reading one 64x64 float filter
                     (16 KiB stored, 4.9 M weights once expanded per operator); the importer must refuse it.
"""
import os
import sys

import flatbuffers
import numpy as np
import tflite

HERE = os.path.dirname(os.path.abspath(__file__))
ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, FULLY_CONNECTED = 0, 1, 3, 4, 6, 9
RESHAPE, SOFTMAX, MEAN = 22, 25, 40
FLOAT32, FLOAT16, INT32, UINT8, INT8 = 0, 1, 2, 3, 9
SAME, VALID = 0, 1
NONE, RELU, RELU6 = 0, 1, 3


class ModelBuilder:
    def __init__(self):
        self.tensors = []   # (name, shape, type, buffer index, quant or None)
        self.buffers = [b""]
        self.ops = []       # (code, inputs, outputs, options type, options fn)
        self.codes = []

    def tensor(self, name, shape, ttype=FLOAT32, data=None, quant=None):
        buf = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append((name, list(shape), ttype, buf, quant))
        return len(self.tensors) - 1

    def op(self, code, inputs, outputs, opt_type=0, options=None):
        if code not in self.codes:
            self.codes.append(code)
        self.ops.append((self.codes.index(code), inputs, outputs, opt_type, options))

    def build(self, inputs, outputs):
        b = flatbuffers.Builder(1024)

        def ivec(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependInt32(v)
            return b.EndVector()

        buffers = []
        for data in self.buffers:
            vec = b.CreateNumpyVector(np.frombuffer(data, dtype=np.uint8)) if data else None
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            buffers.append(tflite.BufferEnd(b))
        tensors = []
        for name, shape, ttype, buf, quant in self.tensors:
            n = b.CreateString(name)
            s = ivec(tflite.TensorStartShapeVector, shape)
            q = None
            if quant is not None:
                scale, zero, dim = quant
                sv = b.CreateNumpyVector(np.asarray(scale, dtype=np.float32))
                zv = b.CreateNumpyVector(np.asarray(zero, dtype=np.int64))
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, sv)
                tflite.QuantizationParametersAddZeroPoint(b, zv)
                tflite.QuantizationParametersAddQuantizedDimension(b, dim)
                q = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, s)
            tflite.TensorAddType(b, ttype)
            tflite.TensorAddBuffer(b, buf)
            tflite.TensorAddName(b, n)
            if q is not None:
                tflite.TensorAddQuantization(b, q)
            tensors.append(tflite.TensorEnd(b))
        ops = []
        for index, ins, outs, opt_type, options in self.ops:
            opt = options(b) if options else None
            iv = ivec(tflite.OperatorStartInputsVector, ins)
            ov = ivec(tflite.OperatorStartOutputsVector, outs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, index)
            tflite.OperatorAddInputs(b, iv)
            tflite.OperatorAddOutputs(b, ov)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, opt_type)
                tflite.OperatorAddBuiltinOptions(b, opt)
            ops.append(tflite.OperatorEnd(b))

        def tvec(start, items):
            start(b, len(items))
            for it in reversed(items):
                b.PrependUOffsetTRelative(it)
            return b.EndVector()

        tv = tvec(tflite.SubGraphStartTensorsVector, tensors)
        ov = tvec(tflite.SubGraphStartOperatorsVector, ops)
        gi = ivec(tflite.SubGraphStartInputsVector, inputs)
        go = ivec(tflite.SubGraphStartOutputsVector, outputs)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tv)
        tflite.SubGraphAddInputs(b, gi)
        tflite.SubGraphAddOutputs(b, go)
        tflite.SubGraphAddOperators(b, ov)
        graph = tflite.SubGraphEnd(b)
        codes = []
        for code in self.codes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            codes.append(tflite.OperatorCodeEnd(b))
        cv = tvec(tflite.ModelStartOperatorCodesVector, codes)
        sv = tvec(tflite.ModelStartSubgraphsVector, [graph])
        bv = tvec(tflite.ModelStartBuffersVector, buffers)
        desc = b.CreateString("framepipe test fixture")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, cv)
        tflite.ModelAddSubgraphs(b, sv)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bv)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def conv_options(padding, stride, act):
    def make(b):
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, padding)
        tflite.Conv2DOptionsAddStrideW(b, stride)
        tflite.Conv2DOptionsAddStrideH(b, stride)
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        return tflite.Conv2DOptionsEnd(b)
    return make


def dw_options(padding, stride, mult, act):
    def make(b):
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(b, padding)
        tflite.DepthwiseConv2DOptionsAddStrideW(b, stride)
        tflite.DepthwiseConv2DOptionsAddStrideH(b, stride)
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, mult)
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
        return tflite.DepthwiseConv2DOptionsEnd(b)
    return make


def add_options(act):
    def make(b):
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, act)
        return tflite.AddOptionsEnd(b)
    return make


def pool_options(size):
    def make(b):
        tflite.Pool2DOptionsStart(b)
        tflite.Pool2DOptionsAddPadding(b, VALID)
        tflite.Pool2DOptionsAddStrideW(b, 1)
        tflite.Pool2DOptionsAddStrideH(b, 1)
        tflite.Pool2DOptionsAddFilterWidth(b, size)
        tflite.Pool2DOptionsAddFilterHeight(b, size)
        return tflite.Pool2DOptionsEnd(b)
    return make


def reshape_options(shape):
    def make(b):
        tflite.ReshapeOptionsStartNewShapeVector(b, len(shape))
        for v in reversed(shape):
            b.PrependInt32(v)
        vec = b.EndVector()
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, vec)
        return tflite.ReshapeOptionsEnd(b)
    return make


def softmax_options(b):
    tflite.SoftmaxOptionsStart(b)
    tflite.SoftmaxOptionsAddBeta(b, 1.0)
    return tflite.SoftmaxOptionsEnd(b)


def fc_options(b):
    tflite.FullyConnectedOptionsStart(b)
    return tflite.FullyConnectedOptionsEnd(b)


def reducer_options(b):
    tflite.ReducerOptionsStart(b)
    tflite.ReducerOptionsAddKeepDims(b, False)
    return tflite.ReducerOptionsEnd(b)


def weights(rng):
    return {
        "conv1": rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32),      # OHWI
        "conv1_b": rng.normal(0, 0.1, 4).astype(np.float32),
        "dw": rng.normal(0, 0.5, (1, 3, 3, 8)).astype(np.float32),         # 1, H, W, C*M
        "dw_b": rng.normal(0, 0.1, 8).astype(np.float32),
        "pw": rng.normal(0, 0.5, (8, 1, 1, 8)).astype(np.float32),
        "pw_b": rng.normal(0, 0.1, 8).astype(np.float32),
        "fc": rng.normal(0, 0.5, (5, 8)).astype(np.float32),               # out, in
        "fc_b": rng.normal(0, 0.1, 5).astype(np.float32),
    }


def per_channel_int8(w, dim):
    axes = tuple(i for i in range(w.ndim) if i != dim)
    scale = np.abs(w).max(axis=axes) / 127.0
    shape = [1] * w.ndim
    shape[dim] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, (scale.astype(np.float32), np.zeros(len(scale), dtype=np.int64), dim)


def build(dequant):
    w = weights(np.random.default_rng(11))
    m = ModelBuilder()
    x = m.tensor("input", [1, 8, 8, 3])

    def const(name, array, how=None):
        """A float constant, or (dequant) a quantized/fp16 one followed by DEQUANTIZE."""
        if not dequant or how is None:
            return m.tensor(name, array.shape, FLOAT32, array)
        if how == "fp16":
            q = m.tensor(name + "_fp16", array.shape, FLOAT16, array.astype(np.float16))
        elif how == "u8":
            lo, hi = float(array.min()), float(array.max())
            scale = (hi - lo) / 255.0
            zero = int(round(-lo / scale))
            data = np.clip(np.round(array / scale) + zero, 0, 255).astype(np.uint8)
            q = m.tensor(name + "_u8", array.shape, UINT8, data, ([scale], [zero], 0))
        else:
            data, quant = per_channel_int8(array, how)
            q = m.tensor(name + "_i8", array.shape, INT8, data, quant)
        out = m.tensor(name, array.shape)
        m.op(DEQUANTIZE, [q], [out])
        return out

    f1 = const("conv1/filter", w["conv1"], 0)
    b1 = const("conv1/bias", w["conv1_b"])
    c1 = m.tensor("conv1", [1, 4, 4, 4])
    m.op(CONV_2D, [x, f1, b1], [c1], 1, conv_options(SAME, 2, RELU6))
    fd = const("dw/filter", w["dw"], 3)
    bd = const("dw/bias", w["dw_b"], "fp16")
    d = m.tensor("dw", [1, 4, 4, 8])
    m.op(DEPTHWISE_CONV_2D, [c1, fd, bd], [d], 2, dw_options(SAME, 1, 2, RELU))
    fp = const("pw/filter", w["pw"], 0)
    bp = const("pw/bias", w["pw_b"])
    p = m.tensor("pw", [1, 4, 4, 8])
    m.op(CONV_2D, [d, fp, bp], [p], 1, conv_options(VALID, 1, NONE))
    s = m.tensor("residual", [1, 4, 4, 8])
    m.op(ADD, [p, d], [s], 11, add_options(RELU6))
    if dequant:
        axes = m.tensor("mean/axes", [2], INT32, np.array([1, 2], dtype=np.int32))
        g = m.tensor("pool", [1, 8])
        m.op(MEAN, [s, axes], [g], 27, reducer_options)
        r = g
    else:
        g = m.tensor("pool", [1, 1, 1, 8])
        m.op(AVERAGE_POOL_2D, [s], [g], 5, pool_options(4))
        shape = m.tensor("reshape/shape", [2], INT32, np.array([1, 8], dtype=np.int32))
        r = m.tensor("flat", [1, 8])
        m.op(RESHAPE, [g, shape], [r], 17, reshape_options([1, 8]))
    fw = const("fc/weights", w["fc"], "u8")
    fb = const("fc/bias", w["fc_b"])
    lg = m.tensor("logits_fc", [1, 5])
    m.op(FULLY_CONNECTED, [r, fw, fb], [lg], 8, fc_options)
    out = m.tensor("probabilities", [1, 5])
    m.op(SOFTMAX, [lg], [out], 9, softmax_options)
    return m.build([x], [out])


def build_shared_weights():
    m = ModelBuilder()
    x = m.tensor("input", [1, 4, 4, 64])
    f = m.tensor("shared/filter", [64, 1, 1, 64], FLOAT32, np.full((64, 1, 1, 64), 0.01, dtype=np.float32))
    for i in range(1200):
        y = m.tensor("conv%d" % i, [1, 4, 4, 64])
        m.op(CONV_2D, [x, f], [y], 1, conv_options(VALID, 1, NONE))
        x = y
    return m.build([0], [x])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "shared_weights.tflite"), "wb") as f:
        f.write(build_shared_weights())
    from ai_edge_litert.interpreter import Interpreter
    for name, dequant in [("tiny_float.tflite", False), ("tiny_dequant.tflite", True)]:
        data = build(dequant)
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(data)
        it = Interpreter(model_path=path)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 8, 8, 3), dtype=np.float32))
        it.invoke()
        print(name, len(data), "bytes; LiteRT output on ones:", it.get_tensor(it.get_output_details()[0]["index"]).round(4),
              file=sys.stderr)


if __name__ == "__main__":
    main()
