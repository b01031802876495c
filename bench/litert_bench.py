#!/usr/bin/env python3
"""LiteRT (ai-edge-litert, XNNPACK) images/s on a .tflite model: batch-1 invokes (the model's input
is [1, H, W, C]), THREADS threads, random input of the model's dtype; prints one JSON line like
`framepipe bench --json`.

    litert_bench.py MODEL THREADS IMAGES WARMUP
"""
import json
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

model, threads, images, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
it = Interpreter(model_path=model, num_threads=threads)
it.allocate_tensors()
inp = it.get_input_details()[0]
rng = np.random.default_rng(0)
if inp["dtype"] == np.float32:
    x = rng.uniform(-1, 1, inp["shape"]).astype(np.float32)
else:
    info = np.iinfo(inp["dtype"])
    x = rng.integers(info.min, info.max, inp["shape"], endpoint=True).astype(inp["dtype"])
for _ in range(warmup):
    it.set_tensor(inp["index"], x)
    it.invoke()
times = []
for _ in range(images):
    t = time.perf_counter()
    it.set_tensor(inp["index"], x)
    it.invoke()
    times.append(time.perf_counter() - t)
median = sorted(times)[len(times) // 2]
print(json.dumps({"images_per_s": 1.0 / median, "threads": threads, "dtype": str(np.dtype(inp["dtype"]))}))
