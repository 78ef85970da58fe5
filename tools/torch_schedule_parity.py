#!/usr/bin/python3
"""lr schedules and label smoothing: `cltrain train --log` against PyTorch.

Usage: tools/torch_schedule_parity.py [--cltrain ./cltrain] [--device SPEC] [--keep DIR]

On a small CIFAR-10-format folder of Fashion-MNIST images (tools/torch_parity.py's
write_fashion, no shuffle), from the same torchvision resnet18 weights:
 1. --lr-schedule step:2:0.5 --warmup-epochs 1 --label-smoothing 0.1 --bn-eval, 5 epochs of 2
    steps: the per-epoch lr of the JSONL log equals SequentialLR([LinearLR(0.01,
    total_iters=1), StepLR(2, 0.5)], milestones=[1]) (to the 9 digits logged), and every
    step's loss matches PyTorch float64's CrossEntropyLoss(label_smoothing=0.1) +
    SGD(momentum=0.9) under that schedule, within tools/torch_parity.py's bounds or 3x the
    spread of PyTorch float32 (oneDNN and native kernels) and float64 from ulp-jittered
    weights (check_losses). Ten steps with train-mode batch norm on 8 images are chaotic
    (float64 runs from jittered weights part by 1e-3), hence --bn-eval;
 2. --lr-schedule cosine, 6 epochs of 1 step: CosineAnnealingLR(T_max=6)'s lr per epoch.
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity  # noqa: E402
from torch_parity import check_losses, write_fashion  # noqa: E402

LR_RTOL = 1e-8                           # the log prints %.9g
TRAIN, TEST, BATCH, LR = 16, 4, 8, 0.001


def write_data(root):
    os.makedirs(root, exist_ok=True)
    write_fashion(os.path.join(root, "data_batch_1.bin"), TRAIN)
    write_fashion(os.path.join(root, "test_batch.bin"), TEST, "test")


def cltrain(a, data, weights, log, extra):
    cmd = [a.cltrain, "train", "--data", data, "--weights", weights, "--device", a.device,
           "--image-size", "32", "--batch-size", str(BATCH), "--no-shuffle", "--lr", str(LR),
           "--momentum", "0.9", "--bn-eval", "--log", log] + extra
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        print(f"schedule parity: FAILED: {' '.join(cmd)} exited {r.returncode}")
        return None
    rows = [json.loads(line) for line in open(log)]
    lrs = [row["lr"] for row in rows if set(row) == {"epoch", "lr"}]
    losses = [row["loss"] for row in rows if "loss" in row]
    return lrs, losses


def torch_run(start, batches, epochs, make_sched, smoothing, dtype=torch.float32,
              mkldnn=True):
    torch.backends.mkldnn.enabled = mkldnn
    m = torchvision.models.resnet18(num_classes=10).to(dtype)
    m.load_state_dict(start)
    m.train()
    parity.bn_eval(m)   # cltrain --bn-eval
    opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=0.9)
    sched = make_sched(opt)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    lrs, losses = [], []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for x, y in batches:
            if smoothing is None:
                break
            opt.zero_grad()
            loss = crit(m(x.to(dtype)), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        opt.step() if smoothing is None else None
        sched.step()
    torch.backends.mkldnn.enabled = True
    return lrs, losses


def compare(name, got, want, rtol):
    rel = [abs(g - w) / abs(w) for g, w in zip(got, want)]
    ok = len(got) == len(want) and all(r <= rtol for r in rel)
    return ok, max(rel) if rel else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cltrain", default="./cltrain")
    ap.add_argument("--device", default=os.environ.get("CLTRAIN_DEVICE", "cpu"))
    ap.add_argument("--keep")
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # SequentialLR's note on step(epoch)
    work = a.keep or tempfile.mkdtemp(prefix="cltrain_schedule_parity_")
    data = os.path.join(work, "data")
    shutil.rmtree(data, ignore_errors=True)
    write_data(data)
    raw = np.fromfile(os.path.join(data, "data_batch_1.bin"), dtype=np.uint8).reshape(TRAIN, 3073)
    x = torch.from_numpy(raw[:, 1:].reshape(TRAIN, 3, 32, 32).astype(np.float32) / 255)
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, TRAIN, BATCH)]
    torch.manual_seed(0)
    weights = os.path.join(work, "w.pth")
    init = torchvision.models.resnet18(num_classes=10).state_dict()
    torch.save(init, weights)
    jit = [parity.jittered(init, torch.Generator().manual_seed(s)) for s in (1, 2)]
    LR_ = torch.optim.lr_scheduler
    ok = True

    got = cltrain(a, data, weights, os.path.join(work, "step.jsonl"),
                  ["--epochs", "5", "--lr-schedule", "step:2:0.5", "--warmup-epochs", "1",
                   "--label-smoothing", "0.1"])
    def step_sched(o):
        return LR_.SequentialLR(o, [LR_.LinearLR(o, 0.01, total_iters=1), LR_.StepLR(o, 2, 0.5)],
                                milestones=[1])
    want = torch_run(init, batches, 5, step_sched, 0.1)
    w64 = torch_run({k: v.double() if v.is_floating_point() else v for k, v in init.items()},
                    batches, 5, step_sched, 0.1, torch.float64)
    refs = [want[1], torch_run(init, batches, 5, step_sched, 0.1, mkldnn=False)[1]]
    refs += [torch_run(j, batches, 5, step_sched, 0.1, torch.float64)[1] for j in jit]
    if got is None:
        return 1
    lr_ok, lr_rel = compare("lr", got[0], want[0], LR_RTOL)
    print("label smoothing 0.1, per-step losses against PyTorch float64:")
    loss_ok = check_losses(got[1], w64[1], refs)
    print(f"schedule parity: step:2:0.5 + 1 warm-up epoch, lr per epoch {got[0]} vs PyTorch "
          f"{want[0]}: {'ok' if lr_ok else 'FAILED'}")
    print(f"label smoothing 0.1 parity: {len(got[1])} steps: {'ok' if loss_ok else 'FAILED'}")
    ok = ok and lr_ok and loss_ok

    got = cltrain(a, data, weights, os.path.join(work, "cos.jsonl"),
                  ["--epochs", "6", "--train-limit", str(BATCH), "--lr-schedule", "cosine"])
    want = torch_run(init, batches, 6, lambda o: LR_.CosineAnnealingLR(o, 6), None)
    if got is None:
        return 1
    lr_ok, lr_rel = compare("lr", got[0], want[0], LR_RTOL)
    print(f"schedule parity: cosine over 6 epochs, lr max rel diff {lr_rel:.1e} "
          f"(tolerance {LR_RTOL:g}): {'ok' if lr_ok else 'FAILED'}")
    ok = ok and lr_ok
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
