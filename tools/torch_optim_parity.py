#!/usr/bin/python3
"""Optimizer parity: cltrain's --optimizer, --nesterov, --weight-decay, --norm-weight-decay,
--clip-grad-norm and --accumulate against torch.optim over a few steps on real images.

Usage: tools/torch_optim_parity.py [--cltrain ./cltrain] [--device SPEC] [--steps 5]
                                   [--batch-size 8] [--draws 1] [--case NAME ...] [--verbose]

Data and recipe as tools/torch_parity.py's multi-step runs: Fashion-MNIST's first images as a
CIFAR-10 binary folder (write_fashion), resnet18 at 32x32, --bn-eval on both sides (batch norms
on their running statistics, still trained), no shuffling, the same initial state_dict. Each
case trains cltrain and PyTorch (torch.optim with foreach=False: _single_tensor_sgd/adam/adamw)
in float64 (the truth), float32 with oneDNN and with native kernels, and float64 from
ulp-jittered weights (the spread of float32 noise), then checks with tools/parity.py: every
tensor's update w_end - w_start in relative L2 against float64 within parity.Bounds, and the
per-step losses (torch_parity.check_losses). The clipping case asserts that the clip bites in
PyTorch's run (clip coefficient < 1 at every step), so it tests the clipped path. The
accumulation case is PyTorch's loop: (loss / N).backward() for N batches, then step(), on
batches of --batch-size / N (each step sees as many images as the other cases').
Prints, per case, the tensor closest to its bound (% of the bound). Exit status 0 when every
check passes, 1 otherwise.

The recipes are well-conditioned points, chosen as the other parity tools' are: with Nesterov at
weight decay 1e-3 the weights after step 1 put a ReLU or max-pool input of the stem within
float32's rounding of a tie, and float64 from those weights jittered by one ulp moves conv1's
step-2 gradient by 0.4% (cltrain's Nesterov update was then torch's formula to the digit on its
own gradient: 1.9 g + 0.0019 w + 0.81 buf); at 5e-4 every case lands far from such a tie.
"""
import argparse
import json
import os
import sys
import tempfile

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity  # noqa: E402
from torch_parity import FASHION, batches, check_losses, run, write_fashion  # noqa: E402

# name: (cltrain flags, torch settings)
CASES = {
    "adamw-wd": (["--optimizer", "adamw", "--lr", "0.001", "--weight-decay", "0.05"],
                 dict(kind="adamw", lr=1e-3, wd=0.05)),
    "adam-wd": (["--optimizer", "adam", "--lr", "0.001", "--weight-decay", "0.01"],
                dict(kind="adam", lr=1e-3, wd=0.01)),
    "sgd-nesterov": (["--lr", "0.01", "--momentum", "0.9", "--nesterov", "--weight-decay",
                      "0.0005"], dict(kind="sgd", lr=0.01, momentum=0.9, nesterov=True, wd=5e-4)),
    "norm-wd-0": (["--lr", "0.01", "--momentum", "0.9", "--weight-decay", "0.05",
                   "--norm-weight-decay", "0"],
                  dict(kind="sgd", lr=0.01, momentum=0.9, wd=0.05, norm_wd=0.0)),
    # SGD: the clip coefficient scales the update itself (Adam's m / sqrt(v) would cancel it)
    "clip": (["--lr", "0.01", "--momentum", "0.9", "--clip-grad-norm", "0.5"],
             dict(kind="sgd", lr=0.01, momentum=0.9, clip=0.5)),
    # batches of batch_size / 4: a step sees as many images as the other cases'
    "accumulate-4": (["--lr", "0.01", "--momentum", "0.9", "--accumulate", "4"],
                     dict(kind="sgd", lr=0.01, momentum=0.9, accumulate=4)),
}


def param_groups(m, s):
    """torchvision's references' set_weight_decay: batch-norm weights and biases in their own
    group with --norm-weight-decay."""
    if s.get("norm_wd") is None:
        return [{"params": list(m.parameters()), "weight_decay": s.get("wd", 0.0)}]
    norm, other = [], []
    for mod in m.modules():
        for p in mod.parameters(recurse=False):
            (norm if isinstance(mod, torch.nn.BatchNorm2d) else other).append(p)
    return [{"params": other, "weight_decay": s.get("wd", 0.0)},
            {"params": norm, "weight_decay": s["norm_wd"]}]


def make_optimizer(m, s):
    groups = param_groups(m, s)
    if s["kind"] == "sgd":
        return torch.optim.SGD(groups, lr=s["lr"], momentum=s.get("momentum", 0.0),
                               nesterov=s.get("nesterov", False), foreach=False)
    cls = torch.optim.AdamW if s["kind"] == "adamw" else torch.optim.Adam
    return cls(groups, lr=s["lr"], betas=(0.9, 0.999), eps=1e-8, foreach=False)


