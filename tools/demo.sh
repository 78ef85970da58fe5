#!/bin/sh
# make demo: the main job on real data anyone can install (Debian's dataset-fashion-mnist).
set -eu
cd "$(dirname "$0")/.."
./cltrain devices
./cltrain selftest
