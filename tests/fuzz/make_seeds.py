#!/usr/bin/python3
"""Writes the fuzzers' seed corpora under tests/fuzz/corpus/<target>/ (small files only).

Run from the repository root with Debian's python3 (torch 1.13):
    /usr/bin/python3 tests/fuzz/make_seeds.py
Checkpoint seeds are copies of tests/fixtures/ckpt_*; pickles come from torch.save; the data
set seeds are tiny generated CIFAR-10 and IDX files; the argument seeds typical command lines; the image seeds small files of every
format (tools/make_image_fixtures.py).
"""
import collections
import gzip
import io
import os
import shutil
import zipfile

import torch

ROOT = "tests/fuzz/corpus"
FIX = "tests/fixtures"


def out(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def torch_bytes(obj, legacy=False, protocol=2):
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    return b.getvalue()


def data_pkl(zbytes):
    with zipfile.ZipFile(io.BytesIO(zbytes)) as z:
        return z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])


def state_dicts():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    yield "module", net.state_dict()
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    yield "dtypes", collections.OrderedDict([
        ("f16", t.half()), ("bf16", t.bfloat16()), ("f64", t.double()), ("i64", t.long()),
        ("i32", t.int()), ("b", t > 5), ("u8", t.to(torch.uint8)), ("scalar", torch.tensor(3.5))])
    yield "views", {"a": t, "col": t[:, 1], "tr": t.t(), "off": t.reshape(-1)[5:9]}
    yield "nested", {"state_dict": {"w": t, "n": 7, "s": "x", "f": 0.25}, "epoch": 3,
                     "flag": True, "none": None, "list": [1, 2], "tuple": (1, "a")}


def ckpt_seeds():
    for name in ("ckpt_small.pth", "ckpt_nested.pth", "ckpt_small_p4.pth", "ckpt_evil.pth",
                 "ckpt_legacy.pth", "ckpt_small.safetensors"):
        out("ckpt", name, read(os.path.join(FIX, name)))
    out("ckpt", "empty", b"")
    out("ckpt", "zip_no_pkl.pth", zip_without_pkl())
    for name, sd in state_dicts():
        if name == "module":
            out("ckpt", "torch_%s.pth" % name, torch_bytes(sd))


def zip_without_pkl():
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("archive/version", "3\n")
    return b.getvalue()


def safetensors_seeds():
    out("safetensors", "small.safetensors", read(os.path.join(FIX, "ckpt_small.safetensors")))
    import json
    import struct
    hdr = {"__metadata__": {"format": "pt", "cltrain.scalar_kinds": "epoch:i", "epoch": "3"}}
    hdr["w"] = {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}
    hdr["x"] = {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]}
    hdr["y"] = {"dtype": "F64", "shape": [], "data_offsets": [12, 20]}
    hdr["z"] = {"dtype": "I64", "shape": [1], "data_offsets": [20, 28]}
    h = json.dumps(hdr).encode()
    out("safetensors", "dtypes.safetensors", struct.pack("<Q", len(h)) + h + bytes(range(28)))
    h = b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
    out("safetensors", "empty_tensor.safetensors", struct.pack("<Q", len(h)) + h)


def pickle_seeds():
    for name in ("ckpt_small.pth", "ckpt_nested.pth", "ckpt_small_p4.pth", "ckpt_evil.pth"):
        out("pickle", name.replace(".pth", ".pkl"), data_pkl(read(os.path.join(FIX, name))))
    for name, sd in state_dicts():
        out("pickle", "%s_p2.pkl" % name, data_pkl(torch_bytes(sd, protocol=2)))
        out("pickle", "%s_p4.pkl" % name, data_pkl(torch_bytes(sd, protocol=4)))


def cifar_record(label, seed):
    return bytes([label]) + bytes((seed * 31 + i * 7) % 256 for i in range(3072))


def cifar_seeds():
    out("cifar", "two_records", b"\x00" + cifar_record(1, 1) + cifar_record(9, 2))
    out("cifar", "one_record_auto", b"\x02" + cifar_record(0, 3))
    names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
    out("cifar", "meta", b"\x01" + names.encode())
    out("cifar", "meta_crlf", b"\x03" + names.replace("\n", " \r\n").encode())


def idx_file(magic, dims, data):
    b = bytes([0, 0, 8, magic])
    for d in dims:
        b += d.to_bytes(4, "big")
    return b + bytes(data)


def idx_seeds():
    images = idx_file(3, [2, 3, 3], range(18))
    labels = idx_file(1, [2], [0, 1])
    out("idx", "train_images", b"\x00" + images)
    out("idx", "train_labels", b"\x01" + labels)
    out("idx", "test_images_auto", b"\x06" + images)
    out("idx", "test_labels", b"\x03" + idx_file(1, [2], [4, 9]))
    out("idx", "train_images_gz", b"\x00" + gzip.compress(images, mtime=0))
    out("idx", "test_labels_gz", b"\x03" + gzip.compress(labels, mtime=0))


def image_seeds():
    """Small files of every format and mode the image decoders take."""
    import sys
    sys.path.insert(0, "tools")
    import make_image_fixtures as fx
    keep = {"png_gray2.png", "png_pal4_adam7.png", "png_rgb16.png", "png_la8.png",
            "png_pal8_trns.png", "jpeg_420_37x23.jpg", "jpeg_prog_37x23.jpg",
            "jpeg_gray_37x23.jpg", "jpeg_cmyk_37x23.jpg", "bmp_pal.bmp", "bmp_topdown.bmp",
            "bmp_1bit.bmp", "pnm_gray16.pgm", "pnm_rgb100.ppm"}
    for kind in fx.KINDS.values():
        for name, data in kind():
            if name in keep:
                out("image", name, data)


def args_seeds():
    lines = {
        "train_basic": (0, "--data\0/tmp/cifar\0--epochs\0002\0--batch-size\0008\0--image-size\00032"),
        "train_full": (0, "--data=/d\0--dataset\0cifar10\0--weights\0w.pth\0--strict\0"
                          "--num-classes\00010\0--max-steps\0005\0--lr\0001e-3\0--momentum\0000.9\0"
                          "--weight-decay\0005e-4\0--normalize\0imagenet\0--augment\0flip-crop\0"
                          "--no-shuffle\0--seed\0007\0--train-limit\00064\0--test-limit\00016\0"
                          "--print-every\0001\0--log\0l.jsonl\0--save\0m.safetensors\0"
                          "--checkpoint\0c.pth\0--checkpoint-every\0002\0--freeze\0layer2\0"
                          "--bn-eval\0--device\0cpu"),
        "train_resume": (0, "--resume\0c.pth\0--data\0d\0--epochs\0003"),
        "train_bad": (0, "--batch-size\0-1\0--lr\0nan\0--image-size\000100000\0--bogus"),
        "eval_basic": (1, "--data\0d\0--weights\0w.pth\0--predictions\0p.csv\0--batch-size\00032"),
        "bench_basic": (2, "--batch-size\00016\0--image-size\00064\0--steps\0003\0--profile\0"
                           "--freeze\0backbone"),
        "help": (0, "--help"),
        "short_opts": (1, "-abc\0-x\0--\0rest"),
    }
    for name, (kind, s) in lines.items():  # "\0008" is the octal escape \000 (NUL), then "8"
        out("args", name, bytes([kind]) + s.encode())


if __name__ == "__main__":
    shutil.rmtree(ROOT, ignore_errors=True)
    ckpt_seeds()
    safetensors_seeds()
    pickle_seeds()
    cifar_seeds()
    idx_seeds()
    args_seeds()
    image_seeds()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print("seeds: %d bytes" % total)
