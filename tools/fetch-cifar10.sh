#!/bin/sh
# Download the CIFAR-10 binary version and unpack it: DIR/cifar-10-batches-bin/ (default DIR:
# ./data). Needs internet, curl or wget, md5sum (or md5 / openssl) and tar.
# Usage: tools/fetch-cifar10.sh [DIR]
set -eu

URL=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
MD5=c32a1d4ab5d03f1284b67883e8d87530   # published checksum of cifar-10-binary.tar.gz
NAME=cifar-10-batches-bin

die() { echo "fetch-cifar10: $*" >&2; exit 1; }

dir=${1:-./data}
[ $# -le 1 ] || die "usage: $0 [DIR]"

if [ -f "$dir/$NAME/test_batch.bin" ] && [ -f "$dir/$NAME/data_batch_5.bin" ]; then
    echo "fetch-cifar10: $dir/$NAME already present"
    exit 0
fi

md5_of() {
    if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1
    elif command -v md5 >/dev/null 2>&1; then md5 -q "$1"
    elif command -v openssl >/dev/null 2>&1; then openssl dgst -md5 "$1" | sed 's/.*= *//'
    else die "no md5sum, md5 or openssl to verify the download"
    fi
}

download() {  # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fSL --progress-bar --retry 3 --connect-timeout 30 -o "$2" "$1" || die "download failed: $1 (curl)"
    elif command -v wget >/dev/null 2>&1; then
        wget -O "$2" "$1" || die "download failed: $1 (wget)"
    else
        die "neither curl nor wget is installed"
    fi
}

made=
[ -d "$dir" ] || made=1
mkdir -p "$dir" || die "cannot create $dir"
tmp=$(mktemp -d "$dir/.cifar10.XXXXXX") || die "cannot create a temporary folder in $dir"
trap 'rm -rf "$tmp"; [ -z "$made" ] || rmdir "$dir" 2>/dev/null || :' EXIT
trap 'exit 1' INT TERM HUP

# FETCH_CIFAR10_FILE: use an already downloaded archive instead (still verified).
if [ -n "${FETCH_CIFAR10_FILE:-}" ]; then
    cp "$FETCH_CIFAR10_FILE" "$tmp/c.tar.gz" || die "cannot read $FETCH_CIFAR10_FILE"
else
    echo "fetch-cifar10: downloading $URL"
    download "$URL" "$tmp/c.tar.gz"
fi

got=$(md5_of "$tmp/c.tar.gz")
[ "$got" = "$MD5" ] || die "checksum mismatch: MD5 $got, expected $MD5"

mkdir "$tmp/x" || die "cannot create $tmp/x"
tar -xzf "$tmp/c.tar.gz" -C "$tmp/x" || die "cannot extract the archive"
for f in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin \
         test_batch.bin batches.meta.txt; do
    [ -f "$tmp/x/$NAME/$f" ] || die "archive lacks $NAME/$f"
done
rm -rf "${dir:?}/$NAME"
mv "$tmp/x/$NAME" "$dir/$NAME" || die "cannot move the data into $dir/$NAME"
made=
echo "fetch-cifar10: $dir/$NAME ready"
