#!/usr/bin/env python3
"""Makes the int8 test model with onnxruntime's own static quantizer, and onnxruntime int8 goldens.

Usage: make_qdq.py OUT_DIR [--variant u8s8_channel|s8s8_tensor]

The float model is the shared MobileNetV2 (../shared/assets, or FRAMEPIPE_ASSETS). Calibration data:
every 8th frame of each shared video, whole frame resized to 224x224 bilinear (swscale through PyAV,
as framepipe scales), RGB, x / 127.5 - 1, NCHW. Calibration method: MinMax (quantize_static's default).
Variants:
  u8s8_reduced  as u8s8_channel, with reduce_range (7-bit weights: exact on AVX2 without VNNI)
  u8s8_channel  QUInt8 activations (asymmetric), QInt8 weights per output channel (symmetric)
  s8s8_tensor   QInt8 activations (asymmetric), QInt8 weights per tensor (symmetric)
Writes OUT_DIR/mobilenet_v2_VARIANT.qdq.onnx once (skipped when it already exists: the caller
caches OUT_DIR under .cache/), then, every run, the goldens of that model:
  VARIANT.images.f32 / VARIANT.images_logits.f32   the shared images (decode as decode_images.py;
                                                    also as images.npy for `framepipe bench --input`)
  VARIANT.slideshow.f32 / VARIANT.slideshow_logits.f32 / VARIANT.slideshow_features.f32
                                                    every frame of slideshow_dev.mp4
  VARIANT.images_reference.f32 / VARIANT.slideshow_reference{,_features}.f32
                                                    the same through the literal QDQ graph (no
                                                    optimisation: float ops between Q/DQ pairs)
"""
import glob
import os
import sys

import av
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

ASSETS = os.environ.get("FRAMEPIPE_ASSETS") or os.path.join(os.path.dirname(__file__), "../../../../shared/assets")
FLOAT_MODEL = os.path.join(ASSETS, "models/mobilenet_v2_1.0_224_imagenet.onnx")
IMAGES = ["cat.bmp", "bird.bmp", "grace_hopper.bmp", "dragonfly.bmp", "kite_and_cold.jpg"]
VARIANTS = {
    # reduce_range: 7-bit weights, so that u8 x s8 pair sums fit in int16 on AVX2 without VNNI
    # (onnxruntime's advice for such CPUs; without it onnxruntime's own AVX2 kernels saturate).
    "u8s8_reduced": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True),
    "u8s8_channel": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True),
    "s8s8_tensor": dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False),
}


def to_tensor(frame):
    rgb = frame.reformat(width=224, height=224, format="rgb24", interpolation="BILINEAR").to_ndarray()
    return (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


def frames(path, every=1):
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                yield to_tensor(frame)


class Reader(CalibrationDataReader):
    def __init__(self):
        videos = sorted(glob.glob(os.path.join(ASSETS, "videos/*.mp4")))
        self.data = iter([f[None] for v in videos for f in frames(v, every=8)])

    def get_next(self):
        x = next(self.data, None)
        return None if x is None else {"input": x}


def run(session, x, batch=16):
    logits, features = [], []
    for i in range(0, len(x), batch):
        out = session.run(["logits", "features"], {"input": x[i:i + batch]})
        logits.append(out[0])
        features.append(out[1].reshape(len(out[1]), -1))
    return np.concatenate(logits), np.concatenate(features)


def main():
    out = sys.argv[1]
    variant = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else "u8s8_reduced"
    os.makedirs(out, exist_ok=True)
    model = os.path.join(out, f"mobilenet_v2_{variant}.qdq.onnx")
    if not os.path.exists(model):
        tmp = model + ".tmp"
        quantize_static(FLOAT_MODEL, tmp, Reader(), quant_format=QuantFormat.QDQ, **VARIANTS[variant])
        os.replace(tmp, model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    # The QDQ semantics computed literally: no graph optimisation, so onnxruntime runs each
    # DequantizeLinear -> float op -> QuantizeLinear as written (float math, no int8 kernel and
    # hence no int16 saturation): the reference both int8 runtimes are measured against.
    literal = ort.SessionOptions()
    literal.intra_op_num_threads = 2
    literal.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(model, literal, providers=["CPUExecutionProvider"])
    images = []
    for name in IMAGES:
        with av.open(os.path.join(ASSETS, "images", name)) as container:
            images.append(to_tensor(next(container.decode(video=0))))
    images = np.ascontiguousarray(np.stack(images), dtype=np.float32)
    images.tofile(os.path.join(out, f"{variant}.images.f32"))
    np.save(os.path.join(out, "images.npy"), images)
    run(session, images)[0].astype(np.float32).tofile(os.path.join(out, f"{variant}.images_logits.f32"))
    run(reference, images)[0].astype(np.float32).tofile(os.path.join(out, f"{variant}.images_reference.f32"))
    slides = np.ascontiguousarray(np.stack(list(frames(os.path.join(ASSETS, "videos/slideshow_dev.mp4")))), dtype=np.float32)
    slides.tofile(os.path.join(out, f"{variant}.slideshow.f32"))
    logits, features = run(session, slides)
    logits.astype(np.float32).tofile(os.path.join(out, f"{variant}.slideshow_logits.f32"))
    features.astype(np.float32).tofile(os.path.join(out, f"{variant}.slideshow_features.f32"))
    logits, features = run(reference, slides)
    logits.astype(np.float32).tofile(os.path.join(out, f"{variant}.slideshow_reference.f32"))
    features.astype(np.float32).tofile(os.path.join(out, f"{variant}.slideshow_reference_features.f32"))
    print(model)


if __name__ == "__main__":
    main()
