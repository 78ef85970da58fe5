#!/usr/bin/python3
"""Image-folder parity: `cltrain eval` on a folder of JPEG/PNG/BMP/PPM files of odd sizes
against torchvision's ImageFolder + Resize(N) + CenterCrop(S) + ToTensor + Normalize(ImageNet)
+ resnet18 with the same weights.

Usage: tools/torch_folder_parity.py [--cltrain ./cltrain] [--device SPEC] [--keep DIR]
                                    [--image-size 32] [--resize 40] [--workers 2]

Checks: the predictions CSV lists ImageFolder(val).samples in order (path and label column),
and every image's logits are within LOGIT_TOL of the largest |logit| of PyTorch's. Files come
from tools/make_image_fixtures.py (Fashion-MNIST upscaled), spread over three classes.
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
import torchvision
import torchvision.transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_image_fixtures as fx  # noqa: E402

LOGIT_TOL = 1e-4   # max |diff| / max |logit| (float32, different summation orders)


def write_folder(root):
    """train/ and val/ with classes c0..c2; returns nothing (ImageFolder lists them)."""
    n = 0
    for kind in ("jpeg", "png", "bmp", "pnm"):
        for name, data in fx.KINDS[kind]():
            split = "train" if n % 4 == 3 else "val"
            d = os.path.join(root, split, f"c{n % 3}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, name.replace("_", " ", 1)), "wb") as f:
                f.write(data)  # a space in every name: the CSV must quote nothing wrongly
            n += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cltrain", default="./cltrain")
    ap.add_argument("--device", default=os.environ.get("CLTRAIN_DEVICE", "cpu"))
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--resize", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep")
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # PIL's note on P + tRNS: convert("RGB") drops alpha anyway
    work = a.keep or tempfile.mkdtemp(prefix="cltrain_folder_parity_")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    shutil.rmtree(data, ignore_errors=True)
    write_folder(data)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    weights = os.path.join(work, "w.pth")
    torch.save(model.state_dict(), weights)
    preds = os.path.join(work, "pred.csv")
    cmd = [a.cltrain, "eval", "--data", data, "--weights", weights, "--device", a.device,
           "--image-size", str(a.image_size), "--resize", str(a.resize), "--normalize",
           "imagenet", "--batch-size", "5", "--workers", str(a.workers), "--predictions", preds]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        print(f"folder parity: FAILED: {' '.join(cmd)} exited {r.returncode}")
        return 1
    tf = T.Compose([T.Resize(a.resize), T.CenterCrop(a.image_size), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = torchvision.datasets.ImageFolder(os.path.join(data, "val"), transform=tf)
    with open(preds, newline="") as f:
        rows = list(csv.reader(f))
    ok = rows[0][:4] == ["index", "path", "label", "pred"] and len(rows) - 1 == len(ds)
    worst = 0.0
    with torch.no_grad():
        for i, (x, label) in enumerate(ds):
            if not ok:
                break
            row = rows[i + 1]
            want = model(x[None])[0].numpy()
            got = np.array([float(v) for v in row[4:]], dtype=np.float64)
            if row[1] != ds.samples[i][0] or int(row[2]) != label:
                print(f"row {i}: {row[1:3]} but ImageFolder has {ds.samples[i]}")
                ok = False
            err = np.abs(got - want).max() / np.abs(want).max()
            worst = max(worst, err)
    ok = ok and worst <= LOGIT_TOL
    print(f"folder parity: {len(ds)} images, logits max |diff| / max |logit| = {worst:.2e} "
          f"(tolerance {LOGIT_TOL:g}): {'ok' if ok else 'FAILED'}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
