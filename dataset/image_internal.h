// Shared between dataset/image*.c: the decoders' entry points and small helpers.
#ifndef CLTRAIN_IMAGE_INTERNAL_H
#define CLTRAIN_IMAGE_INTERNAL_H

#include "dataset/image.h"

#include <stdarg.h>

// "NAME: reason" into err; returns 1.
int img_fail(char *err, size_t errlen, const char *name, const char *fmt, ...);
// Refuses sizes PIL refuses (0 or above MAX_IMAGE_PIXELS); returns 0 or 1 with a message.
int img_check_size(long long w, long long h, const char *name, char *err, size_t errlen);
// Sizes img for (c, h, w) after img_check_size; returns 0 or 1 (out of memory) with a message.
int img_alloc(image *img, int c, int h, int w, const char *name, char *err, size_t errlen);

// Headers from the first `len` bytes of a file of `file_len` bytes.
int img_png_header(const uint8_t *d, size_t len, const char *name, image_info *info,
                   char *err, size_t errlen);
int img_bmp_header(const uint8_t *d, size_t len, size_t file_len, const char *name,
                   image_info *info, char *err, size_t errlen);
int img_pnm_header(const uint8_t *d, size_t len, size_t file_len, const char *name,
                   image_info *info, size_t *data_offset, char *err, size_t errlen);
// JPEG: walks the markers up to the frame header; `read` fetches bytes at an offset.
typedef size_t (*img_read_fn)(void *ctx, size_t off, uint8_t *buf, size_t n);
int img_jpeg_header(img_read_fn read, void *ctx, const char *name, image_info *info,
                    char *err, size_t errlen);

// Whole-file decoders (data holds the complete file).
int img_jpeg_decode(const uint8_t *d, size_t len, const char *name, image *img,
                    char *err, size_t errlen);
int img_png_decode(const uint8_t *d, size_t len, const char *name, image *img,
                   char *err, size_t errlen);
int img_bmp_decode(const uint8_t *d, size_t len, const char *name, image *img,
                   char *err, size_t errlen);
int img_pnm_decode(const uint8_t *d, size_t len, const char *name, image *img,
                   char *err, size_t errlen);

#endif
