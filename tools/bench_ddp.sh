#!/bin/sh
# Data-parallel scaling on pocl's CPU device: images/s of `cltrain train` (resnet18, global
# batch B at SxS, STEPS steps, the median step after two warm-up steps) for
#   1 device on every core | 1 device on 1 core | 2 devices x 1 core in one process |
#   2 MPI ranks x 1 core
# pocl shows two devices with POCL_DEVICES="pthread pthread"; POCL_MAX_PTHREAD_COUNT=1 gives
# each one core, so 2 replicas x 1 core compare with 1 replica x 1 core (scaling efficiency).
# --buckets "0 25" runs the two replica configurations once per CLTRAIN_DDP_BUCKET_MB value
# (0: one all-reduce after backward; 25: DDP's buckets overlapped with backward), in one run
# so their ratios compare on a loaded host; default: the variable as the environment has it.
# Usage: sh tools/bench_ddp.sh [--cltrain ./cltrain] [--batch 32] [--size 32] [--steps 10]
#                              [--buckets "MB MB ..."]
set -eu
bin=./cltrain B=32 S=32 STEPS=10 BUCKETS=""
while [ $# -gt 0 ]; do
    case $1 in
        --cltrain) bin=$2; shift 2 ;; --batch) B=$2; shift 2 ;;
        --size) S=$2; shift 2 ;; --steps) STEPS=$2; shift 2 ;;
        --buckets) BUCKETS=$2; shift 2 ;;
        *) echo "bench_ddp: unknown argument $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d /tmp/cltrain-ddp-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work" $((B * STEPS)) <<'PY'
import sys
sys.path.insert(0, "tools")
from torch_parity import write_cifar
write_cifar(sys.argv[1] + "/data_batch_1.bin", int(sys.argv[2]), 1)
write_cifar(sys.argv[1] + "/test_batch.bin", 2, 2)
PY
args="train --data $work --epochs 1 --batch-size $B --image-size $S --no-shuffle --test-limit 2 --print-every 1000000"
median() {  # the median images/s of the steps after the first two, from a --log file
    /usr/bin/python3 -c "
import json, sys, statistics
v = [json.loads(l)['images_per_s'] for l in open(sys.argv[1]) if 'images_per_s' in l][2:]
print('%.1f' % statistics.median(v))" "$1"
}
run() {  # name, extra flags, then the command's environment and launcher words
    name=$1 extra=$2; shift 2
    env "$@" $args $extra --log "$work/log" > /dev/null 2>&1 || { echo "$name: FAILED" >&2; exit 1; }
    printf '%-50s %8s img/s\n' "$name" "$(median "$work/log")"
}
echo "resnet18, global batch $B at ${S}x${S}, $STEPS steps, median step (cores: $(nproc))"
run "1 device, all cores" "" CLTRAIN_DEVICE=cpu "$bin"
run "1 device, 1 core" "" CLTRAIN_DEVICE=cpu POCL_MAX_PTHREAD_COUNT=1 "$bin"
replicas() {  # the two replica configurations; $1: a label for the bucket size
    run "2 devices x 1 core, one process$1" "--devices 0:0,0:1" POCL_DEVICES="pthread pthread" \
        POCL_MAX_PTHREAD_COUNT=1 "$bin"
    if command -v mpirun >/dev/null 2>&1; then
        run "2 MPI ranks x 1 core$1" "" CLTRAIN_DEVICE=cpu POCL_MAX_PTHREAD_COUNT=1 \
            mpirun --allow-run-as-root --oversubscribe -np 2 -x CLTRAIN_DEVICE \
            -x POCL_MAX_PTHREAD_COUNT ${CLTRAIN_DDP_BUCKET_MB+-x CLTRAIN_DDP_BUCKET_MB} "$bin"
    fi
}
if [ -z "$BUCKETS" ]; then
    replicas ""
else
    for mb in $BUCKETS; do
        export CLTRAIN_DDP_BUCKET_MB=$mb
        replicas ", buckets $mb MiB"
    done
fi
