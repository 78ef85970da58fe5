#!/usr/bin/python3
"""PyTorch parity: train a few steps in PyTorch and in cltrain from the same weights and the
same images, then compare every tensor's update, the per-step losses and evaluation logits.

Usage: tools/torch_parity.py [--cltrain ./cltrain] [--device SPEC] [--arch resnet18] [--steps 5]
                             [--image-size 32] [--eval-size 224] [--batch-size 16] [--bn-eval]
                             [--lr 0.01] [--draws 2] [--format pth|safetensors] [--keep DIR]

Data: Fashion-MNIST's first images (/usr/share/datasets/fashion-mnist, Debian's
dataset-fashion-mnist), resized to 32x32 and written as a CIFAR-10 binary folder (gray in all
three channels), read by cltrain's loader and here as torchvision's CIFAR10 + Resize((S,S)) +
ToTensor would. Real images keep the steps well conditioned; on uniform noise, max pooling and
ReLU sit on near-ties everywhere and two float32 runs part by up to 5e-2 in one step
(FORMATS.md, "How close two float32 trainings can be"). Both sides: torchvision
<arch>(num_classes=10) from the same initial state_dict, SGD(lr, momentum 0.9), cross-entropy,
no shuffling; --bn-eval keeps every batch norm in eval mode on both.

The checks (tools/parity.py): every float tensor's update w_end - w_start, the batch-norm
running statistics included, against PyTorch float64's in relative L2, within a fixed floor or
a small multiple of the spread of the references (PyTorch float32 with oneDNN and with its
native kernels, and float64 runs from ulp-jittered weights); the per-step losses under the
same rule; cltrain's saved file loads in PyTorch (strict); its evaluation logits at
--eval-size match PyTorch's on those weights. Exit status 0 when every check passes, 1
otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity  # noqa: E402
from torch_fashion import read_idx  # noqa: E402

FIRST_LOSS_RTOL = 1e-5     # the first step's loss, relative (one forward: float32 rounding)
LOSS_RTOL = 1e-4           # every later step, or parity.K x the references' spread there
LOGIT_TOL = 1e-4           # eval logits: max |diff| / max |logit|
FASHION = "/usr/share/datasets/fashion-mnist"


def write_fashion(path, n, split="train", start=0, data=FASHION):
    """Fashion-MNIST images [start, start + n) of a split as a CIFAR-10 binary file: each
    28x28 image resized to 32x32 (PIL bilinear, as torchvision's Resize) and gray copied to
    the three channels. Returns (pixels (n, 3, 32, 32) uint8, labels)."""
    pre = "train" if split == "train" else "t10k"
    imgs = read_idx(os.path.join(data, pre + "-images-idx3-ubyte.gz"))[start:start + n]
    labels = read_idx(os.path.join(data, pre + "-labels-idx1-ubyte.gz"))[start:start + n]
    if len(imgs) < n:
        raise SystemExit("%s has fewer than %d %s images" % (data, start + n, split))
    pix = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BILINEAR))
                    for im in imgs])
    pix = np.repeat(pix[:, None], 3, axis=1)
    with open(path, "wb") as f:
        for p, lab in zip(pix, labels):
            f.write(bytes([int(lab)]))
            f.write(p.tobytes())
    return pix, labels.astype(np.uint8)


def write_cifar(path, n, seed):
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    pix = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    for i, lab in enumerate(labels):  # some class structure so training moves
        pix[i, lab % 3, : 8 + 2 * lab] //= 3
    with open(path, "wb") as f:
        for i in range(n):
            f.write(bytes([labels[i]]))
            f.write(pix[i].tobytes())
    return pix, labels


def batches(pix, labels, size, batch):
    tf = T.Compose([T.Resize((size, size)), T.ToTensor()])
    xs = [tf(Image.fromarray(np.ascontiguousarray(p.transpose(1, 2, 0)))) for p in pix]
    for s in range(0, len(xs), batch):
        yield torch.stack(xs[s:s + batch]), torch.from_numpy(labels[s:s + batch].astype(np.int64))


ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def save_safetensors(sd, path):
    """A state_dict as safetensors (8-byte header length, JSON header, raw data), written here
    so that the check needs no safetensors package."""
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        b = v.detach().contiguous().numpy().tobytes()
        header[k] = {"dtype": ST_DTYPES[v.dtype], "shape": list(v.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def load_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    header, data = json.loads(b[8:8 + n]), b[8 + n:]
    np_dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for k, e in header.items():
        if k == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[lo:hi], np_dtypes[e["dtype"]]).copy()
                                  .reshape(e["shape"]))
    return out


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print("FAILED: %s\n%s" % (" ".join(cmd), r.stdout))
        sys.exit(1)
    return r.stdout


def torch_train(arch, start, pix, labels, a, dtype, mkldnn=True):
    """The seed's loop from state_dict start: (its update, the per-step losses)."""
    torch.backends.mkldnn.enabled = mkldnn
    m = arch(num_classes=10).to(dtype)
    m.load_state_dict(start)
    opt = torch.optim.SGD(m.parameters(), lr=a.lr, momentum=0.9)
    m.train()
    if a.bn_eval:
        parity.bn_eval(m)
    losses = []
    for x, y in batches(pix, labels, a.image_size, a.batch_size):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x.to(dtype)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.backends.mkldnn.enabled = True
    return parity.update(m.state_dict(), start), losses, m


def check_losses(closs, truth, refs, first_rtol=FIRST_LOSS_RTOL, later_rtol=LOSS_RTOL):
    """Per-step losses against float64's: within the fixed bound (first_rtol for the first
    step, later_rtol after) or parity.K x the references' spread there, never above
    parity.CEIL; prints the table."""
    ok = len(closs) == len(truth)
    if not ok:
        print("FAIL: %d cltrain steps, %d PyTorch steps" % (len(closs), len(truth)))
    print("step  cltrain loss   PyTorch float64  rel diff   tolerance")
    for i, (c, t) in enumerate(zip(closs, truth)):
        rel = abs(c - t) / abs(t)
        spread = max(abs(r[i] - t) for r in refs) / abs(t)
        tol = min(parity.CEIL, max(first_rtol if i == 0 else later_rtol, parity.K * spread))
        ok &= rel <= tol
        print("%4d  %12.7f   %12.7f   %.2e   %.2e%s" % (i + 1, c, t, rel, tol,
                                                        "" if rel <= tol else "   FAIL"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cltrain", default="./cltrain")
    ap.add_argument("--device", default=os.environ.get("CLTRAIN_DEVICE", "cpu"))
    ap.add_argument("--arch", default="resnet18",
                    choices=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"))
    parity.add_residual_bn_arg(ap)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--eval-size", type=int, default=224)
    ap.add_argument("--eval-images", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--bn-eval", action="store_true",
                    help="every batch norm in eval mode (cltrain --bn-eval)")
    ap.add_argument("--draws", type=int, default=2, help="float64 runs from jittered weights")
    ap.add_argument("--data", default=FASHION, help="Fashion-MNIST's IDX files")
    ap.add_argument("--format", default="pth", choices=("pth", "safetensors"),
                    help="file format of the initial weights and of cltrain's saved model")
    ap.add_argument("--verbose", action="store_true", help="every tensor, not only failures")
    ap.add_argument("--keep", help="keep the work folder here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    work = a.keep or tempfile.mkdtemp(prefix="cltrain-parity-")
    os.makedirs(work, exist_ok=True)
    n = a.steps * a.batch_size
    pix, labels = write_fashion(os.path.join(work, "data_batch_1.bin"), n, data=a.data)
    tpix, tlabels = write_fashion(os.path.join(work, "test_batch.bin"), max(a.eval_images, 1),
                                  "test", data=a.data)

    torch.manual_seed(0)
    arch = getattr(torchvision.models, a.arch)
    model = arch(num_classes=10)
    parity.condition(model, a.arch, a.residual_bn)
    init_sd = {k: v.clone() for k, v in model.state_dict().items()}
    init = os.path.join(work, "init." + a.format)
    if a.format == "pth":
        torch.save(init_sd, init)
    else:
        save_safetensors(init_sd, init)

    # cltrain
    log, out = os.path.join(work, "log.jsonl"), os.path.join(work, "cltrain." + a.format)
    run([a.cltrain, "train", "--data", work, "--weights", init, "--arch", a.arch,
         "--device", a.device,
         "--image-size", str(a.image_size), "--batch-size", str(a.batch_size), "--no-shuffle",
         "--epochs", "1", "--max-steps", str(a.steps), "--lr", repr(a.lr), "--momentum", "0.9",
         "--log", log, "--no-report", "--save", out, "--test-limit", "1"]
        + (["--bn-eval"] if a.bn_eval else []))
    closs = [json.loads(l)["loss"] for l in open(log) if '"loss"' in l]
    sd = torch.load(out, weights_only=True) if a.format == "pth" else load_safetensors(out)
    check = arch(num_classes=10)
    check.load_state_dict(sd, strict=True)   # cltrain's file loads in PyTorch, every key

    # PyTorch: float64 is the truth; float32 (oneDNN's kernels and PyTorch's native ones) and
    # float64 from ulp-jittered weights measure the float32 noise around it.
    start64 = {k: v.double() if v.is_floating_point() else v for k, v in init_sd.items()}
    truth, tloss64, _ = torch_train(arch, start64, pix, labels, a, torch.float64)
    refs, rloss = [], []
    for dtype, mkldnn, start in ([(torch.float32, True, init_sd), (torch.float32, False, init_sd)]
                                 + [(torch.float64, True, None)] * a.draws):
        if start is None:
            start = parity.jittered(init_sd, torch.Generator().manual_seed(len(refs)))
        d, l, _ = torch_train(arch, start, pix, labels, a, dtype, mkldnn)
        refs.append(d)
        rloss.append(l)

    ok = check_losses(closs, tloss64, rloss)
    label = "%s %d steps%s" % (a.arch, a.steps, " --bn-eval" if a.bn_eval else "")
    ok &= parity.compare(parity.update(sd, init_sd), truth, parity.Bounds(truth, refs, sd), label,
                         verbose=a.verbose)
    for k, v in sd.items():   # num_batches_tracked: exact
        if not v.is_floating_point() and not torch.equal(v, init_sd[k] + (0 if a.bn_eval else
                                                                          len(closs))):
            print("FAIL: %s %s" % (k, v.tolist()))
            ok = False

    # Eval logits at eval-size, on cltrain's trained weights, in both.
    pred = os.path.join(work, "pred.csv")
    run([a.cltrain, "eval", "--data", work, "--weights", out, "--device", a.device,
         "--image-size", str(a.eval_size), "--batch-size", str(a.eval_images),
         "--test-limit", str(a.eval_images), "--predictions", pred])
    rows = [l.strip().split(",") for l in open(pred)][1:]
    clog = np.array([[float(v) for v in r[3:]] for r in rows], dtype=np.float64)
    check.eval()
    with torch.no_grad():
        x, _ = next(batches(tpix[:a.eval_images], tlabels[:a.eval_images], a.eval_size,
                            a.eval_images))
        tlog = check.double()(x.double()).numpy()
    lerr = np.abs(clog - tlog).max() / np.abs(tlog).max()
    lok = lerr <= LOGIT_TOL
    ok &= lok
    print("eval logits at %dx%d: max|diff|/max|logit| %.2e (float64 PyTorch)%s" %
          (a.eval_size, a.eval_size, lerr, "" if lok else "   FAIL (tol %g)" % LOGIT_TOL))
    print("parity (%s, %s): %s" % (label, a.format, "OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
