// PNG through libpng (raw samples, no gamma), then PIL's unpacking and convert("RGB") of the mode
// PngImagePlugin picks for each (bit depth, colour type).
#include "dataset/image_internal.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>

static uint32_t png_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// PngImagePlugin._MODES: the (bit depth, colour type) pairs PIL opens.
static int png_mode_ok(int depth, int type)
{
    switch (type) {
    case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case 2: case 4: case 6: return depth == 8 || depth == 16;
    default: return 0;
    }
}

int img_png_header(const uint8_t *d, size_t len, const char *name, image_info *info,
                   char *err, size_t errlen)
{
    if (len < 33) return img_fail(err, errlen, name, "truncated PNG header");
    if (png_be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0)
        return img_fail(err, errlen, name, "PNG does not start with an IHDR chunk");
    if (crc32(0, d + 12, 17) != png_be32(d + 29))
        return img_fail(err, errlen, name, "PNG: IHDR: CRC error");
    uint32_t w = png_be32(d + 16), h = png_be32(d + 20);
    int depth = d[24], type = d[25];
    if (!png_mode_ok(depth, type))
        return img_fail(err, errlen, name, "unknown PNG mode (bit depth %d, colour type %d)",
                        depth, type);
    if (img_check_size(w, h, name, err, errlen)) return 1;
    info->format = IMAGE_FORMAT_PNG;
    info->w = (int)w; info->h = (int)h;
    info->gray = type == 0 || type == 4;
    return 0;
}

typedef struct png_ctx {
    const uint8_t *d;
    size_t len, pos;
    uint8_t *rows;          // decoded rows and their pointers; freed by img_png_decode,
    png_bytep *ptrs;        // even after a longjmp
    char msg[200];
    jmp_buf jb;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
    longjmp(c->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png; (void)msg;
}

static void png_on_read(png_structp png, png_bytep out, png_size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "image file is truncated");
    memcpy(out, c->d + c->pos, n);
    c->pos += n;
}

// One raw sample (after png_set_packing: one byte per sample below 8 bits) as PIL's mode sees it.
static int png_sample(const uint8_t *row, size_t i, int depth)
{
    return depth == 16 ? row[2 * i] << 8 | row[2 * i + 1] : row[i];
}

// PIL's unpack + convert("RGB") of one decoded row into image row y.
typedef struct png_layout { int depth, type, chans; png_colorp pal; int npal; } png_layout;

static void png_store_row(image *img, int y, const uint8_t *row, const png_layout *L)
{
    size_t plane = (size_t)img->h * img->w, at = (size_t)y * img->w;
    uint8_t *out = img->pixels + at;
    for (int x = 0; x < img->w; x++) {
        size_t i = (size_t)x * L->chans;
        if (L->type == 3) {  // P -> RGB by the palette; indices past it read PIL's ramp
            int v = row[i];
            out[x] = v < L->npal ? L->pal[v].red : (uint8_t)v;
            out[plane + x] = v < L->npal ? L->pal[v].green : (uint8_t)v;
            out[2 * plane + x] = v < L->npal ? L->pal[v].blue : (uint8_t)v;
        } else if (L->type == 0 && L->depth == 16) {  // I;16B -> I -> RGB clips to 0..255
            int v = png_sample(row, i, 16);
            out[x] = (uint8_t)(v > 255 ? 255 : v);
        } else if (L->type == 0 || L->type == 4) {  // 1, L;2, L;4, L, LA, LA;16B (high byte)
            int v = L->depth == 16 ? row[2 * i] : row[i];
            out[x] = (uint8_t)(L->depth == 1 ? v * 255 : L->depth == 2 ? v * 0x55
                               : L->depth == 4 ? v * 0x11 : v);
        } else {  // RGB, RGBA, RGB;16B, RGBA;16B: the high byte of 16-bit samples
            for (int ch = 0; ch < 3; ch++)
                out[ch * plane + x] = L->depth == 16 ? row[2 * (i + ch)] : row[i + ch];
        }
    }
}

