// Image files: format sniffing (PIL's way: by content), the header probe and whole-file decode.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "dataset/image_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define IMG_PROBE_BYTES 4096
#define IMG_MAX_FILE_BYTES ((size_t)1 << 31)  // 2 GiB: larger files are refused

int img_fail(char *err, size_t errlen, const char *name, const char *fmt, ...)
{
    if (err && errlen) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(err, errlen, "%s: %s", name, msg);
    }
    return 1;
}

int img_check_size(long long w, long long h, const char *name, char *err, size_t errlen)
{
    if (w < 1 || h < 1) return img_fail(err, errlen, name, "bad image size %lldx%lld", w, h);
    if (w > IMAGE_MAX_PIXELS || h > IMAGE_MAX_PIXELS || w * h > IMAGE_MAX_PIXELS)
        return img_fail(err, errlen, name, "%lldx%lld pixels exceeds the limit of %ld "
                        "(PIL's MAX_IMAGE_PIXELS, a decompression-bomb guard)", w, h,
                        IMAGE_MAX_PIXELS);
    return 0;
}

int img_alloc(image *img, int c, int h, int w, const char *name, char *err, size_t errlen)
{
    size_t need = (size_t)c * (size_t)h * (size_t)w;
    if (need > img->cap) {
        uint8_t *p = realloc(img->pixels, need);
        if (!p) return img_fail(err, errlen, name, "out of memory for %dx%d pixels", w, h);
        img->pixels = p;
        img->cap = need;
    }
    img->c = c; img->h = h; img->w = w;
    return 0;
}

void image_free(image *img)
{
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof(*img));
}

typedef enum img_kind { IMG_UNKNOWN, IMG_JPEG, IMG_PNG, IMG_BMP, IMG_PNM, IMG_WEBP, IMG_TIFF }
    img_kind;

// The magic numbers PIL's plugins accept (_accept functions).
static img_kind img_sniff(const uint8_t *d, size_t len)
{
    if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return IMG_JPEG;
    if (len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return IMG_PNG;
    if (len >= 2 && memcmp(d, "BM", 2) == 0) return IMG_BMP;
    if (len >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6') return IMG_PNM;
    if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return IMG_WEBP;
    if (len >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return IMG_TIFF;
    return IMG_UNKNOWN;
}

static int img_refuse_kind(img_kind k, size_t len, const char *name, char *err, size_t errlen)
{
    if (len == 0) return img_fail(err, errlen, name, "empty file");
    if (k == IMG_WEBP || k == IMG_TIFF)
        return img_fail(err, errlen, name, "%s images are not supported (this build has no %s)",
                        k == IMG_WEBP ? "WebP" : "TIFF", k == IMG_WEBP ? "libwebp" : "libtiff");
    return img_fail(err, errlen, name, "not an image (expected JPEG, PNG, BMP or PPM/PGM data)");
}

typedef struct img_mem { const uint8_t *d; size_t len; } img_mem;

static size_t img_mem_read(void *ctx, size_t off, uint8_t *buf, size_t n)
{
    img_mem *m = ctx;
    if (off >= m->len) return 0;
    if (n > m->len - off) n = m->len - off;
    memcpy(buf, m->d + off, n);
    return n;
}

static size_t img_file_read(void *ctx, size_t off, uint8_t *buf, size_t n)
{
    FILE *f = ctx;
    if (off > (size_t)0x7fffffff || fseek(f, (long)off, SEEK_SET) != 0) return 0;
    return fread(buf, 1, n, f);
}

// The probe on the first bytes `head` of a file of `file_len` bytes; JPEG reads on via `read`.
static int img_probe_head(const uint8_t *head, size_t len, size_t file_len, img_read_fn read,
                          void *ctx, const char *name, image_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    size_t data_offset;
    switch (img_sniff(head, len)) {
    case IMG_JPEG: return img_jpeg_header(read, ctx, name, info, err, errlen);
    case IMG_PNG: return img_png_header(head, len, name, info, err, errlen);
    case IMG_BMP: return img_bmp_header(head, len, file_len, name, info, err, errlen);
    case IMG_PNM:
        return img_pnm_header(head, len, file_len, name, info, &data_offset, err, errlen);
    default: return img_refuse_kind(img_sniff(head, len), len, name, err, errlen);
    }
}

int image_probe_mem(const uint8_t *data, size_t len, const char *name, image_info *info,
                    char *err, size_t errlen)
{
    img_mem m = {data, len};
    return img_probe_head(data, len, len, img_mem_read, &m, name, info, err, errlen);
}

// fopen + fstat: a regular file of a sane size, or a message naming it. The stat before the
// open keeps a FIFO or a device named like an image from blocking the open.
static FILE *img_open(const char *path, size_t *size, char *err, size_t errlen)
{
    struct stat pre;
    if (stat(path, &pre) == 0 && !S_ISREG(pre.st_mode)) {
        img_fail(err, errlen, path, "not a regular file");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        img_fail(err, errlen, path, "%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    const char *why = fstat(fileno(f), &st) != 0 ? strerror(errno)
                      : !S_ISREG(st.st_mode) ? "not a regular file"
                      : (unsigned long long)st.st_size > IMG_MAX_FILE_BYTES ? "file too large"
                      : NULL;
    if (why) {
        fclose(f);
        img_fail(err, errlen, path, "%s", why);
        return NULL;
    }
    *size = (size_t)st.st_size;
    return f;
}

int image_probe(const char *path, image_info *info, char *err, size_t errlen)
{
    size_t size;
    FILE *f = img_open(path, &size, err, errlen);
    if (!f) return 1;
    uint8_t head[IMG_PROBE_BYTES];
    size_t len = fread(head, 1, sizeof(head), f);
    int rc = img_probe_head(head, len, size, img_file_read, f, path, info, err, errlen);
    fclose(f);
    return rc;
}

int image_decode_mem(const uint8_t *data, size_t len, const char *name, image *img,
                     char *err, size_t errlen)
{
    image_info info;
    if (image_probe_mem(data, len, name, &info, err, errlen)) return 1;
    switch (info.format) {
    case IMAGE_FORMAT_JPEG: return img_jpeg_decode(data, len, name, img, err, errlen);
    case IMAGE_FORMAT_PNG: return img_png_decode(data, len, name, img, err, errlen);
    case IMAGE_FORMAT_BMP: return img_bmp_decode(data, len, name, img, err, errlen);
    case IMAGE_FORMAT_PNM: return img_pnm_decode(data, len, name, img, err, errlen);
    }
    return img_fail(err, errlen, name, "unknown format");
}

int image_decode(const char *path, image *img, char *err, size_t errlen)
{
    size_t size;
    FILE *f = img_open(path, &size, err, errlen);
    if (!f) return 1;
    uint8_t *buf = malloc(size ? size : 1);
    size_t got = buf ? fread(buf, 1, size, f) : 0;
    int read_err = ferror(f);
    fclose(f);
    int rc = !buf ? img_fail(err, errlen, path, "out of memory for %zu bytes", size)
             : read_err ? img_fail(err, errlen, path, "read error")
             : got != size ? img_fail(err, errlen, path, "file shrank while reading")
             : image_decode_mem(buf, size, path, img, err, errlen);
    free(buf);
    return rc;
}
