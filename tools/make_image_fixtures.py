#!/usr/bin/python3
"""Write small image files in every format cltrain decodes, with PIL's decode of each.

    /usr/bin/python3 tools/make_image_fixtures.py OUT_DIR [KIND ...]

KIND is jpeg, png, bmp or pnm (default: all). Sources are Fashion-MNIST images (Debian's
dataset-fashion-mnist; a synthetic pattern when it is absent), upscaled with PIL to odd sizes,
three images as the R, G, B planes for colour. PNGs come from a writer of our own (any bit depth
and colour type, tRNS, Adam7 interlace: PIL cannot write all of those); JPEG, BMP and PPM from
PIL. For every file NAME, OUT_DIR/expect.txt holds a line "NAME W H" and OUT_DIR/NAME.rgb holds
PIL's Image.open(NAME).convert("RGB") bytes (H, W, 3). Run by the Criterion suite at test time.
"""
import gzip
import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def sources(n):
    """n gray 28x28 uint8 images."""
    if os.path.exists(FASHION):
        with gzip.open(FASHION, "rb") as f:
            f.read(16)
            data = np.frombuffer(f.read(784 * n), dtype=np.uint8)
        return data.reshape(n, 28, 28)
    y, x = np.mgrid[0:28, 0:28]
    return np.stack([((x * 9 + y * (5 + i)) % 256).astype(np.uint8) for i in range(n)])


def gray(k, w, h):
    return Image.fromarray(SRC[k % len(SRC)]).resize((w, h), Image.BILINEAR)


def rgb(k, w, h):
    planes = [np.asarray(gray(k + i, w, h)) for i in range(3)]
    return Image.fromarray(np.stack(planes, axis=2), "RGB")


# ---- a PNG writer for every bit depth / colour type ----

def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def pack_row(samples, depth):
    """samples: 1-D uint16 array of one row's samples -> bytes at `depth` bits each."""
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    pad = (-len(samples)) % per
    s = np.concatenate([samples, np.zeros(pad, samples.dtype)]).reshape(-1, per)
    out = np.zeros(len(s), np.uint16)
    for i in range(per):
        out |= s[:, i].astype(np.uint16) << (8 - depth * (i + 1))
    return out.astype(np.uint8).tobytes()


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_bytes(arr, depth, ctype, plte=None, trns=None, interlace=False):
    """arr: (H, W, chans) samples already in range for depth."""
    h, w, _ = arr.shape
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\0" + pack_row(row.reshape(-1), depth)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        out += chunk(b"PLTE", bytes(plte))
    if trns is not None:
        out += chunk(b"tRNS", bytes(trns))
    out += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return out


def png_cases():
    w, h = 37, 23
    g = np.asarray(gray(0, w, h)).astype(np.uint16)
    c = np.asarray(rgb(1, w, h)).astype(np.uint16)
    a = np.asarray(gray(4, w, h)).astype(np.uint16)[..., None]
    g1 = g[..., None]
    yield "png_gray1.png", png_bytes(g1 >> 7, 1, 0)
    yield "png_gray2.png", png_bytes(g1 >> 6, 2, 0)
    yield "png_gray4.png", png_bytes(g1 >> 4, 4, 0)
    yield "png_gray8.png", png_bytes(g1, 8, 0)
    yield "png_gray16.png", png_bytes(g1 * 3 + (g1 >> 6), 16, 0)       # many values < 256
    yield "png_gray16_big.png", png_bytes(g1 * 257, 16, 0)
    yield "png_rgb8.png", png_bytes(c, 8, 2)
    yield "png_rgb16.png", png_bytes(c * 257 + 11, 16, 2)
    yield "png_la8.png", png_bytes(np.concatenate([g1, a], 2), 8, 4)
    yield "png_la16.png", png_bytes(np.concatenate([g1, a], 2) * 257 + 3, 16, 4)
    yield "png_rgba8.png", png_bytes(np.concatenate([c, a], 2), 8, 6)
    yield "png_rgba16.png", png_bytes(np.concatenate([c, a], 2) * 251, 16, 6)
    yield "png_rgb8_adam7.png", png_bytes(c, 8, 2, interlace=True)
    yield "png_gray2_adam7.png", png_bytes(g1 >> 6, 2, 0, interlace=True)
    pal = np.random.default_rng(5).integers(0, 256, size=(256, 3)).astype(np.uint8)
    for bits in (1, 2, 4, 8):
        idx = g1 >> (8 - bits)
        n = 1 << bits
        yield f"png_pal{bits}.png", png_bytes(idx, bits, 3, plte=pal[:n].tobytes())
    yield "png_pal8_trns.png", png_bytes(g1, 8, 3, plte=pal.tobytes(), trns=range(0, 256, 2))
    yield "png_pal4_adam7.png", png_bytes(g1 >> 4, 4, 3, plte=pal[:16].tobytes(), interlace=True)
    yield "png_rgb8_trns.png", png_bytes(c, 8, 2, trns=struct.pack(">HHH", 1, 2, 3))
    # indices past a short palette (PIL reads its default palette there)
    yield "png_pal4_short.png", png_bytes(g1 >> 4, 4, 3, plte=pal[:5].tobytes())
    yield "png_gray8_trns.png", png_bytes(g1, 8, 0, trns=struct.pack(">H", 7))


