#!/bin/sh
# make demo: the transfer-learning workflow of the tutorial on data a Debian package ships.
#  1. source task: ResNet18 pretrained on five Fashion-MNIST classes (T-shirt/top, Trouser,
#     Pullover, Dress, Coat) at 32x32 -> build/demo/pretrained.pth, reused while the binary,
#     this recipe and the data script are unchanged (build/demo/pretrained.key); with
#     CLTRAIN_WEIGHTS=FILE (or ./resnet18-f37072fd.pth from tools/fetch-resnet18.sh)
#     torchvision's ImageNet weights are used instead;
#  2. target task: the other five classes (Sandal, Shirt, Sneaker, Bag, Ankle boot), 50 PNG
#     files per class in an image folder, read through the image-folder reader: fine-tune the
#     pretrained weights (fc replaced), the same recipe from scratch, then feature extraction
#     (--freeze backbone);
#  3. cltrain predict on held-out files with the fine-tuned model. Each run's report (curves,
#     confusion matrix, worst mistakes) is written by train --log beside its log:
#     build/demo/finetune.html, scratch.html, frozen.html.
# Ends with one "Transfer: ..." line and the three runs' times.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-build/demo}
PY=${PYTHON:-/usr/bin/python3}
SOURCE_TRAIN=${SOURCE_TRAIN:-3000}
PER_CLASS=${PER_CLASS:-50}
EPOCHS=${EPOCHS:-5}
mkdir -p "$OUT"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
acc() { sed -n 's/^Accuracy of the network on the [0-9]* test images: \([0-9.]*\)%$/\1/p' "$1" | tail -1; }

./cltrain devices
if [ ! -f "$OUT/data.key" ] || [ "$(cat "$OUT/data.key")" != "$(sha256sum tools/demo_data.py) $SOURCE_TRAIN $PER_CLASS" ]; then
    echo "== data: Fashion-MNIST classes 0-4 as IDX (source), 5-9 as PNG folders (target) =="
    rm -rf "$OUT/source" "$OUT/target" "$OUT/heldout"
    "$PY" tools/demo_data.py "$OUT" --source-train "$SOURCE_TRAIN" --per-class "$PER_CLASS"
    echo "$(sha256sum tools/demo_data.py) $SOURCE_TRAIN $PER_CLASS" > "$OUT/data.key"
fi

# ---- 1. the pretrained model ----
PRETRAIN="--image-size 32 --batch-size 64 --epochs 1 --lr 0.01 --momentum 0.9 --seed 1 --num-classes 10"
WEIGHTS=${CLTRAIN_WEIGHTS:-}
[ -z "$WEIGHTS" ] && [ -f resnet18-f37072fd.pth ] && WEIGHTS=resnet18-f37072fd.pth
NORM=none
if [ -n "$WEIGHTS" ]; then
    echo "== pretrained weights: $WEIGHTS (torchvision's ImageNet ResNet18) =="
    NORM=imagenet
else
    KEY="$(sha256sum cltrain | cut -d' ' -f1) $PRETRAIN $(cat "$OUT/data.key")"
    WEIGHTS="$OUT/pretrained.pth"
    if [ -f "$WEIGHTS" ] && [ -f "$OUT/pretrained.key" ] && [ "$(cat "$OUT/pretrained.key")" = "$KEY" ]; then
        echo "== source task: reusing $WEIGHTS (same cltrain, recipe and data) =="
    else
        echo "== source task: pretrain on $SOURCE_TRAIN Fashion-MNIST images of 5 classes, 32x32 =="
        rm -f "$OUT/pretrained.key"
        # --num-classes 10: the source head spans Fashion-MNIST's label space, so the target's
        # 5-class fc is a new layer, as the tutorial's model.fc = Linear(..., num_classes).
        ./cltrain train --data "$OUT/source" $PRETRAIN --test-limit 500 --print-every 20 --save "$WEIGHTS"
        echo "$KEY" > "$OUT/pretrained.key"
    fi
fi

# ---- 2. the target task, three ways ----
TARGET="--data $OUT/target --image-size 32 --batch-size 25 --epochs $EPOCHS --lr 0.01 \
 --momentum 0.9 --lr-schedule cosine --seed 2 --normalize $NORM --print-every 5"
run() {  # NAME FLAGS...
    name=$1; shift
    t0=$(now)
    ./cltrain train $TARGET "$@" --log "$OUT/$name.jsonl" --save "$OUT/$name.pth" | tee "$OUT/$name.txt"
    eval "t_$name=$(secs "$t0" "$(now)")"
}
echo "== target task: fine-tune the pretrained weights on $((PER_CLASS * 5)) PNG images, 5 classes =="
run finetune --weights "$WEIGHTS"
echo "== target task: the same recipe from scratch =="
run scratch
echo "== target task: feature extraction (--freeze backbone: only the new fc trains) =="
run frozen --weights "$WEIGHTS" --freeze backbone

# ---- 3. predict ----
echo "== cltrain predict with the fine-tuned model on held-out files =="
./cltrain predict --weights "$OUT/finetune.pth" --top-k 2 "$OUT/heldout"

echo "Transfer: $(acc "$OUT/finetune.txt")% from pretrained weights vs $(acc "$OUT/scratch.txt")% from scratch ($((PER_CLASS * 5)) training images, 5 classes)"
echo "Times: fine-tune ${t_finetune} s, from scratch ${t_scratch} s, frozen backbone ${t_frozen} s (frozen: $(acc "$OUT/frozen.txt")%)"
