#!/usr/bin/python3
"""Checks that PyTorch loads a checkpoint cltrain wrote.

usage: /usr/bin/python3 tools/check_ckpt_torch.py FILE [--resnet18 NUM_CLASSES] [--expect EXPECT.bin]

  torch.load(FILE, weights_only=True); with --resnet18, torchvision's
  resnet18(num_classes=C).load_state_dict(sd, strict=True) must accept it; with
  --expect, every entry must equal the CLCK expect file (format: see
  tools/make_ckpt_fixtures.py) bit for bit, in order. Exit 0/1, one-line summary.
"""
import argparse
import math
import struct
import sys

import torch


def read_expect(path):
    with open(path, "rb") as f:
        b = f.read()
    if b[:4] != b"CLCK":
        raise ValueError("%s: not a CLCK expect file" % path)
    version, count = struct.unpack_from("<II", b, 4)
    if version != 1:
        raise ValueError("%s: CLCK version %d, expected 1 (regenerate it)" % (path, version))
    pos, out = 12, []

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v

    for _ in range(count):
        (nl,) = take("<I")
        name = b[pos:pos + nl].decode()
        pos += nl
        (kind,) = take("<B")
        if kind == 0:
            dt, nd = take("<BI")
            shape = take("<%dq" % nd)
            numel = math.prod(shape)
            vals = take("<%d%s" % (numel, "d" if dt == 0 else "q"))
            t = torch.tensor(vals, dtype=torch.float64 if dt == 0 else torch.int64)
            out.append((name, t.float().reshape(shape) if dt == 0 else t.reshape(shape)))
        elif kind == 1:
            out.append((name, take("<q")[0]))
        elif kind == 2:
            out.append((name, take("<d")[0]))
        else:
            (sl,) = take("<I")
            out.append((name, b[pos:pos + sl].decode()))
            pos += sl
    return out


def flatten(d, prefix=""):
    """Nested dicts flattened with '.', None skipped, bools as ints: what cltrain reads."""
    out = []
    for k, v in d.items():
        name = prefix + str(k)
        if isinstance(v, dict):
            out.extend(flatten(v, name + "."))
        elif v is not None:
            out.append((name, int(v) if isinstance(v, bool) else v))
    return out


def same(a, b):
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or tuple(a.shape) != tuple(b.shape):
            return "shape %s, expected %s" % (getattr(a, "shape", type(a)), tuple(b.shape))
        a = a.detach().contiguous()
        if b.is_floating_point():
            a32 = a.float().reshape(-1).view(torch.int32)
            bad = (a32 != b.reshape(-1).view(torch.int32)).nonzero()
        else:
            bad = (a.long().reshape(-1) != b.reshape(-1)).nonzero()
        return "element %d differs" % bad[0].item() if len(bad) else None
    if isinstance(b, float):
        ok = isinstance(a, float) and struct.pack("<d", a) == struct.pack("<d", b)
        return None if ok else "%r, expected %r" % (a, b)
    return None if type(a) is type(b) and a == b else "%r, expected %r" % (a, b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("file")
    ap.add_argument("--resnet18", type=int, metavar="NUM_CLASSES")
    ap.add_argument("--expect")
    args = ap.parse_args()
    try:
        sd = torch.load(args.file, map_location="cpu", weights_only=True)
    except Exception as e:  # any refusal by torch is the failure we report
        msg = str(e).splitlines()[0]
        if "Unsupported operand 71" in str(e):  # 'G' = BINFLOAT
            msg = "BINFLOAT: this PyTorch's weights_only unpickler cannot load float scalars"
        print("FAIL %s: torch.load(weights_only=True, torch %s): %s" % (args.file, torch.__version__, msg))
        return 1
    what = ["torch.load(weights_only=True) ok, %d entries" % len(sd)]
    if args.resnet18 is not None:
        import torchvision
        model = torchvision.models.resnet18(num_classes=args.resnet18)
        tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        try:
            model.load_state_dict(tensors, strict=True)
        except Exception as e:
            print("FAIL %s: resnet18(num_classes=%d).load_state_dict(strict=True): %s"
                  % (args.file, args.resnet18, str(e).splitlines()[0]))
            return 1
        what.append("resnet18(num_classes=%d) strict load ok" % args.resnet18)
    if args.expect:
        got, want = flatten(sd), read_expect(args.expect)
        if [n for n, _ in got] != [n for n, _ in want]:
            print("FAIL %s: names/order differ from %s" % (args.file, args.expect))
            return 1
        for (name, a), (_, b) in zip(got, want):
            why = same(a, b)
            if why:
                print("FAIL %s: '%s': %s" % (args.file, name, why))
                return 1
        what.append("%d entries equal %s bit for bit" % (len(want), args.expect))
    print("OK %s: %s" % (args.file, "; ".join(what)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
