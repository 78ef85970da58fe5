#!/bin/sh
# tools/device-check.sh — does this OpenCL device train like the reference device?
#
# Usage: tools/device-check.sh [--device SPEC] [--cltrain PATH] [--bench-shapes 32x64,224x64]
#                              [--steps N] [--no-bench] [--record]
#
# 1. `cltrain devices`;
# 2. the reference run: 5 SGD steps of ResNet18 (init from --seed 7, the committed data in
#    tests/fixtures/devref/, 32x32, batch 16, lr 0.001, momentum 0.9, no shuffling), then the
#    eval logits of the trained model on 16 test images, compared with the reference recorded on
#    pocl (tests/fixtures/devref/reference.txt): relative loss difference at most 1e-4 on the
#    first step and 1e-3 after five, logits within 1e-3 (absolute); plus the same run
#    twice, which must be bitwise identical on one device;
# 3. `cltrain bench` at each shape (default 32x64 and 224x64);
# 4. PyTorch's numbers on the same shapes when python3 with torch and a CUDA GPU is present;
# then one summary table. Exit 0 when the reference comparison passes.
#
# Works where nothing can be installed: give --cltrain a bundled binary (tools/bundle.sh) and,
# for a vendor OpenCL library that is present but not registered with the ICD loader (no file
# in /etc/OpenCL/vendors), this script writes an .icd file for it and points OCL_ICD_VENDORS at
# it (NVIDIA's libnvidia-opencl.so.1, AMD's libamdocl64.so, Intel's libigdrcl.so) when
# `cltrain devices` finds no GPU.
# --record rewrites the reference from this device (do it on pocl only).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cltrain=""
device=${CLTRAIN_DEVICE:-}
shapes="32x64,224x64"
steps=5
bench=1
record=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --cltrain) cltrain=$2; shift 2 ;;
        --bench-shapes) shapes=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --no-bench) bench=0; shift ;;
        --record) record=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "device-check: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
if [ -z "$cltrain" ]; then
    cltrain="$here/cltrain"
    [ -x "$cltrain" ] || make -C "$here" cltrain >&2
