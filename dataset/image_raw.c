// The uncompressed formats, decoded here as PIL's plugins read them: BMP (BmpImagePlugin:
// 1/4/8-bit palette, 16-bit 555/565, 24-bit BGR, 32-bit BGRX, the bit-field layouts it
// accepts, RLE8/RLE4 as its Python BmpRleDecoder reads them, quirks included) and PPM/PGM (PpmImagePlugin: binary P5/P6, any maxval, rescaled as
// its "ppm" decoder does).
#include "dataset/image_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

// ---- BMP ----

typedef enum bmp_kind { BMP_PALETTE, BMP_BYTES, BMP_555, BMP_565 } bmp_kind;

typedef struct bmp_hdr {
    long long w, h;
    int bits, top_down, pal_stride;  // palette entries of 4 bytes (3 for OS/2 v1)
    bmp_kind kind;
    int rle;                         // 0 raw, 8 RLE8, 4 RLE4
    int rgb_byte[3];                 // BMP_BYTES: the byte of R, G and B within a pixel
    size_t pal_off, colors, data_off, stride;
} bmp_hdr;

// BmpImagePlugin's SUPPORTED bit fields and their raw modes, as byte positions of R, G, B.
static int bmp_fields(bmp_hdr *b, const uint8_t *d, size_t len, uint32_t hsize)
{
    if (len < 66 + (hsize >= 56 ? 4 : 0)) return 1;
    uint32_t r = le32(d + 54), g = le32(d + 58), bl = le32(d + 62);
    uint32_t a = hsize >= 56 ? le32(d + 66) : 0;
    static const struct { int bits; uint32_t m[4]; int alpha_matters, kind, rb, gb, bb; } t[] = {
        {32, {0xFF0000, 0xFF00, 0xFF, 0}, 1, BMP_BYTES, 2, 1, 0},                // BGRX
        {32, {0xFF000000, 0xFF0000, 0xFF00, 0}, 1, BMP_BYTES, 3, 2, 1},          // XBGR
        {32, {0xFF000000, 0xFF0000, 0xFF00, 0xFF}, 1, BMP_BYTES, 3, 2, 1},       // ABGR
        {32, {0xFF, 0xFF00, 0xFF0000, 0xFF000000}, 1, BMP_BYTES, 0, 1, 2},       // RGBA
        {32, {0xFF0000, 0xFF00, 0xFF, 0xFF000000}, 1, BMP_BYTES, 2, 1, 0},       // BGRA
        {32, {0, 0, 0, 0}, 1, BMP_BYTES, 2, 1, 0},                               // BGRA
        {24, {0xFF0000, 0xFF00, 0xFF, 0}, 0, BMP_BYTES, 2, 1, 0},                // BGR
        {16, {0xF800, 0x7E0, 0x1F, 0}, 0, BMP_565, 0, 0, 0},                     // BGR;16
        {16, {0x7C00, 0x3E0, 0x1F, 0}, 0, BMP_555, 0, 0, 0},                     // BGR;15
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].bits == b->bits && t[i].m[0] == r && t[i].m[1] == g && t[i].m[2] == bl &&
            (!t[i].alpha_matters || t[i].m[3] == a)) {
            b->kind = (bmp_kind)t[i].kind;
            b->rgb_byte[0] = t[i].rb; b->rgb_byte[1] = t[i].gb; b->rgb_byte[2] = t[i].bb;
            return 0;
        }
    return 1;
}

// The raw (uncompressed) layouts: BIT2MODE.
static void bmp_raw_kind(bmp_hdr *b)
{
    b->kind = b->bits <= 8 ? BMP_PALETTE : b->bits == 16 ? BMP_555 : BMP_BYTES;
    b->rgb_byte[0] = 2; b->rgb_byte[1] = 1; b->rgb_byte[2] = 0;  // BGR, BGRX
}

