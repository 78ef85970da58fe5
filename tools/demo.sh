#!/bin/sh
# make demo: the main job on real data anyone can install — ResNet18 trained on a subset of
# Fashion-MNIST (Debian's dataset-fashion-mnist) at 32x32 for one epoch with the seed's
# optimiser, then evaluated on the test set, printing the seed's lines.
set -eu
cd "$(dirname "$0")/.."
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-build/demo}
mkdir -p "$OUT"
./cltrain devices
echo "== cltrain train: Fashion-MNIST, 32x32, 1 epoch on ${TRAIN_LIMIT:-6400} images =="
start=$(date +%s)
./cltrain train --data "$DATA" --image-size 32 --batch-size 64 --epochs 1 \
    --train-limit "${TRAIN_LIMIT:-6400}" --test-limit "${TEST_LIMIT:-2000}" \
    --lr 0.01 --momentum 0.9 --seed 1 --print-every 20 \
    --log "$OUT/demo.jsonl" --save "$OUT/fashion-resnet18.pth"
echo "== cltrain eval of the saved model =="
./cltrain eval --data "$DATA" --weights "$OUT/fashion-resnet18.pth" --image-size 32 \
    --test-limit "${TEST_LIMIT:-2000}"
echo "demo: $(( $(date +%s) - start )) s; model in $OUT/fashion-resnet18.pth (loads in PyTorch)"