def pil_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg_cases():
    for k, (w, h) in enumerate([(37, 23), (64, 48), (101, 57)]):
        img = rgb(k, w, h)
        for sub, tag in ((2, "420"), (1, "422"), (0, "444")):
            yield f"jpeg_{tag}_{w}x{h}.jpg", pil_bytes(img, "JPEG", quality=85, subsampling=sub)
        yield f"jpeg_prog_{w}x{h}.jpg", pil_bytes(img, "JPEG", quality=75, progressive=True)
        yield f"jpeg_gray_{w}x{h}.jpg", pil_bytes(gray(k, w, h), "JPEG", quality=90)
        yield f"jpeg_cmyk_{w}x{h}.jpg", pil_bytes(img.convert("CMYK"), "JPEG", quality=90)
    yield "jpeg_q100_444.JPEG", pil_bytes(rgb(7, 45, 31), "JPEG", quality=100, subsampling=0)
    # a 100 kB ICC profile in APP2 segments: the frame header starts far past the first 4 kB
    yield "jpeg_icc_37x23.jpg", pil_bytes(rgb(8, 37, 23), "JPEG", icc_profile=bytes(100000))


def bmp_topdown(img):
    """A 24-bit BMP with a negative height (rows stored top first)."""
    a = np.asarray(img)[:, :, ::-1]
    h, w, _ = a.shape
    stride = (w * 3 + 3) & ~3
    rows = b"".join(r.tobytes() + b"\0" * (stride - w * 3) for r in a)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + 40 + len(rows), 0, 0, 54)
    return head + info + rows


