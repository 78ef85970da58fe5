#!/bin/sh
# Install what cltrain needs to build, test and run its demo, from Debian/Ubuntu packages.
# Idempotent: does nothing (and needs no network) when everything is installed; runs
# `apt-get update` only when something must be installed. Root or sudo.
# chromium (and a font for its text) is only for the report's headless screenshot test, which
# skips without it: about a minute of download in CI, two seconds of test.
set -eu

PACKAGES="build-essential pkg-config clang ocl-icd-opencl-dev opencl-headers pocl-opencl-icd
libclblast-dev libzip-dev zlib1g-dev libcriterion-dev libjpeg62-turbo-dev libpng-dev
python3 python3-numpy python3-torch python3-torchvision python3-pil dataset-fashion-mnist
libopenblas0-pthread oclgrind libopenmpi-dev openmpi-bin chromium fonts-dejavu-core"

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: this system has no apt; install these (or your distribution's" >&2
    echo "equivalents) by hand:" >&2
    echo "  $(echo $PACKAGES)" >&2
    exit 1
fi

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps: need root or sudo to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done" >&2
