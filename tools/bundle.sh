#!/bin/sh
# tools/bundle.sh [OUT] — a self-contained cltrain for a machine where nothing can be
# installed: the binary, the shared libraries it needs that are not part of the C library
# (CLBlast, libzip, the OpenCL ICD loader, and theirs), a launcher that points the dynamic
# loader at them, the device check and its reference data. The vendor's OpenCL driver itself
# (e.g. NVIDIA's libnvidia-opencl.so.1) comes from the target machine: the launcher registers a
# present but unregistered one with the ICD loader (OCL_ICD_VENDORS) when no GPU shows up.
#
#   tools/bundle.sh dist/cltrain          # then copy dist/cltrain anywhere and run
#   dist/cltrain/cltrain devices          # or: sh dist/cltrain/tools/device-check.sh --cltrain dist/cltrain/cltrain
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/dist/cltrain}
make -C "$here" cltrain >&2
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/tools" "$out/tests/fixtures"
cp "$here/cltrain" "$out/bin/cltrain"
# Every resolved dependency except the C runtime (libc, libm, libpthread, the loader, libdl,
# librt, libgcc_s, libstdc++ stay the target's: they must match its kernel and drivers).
ldd "$here/cltrain" | awk '/=> \// { print $3 }' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|ld-linux*|libdl.so*|librt.so*|libgcc_s.so*|libstdc++.so*) ;;
        *) cp -L "$lib" "$out/lib/" ;;
    esac
done
cat > "$out/cltrain" <<'LAUNCH'
#!/bin/sh
# cltrain launcher: the bundled libraries first; a present but unregistered vendor OpenCL
# library is registered for this process when the ICD loader finds no GPU.
d=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${OCL_ICD_VENDORS:-}" ] && ! "$d/bin/cltrain" devices 2>/dev/null | grep -q "type: GPU"; then
    v=$(mktemp -d "${TMPDIR:-/tmp}/cltrain-icd.XXXXXX")
    for lib in libnvidia-opencl.so.1 libamdocl64.so libigdrcl.so; do
        for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64 \
                   /usr/local/cuda/compat /opt/rocm/lib /opt/amdgpu/lib64; do
            [ -e "$dir/$lib" ] && { echo "$dir/$lib" > "$v/${lib%%.so*}.icd"; break; }
        done
    done
    cp /etc/OpenCL/vendors/*.icd "$v/" 2>/dev/null || true
    [ -n "$(ls "$v")" ] && export OCL_ICD_VENDORS="$v"
fi
exec "$d/bin/cltrain" "$@"
LAUNCH
chmod +x "$out/cltrain"
cp "$here/tools/device-check.sh" "$here/tools/bench_torch.py" "$out/tools/"
cp -r "$here/tests/fixtures/devref" "$out/tests/fixtures/"
echo "bundle: $out ($(du -sh "$out" | cut -f1)); libraries: $(ls "$out/lib" | tr '\n' ' ')" >&2
