#!/bin/sh
# Strict OpenCL C 1.2 check of the kernels with clang's OpenCL front end (Debian's clang).
# Usage: tools/check-cl.sh [FILE.cl...]      (default: every cl/*.cl, in sorted order)
#
# Each file is compiled on its own, then all of them together as the runtime builds them (one
# program, sources concatenated in sorted order with a `#line 1 "name"` marker each, see
# host/runtime/clrt_program.c), for both the 32-bit and the 64-bit SPIR targets, with every OpenCL
# extension switched OFF (-cl-ext=-all): `double`, a `half` variable, cl_khr_fp16/fp64 pragmas,
# float atomics, 64-bit atomics, sub-groups and OpenCL 2.0 built-ins (work_group_reduce_*,
# generic address space, program-scope globals) all fail, so anything optional must sit behind
# an `#ifdef cl_khr_...` with a fallback (the fallback is what gets checked here).
# Warnings are errors. The -D macros are the ones the runtime passes (host/runtime/clrt.c).
#
# Then the kernels of cl/ are built once more as cltrain builds them, through pocl (its CPU
# device, the driver `make test` runs on), by `cltrain selftest --strict`: the same build path,
# -D options and optimisation level as a run, from source into an empty pocl cache. It fails
# when the build log is not empty: pocl's compiler warns where clang's front end alone cannot
# (e.g. a `#pragma unroll` that its optimiser cannot honour). About a second on 2 cores.
#
# Environment: CLANG (default clang, else clang-14), CHECK_CL_FLAGS (extra flags, e.g.
# "-Xclang -cl-ext=+cl_khr_fp16" to also check a guarded fp16 path), CLTRAIN_BIN (default
# ./cltrain, built by `make cltrain`), CHECK_CL_POCL=0 (skip the pocl build).
set -eu
cd "$(dirname "$0")/.."

if [ -z "${CLANG:-}" ]; then
    for c in clang clang-14 clang-15 clang-16; do
        if command -v "$c" >/dev/null 2>&1; then CLANG=$c; break; fi
    done
fi
if [ -z "${CLANG:-}" ] || ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "check-cl: clang not found (Debian: apt-get install clang)" >&2
    exit 2
fi

if [ $# -eq 0 ]; then
    LC_ALL=C; export LC_ALL   # byte order, as make's $(sort) and so the runtime's program
    set -- cl/*.cl
    [ -e "$1" ] || { echo "check-cl: no cl/*.cl files" >&2; exit 2; }
fi

# -finclude-default-header declares the 1.2 built-ins (opencl-c.h); -fdeclare-opencl-builtins
# is not used: clang 14's table-driven declarations differ in a few corners.
FLAGS="-x cl -cl-std=CL1.2 -fsyntax-only -Xclang -finclude-default-header -Xclang -cl-ext=-all
       -Werror -Wall -Wno-unused-function
       -Wno-unknown-pragmas -Wignored-pragmas
       -DCLTRAIN_MAX_WG=256 -DCLTRAIN_LOCAL_MEM=32768 ${CHECK_CL_FLAGS:-}"
TARGETS="spir spir64"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-cl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fail=0
for f in "$@"; do
    for t in $TARGETS; do
        # shellcheck disable=SC2086
        if ! "$CLANG" -target "$t" $FLAGS "$f" >"$tmp/log" 2>&1; then
            echo "check-cl: FAIL $f ($t, OpenCL C 1.2, no extensions):" >&2
            cat "$tmp/log" >&2
            fail=1
            break
        fi
    done
done

# The whole program as the runtime builds it: catches duplicate names across files and
# helpers used before (or without) their definition in another file.
all=$tmp/program.cl
for f in "$@"; do
    { printf '#line 1 "%s"\n' "$f"; cat "$f"; printf '\n'; } >>"$all"
done
for t in $TARGETS; do
    # shellcheck disable=SC2086
    if ! "$CLANG" -target "$t" $FLAGS "$all" >"$tmp/log" 2>&1; then
        echo "check-cl: FAIL whole program ($*) ($t):" >&2
        cat "$tmp/log" >&2
        fail=1
        break
    fi
done

if [ $fail -ne 0 ]; then
    exit 1
fi
echo "check-cl: OK: $# files, strict OpenCL C 1.2 without extensions ($("$CLANG" --version | head -n 1))"

# The whole program through pocl, as a run builds it (host/runtime/clrt_program.c).
[ "${CHECK_CL_POCL:-1}" = 0 ] && exit 0
bin=${CLTRAIN_BIN:-./cltrain}
if [ ! -x "$bin" ]; then
    echo "check-cl: $bin not found: build it first (make cltrain), or CHECK_CL_POCL=0" >&2
    exit 2
fi
if ! POCL_CACHE_DIR=$tmp/pocl CLTRAIN_KERNEL_DIR=cl "$bin" selftest -n 16 --strict \
        --device 'Portable Computing Language' >"$tmp/log" 2>&1; then
    echo "check-cl: FAIL: the kernels of cl/ built through pocl (cltrain selftest --strict):" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "check-cl: OK: cl/ built through pocl with an empty build log ($(sed -n 's/^cltrain: device [0-9:]* //p' "$tmp/log"))"
