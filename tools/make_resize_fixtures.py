#!/usr/bin/python3
"""Write tests/fixtures/resize_<in>_<out>.bin: torchvision Resize((out,out)) on PIL images.

Run with Debian's interpreter (it has torch, torchvision and PIL 9.4):
    /usr/bin/python3 tools/make_resize_fixtures.py

File format (all integers uint32 little-endian):
    magic 'CLRS', version 1, c, in_h, in_w, out_h, out_w,
    source planes  uint8 (c, in_h, in_w),
    resized planes uint8 (c, out_h, out_w).
"""
import os
import struct

import numpy as np
from PIL import Image
import torchvision.transforms as T

VERSION = 1
# (channels, in, out, seed): 28->32 gray (Fashion-MNIST at CIFAR size), the seed's 32->224,
# a 2x upscale and one non-integer downscale (PIL widens the filter).
CASES = [(1, 28, 32, 1), (3, 32, 224, 2), (3, 32, 64, 3), (3, 64, 24, 4)]


def make_case(c, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, size=(c, n_in, n_in), dtype=np.uint8)  # (C, H, W)
    if c == 1:
        img = Image.fromarray(src[0], mode="L")
    else:
        img = Image.fromarray(np.ascontiguousarray(src.transpose(1, 2, 0)), mode="RGB")
    out = np.asarray(T.Resize((n_out, n_out))(img))
    out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)  # (C, H, W)
    assert out.shape == (c, n_out, n_out) and out.dtype == np.uint8
    header = b"CLRS" + struct.pack("<6I", VERSION, c, n_in, n_in, n_out, n_out)
    return header + src.tobytes() + np.ascontiguousarray(out).tobytes()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outdir = os.path.join(root, "tests", "fixtures")
    os.makedirs(outdir, exist_ok=True)
    for c, n_in, n_out, seed in CASES:
        path = os.path.join(outdir, "resize_%d_%d.bin" % (n_in, n_out))
        data = make_case(c, n_in, n_out, seed)
        with open(path, "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (os.path.relpath(path, root), len(data)))


if __name__ == "__main__":
    main()
