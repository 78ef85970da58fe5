#!/bin/sh
# make check-oclgrind: every kernel of cl/ under Oclgrind (Debian's `oclgrind`, an OpenCL 1.2
# device simulator), through the real host launchers: the small op tests of the Criterion
# suite run with Oclgrind as the only OpenCL platform (the `oclgrind` wrapper preloads its
# runtime; CLTRAIN_DEVICE=oclgrind picks its device by name). Oclgrind always reports
# invalid global/local memory accesses, barrier divergence and bad work-group sizes; pass 1
# adds --data-races and --check-api, pass 2 --uninitialized; a coverage pass runs pass 1's
# tests again with --inst-counts only, to check that every kernel of cl/ ran.
#
# --inst-counts is kept out of the verdict passes: Oclgrind's InstructionCounter (21.10 and
# upstream to date) writes past its count vector when two work-groups of one launch call
# different sets of functions (workGroupComplete maps a work-group's call slots to the
# launch's union of callees but sizes the vector only to that work-group's), which corrupts
# Oclgrind's heap: gemm_packed's full and ragged tiles (vstore16 to global vs to private)
# crash the test process that way. The coverage pass reads only the per-kernel count lines;
# a crash there can only hide a kernel's line, which fails the check.
#
# CLBlast's GEMMs are not stubbed: its real kernels run under Oclgrind too (tiny shapes). Without
# a tuning file's routes CLBlast picks its direct kernels (XgemmDirect*, strided-batched too) for
# shapes this small; the indirect route (Xgemm with its copy/pad/transpose kernels, which
# tune_gemm/indirect_both_layouts forces) is left out: that test is killed by a signal under
# Oclgrind 21.10 inside CLBlast's indirect call, before any Oclgrind report (not investigated).
#
# Oclgrind's exit status does not say whether it reported anything, so each pass's output
# is scanned for its markers (a "Kernel:" context line under every kernel report, "Oclgrind -
# ..." for API errors, "OCLGRIND FATAL ERROR", "N errors generated"); any marker, or any test
# failing, fails the check. Logs: $OUT/races.log, $OUT/uninit.log.
#
# Usage: sh tools/check-oclgrind.sh [path/to/cltrain_tests]
set -u
BIN=${1:-build/tests/cltrain_tests}
OUT=${OCLGRIND_OUT:-build/oclgrind}
JOBS=${TEST_JOBS:-2}

if ! command -v oclgrind >/dev/null 2>&1; then
    echo "check-oclgrind: needs Oclgrind (Debian's oclgrind; sh tools/install-deps.sh)" >&2
    exit 1
fi
[ -x "$BIN" ] || { echo "check-oclgrind: no test binary $BIN (make $BIN)" >&2; exit 1; }
mkdir -p "$OUT"
export CLTRAIN_DEVICE=oclgrind

