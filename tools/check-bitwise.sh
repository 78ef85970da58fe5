#!/bin/sh
# Bitwise regression check: builds the cltrain of a reference commit (REF, default the last
# commit before the network-as-data rewrite) and runs it and ./cltrain on the same recipes:
# every saved model (weights, running statistics, num_batches_tracked), every step's loss in
# the JSONL log and every evaluation logit (%.9g, float32's round trip) must be equal, byte for
# byte. Numerics may only change on purpose; then move REF forward and say why in the commit.
#
# Usage: tools/check-bitwise.sh [--ref-bin PATH] [--ref REV] [--cltrain ./cltrain] [--keep DIR]
#   --ref-bin PATH  use an already built reference binary instead of building REV
set -eu

REF=289d43a79b812cba9df5a1fe8b08cc07fca94372   # main before the model rewrite (issue 24)
NEW=./cltrain
REF_BIN=
KEEP=
DEVICE=${CLTRAIN_DEVICE:-cpu}
while [ $# -gt 0 ]; do
    case "$1" in
    --ref) REF=$2; shift 2 ;;
    --ref-bin) REF_BIN=$2; shift 2 ;;
    --cltrain) NEW=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    *) echo "check-bitwise: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

work=${KEEP:-$(mktemp -d /tmp/cltrain-bitwise.XXXXXX)}
mkdir -p "$work"
[ -n "$KEEP" ] || trap 'rm -rf "$work"' EXIT

if [ -z "$REF_BIN" ]; then
    if ! git cat-file -e "$REF^{commit}" 2>/dev/null; then
        echo "check-bitwise: the reference commit $REF is not in this clone (a shallow clone?);" \
             "fetch the history or pass --ref-bin" >&2
        exit 1
    fi
    echo "check-bitwise: building the reference cltrain of ${REF%"${REF#????????????}"}"
    mkdir -p "$work/ref-src"
    git archive "$REF" | tar -x -C "$work/ref-src"
    make -s -C "$work/ref-src" -j2 cltrain >"$work/ref-build.log" 2>&1 ||
        { tail -20 "$work/ref-build.log" >&2; echo "check-bitwise: the reference build failed" >&2; exit 1; }
    REF_BIN=$work/ref-src/cltrain
fi

# A CIFAR-10-format data set: 40 training and 8 test images with some class structure.
${PYTHON:-/usr/bin/python3} - "$work/data" <<'EOF'
import os, sys
import numpy as np
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(24)
for name, n in (("data_batch_1.bin", 40), ("test_batch.bin", 8)):
    with open(os.path.join(d, name), "wb") as f:
        for i in range(n):
            pix = rng.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)
            pix[i % 3, : 8 + 2 * (i % 10)] //= 3
            f.write(bytes([i % 10]) + pix.tobytes())
EOF

fails=0
total=0
# run NAME ENV... -- ARGS...: trains with both binaries, evaluates each saved model with its
# binary, and compares the outputs.
run() {
    name=$1; shift
    total=$((total + 1))
    envs=
    while [ "$1" != "--" ]; do envs="$envs $1"; shift; done
    shift
    for side in ref new; do
        bin=$REF_BIN; [ $side = new ] && bin=$NEW
        out=$work/$name.$side
        mkdir -p "$out"
        # shellcheck disable=SC2086
        if ! env $envs CLTRAIN_DEVICE="$DEVICE" "$bin" train --data "$work/data" --epochs 1 \
                --no-shuffle --no-report --seed 7 --test-limit 8 --save "$out/model.safetensors" \
                --log "$out/log.jsonl" "$@" >"$out/train.txt" 2>&1; then
            echo "FAIL $name: $side's train failed:"; tail -5 "$out/train.txt"
            fails=$((fails + 1)); return
        fi
        # shellcheck disable=SC2086
        if ! env $envs CLTRAIN_DEVICE="$DEVICE" "$bin" eval --data "$work/data" \
                --weights "$out/model.safetensors" --image-size 48 --batch-size 8 \
                --predictions "$out/pred.csv" >"$out/eval.txt" 2>&1; then
            echo "FAIL $name: $side's eval failed:"; tail -5 "$out/eval.txt"
            fails=$((fails + 1)); return
        fi
        grep -o '"loss": *[^,}]*' "$out/log.jsonl" >"$out/losses.txt" || true
    done
    r=$work/$name.ref n=$work/$name.new bad=
    cmp -s "$r/model.safetensors" "$n/model.safetensors" || bad="$bad weights"
    cmp -s "$r/losses.txt" "$n/losses.txt" || bad="$bad losses"
    [ -s "$r/losses.txt" ] || bad="$bad no-losses-logged"
    cmp -s "$r/pred.csv" "$n/pred.csv" || bad="$bad logits"
    if [ -n "$bad" ]; then
        echo "FAIL $name: differs in:$bad"
        fails=$((fails + 1))
    else
        echo "ok   $name ($(wc -l <"$r/losses.txt") steps, $(($(wc -l <"$r/pred.csv") - 1)) logits rows)"
    fi
}

S="--image-size 32 --batch-size 4 --max-steps 3 --lr 0.05"
for arch in resnet18 resnet34 resnet50 resnet101 resnet152; do
    run "$arch" -- --arch $arch $S
done
run resnet18-frozen-bneval -- --arch resnet18 $S --freeze layer2 --bn-eval --label-smoothing 0.1 \
    --weight-decay 1e-4
run resnet50-backbone -- --arch resnet50 $S --freeze backbone
run resnet34-stem-48px -- --arch resnet34 --image-size 48 --batch-size 5 --max-steps 3 \
    --freeze stem --momentum 0
run resnet18-no-keep-cols CLTRAIN_KEEP_COLS=0 -- --arch resnet18 $S
run resnet18-two-replicas -- --arch resnet18 --image-size 32 --batch-size 8 --max-steps 2 \
    --devices "$DEVICE,$DEVICE" --lr 0.05
run resnet50-two-replicas -- --arch resnet50 --image-size 32 --batch-size 6 --max-steps 2 \
    --devices "$DEVICE,$DEVICE" --lr 0.05

if [ $fails -ne 0 ]; then
    echo "check-bitwise: $fails of $total recipes differ from the reference" \
         "(outputs in $work; --keep DIR keeps them)"
    exit 1
fi
echo "check-bitwise: all $total recipes bitwise equal to the reference"
