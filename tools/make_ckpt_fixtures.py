#!/usr/bin/python3
"""Writes the small checkpoint fixtures tests/test_ckpt.c reads.

Run with Debian's python3 (torch 1.13): /usr/bin/python3 tools/make_ckpt_fixtures.py [outdir]
Default outdir: tests/fixtures. Deterministic (fixed seeds) except ckpt_legacy.pth, whose
storage keys the legacy writer derives from memory addresses; total well under 300 KB.

Expect files (*.expect.bin), format CLCK version 1, all little-endian:
  b"CLCK", u32 version (1), u32 count, then per entry:
  u32 name length, name (UTF-8), u8 kind (0 tensor, 1 int, 2 float, 3 string), then
  tensor: u8 dtype (0 float -> values as f64 of torch's .float(), 1 integer -> i64),
          u32 ndim, i64 shape[ndim], numel values (f64 or i64), C order
  int: i64 | float: f64 | string: u32 length + UTF-8 bytes
"""
import collections
import io
import json
import os
import struct
import sys
import zipfile

import torch

EXPECT_MAGIC = b"CLCK"
EXPECT_VERSION = 1


def expect_bytes(entries):
    """entries: list of (name, value) in the order cltrain must return them."""
    out = io.BytesIO()
    out.write(EXPECT_MAGIC + struct.pack("<II", EXPECT_VERSION, len(entries)))
    for name, v in entries:
        nb = name.encode()
        out.write(struct.pack("<I", len(nb)) + nb)
        if isinstance(v, torch.Tensor):
            t = v.detach().contiguous()
            is_float = t.is_floating_point()
            vals = t.float().double() if is_float else t.long()
            out.write(struct.pack("<BBI", 0, 0 if is_float else 1, t.dim()))
            out.write(struct.pack("<%dq" % t.dim(), *t.shape))
            fmt = "<%d%s" % (t.numel(), "d" if is_float else "q")
            out.write(struct.pack(fmt, *vals.reshape(-1).tolist()))
        elif isinstance(v, bool) or isinstance(v, int):
            out.write(struct.pack("<Bq", 1, int(v)))
        elif isinstance(v, float):
            out.write(struct.pack("<Bd", 2, v))
        elif isinstance(v, str):
            sb = v.encode()
            out.write(struct.pack("<BI", 3, len(sb)) + sb)
        else:
            raise TypeError(name)
    return out.getvalue()


def small_state_dict():
    torch.manual_seed(0)
    # A real module's state_dict: an OrderedDict carrying _metadata (BUILD).
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net[1].num_batches_tracked.fill_(17)
    net[1].running_var.uniform_(0.5, 2.0)
    sd = net.state_dict()
    big = torch.randn(7, 3)
    sd["odd"] = torch.randn(1, 7, 1, 3)
    sd["big"] = big
    sd["big_slice"] = big[2:5]           # shares big's storage, offset 6
    sd["big_column"] = big[:, 1]         # stride 3, offset 1
    sd["transposed"] = torch.randn(3, 5).t()
    half = torch.tensor([0.0, -0.0, 1.0, 65504.0, 6e-8, 1e-5, -3.0e-6, float("inf"),
                         float("-inf"), float("nan"), 0.1, -2.5], dtype=torch.float16)
    sd["half"] = half.reshape(3, 4)
    sd["double"] = torch.randn(2, 3, dtype=torch.float64) * 1e3 + 1e-9
    sd["bf16"] = torch.randn(5).bfloat16()
    sd["int32"] = torch.arange(-3, 3, dtype=torch.int32)
    sd["int16"] = torch.tensor([-32768, 32767], dtype=torch.int16)
    sd["int8"] = torch.tensor([-128, 5], dtype=torch.int8)
    sd["uint8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2))
    sd["scalar_f"] = torch.tensor(2.5)
    sd["long_big"] = torch.tensor([2**40, -(2**62)], dtype=torch.int64)
    return sd


def nested_checkpoint():
    torch.manual_seed(1)
    inner = collections.OrderedDict()
    inner["conv1.weight"] = torch.randn(2, 1, 3, 3)
    inner["bn1.num_batches_tracked"] = torch.tensor(5)
    ckpt = {"state_dict": inner, "epoch": 3, "lr": 0.01, "name": "x", "flag": True,
            "nothing": None, "big_int": 2**40, "neg": -5,
            "opt": {"momentum": 0.9, "deep": {"k": 7}}}
    expect = [("state_dict.conv1.weight", inner["conv1.weight"]),
              ("state_dict.bn1.num_batches_tracked", inner["bn1.num_batches_tracked"]),
              ("epoch", 3), ("lr", 0.01), ("name", "x"), ("flag", 1),
              ("big_int", 2**40), ("neg", -5), ("opt.momentum", 0.9), ("opt.deep.k", 7)]
    return ckpt, expect


def evil_zip(path):
    # GLOBAL 'os system' applied to ('echo pwned',): must be refused, never run.
    pkl = (b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", 10) + b"echo pwned" +
           b"\x85" + b"R" + b".")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in (("ckpt_evil/data.pkl", pkl), ("ckpt_evil/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def safetensors_bytes(tensors, metadata):
    """Hand-written safetensors (the safetensors package is not installed here)."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
             torch.uint8: "U8", torch.bool: "BOOL"}
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)

    sd = small_state_dict()
    torch.save(sd, p("ckpt_small.pth"))
    torch.save(sd, p("ckpt_small_p4.pth"), pickle_protocol=4)  # FRAME, MEMOIZE, STACK_GLOBAL
    write(p("ckpt_small.expect.bin"), expect_bytes(list(sd.items())))

    ckpt, expect = nested_checkpoint()
    torch.save(ckpt, p("ckpt_nested.pth"))
    write(p("ckpt_nested.expect.bin"), expect_bytes(expect))

    legacy = collections.OrderedDict(w=torch.ones(2))
    torch.save(legacy, p("ckpt_legacy.pth"), _use_new_zipfile_serialization=False)
    evil_zip(p("ckpt_evil.pth"))

    st = [("conv.weight", sd["0.weight"]), ("half", sd["half"]), ("bf16", sd["bf16"]),
          ("double", sd["double"]), ("num_batches_tracked", sd["1.num_batches_tracked"]),
          ("int32", sd["int32"]), ("uint8", sd["uint8"]), ("bool", sd["bool"]),
          ("empty", sd["empty"])]
    write(p("ckpt_small.safetensors"), safetensors_bytes(st, {"format": "pt"}))
    write(p("ckpt_small_st.expect.bin"), expect_bytes([("format", "pt")] + st))

    total = sum(os.path.getsize(p(f)) for f in os.listdir(out) if f.startswith("ckpt_"))
    print("wrote fixtures to %s (%d bytes)" % (out, total))


if __name__ == "__main__":
    main()
