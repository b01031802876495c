#!/usr/bin/env python3
"""onnxruntime side of bench/engine-vs-onnxruntime: images/s of one model on random input.

Usage: ort_bench.py MODEL BATCH THREADS ITERATIONS WARMUP   (prints one JSON line)
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model, batch, threads, iterations, warmup = sys.argv[1], *map(int, sys.argv[2:6])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [batch] + [d if isinstance(d, int) else None for d in inp.shape[1:]]
    # Symbolic spatial sizes take the other spatial size, or 224 (as framepipe does).
    if shape[2] is None or shape[3] is None:
        side = shape[2] or shape[3] or 224
        shape[2], shape[3] = shape[2] or side, shape[3] or side
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    times = []
    for i in range(warmup + iterations):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    median = float(np.median(times))
    print(json.dumps({"engine": "onnxruntime " + ort.__version__, "batch": batch, "threads": threads,
                      "median_ms": round(median, 2), "images_per_s": round(batch / median * 1000, 2)}))


if __name__ == "__main__":
    main()