def torch_train(start, pix, labels, a, s, dtype, mkldnn=True):
    """(update, per-step losses, clip coefficients) of torch.optim from state_dict start."""
    torch.backends.mkldnn.enabled = mkldnn
    m = torchvision.models.resnet18(num_classes=10).to(dtype)
    m.load_state_dict(start)
    opt = make_optimizer(m, s)
    m.train()
    parity.bn_eval(m)
    N = s.get("accumulate", 1)
    data = list(batches(pix, labels, a.image_size, micro_batch(a, s)))
    losses, coefs = [], []
    for g in range(0, len(data), N):
        group = data[g:g + N]
        opt.zero_grad()
        total = 0.0
        for x, y in group:
            loss = torch.nn.functional.cross_entropy(m(x.to(dtype)), y)
            (loss / len(group)).backward()
            total += loss.item()
        if s.get("clip"):
            norm = torch.nn.utils.clip_grad_norm_(m.parameters(), s["clip"])
            coefs.append(min(1.0, s["clip"] / (norm.item() + 1e-6)))
        opt.step()
        losses.append(total / len(group))
    torch.backends.mkldnn.enabled = True
    return parity.update(m.state_dict(), start), losses, coefs


def micro_batch(a, s):
    """The batch size of a case: --batch-size, split into its accumulated batches."""
    return max(1, a.batch_size // s.get("accumulate", 1))


def run_case(name, a, work, init, init_sd, pix, labels):
    flags, s = CASES[name]
    N, B = s.get("accumulate", 1), micro_batch(a, s)
    log, out = os.path.join(work, name + ".jsonl"), os.path.join(work, name + ".pth")
    run([a.cltrain, "train", "--data", work, "--weights", init, "--arch", "resnet18",
         "--device", a.device, "--image-size", str(a.image_size),
         "--batch-size", str(B), "--no-shuffle", "--epochs", "1",
         "--max-steps", str(a.steps), "--bn-eval", "--log", log, "--no-report", "--save", out,
         "--test-limit", "1"] + flags)
    closs = [json.loads(line)["loss"] for line in open(log) if '"loss"' in line]
    sd = torch.load(out, weights_only=True)
    pix, labels = pix[:a.steps * N * B], labels[:a.steps * N * B]
    start64 = {k: v.double() if v.is_floating_point() else v for k, v in init_sd.items()}
    truth, tloss64, coefs = torch_train(start64, pix, labels, a, s, torch.float64)
    ok = True
    if s.get("clip"):  # the clipped path is what this case tests: it must bite every step
        bites = len(coefs) == a.steps and max(coefs) < 1
        print("%s: PyTorch's clip coefficients %s%s" % (
            name, " ".join("%.3g" % c for c in coefs), "" if bites else "   FAIL: no clipping"))
        ok &= bites
    refs, rloss = [], []
    for dtype, mkldnn, start in ([(torch.float32, True, init_sd), (torch.float32, False, init_sd)]
                                 + [(torch.float64, True, None)] * a.draws):
        if start is None:
            start = parity.jittered(init_sd, torch.Generator().manual_seed(len(refs)))
        d, l, _ = torch_train(start, pix, labels, a, s, dtype, mkldnn)
        refs.append(d)
        rloss.append(l)
    ok &= check_losses(closs, tloss64, rloss)
    label = "%s (%d steps)" % (name, a.steps)
    ok &= parity.compare(parity.update(sd, init_sd), truth, parity.Bounds(truth, refs, sd), label,
                         verbose=a.verbose)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cltrain", default="./cltrain")
    ap.add_argument("--device", default=os.environ.get("CLTRAIN_DEVICE", "cpu"))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--draws", type=int, default=1, help="float64 runs from jittered weights")
    ap.add_argument("--case", action="append", choices=sorted(CASES),
                    help="run only these cases (default: all)")
    ap.add_argument("--data", default=FASHION, help="Fashion-MNIST's IDX files")
    ap.add_argument("--verbose", action="store_true", help="every tensor, not only failures")
    ap.add_argument("--keep", help="keep the work folder here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    work = a.keep or tempfile.mkdtemp(prefix="cltrain-optim-parity-")
    os.makedirs(work, exist_ok=True)
    most = max(CASES[c][1].get("accumulate", 1) * micro_batch(a, CASES[c][1])
               for c in (a.case or CASES))
    pix, labels = write_fashion(os.path.join(work, "data_batch_1.bin"), a.steps * most,
                                data=a.data)
    write_fashion(os.path.join(work, "test_batch.bin"), 1, "test", data=a.data)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    parity.condition(model, "resnet18")
    init_sd = {k: v.clone() for k, v in model.state_dict().items()}
    init = os.path.join(work, "init.pth")
    torch.save(init_sd, init)
    ok = True
    for name in a.case or CASES:
        good = run_case(name, a, work, init, init_sd, pix, labels)
        print("optimizer parity %s: %s" % (name, "OK" if good else "FAILED"))
        ok &= good
    print("optimizer parity: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
