#!/usr/bin/python3
"""Write the PyTorch reference fixtures of cltrain's tests (tests/fixtures/op_*.bin,
tests/fixtures/resnet18_32x2.bin and resnet18_32x8.bin).

Run with Debian's interpreter (python3-torch 1.13, python3-torchvision 0.14):
    /usr/bin/python3 tools/make_fixtures.py
Deterministic (fixed seeds, one thread); the outputs are committed, so the tests never need
Python. Read by tests/fixture.c.

File format "CLFX" version 1 (all integers little-endian):
    magic 'CLFX', u32 version, u32 count, then `count` tensors, each:
        u16 name length, name bytes (UTF-8, no NUL),
        u8 dtype (0 float32, 1 int32, 2 int64), u8 ndim, ndim x i64 dims (PyTorch's shape:
        NCHW activations, OIHW weights, (N, K) logits), then the raw little-endian data in
        C order. A scalar is stored with shape [1].

Per-op fixtures: one file per op, several cases per file with names "<case>.<tensor>"; each
file also holds an int32 tensor "cases" listing the case numbers 0..n-1 and, where the op has
hyper-parameters, "<case>.params" (documented in the writer below).

The ResNet18 weights of resnet18_32x*.bin are NOT stored (44 MB); both sides generate them
with this counter-based generator (tests/fixture.c: fixture_resnet_param):
    t = the tensor's index in resnet18(num_classes=10).state_dict() order (0..121, counting
        every entry, num_batches_tracked included); i = the element's C-order index.
    splitmix64(x): z = x + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
                   (all mod 2^64)
    u = (splitmix64(0x5EED0000 + t * 2^32 + i) >> 40) * 2^-24      (exact, in [0, 1))
    conv weight (O, C, KH, KW): (2u - 1) * sqrt(6 / (C*KH*KW))
    bn weight 0.8 + 0.4u; bn bias 0.2u - 0.1; running_mean 0.2u - 0.1; running_var 0.5 + u;
    num_batches_tracked 0; fc weight and bias (2u - 1) / sqrt(512)
    Each value is computed in float64 (product rounded, then sum rounded: no fused
    multiply-add) and rounded once to float32, so C and numpy agree bit for bit.
    Input images: the same u with t = 1000, as float32, shape (B, 3, 32, 32): B = 2 with
    labels [3, 7] (resnet18_32x2.bin), B = 8 with labels [3, 7, 0, 9, 1, 5, 2, 8]
    (resnet18_32x8.bin, the well-conditioned one for train-mode results: see make_resnet).
"""
import copy
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

VERSION = 1
HEAD = 4    # output channels stored of the large conv weight gradients
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.int64): 2}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTDIR = os.path.join(ROOT, "tests", "fixtures")


# ---------------------------------------------------------------- writer
class Fixture:
    def __init__(self):
        self.tensors = []          # (name, np.ndarray)
        self.names = set()

    def add(self, name, value):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        a = np.array(value, copy=True)    # never a view: modules keep updating in place
        if a.dtype == np.float64:
            raise ValueError("%s: float64 fixtures are not in the format" % name)
        if a.ndim == 0:
            a = a.reshape(1)
        a = np.ascontiguousarray(a)
        if a.dtype not in DTYPES:
            raise ValueError("%s: dtype %s not supported" % (name, a.dtype))
        if name in self.names:
            raise ValueError("duplicate tensor %s" % name)
        self.names.add(name)
        self.tensors.append((name, a))

    def bytes(self):
        out = [b"CLFX", struct.pack("<II", VERSION, len(self.tensors))]
        for name, a in self.tensors:
            nb = name.encode("utf-8")
            out.append(struct.pack("<H", len(nb)) + nb)
            out.append(struct.pack("<BB", DTYPES[a.dtype], a.ndim))
            out.append(struct.pack("<%dq" % a.ndim, *a.shape))
            out.append(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        return b"".join(out)

    def write(self, filename):
        path = os.path.join(OUTDIR, filename)
        data = self.bytes()
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        print("%s: %d tensors, %d bytes" % (os.path.relpath(path, ROOT), len(self.tensors),
                                            len(data)))
        return len(data)


def randn(g, *shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=g) * scale + shift).float()