static int bmp_parse(const uint8_t *d, size_t len, size_t file_len, const char *name,
                     bmp_hdr *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    if (len < 18) return img_fail(err, errlen, name, "truncated BMP header");
    uint32_t hsize = le32(d + 14);
    if (hsize != 12 && hsize != 40 && hsize != 64 && hsize != 108 && hsize != 124)
        return img_fail(err, errlen, name, "Unsupported BMP header type (%u)", hsize);
    if (len < 14 + (size_t)hsize) return img_fail(err, errlen, name, "truncated BMP header");
    const uint8_t *h = d + 18;
    uint32_t compression = 0, colors = 0;
    if (hsize == 12) {
        b->w = le16(h); b->h = le16(h + 2); b->bits = (int)le16(h + 6); b->pal_stride = 3;
    } else {
        b->w = le32(h);
        b->top_down = h[7] == 0xFF;  // PIL: a negative height means rows from the top
        b->h = b->top_down ? 4294967296LL - le32(h + 4) : le32(h + 4);
        b->bits = (int)le16(h + 10);
        compression = le32(h + 12);
        colors = le32(h + 28);
        b->pal_stride = 4;
    }
    if (b->bits != 1 && b->bits != 4 && b->bits != 8 && b->bits != 16 && b->bits != 24 &&
        b->bits != 32)
        return img_fail(err, errlen, name, "Unsupported BMP pixel depth (%d)", b->bits);
    if (compression == 3) {
        if (b->bits <= 8 || bmp_fields(b, d, len, hsize))
            return img_fail(err, errlen, name, "Unsupported BMP bitfields layout");
    } else if (compression == 0 || (compression == 1 && b->bits == 8) ||
               (compression == 2 && b->bits == 4)) {
        bmp_raw_kind(b);
        b->rle = compression == 1 ? 8 : compression == 2 ? 4 : 0;
    } else {
        return img_fail(err, errlen, name, "BMP compression %u at %d bits is not supported",
                        compression, b->bits);
    }
    if (img_check_size(b->w, b->h, name, err, errlen)) return 1;
    b->colors = colors ? colors : (size_t)1 << b->bits;
    if (b->bits <= 8 && b->colors > 65536)
        return img_fail(err, errlen, name, "Unsupported BMP Palette size (%zu)", b->colors);
    b->pal_off = 14 + hsize;
    b->data_off = le32(d + 10);
    if (b->data_off == b->pal_off && b->bits <= 8) b->data_off += 4 * b->colors;
    b->stride = (size_t)(((b->w * b->bits + 31) >> 3) & ~3LL);
    size_t need = b->bits <= 8 ? b->pal_off + b->pal_stride * b->colors : 0;
    size_t data_end = b->data_off + (b->rle ? 0 : b->stride * (size_t)b->h);
    if (need > file_len || data_end > file_len || data_end < b->data_off)
        return img_fail(err, errlen, name, "truncated BMP: %dx%d at %d bits needs %zu bytes, the "
                        "file has %zu", (int)b->w, (int)b->h, b->bits, data_end, file_len);
    return 0;
}

int img_bmp_header(const uint8_t *d, size_t len, size_t file_len, const char *name,
                   image_info *info, char *err, size_t errlen)
{
    bmp_hdr b;
    if (bmp_parse(d, len, file_len, name, &b, err, errlen)) return 1;
    info->format = IMAGE_FORMAT_BMP;
    info->w = (int)b.w; info->h = (int)b.h;
    return 0;
}

static void bmp_row(image *img, int y, const uint8_t *row, const uint8_t *d, const bmp_hdr *b)
{
    size_t plane = (size_t)img->h * img->w;
    uint8_t *out = img->pixels + (size_t)y * img->w;
    for (int x = 0; x < img->w; x++) {
        uint8_t rgb[3];
        if (b->kind == BMP_PALETTE) {
            int per = 8 / b->bits, shift = 8 - b->bits * (x % per + 1);
            size_t v = (size_t)(row[x / per] >> shift) & ((1u << b->bits) - 1);
            const uint8_t *p = d + b->pal_off + v * b->pal_stride;  // BGR(X)
            for (int ch = 0; ch < 3; ch++) rgb[ch] = v < b->colors ? p[2 - ch] : (uint8_t)v;
        } else if (b->kind == BMP_BYTES) {
            const uint8_t *p = row + (size_t)x * (b->bits / 8);
            for (int ch = 0; ch < 3; ch++) rgb[ch] = p[b->rgb_byte[ch]];
        } else {  // Unpack.c ImagingUnpackBGR15 / BGR16: value * 255 / max per field
            unsigned v = le16(row + 2 * (size_t)x);
            int g6 = b->kind == BMP_565;
            rgb[0] = (uint8_t)(((v >> (g6 ? 11 : 10)) & 31) * 255 / 31);
            rgb[1] = (uint8_t)(g6 ? ((v >> 5) & 63) * 255 / 63 : ((v >> 5) & 31) * 255 / 31);
            rgb[2] = (uint8_t)((v & 31) * 255 / 31);
        }
        for (int ch = 0; ch < 3; ch++) out[ch * plane + x] = rgb[ch];
    }
}

