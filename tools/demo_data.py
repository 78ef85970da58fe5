#!/usr/bin/python3
"""The transfer-learning demo's data, from Debian's dataset-fashion-mnist (stdlib only).

    tools/demo_data.py OUT_DIR [--source-train N] [--source-test N] [--per-class N]

OUT_DIR/source/: the source task as IDX files (gzipped): the first N training images of
  Fashion-MNIST's classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), labels kept,
  and test images of the same classes.
OUT_DIR/target/: the target task as an image folder of PNG files (8-bit gray, 28x28): the
  other five classes (Sandal, Shirt, Sneaker, Bag, Ankle boot), --per-class training images
  each in train/<class>/, --val-per-class (50) each from the test set in val/<class>/.
OUT_DIR/heldout/: five more test images of the target classes (one per class) for predict.
Deterministic: always the first images of each class, in file order.
"""
import argparse
import gzip
import os
import struct
import zlib

SRC = "/usr/share/datasets/fashion-mnist"
NAMES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle_boot"]
SOURCE, TARGET = range(0, 5), range(5, 10)


def idx(name):
    with gzip.open(os.path.join(SRC, name), "rb") as f:
        data = f.read()
    if name.find("images") >= 0:
        n, h, w = struct.unpack(">III", data[4:16])
        return [data[16 + i * h * w:16 + (i + 1) * h * w] for i in range(n)]
    return list(data[8:])


def write_idx(path, images, labels):
    with gzip.open(path + "-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28) + b"".join(images))
    with gzip.open(path + "-labels-idx1-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


def png(path, px, w=28, h=28):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xffffffff)
    raw = b"".join(b"\0" + px[y * w:(y + 1) * w] for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--source-train", type=int, default=6000)
    ap.add_argument("--source-test", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--val-per-class", type=int, default=50)
    a = ap.parse_args()
    tr_x, tr_y = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    te_x, te_y = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    src = os.path.join(a.out, "source")
    os.makedirs(src, exist_ok=True)
    for split, xs, ys, n in (("train", tr_x, tr_y, a.source_train), ("t10k", te_x, te_y,
                                                                      a.source_test)):
        keep = [i for i, y in enumerate(ys) if y in SOURCE][:n]
        write_idx(os.path.join(src, split), [xs[i] for i in keep], [ys[i] for i in keep])
    tgt = os.path.join(a.out, "target")
    for split, xs, ys, n, skip in (("train", tr_x, tr_y, a.per_class, 0),
                                   ("val", te_x, te_y, a.val_per_class, 0),
                                   ("heldout", te_x, te_y, 1, a.val_per_class)):
        for c in TARGET:
            d = os.path.join(a.out, "heldout") if split == "heldout" else \
                os.path.join(tgt, split, NAMES[c])
            os.makedirs(d, exist_ok=True)
            for k, i in enumerate([i for i, y in enumerate(ys) if y == c][skip:skip + n]):
                name = f"{NAMES[c].lower()}.png" if split == "heldout" else f"{k:04d}.png"
                png(os.path.join(d, name), xs[i])


if __name__ == "__main__":
    main()