def leaf(t):
    return t.clone().requires_grad_(True)


# ---------------------------------------------------------------- per-op fixtures
def make_conv2d():
    """Cases of conv2d without bias. Tensors: x (N,C,H,W), w (O,C,K,K), out (N,O,OH,OW),
    dout (random upstream gradient, shape of out), dx, dw; params int32 [stride, pad]."""
    fx = Fixture()
    g = torch.Generator().manual_seed(101)
    # (n, c, h, w, o, k, stride, pad): ResNet18's four conv kinds; non-square, odd, batch 1.
    cases = [(2, 3, 12, 10, 5, 7, 2, 3),    # conv1: 7x7/s2/p3, non-square
             (3, 4, 6, 5, 6, 3, 1, 1),      # 3x3/s1/p1
             (2, 3, 7, 9, 4, 3, 2, 1),      # 3x3/s2/p1 on an odd 7x9 input
             (1, 5, 7, 6, 8, 1, 2, 0)]      # downsample 1x1/s2/p0, batch 1
    for ci, (n, c, h, w, o, k, s, p) in enumerate(cases):
        x = leaf(randn(g, n, c, h, w))
        wt = leaf(randn(g, o, c, k, k, scale=(2.0 / (c * k * k)) ** 0.5))
        out = F.conv2d(x, wt, None, stride=s, padding=p)
        dout = randn(g, *out.shape)
        out.backward(dout)
        pre = "%d." % ci
        fx.add(pre + "params", np.array([s, p], np.int32))
        fx.add(pre + "x", x)
        fx.add(pre + "w", wt)
        fx.add(pre + "out", out)
        fx.add(pre + "dout", dout)
        fx.add(pre + "dx", x.grad)
        fx.add(pre + "dw", wt.grad)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


def make_bn():
    """BatchNorm2d(momentum 0.1, eps 1e-5). Tensors per case: x (N,C,H,W), weight, bias,
    running_mean, running_var (before), dout; training mode: out, dx, dweight, dbias,
    after_running_mean, after_running_var; eval mode (model.eval(), same initial running
    stats, same dout): eval_out, eval_dx, eval_dweight, eval_dbias.
    params float32 [momentum, eps]."""
    fx = Fixture()
    g = torch.Generator().manual_seed(202)
    # (n, c, h, w, shift): a shifted mean tests the variance's numerical stability;
    # batch 1 and a 1x1 spatial case (layer4 at 32x32: M = N).
    cases = [(4, 3, 5, 3, 0.0), (1, 4, 6, 7, 3.0), (8, 5, 1, 1, -1.5)]
    for ci, (n, c, h, w, shift) in enumerate(cases):
        x0 = randn(g, n, c, h, w, scale=2.0, shift=shift)
        weight0 = (torch.rand(c, generator=g) + 0.5).float()
        bias0 = randn(g, c, scale=0.5)
        rm0 = randn(g, c, scale=0.3)
        rv0 = (torch.rand(c, generator=g) + 0.5).float()
        dout = randn(g, n, c, h, w)
        pre = "%d." % ci
        fx.add(pre + "params", np.array([0.1, 1e-5], np.float32))
        fx.add(pre + "x", x0)
        fx.add(pre + "weight", weight0)
        fx.add(pre + "bias", bias0)
        fx.add(pre + "running_mean", rm0)
        fx.add(pre + "running_var", rv0)
        fx.add(pre + "dout", dout)
        for mode in ("train", "eval"):
            bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
            with torch.no_grad():
                bn.weight.copy_(weight0)
                bn.bias.copy_(bias0)
                bn.running_mean.copy_(rm0)
                bn.running_var.copy_(rv0)
            bn.train(mode == "train")
            x = leaf(x0)
            out = bn(x)
            out.backward(dout)
            p = pre if mode == "train" else pre + "eval_"
            fx.add(p + "out", out)
            fx.add(p + "dx", x.grad)
            fx.add(p + "dweight", bn.weight.grad)
            fx.add(p + "dbias", bn.bias.grad)
            if mode == "train":
                fx.add(pre + "after_running_mean", bn.running_mean)
                fx.add(pre + "after_running_var", bn.running_var)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


