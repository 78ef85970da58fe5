// Tests for dataset/image*.c: every format's decode against PIL's Image.open().convert("RGB"),
// byte for byte, on files tools/make_image_fixtures.py writes at test time; hostile files.
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <jpeglib.h>

#include "dataset/image.h"

#define IMAGE_TOOL "/usr/bin/python3 tools/make_image_fixtures.py"

static int timg_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void timg_rmtree(const char *dir) { nftw(dir, timg_rm, 16, FTW_DEPTH | FTW_PHYS); }

static void timg_tmpdir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/cltrain_img_XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
}

static uint8_t *timg_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void timg_write(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

// Compares the decode of one file with PIL's (H, W, 3) bytes; returns the differing count.
static long timg_compare(const char *dir, const char *name, int w, int h, char *why, size_t n)
{
    char path[4096], rgb[4200], err[512] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(rgb, sizeof(rgb), "%s.rgb", path);
    size_t len;
    uint8_t *want = timg_slurp(rgb, &len);
    image img = {0};
    image_info info;
    long bad = 0;
    if (image_probe(path, &info, err, sizeof(err)) || image_decode(path, &img, err, sizeof(err))) {
        snprintf(why, n, "%s: %s", name, err);
        bad = -1;
    } else if (img.w != w || img.h != h || info.w != w || info.h != h) {
        snprintf(why, n, "%s: size %dx%d (probe %dx%d), PIL %dx%d", name, img.w, img.h, info.w,
                 info.h, w, h);
        bad = -1;
    } else {
        size_t plane = (size_t)w * h, first = 0;
        for (size_t i = 0; i < plane; i++)
            for (int ch = 0; ch < 3; ch++) {
                uint8_t got = img.pixels[(img.c == 1 ? 0 : ch) * plane + i];
                if (got != want[i * 3 + ch] && bad++ == 0) first = i * 3 + ch;
            }
        if (bad)
            snprintf(why, n, "%s: %ld of %zu bytes differ, first at %zu (got %d, PIL %d)", name,
                     bad, plane * 3, first, img.pixels[(img.c == 1 ? 0 : first % 3) * plane +
                     first / 3], want[first]);
    }
    image_free(&img);
    free(want);
    return bad;
}

// Writes the files of `kind`, decodes each, and fails naming every file that differs.
static void timg_check_kind(const char *kind, int min_files)
{
    char dir[64], cmd[512], list[4200];
    timg_tmpdir(dir, sizeof(dir));
    snprintf(cmd, sizeof(cmd), "%s %s %s", IMAGE_TOOL, dir, kind);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    snprintf(list, sizeof(list), "%s/expect.txt", dir);
    FILE *f = fopen(list, "r");
    cr_assert_not_null(f);
    char name[256], why[1024], report[4096] = "";
    int w, h, files = 0, failed = 0;
    while (fscanf(f, "%255s %d %d", name, &w, &h) == 3) {
        files++;
        if (timg_compare(dir, name, w, h, why, sizeof(why)) != 0) {
            failed++;
            size_t used = strlen(report);
            snprintf(report + used, sizeof(report) - used, "\n  %s", why);
        }
    }
    fclose(f);
    timg_rmtree(dir);
    cr_assert_geq(files, min_files, "%s: only %d files written", kind, files);
    cr_assert_eq(failed, 0, "%d of %d %s files differ from PIL:%s", failed, files, kind, report);
}

Test(image_pil, jpeg_byte_exact) { timg_check_kind("jpeg", 20); }
// YCCK JPEG (Adobe transform 2, as Photoshop writes CMYK): PIL cannot write one, so libjpeg
// does, from a CMYK pattern, at 4:2:0-style default sampling and at 1x1; PIL decodes it.
static void timg_write_ycck(const char *path, int w, int h, int subsample)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);  // writes the Adobe marker with transform 2
    if (!subsample)
        for (int i = 0; i < 4; i++) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    JSAMPLE *row = malloc((size_t)w * 4);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < w; x++) {
            row[x * 4 + 0] = (JSAMPLE)((x * 255) / (w - 1));
            row[x * 4 + 1] = (JSAMPLE)((y * 255) / (h - 1));
            row[x * 4 + 2] = (JSAMPLE)(((x + y) * 7) & 255);
            row[x * 4 + 3] = (JSAMPLE)((x * y) & 255);
        }
        JSAMPROW rows[1] = { row };
        jpeg_write_scanlines(&c, rows, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    fclose(f);
}

Test(image_pil, jpeg_ycck_byte_exact)
{
    char dir[64], path[256], cmd[1024], why[1024];
    timg_tmpdir(dir, sizeof(dir));
    const struct { const char *name; int w, h, sub; } cases[] = {
        { "ycck_420_37x23.jpg", 37, 23, 1 }, { "ycck_444_20x31.jpg", 20, 31, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        timg_write_ycck(path, cases[i].w, cases[i].h, cases[i].sub);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'import sys; from PIL import Image; im = Image.open(sys.argv[1]);"
                 " assert (im.mode, im.info.get(\"adobe_transform\")) == (\"CMYK\", 2), im.info; open(sys.argv[1] + \".rgb\", \"wb\")"
                 ".write(im.convert(\"RGB\").tobytes())' %s", path);
        cr_assert_eq(system(cmd), 0, "PIL could not decode %s", path);
        long bad = timg_compare(dir, cases[i].name, cases[i].w, cases[i].h, why, sizeof why);
        cr_expect_eq(bad, 0, "%s", why);
    }
    timg_rmtree(dir);
}