// Everything that touches libpng after the setjmp; rows live in c->rows (freed by the caller).
static int png_decode_inner(png_structp png, png_infop info, png_ctx *c, image *img, const char *name, char *err, size_t errlen)
{
    png_set_read_fn(png, c, png_on_read);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_layout L = {png_get_bit_depth(png, info), png_get_color_type(png, info), 0, NULL, 0};
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    if (!png_mode_ok(L.depth, L.type))
        return img_fail(err, errlen, name, "unknown PNG mode (bit depth %d, colour type %d)",
                        L.depth, L.type);
    if (img_check_size(w, h, name, err, errlen)) return 1;
    if (L.type == 3 && !png_get_PLTE(png, info, &L.pal, &L.npal))
        return img_fail(err, errlen, name, "palette PNG without a PLTE chunk");
    if (L.depth < 8) png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    L.chans = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    uint8_t *rows = c->rows = malloc(rowbytes * (size_t)h);
    if (!rows) return img_fail(err, errlen, name, "out of memory for %dx%d pixels", w, h);
    png_bytep *ptrs = c->ptrs = malloc(sizeof(png_bytep) * (size_t)h);
    if (!ptrs) return img_fail(err, errlen, name, "out of memory for %d rows", h);
    for (int y = 0; y < h; y++) ptrs[y] = rows + (size_t)y * rowbytes;
    png_read_image(png, ptrs);
    if (img_alloc(img, L.type == 0 || L.type == 4 ? 1 : 3, h, w, name, err, errlen)) return 1;
    for (int y = 0; y < h; y++) png_store_row(img, y, rows + (size_t)y * rowbytes, &L);
    return 0;
}

int img_png_decode(const uint8_t *d, size_t len, const char *name, image *img,
                   char *err, size_t errlen)
{
    png_ctx c = {.d = d, .len = len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return img_fail(err, errlen, name, "out of memory for the PNG decoder");
    }
    if (setjmp(c.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(c.rows);
        free(c.ptrs);
        return img_fail(err, errlen, name, "PNG: %s", c.msg);
    }
    int rc = png_decode_inner(png, info, &c, img, name, err, errlen);
    png_destroy_read_struct(&png, &info, NULL);
    free(c.rows);
    free(c.ptrs);
    return rc;
}

// ---- encoding (the report's inlined thumbnails) ----

typedef struct png_out {
    uint8_t *buf;
    size_t len, cap;
    int oom;
    char msg[200];
    jmp_buf jb;
} png_out;

static void png_out_error(png_structp png, png_const_charp msg)
{
    png_out *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof(o->msg), "%s", msg);
    longjmp(o->jb, 1);
}

static void png_on_write(png_structp png, png_bytep data, png_size_t n)
{
    png_out *o = png_get_io_ptr(png);
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n) cap *= 2;
        uint8_t *b = realloc(o->buf, cap);
        if (!b) { o->oom = 1; png_error(png, "out of memory"); }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, data, n);
    o->len += n;
}

static void png_on_flush(png_structp png)
{
    (void)png;
}

int image_encode_png(const image *img, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    if ((img->c != 1 && img->c != 3) || img->w < 1 || img->h < 1)
        return img_fail(err, errlen, "PNG encoder", "cannot encode a %dx%dx%d image", img->c,
                        img->h, img->w);
    png_out o = {0};
    uint8_t *row = malloc((size_t)img->w * img->c);
    png_structp png = row ? png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, png_out_error,
                                                    png_on_warning) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        free(row);
        return img_fail(err, errlen, "PNG encoder", "out of memory");
    }
    if (setjmp(o.jb)) {
        png_destroy_write_struct(&png, &info);
        free(row);
        free(o.buf);
        return img_fail(err, errlen, "PNG encoder", "%s", o.msg);
    }
    png_set_write_fn(png, &o, png_on_write, png_on_flush);
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8,
                 img->c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t plane = (size_t)img->h * img->w;
    for (int y = 0; y < img->h; y++) {  // planar (c, h, w) to interleaved rows
        for (int x = 0; x < img->w; x++)
            for (int k = 0; k < img->c; k++)
                row[(size_t)x * img->c + k] = img->pixels[k * plane + (size_t)y * img->w + x];
        png_write_row(png, row);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    *out = o.buf;
    *len = o.len;
    return 0;
}