def make_relu():
    """ReLU: x, out, dout, dx. x has exact zeros (threshold_backward passes nothing there)."""
    fx = Fixture()
    g = torch.Generator().manual_seed(303)
    x0 = randn(g, 3, 4, 5, 7)
    x0.view(-1)[::11] = 0.0
    x = leaf(x0)
    out = F.relu(x)
    dout = randn(g, *out.shape)
    out.backward(dout)
    fx.add("0.x", x)
    fx.add("0.out", out)
    fx.add("0.dout", dout)
    fx.add("0.dx", x.grad)
    fx.add("cases", np.arange(1, dtype=np.int32))
    return fx


def make_act():
    """The activations of op_act, case k = op_act k (relu, relu6, hardswish, hardsigmoid, silu,
    sigmoid): x, out, dout, dx. x holds each boundary (-6, -3, 0, 3, 6) and its neighbours
    1 and 2 ulp away, then normal values of scale 5."""
    fx = Fixture()
    g = torch.Generator().manual_seed(311)
    fns = (F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.silu, torch.sigmoid)
    b = torch.tensor([-6.0, -3.0, 0.0, 3.0, 6.0])
    lo1, hi1 = torch.nextafter(b, b - 1), torch.nextafter(b, b + 1)
    lo2, hi2 = torch.nextafter(lo1, lo1 - 1), torch.nextafter(hi1, hi1 + 1)
    for k, fn in enumerate(fns):
        x = leaf(torch.cat([b, lo1, hi1, lo2, hi2, randn(g, 475, scale=5.0)]))
        out = fn(x)
        dout = randn(g, *out.shape)
        out.backward(dout)
        dx = x.grad
        if fn is F.hardswish:
            # 1.13's CPU kernel has two paths that disagree at x = 3: the scalar one (the tail
            # of a tensor, small tensors, and CUDA's kernel) gives dout * 1.5 (x <= 3), the
            # AVX one dout (x >= 3). op_act follows the scalar one: the boundary values' dx
            # come from one-element tensors, which take it.
            dx = dx.clone()
            for i in range(len(b) * 5):
                xi = leaf(x.detach()[i:i + 1])
                fn(xi).backward(dout[i:i + 1])
                dx[i] = xi.grad[0]
        fx.add("%d.x" % k, x)
        fx.add("%d.out" % k, out)
        fx.add("%d.dout" % k, dout)
        fx.add("%d.dx" % k, dx)
    fx.add("cases", np.arange(len(fns), dtype=np.int32))
    return fx


def make_maxpool():
    """MaxPool2d(3, stride 2, padding 1): x (N,C,H,W), out, indices int64 (N,C,OH,OW) flat
    into the H*W plane, dout, dx; params int32 [k, stride, pad]. Case 0 has integer values
    (ties: PyTorch takes the first maximum in scan order), case 1 is all negative (padding
    never wins), case 2 plain random floats, odd sizes and batch 1."""
    fx = Fixture()
    g = torch.Generator().manual_seed(404)
    cases = [(2, 3, 7, 8, "ties"), (2, 2, 5, 5, "negative"), (1, 3, 9, 6, "random")]
    for ci, (n, c, h, w, kind) in enumerate(cases):
        if kind == "ties":
            x0 = torch.randint(-2, 3, (n, c, h, w), generator=g).float()
        elif kind == "negative":
            x0 = -torch.randint(1, 4, (n, c, h, w), generator=g).float() - 0.5
        else:
            x0 = randn(g, n, c, h, w)
        x = leaf(x0)
        out, idx = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
        dout = randn(g, *out.shape)
        out.backward(dout)
        pre = "%d." % ci
        fx.add(pre + "params", np.array([3, 2, 1], np.int32))
        fx.add(pre + "x", x)
        fx.add(pre + "out", out)
        fx.add(pre + "indices", idx.to(torch.int64))
        fx.add(pre + "dout", dout)
        fx.add(pre + "dx", x.grad)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


