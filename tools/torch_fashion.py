#!/usr/bin/python3
"""The demo's recipe in PyTorch, to put cltrain's Fashion-MNIST accuracy next to PyTorch's.

Usage: tools/torch_fashion.py [--data /usr/share/datasets/fashion-mnist] [--image-size 32]
         [--epochs 1] [--train-limit 6400] [--test-limit 2000] [--batch-size 64] [--lr 0.01]
         [--momentum 0.9] [--seed 1] [--print-every 20] [--threads 2]

Same recipe as `cltrain train --data DIR --image-size S ...`: the first N images of each IDX
split, torchvision Resize((S,S)) on PIL images, ToTensor, gray replicated to 3 channels,
resnet18(num_classes=10) with torchvision's default initialisation, SGD with momentum,
CrossEntropyLoss, reshuffled every epoch, the last partial batch kept; the seed's output lines.
(The two runs share the recipe, not the random numbers: initial weights and shuffling differ.)
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image


def read_idx(path):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    magic = int.from_bytes(raw[0:4], "big")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xFF)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load(data, split, limit, size):
    pre = "train" if split == "train" else "t10k"
    def find(kind):
        for ext in ("", ".gz"):
            p = os.path.join(data, "%s-%s-ubyte%s" % (pre, kind, ext))
            if os.path.exists(p):
                return p
        raise SystemExit("no %s-%s-ubyte[.gz] in %s" % (pre, kind, data))
    imgs, labels = read_idx(find("images-idx3")), read_idx(find("labels-idx1"))
    if limit:
        imgs, labels = imgs[:limit], labels[:limit]
    tf = T.Compose([T.Resize((size, size)), T.ToTensor()])
    x = torch.stack([tf(Image.fromarray(im)).expand(3, size, size) for im in imgs])
    return x, torch.from_numpy(labels.astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=6400)
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--print-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train", a.train_limit, a.image_size)
    xte, yte = load(a.data, "test", a.test_limit, a.image_size)
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(xtr))
        running = 0.0
        for i, s in enumerate(range(0, len(xtr), a.batch_size)):
            idx = order[s:s + a.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            running += loss.item()
            if i % a.print_every == a.print_every - 1:
                print(f"[Epoch {epoch + 1}, Batch {i + 1}] loss: {running / a.print_every:.3f}",
                      flush=True)
                running = 0.0
    print("Finished Training")
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(xte), a.batch_size):
            pred = model(xte[s:s + a.batch_size]).argmax(1)
            correct += (pred == yte[s:s + a.batch_size]).sum().item()
    print(f"Accuracy of the network on the {len(xte)} test images: "
          f"{100 * correct / len(xte):.2f}%")
    print(f"torch_fashion: {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
