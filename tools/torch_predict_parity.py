#!/usr/bin/python3
"""`cltrain predict` against PyTorch: softmax probabilities of saved models on image files.

Usage: tools/torch_predict_parity.py [--cltrain ./cltrain] [--device SPEC] [--keep DIR]

cltrain trains a ResNet18 for a few steps on an image folder (tools/torch_folder_parity.py's
files: JPEG, PNG, BMP, PPM of odd sizes, three classes) with --resize 40 --image-size 32
--normalize imagenet and saves it as .pth (the transform and class names go to the sidecar
FILE.pth.json) and as .safetensors (header metadata). Then `cltrain predict --csv` on val/ is
compared with torch.load(weights_only=True) + resnet18(num_classes=3).load_state_dict (strict)
+ Resize(40) + CenterCrop(32) + ToTensor + Normalize + softmax: the same classes, best first,
and every probability within PROB_TOL. Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import torch
import torchvision
import torchvision.transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_folder_parity as fp  # noqa: E402

PROB_TOL = 1e-5
FC_SCALE = 1.0  # fc as torchvision initialises it: top probabilities from 0.5 to 1 - 1e-8


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        print(f"predict parity: FAILED: {' '.join(cmd)} exited {r.returncode}")
    return r.returncode == 0


def check(a, data, weights, work):
    out = os.path.join(work, "pred.csv")
    if not run([a.cltrain, "predict", "--weights", weights, "--device", a.device, "--top-k", "3",
                "--batch-size", "4", "--csv", out, os.path.join(data, "val")]):
        return False
    tf = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = torchvision.datasets.ImageFolder(os.path.join(data, "val"), transform=tf)
    if weights.endswith(".pth"):
        sd = torch.load(weights, weights_only=True)
    else:  # read the safetensors file as a state_dict without the safetensors package
        with open(weights, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            head = json.loads(f.read(n))
            blob = f.read()
        sd = {k: torch.frombuffer(bytearray(blob[v["data_offsets"][0]:v["data_offsets"][1]]),
                                  dtype={"F32": torch.float32, "I64": torch.int64}[v["dtype"]])
              .reshape(v["shape"]) for k, v in head.items() if k != "__metadata__"}
        meta = json.loads(head["__metadata__"]["cltrain.meta"])
        assert meta["classes"] == ds.classes, meta
    m = torchvision.models.resnet18(num_classes=3)
    m.load_state_dict(sd)
    m.eval()
    paths = {p: i for i, (p, _) in enumerate(ds.samples)}
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    ok = rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    ok = ok and len(rows) - 1 == len(ds)
    worst, top = 0.0, 0.0
    with torch.no_grad():
        for row in rows[1:]:
            x, _ = ds[paths[row[0]]]
            want = torch.softmax(m(x[None]), 1)[0].double()
            names = row[1::2]
            got = [float(v) for v in row[2::2]]
            order = [ds.classes[k] for k in torch.argsort(want, descending=True).tolist()]
            for name, g in zip(names, got):
                worst = max(worst, abs(g - want[ds.classes.index(name)].item()))
            top = max(top, got[0])
            if names != order and worst > PROB_TOL:
                print(f"{row[0]}: classes {names}, PyTorch's order {order}")
                ok = False
    ok = ok and worst <= PROB_TOL
    print(f"predict parity ({os.path.basename(weights)}): {len(rows) - 1} images, softmax max "
          f"|diff| {worst:.2e} (tolerance {PROB_TOL:g}; largest probability {top:.3f}): "
          f"{'ok' if ok else 'FAILED'}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cltrain", default="./cltrain")
    ap.add_argument("--device", default=os.environ.get("CLTRAIN_DEVICE", "cpu"))
    ap.add_argument("--keep")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    work = a.keep or tempfile.mkdtemp(prefix="cltrain_predict_parity_")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    shutil.rmtree(data, ignore_errors=True)
    fp.write_folder(data)
    # The starting point: batch-norm statistics of the data (a random init's (0, 1) saturate
    # the softmax in eval mode), so that the probabilities spread over (0, 1).
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=3)
    tf = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = torchvision.datasets.ImageFolder(os.path.join(data, "train"), transform=tf)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # the cumulative average over the pass
    with torch.no_grad():
        m.train()(torch.stack([x for x, _ in ds]))
        m.fc.weight.mul_(FC_SCALE)
    start = os.path.join(work, "start.pth")
    torch.save(m.state_dict(), start)
    ok = True
    for name in ("w.pth", "w.safetensors"):
        w = os.path.join(work, name)
        ok = run([a.cltrain, "train", "--data", data, "--weights", start, "--device", a.device,
                  "--image-size", "32", "--resize", "40", "--normalize", "imagenet",
                  "--batch-size", "4", "--max-steps", "2", "--test-limit", "1", "--workers",
                  "2", "--save", w]) and check(a, data, w, work) and ok
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
