#!/usr/bin/env python3
"""Decodes images for the real-model test: whole image resized to SIZE x SIZE (bilinear, FFmpeg's
swscale through PyAV), RGB, scaled x / 127.5 - 1, written as float32 NCHW (1 x 3 x SIZE x SIZE).

Usage: decode_images.py OUT_DIR SIZE IMAGE...   (writes OUT_DIR/<image file name>.f32)
"""
import os
import sys

import av
import numpy as np


def main():
    out, size, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    for path in paths:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
        rgb = frame.reformat(width=size, height=size, format="rgb24", interpolation="BILINEAR").to_ndarray()
        x = (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        np.ascontiguousarray(x, dtype=np.float32).tofile(os.path.join(out, os.path.basename(path) + ".f32"))


if __name__ == "__main__":
    main()