def bmp_fields(img, bits, masks, hsize):
    """A BI_BITFIELDS (or, masks None, a 16-bit BI_RGB 555) BMP written by hand."""
    a = np.asarray(img).astype(np.uint32)
    h, w, _ = a.shape
    if bits == 16:
        r5, b5 = a[..., 0] >> 3, a[..., 2] >> 3
        if masks and masks[0] == 0xF800:
            v = (r5 << 11) | ((a[..., 1] >> 2) << 5) | b5
        else:
            v = (r5 << 10) | ((a[..., 1] >> 3) << 5) | b5
        px = v.astype("<u2")
    else:
        def place(c, m):
            return (c << (m & -m).bit_length() - 1) if m else 0
        alpha = np.full((h, w), 200, np.uint32)
        v = (place(a[..., 0], masks[0]) | place(a[..., 1], masks[1]) | place(a[..., 2], masks[2])
             | place(alpha, masks[3] if len(masks) > 3 else 0))
        px = v.astype("<u4")
    stride = (w * bits // 8 + 3) & ~3
    rows = b"".join(r.tobytes() + b"\0" * (stride - w * bits // 8) for r in px[::-1])
    comp = 0 if masks is None else 3
    info = struct.pack("<IiiHHIIiiII", hsize, w, h, 1, bits, comp, len(rows), 2835, 2835, 0, 0)
    if masks is not None:
        m = list(masks) + [0] * (4 - len(masks))
        info += struct.pack("<4I", *m) if hsize >= 56 else struct.pack("<3I", *m[:3])
    info += b"\0" * (hsize - 40 - (16 if hsize >= 56 else 0)) if hsize > 40 else b""
    off = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", off + len(rows), 0, 0, off) + info + rows


def rle_row(row, rle4):
    """One row as RLE8/RLE4 records: runs encoded, stretches of distinct values absolute."""
    out, i, n = b"", 0, len(row)
    while i < n:
        j = i
        while j < n and j - i < 254 and (row[j] == row[i] if not rle4 else
                                         row[j] == row[i + (j - i) % 2] if j > i else True):
            j += 1
        if j - i >= 3 or j == n:
            count = j - i
            byte = (row[i] << 4 | (row[i + 1] if count > 1 else 0)) if rle4 else row[i]
            out += bytes([count, byte])
            i = j
            continue
        k = min(n, i + 8)
        if rle4:
            k = i + ((k - i) // 2) * 2
        count = k - i
        if count < 3:
            out += bytes([1, row[i] << 4 if rle4 else row[i]])
            i += 1
            continue
        if rle4:
            data = bytes(row[t] << 4 | row[t + 1] for t in range(i, k, 2))
        else:
            data = bytes(row[i:k])
        out += bytes([0, count]) + data + (b"\0" if len(data) % 2 else b"")
        i = k
    return out + b"\0\0"


def bmp_rle(img, rle4, delta=False):
    """An 8-bit (RLE8) or 4-bit (RLE4) BMP written by hand from a P image."""
    idx = np.asarray(img)
    if rle4:
        idx = idx % 16
    h, w = idx.shape
    pal = img.getpalette()[: 3 * (16 if rle4 else 256)]
    rows = [rle_row([int(v) for v in r], rle4) for r in idx[::-1]]
    if delta:  # skip two pixels right and one row up after the first row
        rows[0] = rows[0][:-2] + b"\0\2\0\0\2\1" + b"\0\0"
    body = b"".join(rows) + b"\0\1"
    colors = 16 if rle4 else 256
    palette = b"".join(bytes([pal[3 * i + 2], pal[3 * i + 1], pal[3 * i], 0]) for i in range(colors))
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 4 if rle4 else 8, 2 if rle4 else 1,
                       len(body), 2835, 2835, colors, 0)
    off = 14 + 40 + len(palette)
    return b"BM" + struct.pack("<IHHI", off + len(body), 0, 0, off) + info + palette + body


def bmp_cases():
    w, h = 37, 23
    yield "bmp_rgb.bmp", pil_bytes(rgb(0, w, h), "BMP")
    yield "bmp_gray.bmp", pil_bytes(gray(1, w, h), "BMP")
    yield "bmp_1bit.bmp", pil_bytes(gray(2, w, h).convert("1"), "BMP")
    yield "bmp_pal.bmp", pil_bytes(rgb(3, w, h).quantize(50), "BMP")
    yield "bmp_rgba.bmp", pil_bytes(rgb(4, w, h).convert("RGBA"), "BMP")
    yield "bmp_topdown.bmp", bmp_topdown(rgb(5, 30, 9))
    img = rgb(6, 21, 13)
    yield "bmp_555.bmp", bmp_fields(img, 16, None, 40)
    yield "bmp_565_fields.bmp", bmp_fields(img, 16, (0xF800, 0x7E0, 0x1F), 40)
    yield "bmp_555_fields_v4.bmp", bmp_fields(img, 16, (0x7C00, 0x3E0, 0x1F), 108)
    yield "bmp_xbgr_v4.bmp", bmp_fields(img, 32, (0xFF000000, 0xFF0000, 0xFF00, 0), 108)
    yield "bmp_rgba_v5.bmp", bmp_fields(img, 32, (0xFF, 0xFF00, 0xFF0000, 0xFF000000), 124)
    yield "bmp_bgrx_fields.bmp", bmp_fields(img, 32, (0xFF0000, 0xFF00, 0xFF), 40)
    q = rgb(7, 33, 17).quantize(16)
    yield "bmp_rle8.bmp", bmp_rle(q, False)
    yield "bmp_rle4.bmp", bmp_rle(q, True)
    yield "bmp_rle8_delta.bmp", bmp_rle(q, False, delta=True)


def pnm_raw(magic, w, h, maxval, samples, comment=False):
    head = f"{magic}\n" + ("# made by cltrain\n" if comment else "") + f"{w} {h}\n{maxval}\n"
    fmt = ">u2" if maxval > 255 else np.uint8
    return head.encode() + samples.astype(fmt).tobytes()


def pnm_cases():
    w, h = 37, 23
    g = np.asarray(gray(0, w, h)).astype(np.uint32)
    c = np.asarray(rgb(1, w, h)).astype(np.uint32)
    yield "pnm_gray.pgm", pil_bytes(gray(0, w, h), "PPM")
    yield "pnm_rgb.ppm", pil_bytes(rgb(1, w, h), "PPM")
    yield "pnm_gray16.pgm", pnm_raw("P5", w, h, 65535, g * 3, comment=True)
    yield "pnm_gray1000.pgm", pnm_raw("P5", w, h, 1000, g * 1000 // 255)
    yield "pnm_rgb100.ppm", pnm_raw("P6", w, h, 100, c * 100 // 255)
    yield "pnm_rgb4000.ppm", pnm_raw("P6", w, h, 4000, c * 4000 // 255)


KINDS = {"png": png_cases, "jpeg": jpeg_cases, "bmp": bmp_cases, "pnm": pnm_cases}
SRC = sources(12)


def main():
    warnings.simplefilter("ignore")  # PIL's note on P + tRNS: convert("RGB") drops alpha anyway
    out = sys.argv[1]
    kinds = sys.argv[2:] or list(KINDS)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "expect.txt"), "w") as manifest:
        for kind in kinds:
            for name, data in KINDS[kind]():
                path = os.path.join(out, name)
                with open(path, "wb") as f:
                    f.write(data)
                img = Image.open(path).convert("RGB")
                with open(path + ".rgb", "wb") as f:
                    f.write(img.tobytes())
                manifest.write(f"{name} {img.width} {img.height}\n")


if __name__ == "__main__":
    main()