Test(image_pil, png_byte_exact) { timg_check_kind("png", 23); }
Test(image_pil, bmp_byte_exact) { timg_check_kind("bmp", 15); }
Test(image_pil, pnm_byte_exact) { timg_check_kind("pnm", 6); }

// ---- hostile files: one message naming the file, no crash, nothing allocated for bombs ----

static void timg_expect_bad(const char *dir, const char *name, const char *what, int at_probe)
{
    char path[4096], err[512] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    image_info info;
    image img = {0};
    int probe = image_probe(path, &info, err, sizeof(err));
    if (at_probe) cr_expect_neq(probe, 0, "%s: the probe accepted it", name);
    if (!probe) {
        err[0] = '\0';
        cr_expect_neq(image_decode(path, &img, err, sizeof(err)), 0, "%s: decoded", name);
    }
    cr_expect_not_null(strstr(err, path), "%s: message '%s' does not name it", name, err);
    cr_expect_not_null(strstr(err, what), "%s: message '%s' does not say '%s'", name, err, what);
    cr_expect_null(strchr(err, '\n'), "%s: message has a newline", name);
    image_free(&img);
}

static void timg_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

// A bare PNG signature + IHDR of w x h (valid CRC), nothing after.
static void timg_png_header(uint8_t out[33], uint32_t w, uint32_t h)
{
    memcpy(out, "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
    timg_put_be32(out + 16, w);
    timg_put_be32(out + 20, h);
    memcpy(out + 24, "\x08\x02\0\0\0", 5);
    timg_put_be32(out + 29, (uint32_t)crc32(0, out + 12, 17));
}

Test(image_hostile, every_case_named)
{
    char dir[64], cmd[512], path[4096];
    timg_tmpdir(dir, sizeof(dir));
    snprintf(cmd, sizeof(cmd), "%s %s jpeg png", IMAGE_TOOL, dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    size_t len;
    snprintf(path, sizeof(path), "%s/jpeg_420_101x57.jpg", dir);
    uint8_t *jpg = timg_slurp(path, &len);
    timg_write(dir, "cut.jpg", jpg, len / 2);
    timg_write(dir, "cut header.jpg", jpg, 20);
    snprintf(path, sizeof(path), "%s/png_rgb8.png", dir);
    size_t plen;
    uint8_t *png = timg_slurp(path, &plen);
    png[plen - 20] ^= 0xFF;  // inside IDAT's CRC or data
    timg_write(dir, "bad idat.png", png, plen);
    png[plen - 20] ^= 0xFF;
    png[30] ^= 0x01;  // IHDR's CRC
    timg_write(dir, "bad ihdr crc.png", png, plen);
    png[30] ^= 0x01;
    timg_write(dir, "cut.png", png, 40);
    uint8_t bomb[33];
    timg_png_header(bomb, 100000, 100000);
    timg_write(dir, "bomb.png", bomb, sizeof(bomb));
    timg_write(dir, "text.jpg", "hello, this is not a JPEG\n", 26);
    timg_write(dir, "empty.png", "", 0);
    timg_write(dir, "caf\xc3\xa9 \xe2\x9c\x93.bmp", "BM\0\0", 4);
    snprintf(path, sizeof(path), "%s/loop_a.jpg", dir);
    char other[4096];
    snprintf(other, sizeof(other), "%s/loop_b.jpg", dir);
    cr_assert_eq(symlink(other, path), 0);
    cr_assert_eq(symlink(path, other), 0);
    snprintf(path, sizeof(path), "%s/a dir.png", dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/fifo.jpg", dir);
    cr_assert_eq(mkfifo(path, 0644), 0);  // opening it for reading would block
    timg_expect_bad(dir, "fifo.jpg", "not a regular file", 1);
    timg_expect_bad(dir, "cut.jpg", "truncated", 0);
    timg_expect_bad(dir, "cut header.jpg", "truncated JPEG header", 1);
    timg_expect_bad(dir, "bad idat.png", "PNG: ", 0);
    timg_expect_bad(dir, "bad ihdr crc.png", "CRC error", 1);
    timg_expect_bad(dir, "cut.png", "truncated", 0);
    timg_expect_bad(dir, "bomb.png", "MAX_IMAGE_PIXELS", 1);
    timg_expect_bad(dir, "text.jpg", "not an image", 1);
    timg_expect_bad(dir, "empty.png", "empty file", 1);
    timg_expect_bad(dir, "caf\xc3\xa9 \xe2\x9c\x93.bmp", "truncated BMP", 1);
    timg_expect_bad(dir, "loop_a.jpg", "symbolic links", 1);
    timg_expect_bad(dir, "a dir.png", "not a regular file", 1);
    timg_expect_bad(dir, "missing.png", "No such file", 1);
    free(jpg);
    free(png);
    timg_rmtree(dir);
}

// Refused before allocating: a 1 MiB limit on the address space would make a real attempt fail.
Test(image_hostile, bomb_from_memory)
{
    uint8_t bomb[33];
    char err[256];
    image img = {0};
    timg_png_header(bomb, 9460, 9460);  // 89,491,600 pixels: just above PIL's limit
    cr_assert_neq(image_decode_mem(bomb, sizeof(bomb), "mem.png", &img, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "89478485"), "%s", err);
    cr_assert_null(img.pixels);
    timg_png_header(bomb, 9459, 9459);  // 89,472,681: allowed, then truncated
    cr_assert_neq(image_decode_mem(bomb, sizeof(bomb), "mem.png", &img, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "truncated"), "%s", err);
    image_free(&img);
}
