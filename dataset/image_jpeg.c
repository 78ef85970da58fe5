// JPEG through libjpeg-turbo with its defaults (JDCT_ISLOW, fancy upsampling), as Pillow's
// decoder runs it outside draft mode; then PIL's convert("RGB") of the L / RGB / CMYK;I result.
#include "dataset/image_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define JPEG_MAX_SCANS 1000  // a progressive file with more scans is hostile (libjpeg-turbo fuzzing)

static unsigned jpeg_be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

// SOFn markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
static int jpeg_is_sof(int m) { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC; }

int img_jpeg_header(img_read_fn read, void *ctx, const char *name, image_info *info,
                    char *err, size_t errlen)
{
    size_t off = 2;  // after SOI
    uint8_t b[8];
    for (;;) {
        if (read(ctx, off, b, 1) != 1) return img_fail(err, errlen, name, "truncated JPEG header");
        if (b[0] != 0xFF) return img_fail(err, errlen, name, "bad JPEG marker at byte %zu", off);
        off++;
        int m;
        do {  // fill bytes
            if (read(ctx, off, b, 1) != 1)
                return img_fail(err, errlen, name, "truncated JPEG header");
            m = b[0];
            off++;
        } while (m == 0xFF);
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // standalone markers
        if (m == 0xD9 || m == 0xDA || m == 0xD8)
            return img_fail(err, errlen, name, "JPEG has no frame header before its data");
        if (read(ctx, off, b, 2) != 2) return img_fail(err, errlen, name, "truncated JPEG header");
        unsigned len = jpeg_be16(b);
        if (len < 2) return img_fail(err, errlen, name, "bad JPEG segment length %u", len);
        if (jpeg_is_sof(m)) {
            if (len < 8 || read(ctx, off + 2, b, 6) != 6)
                return img_fail(err, errlen, name, "truncated JPEG frame header");
            int h = (int)jpeg_be16(b + 1), w = (int)jpeg_be16(b + 3), comps = b[5];
            if (comps != 1 && comps != 3 && comps != 4)  // PIL's JpegImagePlugin.SOF
                return img_fail(err, errlen, name, "cannot handle %d-layer JPEG images", comps);
            if (img_check_size(w, h, name, err, errlen)) return 1;
            info->format = IMAGE_FORMAT_JPEG;
            info->w = w; info->h = h; info->gray = comps == 1;
            return 0;
        }
        off += len;
    }
}

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int eof;                    // libjpeg hit the end of the data (PIL: "image file is truncated")
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

// Warnings are ignored as PIL ignores them, except running out of data.
static void jpeg_on_message(j_common_ptr c, int level)
{
    jpeg_err *e = (jpeg_err *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) e->eof = 1;
}

static void jpeg_on_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)c->err;
        snprintf(e->msg, sizeof(e->msg), "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

// PIL's Convert.c cmyk2rgb on the "CMYK;I" unpacking (Adobe polarity: bytes inverted).
static void jpeg_cmyk_row(image *img, int y, const uint8_t *row)
{
    size_t plane = (size_t)img->h * img->w, at = (size_t)y * img->w;
    for (int x = 0; x < img->w; x++, row += 4) {
        int nk = row[3];  // 255 - (255 - k)
        for (int ch = 0; ch < 3; ch++) {
            int v = 255 - row[ch], tmp = v * nk + 128;
            int o = nk - (((tmp >> 8) + tmp) >> 8);
            img->pixels[ch * plane + at + x] = (uint8_t)(o < 0 ? 0 : o > 255 ? 255 : o);
        }
    }
}

static void jpeg_store_row(image *img, int y, const uint8_t *row, int comps)
{
    size_t plane = (size_t)img->h * img->w, at = (size_t)y * img->w;
    if (comps == 4) {
        jpeg_cmyk_row(img, y, row);
        return;
    }
    for (int ch = 0; ch < comps; ch++)
        for (int x = 0; x < img->w; x++) img->pixels[ch * plane + at + x] = row[x * comps + ch];
}

// Reads the scanlines; libjpeg's own allocator holds the row so a longjmp leaks nothing.
static void jpeg_read_rows(struct jpeg_decompress_struct *cinfo, image *img)
{
    JSAMPARRAY row = (*cinfo->mem->alloc_sarray)((j_common_ptr)cinfo, JPOOL_IMAGE,
                                                 cinfo->output_width * cinfo->output_components, 1);
    while (cinfo->output_scanline < cinfo->output_height) {
        int y = (int)cinfo->output_scanline;
        if (jpeg_read_scanlines(cinfo, row, 1) != 1) break;
        jpeg_store_row(img, y, row[0], cinfo->output_components);
    }
}

int img_jpeg_decode(const uint8_t *d, size_t len, const char *name, image *img,
                    char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    jpeg_err e;
    memset(&e, 0, sizeof(e));
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_on_error;
    e.pub.emit_message = jpeg_on_message;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&cinfo);
        if (e.eof) return img_fail(err, errlen, name, "image file is truncated (JPEG: %s)", e.msg);
        return img_fail(err, errlen, name, "JPEG: %s", e.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, d, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    int comps = cinfo.num_components;
    // PIL's rawmode by layer count: L, RGB, CMYK;I (JpegDecode.c sets out_color_space so).
    cinfo.out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    int rc = (comps != 1 && comps != 3 && comps != 4)
                 ? img_fail(err, errlen, name, "cannot handle %d-layer JPEG images", comps)
                 : img_check_size(cinfo.image_width, cinfo.image_height, name, err, errlen);
    if (rc == 0) {
        jpeg_start_decompress(&cinfo);
        rc = img_alloc(img, comps == 1 ? 1 : 3, (int)cinfo.output_height,
                       (int)cinfo.output_width, name, err, errlen);
    }
    if (rc == 0) {
        jpeg_read_rows(&cinfo, img);
        if (e.eof || cinfo.output_scanline < cinfo.output_height)
            rc = img_fail(err, errlen, name, "image file is truncated");
    }
    jpeg_destroy_decompress(&cinfo);  // no jpeg_finish_decompress: trailing data is not read
    return rc;
}