// PIL's BmpRleDecoder.decode, step for step: `n` is the length its bytearray would have (only
// the first w*h bytes are kept), `pos` the file position whose parity aligns absolute runs.
// Returns 0, or 1 when the data ends before w*h pixels ("not enough image data").
static int bmp_rle_expand(const uint8_t *d, size_t len, const bmp_hdr *b, uint8_t *out)
{
    size_t W = (size_t)b->w, total = W * (size_t)b->h, n = 0, pos = b->data_off, x = 0;
#define RLE_PUT(v) do { if (n < total) out[n] = (uint8_t)(v); n++; } while (0)
    while (n < total) {
        if (pos + 2 > len) break;
        size_t count = d[pos], byte = d[pos + 1];
        pos += 2;
        if (count) {  // encoded mode, clipped to the row
            if (x + count > W) count = x < W ? W - x : 0;
            for (size_t i = 0; i < count; i++)
                RLE_PUT(b->rle == 4 ? (i % 2 ? byte & 15 : byte >> 4) : byte);
            x += count;
        } else if (byte == 0) {  // end of line
            while (n % W) RLE_PUT(0);
            x = 0;
        } else if (byte == 1) {  // end of bitmap
            break;
        } else if (byte == 2) {  // delta: PIL reads two bytes, then takes right, up from the next two
            if (pos + 2 > len) break;
            if (pos + 4 > len) return 1;
            size_t right = d[pos + 2], up = d[pos + 3], skip = right + up * W;
            pos += 4;
            for (size_t i = 0; i < skip && n < total; i++) RLE_PUT(0);
            x = n % W;
        } else {  // absolute mode
            size_t want = b->rle == 4 ? byte / 2 : byte, got = len - pos < want ? len - pos : want;
            for (size_t i = 0; i < got; i++) {
                if (b->rle == 4) {
                    RLE_PUT(d[pos + i] >> 4);
                    RLE_PUT(d[pos + i] & 15);
                } else {
                    RLE_PUT(d[pos + i]);
                }
            }
            pos += got;
            if (got < want) break;
            x += byte;
            if (pos % 2) pos++;
        }
    }
#undef RLE_PUT
    return n < total;
}

// Palette indices (h, w), rows from the top, through the palette into img.
static void bmp_rle_rows(image *img, const uint8_t *idx, const uint8_t *d, const bmp_hdr *b)
{
    size_t plane = (size_t)img->h * img->w;
    for (int y = 0; y < img->h; y++) {
        const uint8_t *row = idx + (size_t)(b->top_down ? y : img->h - 1 - y) * img->w;
        for (int x = 0; x < img->w; x++) {
            size_t v = row[x];
            const uint8_t *p = d + b->pal_off + v * b->pal_stride;
            for (int ch = 0; ch < 3; ch++)
                img->pixels[ch * plane + (size_t)y * img->w + x] =
                    v < b->colors ? p[2 - ch] : (uint8_t)v;
        }
    }
}

int img_bmp_decode(const uint8_t *d, size_t len, const char *name, image *img,
                   char *err, size_t errlen)
{
    bmp_hdr b;
    if (bmp_parse(d, len, len, name, &b, err, errlen)) return 1;
    if (b.rle) {  // expanded before the RGB planes are allocated: short data fails cheaply
        uint8_t *idx = malloc((size_t)b.w * (size_t)b.h);
        if (!idx) return img_fail(err, errlen, name, "out of memory for %dx%d pixels",
                                  (int)b.w, (int)b.h);
        int rc = bmp_rle_expand(d, len, &b, idx)
                     ? img_fail(err, errlen, name, "not enough image data (RLE)")
                     : img_alloc(img, 3, (int)b.h, (int)b.w, name, err, errlen);
        if (rc == 0) bmp_rle_rows(img, idx, d, &b);
        free(idx);
        return rc;
    }
    if (img_alloc(img, 3, (int)b.h, (int)b.w, name, err, errlen)) return 1;
    for (int y = 0; y < img->h; y++) {
        int file_row = b.top_down ? y : img->h - 1 - y;
        bmp_row(img, y, d + b.data_off + (size_t)file_row * b.stride, d, &b);
    }
    return 0;
}

// ---- PPM / PGM ----

