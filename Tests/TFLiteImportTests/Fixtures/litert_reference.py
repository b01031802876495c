#!/usr/bin/env python3
"""LiteRT (ai-edge-litert) reference outputs for framepipe's TFLite tests, as JSON on stdout.

    litert_reference.py tensor MODEL.tflite SEED      # a float32 input of uniform(-1, 1) values
        -> {"input": [...NHWC floats...], "output": [...]}   (the model's output, dequantized)
    litert_reference.py images MODEL.tflite LABELS FILE...   # images or videos, every frame
        -> one object per frame: {"input", "frame", "top1", "label", "probs": {index: p} (top 5)}

Images and frames are decoded and resized to the model's input size (whole frame, bilinear) by
PyAV (FFmpeg's swscale) into RGB uint8, then fed as the model's input: uint8 as is (the model's
input quantization, scale 1/128 zero point 128 here, does the [-1, 1] scaling), float32 as
x / 127.5 - 1. Quantized outputs are dequantized with their scale and zero point.
"""
import json
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def interpreter(path):
    it = Interpreter(model_path=path, num_threads=2)
    it.allocate_tensors()
    return it, it.get_input_details()[0], it.get_output_details()[0]


def dequantized(it, out):
    y = it.get_tensor(out["index"]).astype(np.float64)
    scale, zero = out["quantization"]
    return (y - zero) * scale if scale else y


def tensor(path, seed):
    it, inp, out = interpreter(path)
    x = np.random.default_rng(int(seed)).uniform(-1, 1, inp["shape"]).astype(np.float32)
    it.set_tensor(inp["index"], x)
    it.invoke()
    print(json.dumps({"input": x.ravel().tolist(), "output": dequantized(it, out).ravel().tolist()}))


def images(path, labels_path, files):
    import av
    labels = open(labels_path).read().splitlines()
    it, inp, out = interpreter(path)
    _, h, w, _ = inp["shape"]
    for name in files:
        with av.open(name) as container:
            for index, frame in enumerate(container.decode(video=0)):
                rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
                x = rgb[None].astype(np.uint8) if inp["dtype"] == np.uint8 else (rgb[None] / 127.5 - 1).astype(np.float32)
                it.set_tensor(inp["index"], x)
                it.invoke()
                p = dequantized(it, out).ravel()
                top = np.argsort(-p)[:5]
                print(json.dumps({"input": name, "frame": index, "top1": int(top[0]), "label": labels[top[0]],
                                  "probs": {str(int(i)): float(p[i]) for i in top}}))


if __name__ == "__main__":
    if sys.argv[1] == "tensor":
        tensor(sys.argv[2], sys.argv[3])
    else:
        images(sys.argv[2], sys.argv[3], sys.argv[4:])