# Every kernel, every launcher switch (see docs/testing.md, "Oclgrind"). Left out: the tests whose
# shapes are too large to simulate in CI time (ops_conv/layout_large_index: millions of
# indices; ops_conv/k3_s1_p1_winograd: 128x64 channels; oclgrind/winograd_forward takes its
# place), host-only tests (ops_gradcheck), misuse tests that exit before any kernel.
PASS1="ops_gemm/transposes_offsets_and_beta
ops_conv/!(layout_large_index|k3_s1_p1_winograd)
ops_bn/*
ops_elementwise/*
ops_act/forward_backward_boundaries
ops_maxpool/*
ops_linear/*
ops_xent/*
ops_sgd/*
ops_optim/*
ops_scale/*
ops_determinism/*
oclgrind/*
runtime/kernel_round_trip"

# --uninitialized on the tests whose kernels Debian's Oclgrind 21.10 can instrument. Its
# Uninitialized plugin predates the LLVM it is built with: it stops with "Unsupported
# instruction: freeze" (LLVM's div/rem pairing) in maxpool_forward, maxpool_backward,
# col2im_k3s1, col2im_k3s2, winograd_input, winograd_output and gemm_splitk_reduce, and crashes (SIGSEGV inside Oclgrind) on bn_forward_train and
# bn_backward with 16-float vectors. Those tools' failures are not reports about our
# kernels, so the tests that launch them run in pass 1 only (bounds, races, divergence).
PASS2="ops_gemm/transposes_offsets_and_beta
ops_conv/@(k1_s1_p1_generic_col2im|k1_s1_pointwise|k1_s2_p0|k3_s3_p0_generic_col2im|k5_s1_p2_generic|k7_s2_p3|k7_s2_p3_on_2x2_window)
ops_bn/running_stats_unbiased
ops_elementwise/*
ops_act/forward_backward_boundaries
ops_maxpool/ties_padding_nan
ops_linear/*
ops_xent/*
ops_sgd/*
ops_optim/*
ops_scale/*
runtime/kernel_round_trip"

# Reports judged false positives, one extended regex per line over "kernel: message", each
# with its reason. None so far.
SUPPRESS=""

# run_filters NAME "FLAGS" "FILTERS": each filter through the test binary under oclgrind, all
# output in $OUT/NAME.log; fails when a filter's tests did not all pass.
run_filters() {
    name=$1 flags=$2 filters=$3 log="$OUT/$1.log" fail=0
    : > "$log"
    echo "check-oclgrind: $name pass (oclgrind $flags)" >&2
    for f in $filters; do
        # The exit status is not the verdict: a test process that ran every test to success
        # can still crash in its exit-time teardown under Oclgrind (heap corruption reported
        # by glibc, seen after CLBlast's GEMMs: its static program caches are released after
        # Oclgrind's runtime is gone; never on pocl, never inside a test). Criterion counts
        # those as "crashed during its setup or teardown" apart from the tests; the synthesis
        # line is what must show no failure and no crash.
        # shellcheck disable=SC2086
        oclgrind $flags "$BIN" --filter "$f" --jobs "$JOBS" --verbose > "$OUT/run.log" 2>&1
        cat "$OUT/run.log" >> "$log"
        if ! grep -q -E '^\[====\] Synthesis: Tested: [1-9][0-9]* \| Passing: [0-9]+ \| Failing: 0 \| Crashing: 0' "$OUT/run.log"; then
            echo "check-oclgrind: $name: tests failed under Oclgrind: $f" >&2
            fail=1
        fi
    done
    return $fail
}

# run_pass NAME "FLAGS" "FILTERS": run_filters, then Oclgrind's reports in the log.
run_pass() {
    name=$1 log="$OUT/$1.log" fail=0
    run_filters "$@" || fail=1
    n=$(grep -c 'crashed during its setup or teardown' "$log")
    [ "$n" -gt 0 ] && echo "check-oclgrind: $name: $n exit-time teardown crash(es) (see above; not a test failure)" >&2
    grep -E '^\[(PASS|FAIL)\]' "$log" | sed 's/^/  /' >&2
    # One line per report: the message (the line before the first context line) and kernel.
    awk '/^\tKernel: /{ print $2 ": " prev } /^(Oclgrind - |OCLGRIND FATAL)/{ print "api: " $0 }
         /errors generated/{ print "oclgrind: " $0 } { prev = $0 }' "$log" > "$OUT/$name.reports"
    if [ -n "$SUPPRESS" ]; then
        printf '%s\n' "$SUPPRESS" > "$OUT/suppress"
        grep -v -E -f "$OUT/suppress" "$OUT/$name.reports" > "$OUT/$name.left" || true
    else
        cp "$OUT/$name.reports" "$OUT/$name.left"
    fi
    if [ -s "$OUT/$name.left" ]; then
        echo "check-oclgrind: $name: Oclgrind reported (details in $log):" >&2
        sort "$OUT/$name.left" | uniq -c | sed 's/^/  /' >&2
        fail=1
    fi
    return $fail
}

# Every kernel of cl/ must have run in the coverage pass (--inst-counts prints "Instructions
# executed for kernel 'NAME'" per launch): a new kernel without a small test fails here. A
# kernel's name is the first "void NAME(" on its __kernel line or the line after (attributes
# may take the first).
check_coverage() {
    awk '/^__kernel/ { k = 2 } k > 0 && match($0, /void [A-Za-z0-9_]+\(/) {
             print substr($0, RSTART + 5, RLENGTH - 6); k = 0; next } { k-- }' cl/*.cl \
        | sort -u > "$OUT/kernels"
    sed -n "s/^Instructions executed for kernel '\(.*\)':$/\1/p" "$OUT/coverage.log" | sort -u \
        > "$OUT/ran"
    missing=$(comm -23 "$OUT/kernels" "$OUT/ran")
    echo "check-oclgrind: kernels run: the $(wc -l < "$OUT/kernels") of cl/, and CLBlast's" \
         "$(comm -13 "$OUT/kernels" "$OUT/ran" | tr '\n' ' ')" >&2
    if [ -n "$missing" ]; then
        echo "check-oclgrind: kernels of cl/ no test ran under Oclgrind:" $missing >&2
        return 1
    fi
}

start=$(date +%s)
rc=0
run_pass races "--data-races --check-api" "$PASS1" || rc=1
# Its tests' verdicts are the races pass's; only the count lines are read.
run_filters coverage "--inst-counts" "$PASS1" 2>/dev/null
check_coverage || rc=1
run_pass uninit "--uninitialized --check-api" "$PASS2" || rc=1
echo "check-oclgrind: $( [ $rc = 0 ] && echo OK || echo FAILED ) in $(( $(date +%s) - start )) s" >&2
exit $rc