fi
[ -x "$cltrain" ] || { echo "device-check: no cltrain binary at $cltrain" >&2; exit 1; }
ref="$here/tests/fixtures/devref"
work=$(mktemp -d "${TMPDIR:-/tmp}/cltrain-devcheck.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# A present but unregistered vendor library: register it for this run only.
register_vendor_icds() {
    found=""
    for lib in libnvidia-opencl.so.1 libamdocl64.so libigdrcl.so; do
        for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64 \
                   /usr/local/cuda/compat /opt/rocm/lib /opt/amdgpu/lib64; do
            if [ -e "$dir/$lib" ]; then
                mkdir -p "$work/vendors"
                echo "$dir/$lib" > "$work/vendors/${lib%%.so*}.icd"
                found="$found $dir/$lib"
                break
            fi
        done
    done
    if [ -n "$found" ]; then
        # Keep the registered ones too.
        [ -d /etc/OpenCL/vendors ] && cp /etc/OpenCL/vendors/*.icd "$work/vendors/" 2>/dev/null || true
        export OCL_ICD_VENDORS="$work/vendors"
        echo "device-check: registered OpenCL libraries for this run:$found" >&2
    fi
}

dev_args=""
[ -n "$device" ] && dev_args="--device $device"
echo "== cltrain devices"
if ! "$cltrain" devices > "$work/devices.txt" 2>&1 || ! grep -q "type: GPU" "$work/devices.txt"; then
    register_vendor_icds
    "$cltrain" devices > "$work/devices.txt" 2>&1 || true
fi
cat "$work/devices.txt"

train_run() {  # $1: output folder
    mkdir -p "$1"
    # shellcheck disable=SC2086
    "$cltrain" train --data "$ref" $dev_args --seed 7 --image-size 32 --batch-size 16 \
        --lr 0.001 --momentum 0.9 --no-shuffle --epochs 1 --max-steps "$steps" \
        --test-limit 16 --log "$1/log.jsonl" --save "$1/model.pth" > "$1/train.txt" 2>&1 &&
    "$cltrain" eval --data "$ref" $dev_args --weights "$1/model.pth" --image-size 32 \
        --batch-size 16 --test-limit 16 --predictions "$1/pred.csv" > "$1/eval.txt" 2>&1
}

# "loss STEP VALUE" and "logit ROW K VALUE" lines from a run folder.
summarise() {
    sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/loss \1 \2/p' "$1/log.jsonl"
    awk -F, 'NR > 1 { for (k = 4; k <= NF; k++) printf "logit %d %d %s\n", $1, k - 4, $k }' \
        "$1/pred.csv"
}

echo "== reference run (5 steps + eval logits)"
status=0
if ! train_run "$work/a"; then
    cat "$work/a/train.txt" "$work/a/eval.txt" 2>/dev/null
    echo "device-check: the reference run failed" >&2
    exit 1
fi
summarise "$work/a" > "$work/a/summary.txt"
if [ "$record" = 1 ]; then
    dev=$(sed -n 's/^cltrain: device [^ ]* \(.*\)$/\1/p' "$work/a/train.txt" | head -n 1)
    { echo "# cltrain reference run, recorded by tools/device-check.sh --record on: $dev"
      cat "$work/a/summary.txt"; } > "$ref/reference.txt"
    echo "device-check: wrote $ref/reference.txt"
fi
train_run "$work/b" || { echo "device-check: the second run failed" >&2; exit 1; }
summarise "$work/b" > "$work/b/summary.txt"
if cmp -s "$work/a/summary.txt" "$work/b/summary.txt" && cmp -s "$work/a/model.pth" "$work/b/model.pth"; then
    repro="bitwise identical"
else
    repro="DIFFERENT"
    status=1
fi

# Compare with the reference: prints the table rows, exits 1 past a tolerance.
grep -v '^#' "$ref/reference.txt" > "$work/ref.txt"
if ! awk -v steps="$steps" '
    FNR == NR { ref[$1 " " $2 " " ($1 == "logit" ? $3 : "")] = $NF; next }
    { key = $1 " " $2 " " ($1 == "logit" ? $3 : ""); got[key] = $NF }
    END {
        bad = 0; maxlog = 0; worst = 0
        for (s = 1; s <= steps; s++) {
            k = "loss " s " "
            if (!(k in got) || !(k in ref)) { printf "  step %d: missing\n", s; bad = 1; continue }
            d = got[k] - ref[k]; if (d < 0) d = -d
            r = ref[k] < 0 ? -ref[k] : ref[k]
            rel = d / r; tol = (s == 1) ? 1e-4 : 1e-3
            printf "  step %d loss %.7f  reference %.7f  rel %.2e%s\n", s, got[k], ref[k], rel, ((rel <= tol) ? "" : "  FAIL")
            if (rel > tol) bad = 1
        }
        for (k in ref) if (k ~ /^logit/) { v = ref[k] < 0 ? -ref[k] : ref[k]; if (v > maxlog) maxlog = v }
        n = 0
        for (k in ref) if (k ~ /^logit/) {
            if (!(k in got)) { bad = 1; continue }
            d = got[k] - ref[k]; if (d < 0) d = -d; n++
            if (d > worst) worst = d
        }
        fail = (worst > 1e-3 || n == 0)
        printf "  eval logits: %d values (largest %.3f), max|diff| %.2e%s\n", n, maxlog, worst, (fail ? "  FAIL" : "")
        if (fail) bad = 1
        exit bad
    }' "$work/ref.txt" "$work/a/summary.txt" > "$work/compare.txt"; then
    status=1
fi
cat "$work/compare.txt"
echo "  same run twice: $repro"

bench_rows=""
if [ "$bench" = 1 ]; then
    echo "== cltrain bench"
    for shape in $(echo "$shapes" | tr ',' ' '); do
        S=${shape%x*}; B=${shape#*x}
        # shellcheck disable=SC2086
        if line=$("$cltrain" bench --image-size "$S" --batch-size "$B" --steps 5 $dev_args 2>"$work/bench.err" | tail -n 1); then
            echo "  $line"
            tr=$(echo "$line" | sed -n 's/.*"train_images_per_s":\([0-9.]*\).*/\1/p')
            ev=$(echo "$line" | sed -n 's/.*"eval_images_per_s":\([0-9.]*\).*/\1/p')
            mem=$(echo "$line" | sed -n 's/.*"peak_device_bytes":\([0-9]*\).*/\1/p')
            bench_rows="$bench_rows$S $B $tr $ev $mem\n"
        else
            echo "  ${S}x${B}: failed: $(tail -n 1 "$work/bench.err")"
            bench_rows="$bench_rows$S $B failed - -\n"
        fi
    done
    if command -v python3 >/dev/null 2>&1 &&
       python3 -c "import torch, torchvision; assert torch.cuda.is_available()" 2>/dev/null; then
        echo "== PyTorch on CUDA, same shapes"
        python3 "$here/tools/bench_torch.py" --torch-device cuda --no-sgemm --shapes "$shapes" \
            --steps 5 || true
    else
        echo "== PyTorch with a CUDA GPU: not present here, skipped"
    fi
fi

echo
echo "== summary"
dev=$(sed -n 's/^cltrain: device \(.*\)$/\1/p' "$work/a/train.txt" | head -n 1)
echo "device:            $dev"
echo "reference:         $(head -n 1 "$ref/reference.txt" | sed 's/^# cltrain reference run, recorded by tools\/device-check.sh --record on: //')"
echo "reference check:   $( [ "$status" = 0 ] && echo PASS || echo FAIL)"
echo "reproducible:      $repro"
if [ -n "$bench_rows" ]; then
    printf "%-10s %-6s %14s %14s %12s\n" image batch "train img/s" "eval img/s" "peak MiB"
    printf "$bench_rows" | while read -r S B tr ev mem; do
        if [ "$mem" = "-" ]; then mib="-"; else mib=$(awk -v b="$mem" 'BEGIN { printf "%.0f", b / 1048576 }'); fi
        printf "%-10s %-6s %14s %14s %12s\n" "${S}x${S}" "$B" "$tr" "$ev" "$mib"
    done
fi
exit $status
