// Image files decoded as PIL's Image.open(path).convert("RGB") gives them, byte for byte:
// JPEG (libjpeg-turbo), PNG (libpng), BMP (incl. bit fields, RLE) and PPM/PGM (here). The
// format comes from the file's first bytes, never from its name (as PIL). Library errors are
// caught (setjmp), nothing aborts, and images above PIL's MAX_IMAGE_PIXELS are refused before
// any pixel buffer is allocated.
// WebP and TIFF are recognised and refused with a message (no libwebp / libtiff in this build).
#ifndef CLTRAIN_IMAGE_H
#define CLTRAIN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

// PIL.Image.MAX_IMAGE_PIXELS: int(1024 * 1024 * 1024 // 4 // 3); larger images are refused.
#define IMAGE_MAX_PIXELS 89478485L

typedef enum image_format {
    IMAGE_FORMAT_JPEG = 1,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_BMP,
    IMAGE_FORMAT_PNM,
} image_format;

// What the header says: the format and the size of the decoded image.
typedef struct image_info {
    image_format format;
    int w, h;
    int gray;           // 1: convert("RGB") replicates one plane (L, 1, I;16 sources)
} image_info;

// A decoded image; the buffer is reused (grown only) across image_decode calls.
typedef struct image {
    int c, h, w;        // c = 1 (gray, to be replicated to RGB) or 3 (RGB)
    uint8_t *pixels;    // (c, h, w) planar, row-major
    size_t cap;         // bytes allocated in pixels
} image;

// Reads the header only (format, dimensions; sizes checked against the file where the format
// fixes them). Returns 0, or nonzero with "PATH: reason" in err.
int  image_probe(const char *path, image_info *info, char *err, size_t errlen);

// Decodes the whole file into img (any previous content replaced). Thread-safe for distinct
// img structs. Returns 0, or nonzero with "PATH: reason" in err (img stays valid to free).
int  image_decode(const char *path, image *img, char *err, size_t errlen);

// The same two from memory (`name` labels the messages); used by the fuzz target.
int  image_probe_mem(const uint8_t *data, size_t len, const char *name, image_info *info,
                     char *err, size_t errlen);
int  image_decode_mem(const uint8_t *data, size_t len, const char *name, image *img,
                      char *err, size_t errlen);

// Encodes img (c = 1 or 3, 8 bits) as a PNG file in memory: *out (malloc'd, the caller frees)
// of *len bytes. Returns 0, or nonzero with a message (*out is then NULL).
int  image_encode_png(const image *img, uint8_t **out, size_t *len, char *err, size_t errlen);

// Accepts a zeroed image.
void image_free(image *img);

#endif