def make_avgpool():
    """AdaptiveAvgPool2d(1): x (N,C,H,W), out (N,C,1,1), dout, dx. Includes 1x1 input
    (ResNet18's layer4 at 32x32) and batch 1."""
    fx = Fixture()
    g = torch.Generator().manual_seed(505)
    cases = [(2, 5, 4, 4), (3, 4, 1, 1), (1, 6, 7, 5)]
    for ci, (n, c, h, w) in enumerate(cases):
        x = leaf(randn(g, n, c, h, w))
        out = F.adaptive_avg_pool2d(x, 1)
        dout = randn(g, *out.shape)
        out.backward(dout)
        pre = "%d." % ci
        fx.add(pre + "x", x)
        fx.add(pre + "out", out)
        fx.add(pre + "dout", dout)
        fx.add(pre + "dx", x.grad)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


def make_linear():
    """Linear with bias: x (N,I), w (K,I), b (K), out (N,K), dout (N,K), dx, dw, db."""
    fx = Fixture()
    g = torch.Generator().manual_seed(606)
    cases = [(3, 7, 5), (1, 16, 10), (4, 64, 10)]
    for ci, (n, i, k) in enumerate(cases):
        x = leaf(randn(g, n, i))
        w = leaf(randn(g, k, i, scale=i ** -0.5))
        b = leaf(randn(g, k, scale=0.1))
        out = F.linear(x, w, b)
        dout = randn(g, n, k)
        out.backward(dout)
        pre = "%d." % ci
        fx.add(pre + "x", x)
        fx.add(pre + "w", w)
        fx.add(pre + "b", b)
        fx.add(pre + "out", out)
        fx.add(pre + "dout", dout)
        fx.add(pre + "dx", x.grad)
        fx.add(pre + "dw", w.grad)
        fx.add(pre + "db", b.grad)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


def make_add():
    """Residual add: a, b (N,C,H,W), out = a + b, out_relu = relu(a + b)."""
    fx = Fixture()
    g = torch.Generator().manual_seed(707)
    a = randn(g, 2, 3, 5, 4)
    b = randn(g, 2, 3, 5, 4)
    fx.add("0.a", a)
    fx.add("0.b", b)
    fx.add("0.out", a + b)
    fx.add("0.out_relu", F.relu(a + b))
    fx.add("cases", np.arange(1, dtype=np.int32))
    return fx


def make_xent():
    """CrossEntropyLoss (mean): logits (N,K), labels int64 (N), loss [1], losses (N)
    (reduction 'none'), dlogits (N,K) of the mean loss. Case 1 has logits of +-80 (a naive
    exp overflows float32 at 88.7), case 2 is batch 1."""
    fx = Fixture()
    g = torch.Generator().manual_seed(808)
    cases = []
    logits = randn(g, 4, 10, scale=2.0)
    cases.append((logits, torch.tensor([3, 0, 9, 5])))
    big = randn(g, 3, 10, scale=1.0)
    big[0, 2] = 80.0
    big[0, 7] = 79.5
    big[1, :] = -80.0
    big[1, 4] = 80.0
    big[2, 1] = 80.0
    big[2, 6] = -80.0
    cases.append((big, torch.tensor([7, 4, 6])))
    cases.append((randn(g, 1, 10), torch.tensor([2])))
    for ci, (lg, labels) in enumerate(cases):
        x = leaf(lg)
        loss = F.cross_entropy(x, labels)
        loss.backward()
        losses = F.cross_entropy(lg, labels, reduction="none")
        pre = "%d." % ci
        fx.add(pre + "logits", lg)
        fx.add(pre + "labels", labels.to(torch.int64))
        fx.add(pre + "loss", loss)
        fx.add(pre + "losses", losses)
        fx.add(pre + "dlogits", x.grad)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


def make_sgd():
    """torch.optim.SGD over 3 steps with given gradients: params float32 [lr, momentum,
    weight_decay], p0 (start), grad1..grad3, p1..p3 (params after each step)."""
    fx = Fixture()
    g = torch.Generator().manual_seed(909)
    cases = [(0.01, 0.9, 5e-4, 37), (0.001, 0.9, 0.0, 29)]
    for ci, (lr, mom, wd, n) in enumerate(cases):
        p = torch.nn.Parameter(randn(g, n))
        opt = torch.optim.SGD([p], lr=lr, momentum=mom, weight_decay=wd)
        pre = "%d." % ci
        fx.add(pre + "params", np.array([lr, mom, wd], np.float32))
        fx.add(pre + "p0", p)
        for step in range(1, 4):
            grad = randn(g, n, scale=0.5)
            p.grad = grad.clone()
            opt.step()
            fx.add(pre + "grad%d" % step, grad)
            fx.add(pre + "p%d" % step, p)
    fx.add("cases", np.arange(len(cases), dtype=np.int32))
    return fx


