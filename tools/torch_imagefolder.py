#!/usr/bin/python3
"""torchvision's view of an image folder, for the Criterion suite to compare against.

    /usr/bin/python3 tools/torch_imagefolder.py list ROOT OUT
        OUT gets ImageFolder(ROOT).samples as "path\\0label\\0" records (names may hold newlines).
    /usr/bin/python3 tools/torch_imagefolder.py transform PATH OUT RESIZE CROP
        OUT gets the uint8 (H, W, 3) bytes of CenterCrop(CROP)(Resize(RESIZE)(PIL image)).
    /usr/bin/python3 tools/torch_imagefolder.py rrc PATH OUT SIZE TOP LEFT H W FLIP
        OUT gets resized_crop(img, TOP, LEFT, H, W, (SIZE, SIZE)) [+ hflip] bytes, as
        RandomResizedCrop + RandomHorizontalFlip give for that box.
    /usr/bin/python3 tools/torch_imagefolder.py tensor PATH OUT RESIZE CROP
        OUT gets the float32 (3, CROP, CROP) tensor of Normalize(ImageNet)(ToTensor()(...)) of
        the same Resize + CenterCrop.
    /usr/bin/python3 tools/torch_imagefolder.py jobs FILE
        runs one of the commands above per line of FILE (arguments split on tabs): one start-up.
"""
import os
import sys

import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.datasets import ImageFolder


def run(argv):
    cmd = argv[0]
    if cmd == "list":
        samples = ImageFolder(argv[1]).samples
        with open(argv[2], "wb") as f:
            for path, label in samples:
                f.write(os.fsencode(path) + b"\0" + str(label).encode() + b"\0")
        return
    img = Image.open(argv[1]).convert("RGB")
    if cmd == "transform":
        out = T.CenterCrop(int(argv[4]))(T.Resize(int(argv[3]))(img))
    elif cmd == "rrc":
        size, top, left, h, w, flip = (int(a) for a in argv[3:9])
        out = F.resized_crop(img, top, left, h, w, [size, size])
        if flip:
            out = F.hflip(out)
    elif cmd == "tensor":
        tf = T.Compose([T.Resize(int(argv[3])), T.CenterCrop(int(argv[4])), T.ToTensor(),
                        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        with open(argv[2], "wb") as f:
            f.write(tf(img).numpy().astype("<f4").tobytes())
        return
    else:
        raise SystemExit(f"unknown command {cmd}")
    with open(argv[2], "wb") as f:
        f.write(out.tobytes())


def main():
    if sys.argv[1] == "jobs":
        with open(sys.argv[2]) as f:
            for line in f:
                if line.strip():
                    run(line.rstrip("\n").split("\t"))
    else:
        run(sys.argv[1:])


if __name__ == "__main__":
    main()
