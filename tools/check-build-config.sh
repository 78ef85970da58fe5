#!/bin/sh
# A change of build configuration rebuilds what it affects (the Makefile's $(BUILD)/.flags):
# a cltrain built without MPI, then with it, links MPI; an unchanged configuration rebuilds
# nothing; new CFLAGS recompile. In a scratch build folder, so ./cltrain is left alone.
# (The bug this guards: `make demo` on a fresh machine built without MPI before Open MPI was
# installed, and the next `make test` ran that binary under mpirun without rebuilding it.)
set -eu
cd "$(dirname "$0")/.."
B=$(mktemp -d "${TMPDIR:-/tmp}/cltrain-config-XXXXXX")
trap 'rm -rf "$B"' EXIT
fail() { echo "check-build-config: $*" >&2; exit 1; }
build() { make --no-print-directory -j2 BUILD="$B" "$@" "$B/cltrain" > "$B/log" 2>&1 ||
          { cat "$B/log" >&2; fail "make $* failed"; }; }
compiled() { grep -c -- ' -c -o ' "$B/log" || true; }
has_mpi() { nm "$B/cltrain" | grep -q ' U MPI_Init'; }

build MPI=0
has_mpi && fail "MPI=0 built a cltrain that links MPI"
if command -v mpicc >/dev/null 2>&1; then
    build MPI=1
    has_mpi || fail "MPI=1 after MPI=0 left a cltrain without MPI (nothing rebuilt?)"
    [ "$(compiled)" -gt 0 ] || fail "MPI=1 after MPI=0 recompiled nothing"
    mpi=1
else
    mpi=0
fi
build MPI=$mpi
[ "$(compiled)" -eq 0 ] || fail "an unchanged configuration recompiled $(compiled) files"
CFLAGS=-O1 build MPI=$mpi
[ "$(compiled)" -gt 0 ] || fail "new CFLAGS recompiled nothing"
echo "check-build-config: MPI off -> on relinks with MPI, unchanged rebuilds nothing, new CFLAGS recompile: ok"
