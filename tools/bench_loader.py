#!/usr/bin/python3
"""Image-folder loader throughput: cltrain's (tests/bench/loader_bench.c) beside torchvision's
DataLoader(num_workers=N) on the same folder, in the same run, at 224 with the eval pipeline
(Resize(256) + CenterCrop(224)) and the training one (RandomResizedCrop(224) + flip), both
with ToTensor + Normalize. `make bench-loader` builds and runs it.

Usage: tools/bench_loader.py [--bin build/bench/loader_bench] [--images 256] [--workers 1,2]
                             [--epochs 2] [--keep DIR]
The folder: Fashion-MNIST images upscaled to 500x375 (the hymenoptera photos' usual size),
colourised from three images, saved as JPEG quality 90 in two classes.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_image_fixtures as fx  # noqa: E402

NORM = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PIPELINES = {
    "eval": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), NORM]),
    "rrc-flip": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                           NORM]),
}


def write_folder(root, n):
    for split in ("train", "val"):
        for i in range(n if split == "train" else 2):
            d = os.path.join(root, split, f"c{i % 2}")
            os.makedirs(d, exist_ok=True)
            fx.rgb(i, 500, 375).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)


def torch_rate(root, pipeline, workers, epochs):
    ds = torchvision.datasets.ImageFolder(os.path.join(root, "train"), PIPELINES[pipeline])
    dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers)
    t0, n = time.perf_counter(), 0
    for _ in range(epochs):
        for x, _ in dl:
            n += x.shape[0]
    return n / (time.perf_counter() - t0)


def cltrain_rate(binary, root, pipeline, workers, epochs):
    aug = "rrc-flip" if pipeline == "rrc-flip" else "none"
    out = subprocess.run([binary, root, str(workers), aug, "256", "224", "32", str(epochs)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout.split()
    return float(out[out.index("images_per_s") + 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bench/loader_bench")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--keep")
    a = ap.parse_args()
    torch.set_num_threads(1)  # DataLoader workers each use one thread, as cltrain's do
    root = a.keep or tempfile.mkdtemp(prefix="cltrain_bench_loader_")
    if not os.path.isdir(os.path.join(root, "train")):
        write_folder(root, a.images)
    print(f"{a.images} JPEGs 500x375 q90, batch 32, {a.epochs} epochs, images/s")
    print("pipeline   workers   cltrain   torchvision   ratio")
    for pipeline in PIPELINES:
        for w in (int(v) for v in a.workers.split(",")):
            c = cltrain_rate(a.bin, root, pipeline, w, a.epochs)
            t = torch_rate(root, pipeline, w, a.epochs)
            print(f"{pipeline:9s}  {w:7d}  {c:8.1f}  {t:12.1f}  {c / t:6.2f}")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