static int pnm_space(uint8_t c) { return c == ' ' || (c >= 9 && c <= 13); }

// PpmImagePlugin._read_token: skip whitespace and '#' comments, then up to 10 digits; the
// whitespace that ends the token is consumed. Returns the value or -1.
static long pnm_token(const uint8_t *d, size_t len, size_t *pos)
{
    size_t p = *pos;
    for (;;) {
        while (p < len && pnm_space(d[p])) p++;
        if (p < len && d[p] == '#') {
            while (p < len && d[p] != '\n' && d[p] != '\r') p++;
            continue;
        }
        break;
    }
    long v = 0;
    int digits = 0;
    while (p < len && d[p] >= '0' && d[p] <= '9' && digits < 10) v = v * 10 + (d[p++] - '0'), digits++;
    if (!digits || p >= len || !pnm_space(d[p])) return -1;
    *pos = p + 1;
    return v;
}

typedef struct pnm_hdr { int chans; long w, h, maxval; size_t data_off; } pnm_hdr;

static int pnm_parse(const uint8_t *d, size_t len, size_t file_len, const char *name,
                     pnm_hdr *p, char *err, size_t errlen)
{
    if (len < 3 || (d[1] != '5' && d[1] != '6'))
        return img_fail(err, errlen, name, "only binary PGM/PPM (P5, P6) is supported");
    size_t pos = 2;
    if (!pnm_space(d[pos++])) return img_fail(err, errlen, name, "not a PPM file");
    p->chans = d[1] == '5' ? 1 : 3;
    p->w = pnm_token(d, len, &pos);
    p->h = p->w < 0 ? -1 : pnm_token(d, len, &pos);
    p->maxval = p->h < 0 ? -1 : pnm_token(d, len, &pos);
    if (p->maxval < 0) return img_fail(err, errlen, name, "bad PPM header");
    if (p->maxval < 1 || p->maxval > 65535)
        return img_fail(err, errlen, name, "maxval must be greater than 0 and less than 65536");
    if (img_check_size(p->w, p->h, name, err, errlen)) return 1;
    p->data_off = pos;
    size_t need = (size_t)p->w * (size_t)p->h * p->chans * (p->maxval > 255 ? 2 : 1);
    if (need > file_len - pos)
        return img_fail(err, errlen, name, "truncated PPM: %ldx%ld needs %zu data bytes, the "
                        "file has %zu", p->w, p->h, need, file_len - pos);
    return 0;
}

int img_pnm_header(const uint8_t *d, size_t len, size_t file_len, const char *name,
                   image_info *info, size_t *data_offset, char *err, size_t errlen)
{
    pnm_hdr p;
    if (pnm_parse(d, len, file_len, name, &p, err, errlen)) return 1;
    info->format = IMAGE_FORMAT_PNM;
    info->w = (int)p.w; info->h = (int)p.h; info->gray = p.chans == 1;
    *data_offset = p.data_off;
    return 0;
}

// PpmDecoder: min(out_max, round(value / maxval * out_max)), out_max 65535 for gray above 255
// (mode I, which convert("RGB") clips to 255), else 255. maxval 255 / 65535 gray are raw.
static uint8_t pnm_scale(unsigned v, long maxval, int chans)
{
    if (maxval == 255) return (uint8_t)v;
    double out_max = chans == 1 && maxval > 255 ? 65535.0 : 255.0;
    double r = nearbyint((double)v / (double)maxval * out_max);  // Python round: half to even
    if (r > out_max) r = out_max;
    return (uint8_t)(r > 255.0 ? 255.0 : r);
}

int img_pnm_decode(const uint8_t *d, size_t len, const char *name, image *img,
                   char *err, size_t errlen)
{
    pnm_hdr p;
    if (pnm_parse(d, len, len, name, &p, err, errlen) ||
        img_alloc(img, p.chans, (int)p.h, (int)p.w, name, err, errlen))
        return 1;
    size_t plane = (size_t)p.w * p.h, bytes = p.maxval > 255 ? 2 : 1;
    const uint8_t *s = d + p.data_off;
    for (size_t i = 0; i < plane; i++)
        for (int ch = 0; ch < p.chans; ch++, s += bytes) {
            unsigned v = bytes == 2 ? (unsigned)s[0] << 8 | s[1] : s[0];
            img->pixels[ch * plane + i] = pnm_scale(v, p.maxval, p.chans);
        }
    return 0;
}
