#!/bin/sh
# tools/check-mpi-sigint.sh — Ctrl-C on `mpirun -np 2 cltrain train` (issue 16), run by
# `make test`.
#
# Usage: tools/check-mpi-sigint.sh [CLTRAIN]   (default: ./cltrain of this checkout)
#
# Starts 2 ranks on the committed tiny data (tests/fixtures/devref, 32x32, batch 8) in the
# background, waits for the first logged step, sends SIGINT to mpirun (what a terminal's
# Ctrl-C does: each rank has its own process group, so only mpirun gets it) and checks:
#   - mpirun and both ranks end, all within bounded waits (never a hang);
#   - both ranks exit with the same interrupted status: Open MPI 4.1 turns mpirun's SIGINT
#     into SIGTERM for every rank, about odls_base_sigkill_timeout seconds later (10 here;
#     default 1), and SIGKILL as long after that, so that is 143 (130 if an Open MPI forwarded
#     SIGINT itself); mpirun itself exits 1;
#   - rank 0 alone says "interrupted ... training state saved to", once, and the state loads:
#     `--resume` under mpirun (same world size) continues from the saved step to the next one.
# Skips (exit 0, with a message) without mpirun or when cltrain was built without MPI. Every
# wait is bounded; `timeout` ends anything left.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cltrain=${1:-$here/cltrain}
case $cltrain in /*) ;; *) cltrain=$(pwd)/$cltrain ;; esac
if ! command -v mpirun >/dev/null 2>&1; then
    echo "check-mpi-sigint: skipped: no mpirun"
    exit 0
fi
work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "check-mpi-sigint: FAIL: $*"
    echo "--- mpirun's stderr:"
    cat "$work/err" 2>/dev/null
    exit 1
}
export CLTRAIN_DEVICE=${CLTRAIN_DEVICE:-cpu} W="$work"
args="train --data $here/tests/fixtures/devref --image-size 32 --batch-size 8 --lr 0.001
      --no-shuffle --test-limit 2 --epochs 1000 --checkpoint $work/state.pth"
# Each rank through sh, which records its exit status (sh ignores the signals; cltrain sets
# its own handlers).
rank='trap "" INT TERM; "$0" "$@"; echo $? > "$W/rank.$OMPI_COMM_WORLD_RANK"'
mpi="mpirun --allow-run-as-root --oversubscribe --mca odls_base_sigkill_timeout 10 -np 2"

# shellcheck disable=SC2086
timeout -k 10 400 $mpi sh -c "$rank" "$cltrain" $args --log "$work/log" \
    >"$work/out" 2>"$work/err" </dev/null &
pid=$!
i=0
while ! grep -q '"step"' "$work/log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        if grep -q "built without MPI" "$work/err"; then
            echo "check-mpi-sigint: skipped: cltrain built without MPI"
            exit 0
        fi
        fail "mpirun ended before the first step"
    fi
    i=$((i + 1))
    [ $i -gt 300 ] && fail "no step logged within 300 s"
    sleep 1
done
mp=$(pgrep -P "$pid" -x mpirun) || fail "no mpirun under timeout's pid $pid"
t0=$(date +%s)
kill -INT "$mp"
wait "$pid"
status=$?
pid=""
took=$(($(date +%s) - t0))
[ $status -eq 124 ] || [ $status -eq 137 ] && fail "mpirun did not end (timeout's status $status)"
r0=$(cat "$work/rank.0" 2>/dev/null) || fail "rank 0 recorded no exit status (killed?)"
r1=$(cat "$work/rank.1" 2>/dev/null) || fail "rank 1 recorded no exit status (killed?)"
echo "check-mpi-sigint: SIGINT to mpirun: ranks exited $r0 and $r1, mpirun $status, in ${took} s"
[ "$r0" = "$r1" ] || fail "the ranks exited differently ($r0, $r1)"
[ "$r0" = 143 ] || [ "$r0" = 130 ] || fail "the ranks exited $r0, not 143 (SIGTERM) or 130"
[ "$status" -ne 0 ] || fail "mpirun exited 0 after an interrupt"
n=$(grep -c "interrupted by signal .* training state saved to $work/state.pth" "$work/err")
[ "$n" = 1 ] || fail "$n 'training state saved' lines, not 1 (rank 0 alone saves)"
step=$(sed -n 's/.*interrupted by signal [0-9]* after step \([0-9]*\).*/\1/p' "$work/err")
[ -n "$step" ] && [ "$step" -ge 1 ] || fail "no step number in the interrupt message"
[ -s "$work/state.pth" ] || fail "no state file"

# The state loads and training continues from it: one more step, under mpirun again.
next=$((step + 1))
# shellcheck disable=SC2086
timeout -k 10 300 $mpi "$cltrain" $args --resume "$work/state.pth" --max-steps $next \
    --log "$work/log2" >"$work/out" 2>"$work/err" </dev/null
status=$?
[ $status -eq 0 ] || fail "--resume of the saved state: mpirun exited $status"
grep -q "\"step\":$next," "$work/log2" || fail "the resumed run logged no step $next"
grep -q "\"step\":$step," "$work/log2" && fail "the resumed run repeated step $step"
echo "check-mpi-sigint: ok (state saved once after step $step; --resume continued to $next)"
