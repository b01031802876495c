#!/usr/bin/env python3
"""The Python peer framepipe is measured against: PyAV decode, resize through PyAV's swscale
(bilinear, to RGB 224x224), [-1, 1] normalisation in numpy, onnxruntime in batches of 16.
Prints one line: frames, seconds, frames/s. Usage: python_peer.py MODEL VIDEO [--threads 2] [--batch 16]"""
import argparse
import time

import av
import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("video")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: np.zeros((a.batch, 3, a.size, a.size), np.float32)})  # warm-up

    t0 = time.perf_counter()
    n = 0
    batch = []
    top = []
    with av.open(a.video) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for frame in c.decode(s):
            rgb = frame.to_ndarray(width=a.size, height=a.size, format="rgb24",
                                   interpolation="BILINEAR")
            batch.append(rgb.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0)
            if len(batch) == a.batch:
                out = sess.run(None, {name: np.stack(batch)})
                top.extend(out[0].argmax(1).tolist())
                n += len(batch)
                batch = []
    if batch:
        out = sess.run(None, {name: np.stack(batch)})
        top.extend(out[0].argmax(1).tolist())
        n += len(batch)
    dt = time.perf_counter() - t0
    print(f"python-peer frames={n} seconds={dt:.3f} fps={n / dt:.1f}")


if __name__ == "__main__":
    main()
