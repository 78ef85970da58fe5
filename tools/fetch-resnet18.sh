#!/bin/sh
# Download torchvision's ImageNet ResNet18 weights (resnet18-f37072fd.pth) and verify them:
# size 46830571 bytes, SHA-256 starting f37072fd (torchvision names files by the first 8 hex
# digits of their SHA-256). Written atomically: downloaded to a temporary file, verified,
# renamed. Needs internet, curl or wget, and sha256sum (or shasum / openssl).
# Usage: tools/fetch-resnet18.sh [FILE]      (default ./resnet18-f37072fd.pth)
set -eu

URL=https://download.pytorch.org/models/resnet18-f37072fd.pth
PREFIX=f37072fd
SIZE=46830571

die() { echo "fetch-resnet18: $*" >&2; exit 1; }

out=${1:-./resnet18-f37072fd.pth}
[ $# -le 1 ] || die "usage: $0 [FILE]"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
    elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 "$1" | sed 's/.*= *//'
    else die "no sha256sum, shasum or openssl to verify the download"
    fi
}

verify() {  # FILE -> 0 when size and hash prefix match; sets $why otherwise
    n=$(wc -c <"$1" | tr -d ' ')
    if [ "$n" != "$SIZE" ]; then why="size $n bytes, expected $SIZE"; return 1; fi
    h=$(sha256_of "$1")
    case $h in
        "$PREFIX"*) return 0 ;;
        *) why="SHA-256 $h does not start with $PREFIX"; return 1 ;;
    esac
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

why=
if [ -f "$out" ] && verify "$out"; then
    echo "fetch-resnet18: $out already present and verified"
    exit 0
fi

outdir=$(dirname "$out")
made=
[ -d "$outdir" ] || made=1
mkdir -p "$outdir" || die "cannot create $outdir"
tmp=$(mktemp "$outdir/.resnet18.XXXXXX") || die "cannot create a temporary file in $outdir"
trap 'rm -f "$tmp"; [ -z "$made" ] || rmdir "$outdir" 2>/dev/null || :' EXIT
trap 'exit 1' INT TERM HUP

# FETCH_RESNET18_FILE: use an already downloaded file instead (still verified).
if [ -n "${FETCH_RESNET18_FILE:-}" ]; then
    cp "$FETCH_RESNET18_FILE" "$tmp" || die "cannot read $FETCH_RESNET18_FILE"
else
    echo "fetch-resnet18: downloading $URL"
    download "$URL" "$tmp"
fi
verify "$tmp" || die "verification failed: $why"
chmod 644 "$tmp"
mv -f "$tmp" "$out" || die "cannot write $out"
made=
echo "fetch-resnet18: $out ready"