# ---------------------------------------------------------------- ResNet18 generator

def splitmix64(x):
    """x: uint64 array; wrapping arithmetic."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def gen_u(t, n):
    """float64 u in [0, 1) for elements 0..n-1 of tensor t (exact 24-bit fractions)."""
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = np.uint64(0x5EED0000) + (np.uint64(t) << np.uint64(32)) + i
    return (splitmix64(key) >> np.uint64(40)).astype(np.float64) * 2.0 ** -24


def param_kind(name):
    """The generator's kind for a torchvision ResNet18 state_dict name (mirrors
    fixture_resnet_kind in tests/fixture.c)."""
    if name.endswith(".running_mean"):
        return "running_mean"
    if name.endswith(".running_var"):
        return "running_var"
    if name.endswith(".num_batches_tracked"):
        return "zero"
    if name.startswith("fc."):
        return "fc"
    module = name.rsplit(".", 1)[0]
    if module.rsplit(".", 1)[-1].startswith("conv") or module.endswith("downsample.0"):
        return "conv"
    return "bn_weight" if name.endswith(".weight") else "bn_bias"


def gen_param(t, kind, shape, fc_in=512):
    n = int(np.prod(shape)) if len(shape) else 1
    u = gen_u(t, n)
    if kind == "conv":
        fan_in = int(np.prod(shape[1:]))
        v = (2.0 * u - 1.0) * np.sqrt(6.0 / fan_in)
    elif kind == "bn_weight":
        v = 0.8 + 0.4 * u
    elif kind in ("bn_bias", "running_mean"):
        v = 0.2 * u - 0.1
    elif kind == "running_var":
        v = 0.5 + u
    elif kind == "fc":  # (2u - 1) / sqrt(in_features)
        v = (2.0 * u - 1.0) / np.sqrt(float(fc_in))
    elif kind == "uniform":
        v = u
    else:
        raise ValueError(kind)
    return v.astype(np.float32).reshape(shape)


# The gradients the model test needs at least (PyTorch names); resnet18_32x8.bin holds
# these and the 1-D ones, resnet18_32x2.bin every gradient up to 80k elements.
REQUIRED_GRADS = ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                  "layer1.0.bn1.weight", "layer1.0.bn2.bias", "layer2.0.conv1.weight",
                  "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
                  "layer4.1.conv2.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"]


def generated_resnet(arch="resnet18"):
    """torchvision <arch>(num_classes=10) with the generator's weights; also returns the
    state_dict names and the generated state dict."""
    model = getattr(torchvision.models, arch)(num_classes=10)
    sd = model.state_dict()
    names = list(sd.keys())
    fc_in = model.fc.in_features
    new_sd = {}
    for t, name in enumerate(names):
        kind = param_kind(name)
        if kind == "zero":
            new_sd[name] = torch.zeros((), dtype=torch.int64)
        else:
            new_sd[name] = torch.from_numpy(gen_param(t, kind, tuple(sd[name].shape), fc_in))
    model.load_state_dict(new_sd)
    return model, names, new_sd


def add_generator_samples(fx, names, new_sd):
    """Generator samples for the bit-exact check in C: "gen.<name>" holds up to 16 values
    starting at element genidx.<name>[1] of the tensor with state_dict index genidx.<name>[0];
    genidx.<name>[2] is the conv fan-in (C*KH*KW), 0 for other kinds."""
    samples = [("conv1.weight", 0), ("bn1.weight", 0), ("bn1.bias", 0),
               ("bn1.running_mean", 0), ("bn1.running_var", 48),
               ("layer1.0.conv1.weight", 1000), ("layer2.0.downsample.0.weight", 8176),
               ("layer3.1.bn2.bias", 100), ("layer4.1.conv2.weight", 2359280),
               ("fc.weight", 5104), ("fc.bias", 0)]
    for name, start in samples:
        t = names.index(name)
        flat = new_sd[name].reshape(-1)
        cnt = min(16, flat.numel() - start)
        assert cnt > 0
        shape = new_sd[name].shape
        fan_in = int(np.prod(shape[1:])) if param_kind(name) == "conv" else 0
        fx.add("gen.%s" % name, flat[start:start + cnt].clone())
        fx.add("genidx.%s" % name, np.array([t, start, fan_in], np.int64))


def generated_resnet18():
    model, names, new_sd = generated_resnet("resnet18")
    assert len(names) == 122, len(names)
    return model, names, new_sd


def required_grads(arch, names):
    """REQUIRED_GRADS for resnet18; for the others the same roles: the stem, the first
    block's convs and batch norms, the first downsample, the last block's last conv, fc."""
    if arch == "resnet18":
        return REQUIRED_GRADS
    last = [n for n in names if n.startswith("layer4.") and ".conv" in n][-1]
    return ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
            "layer1.0.bn1.weight", "layer1.0.bn2.bias", "layer1.0.downsample.0.weight",
            "layer2.0.conv1.weight", "layer2.0.conv2.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.weight", last, last.replace("conv", "bn"), "fc.weight",
            "fc.bias"]


def make_resnet(batch, labels, full, arch="resnet18", eval_only=False, dtype=torch.float32):
    """resnet18(num_classes=10), generated weights, `batch` generated images 3x32x32 (the
    first 2 are the same in both files), `labels`: train-mode forward, CrossEntropyLoss,
    backward; eval-mode logits from the weights before the train forward.
    Both: one SGD step (lr 0.001, momentum 0.9) and the train-mode logits and loss after it
    (step2.*). full (resnet18_32x2.bin): also every gradient up to 80k elements, the
    activations and the generator samples; otherwise (resnet18_32x8.bin) REQUIRED_GRADS and
    every 1-D gradient (batch norms, fc.bias).

    Conditioning: with batch 2, layer4's batch norms (1x1 spatial) normalise two values per
    channel, which makes the train-mode gradients ill-conditioned: PyTorch float32 itself is
    ~3e-4 (logits) and up to ~6e-2 (gradients, normalised by max|grad|) from a float64
    evaluation, whatever the summation order, and the step-2 logits ~0.45. With batch 8 those
    are ~3e-6, ~2e-5 and ~6e-6; the eval-mode logits are ~1e-6 in both. Compare train-mode
    results against resnet18_32x8.bin; resnet18_32x2.bin's are for debugging."""
    fx = Fixture() if dtype == torch.float32 else Fixture64()
    model, names, new_sd = generated_resnet(arch)
    model = model.to(dtype)
    x = torch.from_numpy(gen_param(1000, "uniform", (batch, 3, 32, 32))).to(dtype)
    labels = torch.tensor(labels, dtype=torch.int64)
    assert labels.numel() == batch
    fx.add("input", x)
    fx.add("labels", labels)
    fx.add("state_dict.numel", np.array([v.numel() for v in new_sd.values()], np.int64))
    if full:
        add_generator_samples(fx, names, new_sd)

    # Eval-mode logits on the untouched running statistics.
    em = copy.deepcopy(model).eval()
    with torch.no_grad():
        fx.add("eval_logits", em(x))
    if eval_only:
        return fx

    # Train-mode forward (with the intermediate activations for debugging when full).
    model.train()
    acts = {}

    def hook(key):
        def fn(_m, _i, o):
            acts[key] = o.detach().clone()
        return fn
    if full:
        for key in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
            getattr(model, key).register_forward_hook(hook(key))
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    fx.add("logits", logits)
    fx.add("loss", loss)
    for key, v in acts.items():
        fx.add("act.%s" % key, v.reshape(v.shape[0], -1) if key == "avgpool" else v)

    # Gradients ("grad.<name>", PyTorch's shapes) in full up to 80k elements; larger conv
    # weights (layer4.1.conv2.weight alone is 9.4 MB) as their first HEAD output channels
    # ("grad.<name>.head", a prefix of the OIHW tensor). Every weight also gets the
    # per-output-channel L2 norms of its full gradient ("gradnorm.<name>", (O)).
    for name, p in model.named_parameters():
        gr = p.grad.detach()
        if full or name in required_grads(arch, names) or gr.dim() == 1:
            if gr.numel() <= 80000:
                fx.add("grad.%s" % name, gr)
            else:
                fx.add("grad.%s.head" % name, gr[:HEAD])
        if gr.dim() >= 2:
            fx.add("gradnorm.%s" % name, gr.reshape(gr.shape[0], -1).double().norm(dim=1)
                   .float())
    # Batch-norm buffers after the train-mode forward ("after.<name>").
    for name, b in model.named_buffers():
        fx.add("after.%s" % name, b.reshape(1) if b.dim() == 0 else b)

    # One SGD step of the seed's optimiser, then the train-mode loss on the same batch.
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    opt.step()
    opt.zero_grad()
    logits2 = model(x)
    fx.add("step2.logits", logits2)
    fx.add("step2.loss", F.cross_entropy(logits2, labels))
    return fx


LABELS8 = [3, 7, 0, 9, 1, 5, 2, 8]


class Fixture64(Fixture):
    """Collects a float64 run's tensors (not written as such: see make_resnet_ref)."""

    def add(self, name, value):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        self.tensors.append((name, np.array(value, copy=True)))


def make_resnet_ref(arch, batch, eval_only):
    """The deeper nets' fixture: the float64 run's results (the truth, rounded to float32) and,
    for each float tensor X, "noise.X" = [max, RMS] of |PyTorch float32 - float64| over it: how
    far float32 arithmetic itself strays on this input. Deep nets in train mode at 32x32 are
    ill-conditioned (resnet50 batch 8: conv1's gradient 2% of its max, the step-2 logits 80%),
    so the test's tolerance per tensor is a multiple of that noise, not a fixed fraction."""
    labels = LABELS8[:batch]
    f32 = make_resnet(batch, labels, False, arch, eval_only)
    f64 = make_resnet(batch, labels, False, arch, eval_only, torch.float64)
    out = Fixture()
    for (name, a), (name64, b) in zip(f32.tensors, f64.tensors):
        assert name == name64, (name, name64)
        if b.dtype == np.float64:
            out.add(name, b.astype(np.float32))
            d = np.abs(a.astype(np.float64) - b)
            out.add("noise." + name, np.array([d.max(), np.sqrt((d * d).mean())], np.float32))
        else:
            out.add(name, a)
    return out


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", help="write only <arch>_32x<batch>.bin (generated at test time "
                    "for the deeper ResNets, which are too large to commit)")
    ap.add_argument("--batch", type=int, default=8, choices=(2, 8))
    ap.add_argument("--eval-only", action="store_true", help="eval logits only (resnet101/152)")
    ap.add_argument("--out", help="folder for --arch (default tests/fixtures)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.arch:
        global OUTDIR
        OUTDIR = args.out or OUTDIR
        os.makedirs(OUTDIR, exist_ok=True)
        fx = make_resnet_ref(args.arch, args.batch, args.eval_only)
        fx.write("%s_32x%d.bin" % (args.arch, args.batch))
        return
    os.makedirs(OUTDIR, exist_ok=True)
    total = 0
    for fn, filename in ((make_conv2d, "op_conv2d.bin"), (make_bn, "op_bn.bin"),
                         (make_relu, "op_relu.bin"), (make_act, "op_act.bin"),
                         (make_maxpool, "op_maxpool.bin"),
                         (make_avgpool, "op_avgpool.bin"), (make_linear, "op_linear.bin"),
                         (make_add, "op_add.bin"), (make_xent, "op_xent.bin"),
                         (make_sgd, "op_sgd.bin"),
                         (lambda: make_resnet(2, [3, 7], True), "resnet18_32x2.bin"),
                         (lambda: make_resnet(8, [3, 7, 0, 9, 1, 5, 2, 8], False),
                          "resnet18_32x8.bin")):
        total += fn().write(filename)
    print("total: %d bytes" % total)


if __name__ == "__main__":
    main()
