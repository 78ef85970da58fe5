// Tests for dataset/: PIL-exact resize against torchvision fixtures, CIFAR-10 and IDX readers
// (including hostile files), ToTensor/Normalize, and the background loader's determinism.
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

#include "dataset/dataset.h"
#include "dataset/loader.h"
#include "dataset/transform.h"

#define FIXTURE_DIR "tests/fixtures"
#define REGEN "regenerate with /usr/bin/python3 tools/make_resize_fixtures.py"

// ---- helpers ----

static void tds_mkdtemp(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/cltrain_ds_XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
}

static int tds_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void tds_rmtree(const char *dir)
{
    nftw(dir, tds_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void tds_write(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void tds_write_gz(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    gzFile f = gzopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(gzwrite(f, data, (unsigned)len), (int)len);
    gzclose(f);
}

// The error must name `file` (a path fragment).
static void tds_expect_error(const char *dir, const char *format, const char *file,
                             const char *what)
{
    dataset d;
    char err[512] = "";
    int rc = dataset_open(&d, dir, format, err, sizeof(err));
    cr_assert_neq(rc, 0, "expected an error about %s (%s)", file, what);
    cr_assert_not_null(strstr(err, file), "message '%s' does not name %s", err, file);
    if (what) cr_assert_not_null(strstr(err, what), "message '%s' lacks '%s'", err, what);
    cr_assert_null(d.train.pixels);
    dataset_free(&d);
}

// CIFAR records whose pixel value encodes (global record, channel, position).
static uint8_t tds_cifar_value(int rec, int ch, int pos)
{
    return (uint8_t)(rec * 31 + ch * 85 + pos * 3);
}

static uint8_t *tds_cifar_records(int first, int n, int label_base, size_t *len)
{
    *len = (size_t)n * 3073;
    uint8_t *buf = malloc(*len);
    for (int r = 0; r < n; r++) {
        uint8_t *p = buf + (size_t)r * 3073;
        p[0] = (uint8_t)((label_base + r) % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < 1024; i++) p[1 + ch * 1024 + i] = tds_cifar_value(first + r, ch, i);
    }
    return buf;
}

static void tds_cifar_file(const char *dir, const char *name, int first, int n)
{
    size_t len;
    uint8_t *buf = tds_cifar_records(first, n, first, &len);
    tds_write(dir, name, buf, len);
    free(buf);
}

static void tds_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

// IDX images file: magic, n, rows, cols, pixels = (i * 7 + y * cols + x) & 255.
static uint8_t *tds_idx_images(uint32_t magic, int n, int rows, int cols, size_t *len)
{
    *len = 16 + (size_t)n * rows * cols;
    uint8_t *buf = malloc(*len);
    tds_be32(buf, magic); tds_be32(buf + 4, (uint32_t)n);
    tds_be32(buf + 8, (uint32_t)rows); tds_be32(buf + 12, (uint32_t)cols);
    for (size_t i = 16; i < *len; i++) buf[i] = (uint8_t)((i - 16) * 7 / 3);
    return buf;
}

static uint8_t *tds_idx_labels(uint32_t magic, int n, int mod, size_t *len)
{
    *len = 8 + (size_t)n;
    uint8_t *buf = malloc(*len);
    tds_be32(buf, magic); tds_be32(buf + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) buf[8 + i] = (uint8_t)(i % mod);
    return buf;
}

// A complete IDX folder: train n_train images, test n_test, 4x5, labels i % mod.
static void tds_idx_folder(const char *dir, int gz, int n_train, int n_test, int mod)
{
    void (*put)(const char *, const char *, const void *, size_t) = gz ? tds_write_gz : tds_write;
    const char *sfx = gz ? ".gz" : "";
    char name[128];
    size_t len;
    uint8_t *b;
    b = tds_idx_images(0x803, n_train, 4, 5, &len);
    snprintf(name, sizeof(name), "train-images-idx3-ubyte%s", sfx); put(dir, name, b, len); free(b);
    b = tds_idx_labels(0x801, n_train, mod, &len);
    snprintf(name, sizeof(name), "train-labels-idx1-ubyte%s", sfx); put(dir, name, b, len); free(b);
    b = tds_idx_images(0x803, n_test, 4, 5, &len);
    snprintf(name, sizeof(name), "t10k-images-idx3-ubyte%s", sfx); put(dir, name, b, len); free(b);
    b = tds_idx_labels(0x801, n_test, mod, &len);
    snprintf(name, sizeof(name), "t10k-labels-idx1-ubyte%s", sfx); put(dir, name, b, len); free(b);
}

// ---- resize fixtures (torchvision Resize on PIL images) ----

static uint32_t tds_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void tds_check_resize_fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), FIXTURE_DIR "/%s", name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s (run from the repo root; " REGEN ")", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    cr_assert(size >= 28 && memcmp(buf, "CLRS", 4) == 0 && tds_le32(buf + 4) == 1,
              "%s: bad magic or version (" REGEN ")", path);
    int c = (int)tds_le32(buf + 8), ih = (int)tds_le32(buf + 12), iw = (int)tds_le32(buf + 16);
    int oh = (int)tds_le32(buf + 20), ow = (int)tds_le32(buf + 24);
    size_t in_plane = (size_t)ih * iw, out_plane = (size_t)oh * ow;
    cr_assert_eq((size_t)size, 28 + c * (in_plane + out_plane), "%s: size mismatch", path);
    const uint8_t *src = buf + 28, *want = src + c * in_plane;  // (C, H, W) each
    uint8_t *got = malloc(c * out_plane);
    for (int ch = 0; ch < c; ch++)
        cr_assert_eq(transform_resize_u8(got + ch * out_plane, oh, ow, src + ch * in_plane, ih, iw), 0);
    for (size_t i = 0; i < c * out_plane; i++)
        cr_assert_eq(got[i], want[i], "%s: first difference at index %zu (c %zu, y %zu, x %zu): "
                     "got %d, PIL %d", path, i, i / out_plane, i % out_plane / ow, i % ow,
                     got[i], want[i]);
    free(got);
    free(buf);
}

Test(transform, resize_28_to_32_gray) { tds_check_resize_fixture("resize_28_32.bin"); }
Test(transform, resize_32_to_224) { tds_check_resize_fixture("resize_32_224.bin"); }
Test(transform, resize_32_to_64) { tds_check_resize_fixture("resize_32_64.bin"); }
Test(transform, resize_64_to_24_downscale) { tds_check_resize_fixture("resize_64_24.bin"); }

Test(transform, resize_same_size_is_copy)
{
    uint8_t src[12], dst[12];
    for (int i = 0; i < 12; i++) src[i] = (uint8_t)(i * 21);
    cr_assert_eq(transform_resize_u8(dst, 3, 4, src, 3, 4), 0);
    cr_assert_arr_eq(dst, src, 12);
    cr_assert_neq(transform_resize_u8(dst, 0, 4, src, 3, 4), 0, "size 0 must be rejected");
}

Test(transform, resize_constant_plane_stays_constant)
{
    uint8_t src[7 * 9], dst[20 * 3];
    memset(src, 200, sizeof(src));
    cr_assert_eq(transform_resize_u8(dst, 20, 3, src, 7, 9), 0);
    for (int i = 0; i < 60; i++) cr_assert_eq(dst[i], 200, "index %d", i);
}

// A window of the resize (inside a larger source plane, as RandomResizedCrop's box is) equals
// the same window of the whole resize, byte for byte, for every combination of passes.
Test(transform, resize_window_equals_whole)
{
    const int shapes[][4] = { {37, 53, 20, 29}, {37, 53, 37, 29}, {37, 53, 20, 53},
                              {37, 53, 37, 53}, {23, 17, 61, 44} };  // sh sw dh dw
    uint32_t seed = 7;
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int sh = shapes[t][0], sw = shapes[t][1], dh = shapes[t][2], dw = shapes[t][3];
        int pad = 5, stride = sw + 2 * pad;
        uint8_t *big = malloc((size_t)(sh + 2 * pad) * stride), *src = malloc((size_t)sh * sw);
        uint8_t *whole = malloc((size_t)dh * dw), *win = malloc((size_t)dh * dw);
        for (int i = 0; i < (sh + 2 * pad) * stride; i++) big[i] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 24);
        for (int y = 0; y < sh; y++) memcpy(src + (size_t)y * sw, big + (size_t)(y + pad) * stride + pad, (size_t)sw);
        transform_resize r;
        cr_assert_eq(transform_resize_init(&r, dh, dw, sh, sw), 0);
        transform_resize_apply(&r, whole, src);
        for (int k = 0; k < 20; k++) {
            int y0 = (int)((seed = seed * 1103515245u + 12345u) >> 16) % dh;
            int x0 = (int)((seed = seed * 1103515245u + 12345u) >> 16) % dw;
            int y1 = y0 + 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % (dh - y0);
            int x1 = x0 + 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % (dw - x0);
            if (k == 0) { y0 = x0 = 0; y1 = dh; x1 = dw; }
            int w = x1 - x0;
            transform_resize_window(&r, win, (size_t)w, big + (size_t)pad * stride + pad,
                                    (size_t)stride, y0, y1, x0, x1);
            for (int y = y0; y < y1; y++)
                cr_assert_arr_eq(win + (size_t)(y - y0) * w, whole + (size_t)y * dw + x0, (size_t)w,
                                 "shape %zu window [%d,%d)x[%d,%d) row %d", t, y0, y1, x0, x1, y);
        }
        transform_resize_free(&r);
        free(big); free(src); free(whole); free(win);
    }
}

// Values printed by PyTorch 1.13: x.float().div(255) and F.normalize with ImageNet mean/std.
Test(transform, to_tensor_and_normalize_match_torch)
{
    const uint8_t in[6] = {0, 1, 77, 128, 200, 255};
    const float want_t[6] = {0.0f, 0x1.010102p-8f, 0x1.353536p-2f, 0x1.010102p-1f, 0x1.919192p-1f, 1.0f};
    const float want_n[3][6] = {
        {-0x1.0f177ap+1f, -0x1.0ce656p+1f, -0x1.993d92p-1f, 0x1.2f5e64p-4f, 0x1.4e9a9ep+0f, 0x1.1fdc3ap+1f},
        {-0x1.049248p+1f, -0x1.02549ep+1f, -0x1.6016fp-1f, 0x1.a4369p-3f, 0x1.773738p+0f, 0x1.36db6ep+1f},
        {-0x1.cdf012p+0f, -0x1.c979d4p+0f, -0x1.d97e72p-2f, 0x1.b4ba78p-2f, 0x1.ae6fdep+0f, 0x1.51eb86p+1f},
    };
    const float mean[3] = TRANSFORM_IMAGENET_MEAN, std[3] = TRANSFORM_IMAGENET_STD;
    float t[6];
    transform_to_tensor(t, in, 6);
    for (int i = 0; i < 6; i++) cr_assert_eq(t[i], want_t[i], "ToTensor(%d) = %a", in[i], t[i]);
    for (int c = 0; c < 3; c++) {
        float x[6];
        memcpy(x, t, sizeof(x));
        transform_normalize(x, 6, mean[c], std[c]);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(x[i], want_n[c][i], "Normalize c %d, value %d: %a vs %a", c, in[i], x[i],
                         want_n[c][i]);
    }
}

Test(transform, flip_crop_geometry)
{
    // (1, 2, 3) source; pad 1; window top-left (0, 2) in the padded image: rows -1..0, cols 1..3.
    const uint8_t src[6] = {1, 2, 3, 4, 5, 6};
    uint8_t dst[6];
    transform_flip_crop_u8(dst, src, 1, 2, 3, 1, 0, 2, 0);
    const uint8_t want[6] = {0, 0, 0, 2, 3, 0};
    cr_assert_arr_eq(dst, want, 6);
    transform_flip_crop_u8(dst, src, 1, 2, 3, 1, 1, 1, 1);  // centred: a plain flip
    const uint8_t want_flip[6] = {3, 2, 1, 6, 5, 4};
    cr_assert_arr_eq(dst, want_flip, 6);
}

// ---- CIFAR-10 ----

Test(dataset, cifar_reads_planes_labels_and_stops_at_missing_batch)
{
    char dir[64];
    tds_mkdtemp(dir, sizeof(dir));
    tds_cifar_file(dir, "data_batch_1.bin", 0, 3);
    tds_cifar_file(dir, "data_batch_2.bin", 3, 2);
    tds_cifar_file(dir, "data_batch_4.bin", 100, 1);  // after a gap: ignored
    tds_cifar_file(dir, "test_batch.bin", 50, 2);
    dataset d;
    char err[512] = "";
    cr_assert_eq(dataset_open(&d, dir, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(d.format, "cifar10");
    cr_assert_eq(d.train.n, 5);
    cr_assert_eq(d.test.n, 2);
    cr_assert(d.train.c == 3 && d.train.h == 32 && d.train.w == 32);
    cr_assert_eq(d.num_classes, 10);
    cr_assert_str_eq(d.class_names[0], "airplane");
    cr_assert_str_eq(d.class_names[9], "truck");
    for (int r = 0; r < 5; r++) {
        cr_assert_eq(d.train.labels[r], r % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < 1024; i += 97)
                cr_assert_eq(d.train.pixels[((size_t)r * 3 + ch) * 1024 + i],
                             tds_cifar_value(r, ch, i), "record %d channel %d pixel %d", r, ch, i);
    }
    cr_assert_eq(d.test.labels[1], 51 % 10);
    cr_assert_eq(d.test.pixels[3072 + 2 * 1024 + 5], tds_cifar_value(51, 2, 5));
    dataset_free(&d);
    tds_rmtree(dir);
}

Test(dataset, cifar_subfolder_and_meta_names)
{
    char dir[64], sub[128];
    tds_mkdtemp(dir, sizeof(dir));
    snprintf(sub, sizeof(sub), "%s/cifar-10-batches-bin", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    tds_cifar_file(sub, "data_batch_1.bin", 0, 2);
    tds_cifar_file(sub, "test_batch.bin", 0, 1);
    const char *meta = "  plane \nauto\r\n\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n\n";
    tds_write(sub, "batches.meta.txt", meta, strlen(meta));
    dataset d;
    char err[512] = "";
    cr_assert_eq(dataset_open(&d, dir, "auto", err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(d.format, "cifar10");
    cr_assert_eq(d.train.n, 2);
    cr_assert_str_eq(d.class_names[0], "plane");
    cr_assert_str_eq(d.class_names[1], "auto");
    cr_assert_str_eq(d.class_names[2], "bird");
    cr_assert_str_eq(d.class_names[9], "truck");
    dataset_free(&d);
    tds_write(sub, "batches.meta.txt", "a\nb\n", 4);
    tds_expect_error(dir, "cifar10", "batches.meta.txt", "2 class names");
    tds_rmtree(dir);
}

Test(dataset, cifar_errors_name_the_file)
{
    char dir[64];
    tds_mkdtemp(dir, sizeof(dir));
    tds_cifar_file(dir, "data_batch_1.bin", 0, 2);
    tds_expect_error(dir, NULL, "test_batch.bin", "No such file");
    uint8_t junk[3000] = {0};
    tds_write(dir, "test_batch.bin", junk, sizeof(junk));
    tds_expect_error(dir, NULL, "test_batch.bin", "size 3000 is not a multiple");
    tds_write(dir, "test_batch.bin", junk, 0);
    tds_expect_error(dir, NULL, "test_batch.bin", "empty");
    size_t len;
    uint8_t *recs = tds_cifar_records(0, 7, 0, &len);
    recs[5 * 3073] = 12;
    tds_write(dir, "test_batch.bin", recs, len);
    tds_expect_error(dir, NULL, "test_batch.bin", "label 12 out of range at record 5");
    free(recs);
    tds_rmtree(dir);
}

// ---- IDX ----

Test(dataset, idx_raw_big_endian)
{
    char dir[64];
    tds_mkdtemp(dir, sizeof(dir));
    tds_idx_folder(dir, 0, 260, 3, 7);  // 260 = 0x104: a little-endian reader would see 0x04010000
    dataset d;
    char err[512] = "";
    cr_assert_eq(dataset_open(&d, dir, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(d.format, "idx");
    cr_assert_eq(d.train.n, 260);
    cr_assert_eq(d.test.n, 3);
    cr_assert(d.train.c == 1 && d.train.h == 4 && d.train.w == 5, "shape (%d, %d, %d)",
              d.train.c, d.train.h, d.train.w);
    cr_assert_eq(d.train.pixels[0], 0);
    cr_assert_eq(d.train.pixels[100], (uint8_t)(100 * 7 / 3));
    cr_assert_eq(d.train.labels[259], 259 % 7);
    cr_assert_eq(d.num_classes, 7);
    cr_assert_str_eq(d.class_names[0], "0");
    cr_assert_str_eq(d.class_names[6], "6");
    dataset_free(&d);
    tds_rmtree(dir);
}

Test(dataset, idx_gz_and_fashion_names)
{
    char dir[64], sub[128];
    tds_mkdtemp(dir, sizeof(dir));
    snprintf(sub, sizeof(sub), "%s/Fashion-MNIST", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    tds_idx_folder(sub, 1, 30, 20, 10);
    dataset d;
    char err[512] = "";
    cr_assert_eq(dataset_open(&d, sub, "idx", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(d.train.n, 30);
    cr_assert_eq(d.train.pixels[42], (uint8_t)(42 * 7 / 3));
    cr_assert_eq(d.test.labels[13], 3);
    cr_assert_eq(d.num_classes, 10);
    cr_assert_str_eq(d.class_names[0], "T-shirt/top");
    cr_assert_str_eq(d.class_names[9], "Ankle boot");
    dataset_free(&d);
    tds_rmtree(dir);
}

Test(dataset, idx_errors_name_the_file)
{
    char dir[64];
    size_t len;
    uint8_t *b;
    tds_mkdtemp(dir, sizeof(dir));
    tds_idx_folder(dir, 1, 30, 20, 10);
    b = tds_idx_labels(0x802, 30, 10, &len);  // bad magic
    tds_write_gz(dir, "train-labels-idx1-ubyte.gz", b, len);
    tds_expect_error(dir, NULL, "train-labels-idx1-ubyte.gz", "bad magic 0x00000802 (expected 0x00000801)");
    free(b);
    b = tds_idx_labels(0x801, 29, 10, &len);  // count mismatch
    tds_write_gz(dir, "train-labels-idx1-ubyte.gz", b, len);
    tds_expect_error(dir, NULL, "train-labels-idx1-ubyte.gz", "29 labels");
    free(b);
    b = tds_idx_labels(0x801, 30, 10, &len);
    tds_write_gz(dir, "train-labels-idx1-ubyte.gz", b, len);
    free(b);
    b = tds_idx_images(0x803, 21, 4, 5, &len);  // header says 20 images, data holds 21
    tds_be32(b + 4, 20);
    tds_write_gz(dir, "t10k-images-idx3-ubyte.gz", b, len);
    tds_expect_error(dir, NULL, "t10k-images-idx3-ubyte.gz", "trailing");
    tds_write_gz(dir, "t10k-images-idx3-ubyte.gz", b, len - 1 - 4 * 5 * 2);  // short data
    tds_expect_error(dir, NULL, "t10k-images-idx3-ubyte.gz", "truncated");
    free(b);
    // A truncated gzip stream: the compressed file cut in half.
    b = tds_idx_images(0x803, 2000, 4, 5, &len);
    tds_write_gz(dir, "t10k-images-idx3-ubyte.gz", b, len);
    free(b);
    char path[256];
    snprintf(path, sizeof(path), "%s/t10k-images-idx3-ubyte.gz", dir);
    FILE *f = fopen(path, "rb");
    uint8_t zbuf[65536];
    size_t zlen = fread(zbuf, 1, sizeof(zbuf), f);
    fclose(f);
    tds_write(dir, "t10k-images-idx3-ubyte.gz", zbuf, zlen / 2);
    tds_expect_error(dir, NULL, "t10k-images-idx3-ubyte.gz", "truncated");
    // A header claiming 2^31-1 images must not make the reader allocate it.
    b = tds_idx_images(0x803, 1, 4, 5, &len);
    tds_be32(b + 4, 0x7fffffff);
    tds_write(dir, "t10k-images-idx3-ubyte.gz", b, len);
    tds_expect_error(dir, NULL, "t10k-images-idx3-ubyte.gz", "truncated");
    tds_be32(b + 4, 1);
    tds_be32(b + 8, 0);
    tds_write(dir, "t10k-images-idx3-ubyte.gz", b, len);
    tds_expect_error(dir, NULL, "t10k-images-idx3-ubyte.gz", "bad dimension");
    free(b);
    snprintf(path, sizeof(path), "%s/t10k-images-idx3-ubyte.gz", dir);
    cr_assert_eq(remove(path), 0);
    tds_expect_error(dir, NULL, "t10k-images-idx3-ubyte", "No such file");
    tds_rmtree(dir);
}

Test(dataset, folder_errors)
{
    char dir[64], missing[128];
    tds_mkdtemp(dir, sizeof(dir));
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    tds_expect_error(missing, NULL, missing, "No such file or directory");
    tds_expect_error(dir, NULL, dir, "no CIFAR-10 (data_batch_1.bin) or IDX");
    tds_expect_error(dir, "cifar10", "data_batch_1.bin", "No such file");
    tds_expect_error(dir, "idx", "train-images-idx3-ubyte", "No such file");
    tds_expect_error(dir, "png", dir, "unknown data set format");
    tds_rmtree(dir);
}

// ---- loader ----

// A synthetic split: image i has label i and pixel (ch, y, x) = (i * 3 + ch * 50 + y * w + x) & 255.
static dataset_split tds_split(int n, int c, int h, int w)
{
    dataset_split s = {.n = n, .c = c, .h = h, .w = w};
    s.pixels = malloc((size_t)n * c * h * w);
    s.labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        s.labels[i] = (uint8_t)i;
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < h * w; p++)
                s.pixels[((size_t)i * c + ch) * h * w + p] = (uint8_t)(i * 3 + ch * 50 + p);
    }
    return s;
}

static void tds_split_free(dataset_split *s)
{
    free(s->pixels);
    free(s->labels);
}

static loader_config tds_config(int batch, int size)
{
    loader_config c = {.batch_size = batch, .image_size = size, .seed = 1234};
    return c;
}

// Runs a whole epoch from first_batch; returns the batch count; x (batches, 3*B*S*S) and labels
// (batches, B) with unused tail slots zero.
static int tds_run_epoch(loader *l, int epoch, int first_batch, float *x, int32_t *y,
                         int *counts)
{
    size_t per = l->batch_floats;
    int b = 0, n;
    loader_start_epoch(l, epoch, first_batch);
    while ((n = loader_next(l, x + b * per, y + b * l->cfg.batch_size)) > 0) counts[b++] = n;
    return b;
}

Test(loader, batch_count_layout_and_file_order)
{
    dataset_split s = tds_split(10, 3, 6, 6);
    loader_config cfg = tds_config(4, 6);  // S = source size: pixels pass through unresized
    loader l;
    char err[256] = "";
    cr_assert_eq(loader_init(&l, &s, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(loader_batches_per_epoch(&l), 3);
    cr_assert_eq(loader_next(&l, NULL, NULL), 0, "no epoch started yet");
    float x[3 * 4 * 36];
    int32_t y[4];
    int want_counts[3] = {4, 4, 2};
    loader_start_epoch(&l, 0, 0);
    for (int b = 0; b < 3; b++) {
        int B = loader_next(&l, x, y);
        cr_assert_eq(B, want_counts[b], "batch %d has %d images", b, B);
        for (int i = 0; i < B; i++) {
            int img = b * 4 + i;
            cr_assert_eq(y[i], img, "shuffle=0 keeps file order");
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < 36; p += 7) {
                    float got = x[c * B * 36 + i * 36 + p];  // (C, B, S, S)
                    float want = (float)s.pixels[((size_t)img * 3 + c) * 36 + p] / 255.0f;
                    cr_assert_eq(got, want, "batch %d image %d c %d p %d", b, i, c, p);
                }
        }
    }
    cr_assert_eq(loader_next(&l, x, y), 0, "epoch end");
    cr_assert_eq(loader_next(&l, x, y), 0, "still at epoch end");
    loader_free(&l);
    tds_split_free(&s);
}

Test(loader, normalize_uses_channel_statistics)
{
    dataset_split s = tds_split(2, 3, 4, 4);
    loader_config cfg = tds_config(2, 4);
    cfg.normalize = 1;
    loader l;
    cr_assert_eq(loader_init(&l, &s, &cfg, NULL, 0), 0);
    float x[3 * 2 * 16];
    int32_t y[2];
    loader_start_epoch(&l, 0, 0);
    cr_assert_eq(loader_next(&l, x, y), 2);
    const float mean[3] = TRANSFORM_IMAGENET_MEAN, std[3] = TRANSFORM_IMAGENET_STD;
    for (int c = 0; c < 3; c++) {
        float want = ((float)s.pixels[(3 + c) * 16 + 5] / 255.0f - mean[c]) / std[c];
        cr_assert_eq(x[c * 2 * 16 + 16 + 5], want, "channel %d", c);
    }
    loader_free(&l);
    tds_split_free(&s);
}

Test(loader, shuffle_is_a_seeded_permutation_per_epoch)
{
    dataset_split s = tds_split(50, 3, 4, 4);
    loader_config cfg = tds_config(8, 4);
    cfg.shuffle = 1;
    loader a, b;
    cr_assert_eq(loader_init(&a, &s, &cfg, NULL, 0), 0);
    cr_assert_eq(loader_init(&b, &s, &cfg, NULL, 0), 0);
    size_t per = a.batch_floats;
    float *xa = calloc(7 * per, sizeof(float)), *xb = calloc(7 * per, sizeof(float));
    int32_t ya[56] = {0}, yb[56] = {0}, y1[56] = {0};
    int ca[7], cb[7];
    cr_assert_eq(tds_run_epoch(&a, 0, 0, xa, ya, ca), 7);
    cr_assert_eq(tds_run_epoch(&b, 0, 0, xb, yb, cb), 7);
    cr_assert_arr_eq(ya, yb, sizeof(ya), "same seed, same order");
    cr_assert_arr_eq(xa, xb, 7 * per * sizeof(float), "same seed, same images");
    int seen[50] = {0}, moved = 0;
    for (int bt = 0; bt < 7; bt++)
        for (int i = 0; i < ca[bt]; i++) {
            int lab = ya[bt * 8 + i];
            cr_assert(lab >= 0 && lab < 50 && !seen[lab], "label %d repeated or invalid", lab);
            seen[lab] = 1;
            moved += lab != bt * 8 + i;
        }
    cr_assert_gt(moved, 10, "the shuffle barely moved anything");
    cr_assert_eq(tds_run_epoch(&a, 1, 0, xa, y1, ca), 7);
    cr_assert_neq(memcmp(ya, y1, sizeof(ya)), 0, "epochs 0 and 1 have the same order");
    free(xa); free(xb);
    loader_free(&a); loader_free(&b);
    tds_split_free(&s);
}

// DistributedSampler(drop_last=False): an epoch that the W replicas do not divide is padded
// to a multiple of W with its first positions again (as many times as needed), in the same
// shuffled order; batches stay of batch_size, the last one shorter.
Test(loader, pad_to_repeats_the_epochs_first_positions)
{
    dataset_split s = tds_split(9, 3, 4, 4);
    loader_config cfg = tds_config(4, 4);
    cfg.shuffle = 1;
    loader a, p;
    cr_assert_eq(loader_init(&a, &s, &cfg, NULL, 0), 0);
    cfg.pad_to = 2;
    cr_assert_eq(loader_init(&p, &s, &cfg, NULL, 0), 0);
    cr_assert_eq(p.n, 9);
    cr_assert_eq(p.total, 10);
    cr_assert_eq(loader_batches_per_epoch(&p), 3);
    size_t per = a.batch_floats;
    float *xa = calloc(3 * per, sizeof(float)), *xp = calloc(3 * per, sizeof(float));
    int32_t ya[12] = {0}, yp[12] = {0};
    int ca[3], cp[3];
    cr_assert_eq(tds_run_epoch(&a, 1, 0, xa, ya, ca), 3);
    cr_assert_eq(tds_run_epoch(&p, 1, 0, xp, yp, cp), 3);
    cr_assert(ca[2] == 1 && cp[0] == 4 && cp[1] == 4 && cp[2] == 2, "%d %d %d", cp[0], cp[1],
              cp[2]);
    cr_assert_arr_eq(ya, yp, 9 * sizeof(int32_t), "the padded epoch starts as the plain one");
    cr_assert_eq(yp[9], ya[0], "position 9 repeats position 0 (%d vs %d)", yp[9], ya[0]);
    size_t img = 16;  // (3, B, S, S): image 1 of the last batch against image 0 of the first
    for (int c = 0; c < 3; c++)
        cr_assert_arr_eq(xp + 2 * per + ((size_t)c * 2 + 1) * img, xa + (size_t)c * 4 * img,
                         img * sizeof(float), "channel %d", c);
    loader_free(&a);
    loader_free(&p);
    // More padding than images: the order repeats whole (indices * ceil(padding / n)).
    dataset_split t = tds_split(3, 3, 4, 4);
    cfg = tds_config(8, 4);
    cfg.pad_to = 8;
    cr_assert_eq(loader_init(&p, &t, &cfg, NULL, 0), 0);
    cr_assert_eq(tds_run_epoch(&p, 0, 0, xp, yp, cp), 1);
    cr_assert_eq(cp[0], 8);
    int32_t want[8] = {0, 1, 2, 0, 1, 2, 0, 1};
    cr_assert_arr_eq(yp, want, sizeof(want));
    loader_free(&p);
    free(xa); free(xp);
    tds_split_free(&s);
    tds_split_free(&t);
}

// PyTorch's padded index is one more __getitem__, with new random draws: a padded repeat
// gets its own crop and flip (both augmentations), while the epoch's own positions keep the
// draws they have without padding.
Test(loader, padded_repeats_draw_their_own_augmentation)
{
    dataset_split s = tds_split(3, 3, 8, 8);
    for (int aug = LOADER_AUGMENT_FLIP_CROP; aug <= LOADER_AUGMENT_RRC_FLIP; aug++) {
        loader_config cfg = tds_config(8, 8);
        cfg.augment = aug;
        loader a, p;
        cr_assert_eq(loader_init(&a, &s, &cfg, NULL, 0), 0);
        cfg.pad_to = 8;  // positions 0..7: images 0 1 2 0 1 2 0 1
        cr_assert_eq(loader_init(&p, &s, &cfg, NULL, 0), 0);
        size_t per = a.batch_floats, img = 64;
        float *xa = calloc(per, sizeof(float)), *xp = calloc(per, sizeof(float));
        int32_t ya[8] = {0}, yp[8] = {0};
        int ca[1], cp[1];
        cr_assert_eq(tds_run_epoch(&a, 0, 0, xa, ya, ca), 1);
        cr_assert_eq(tds_run_epoch(&p, 0, 0, xp, yp, cp), 1);
        cr_assert(ca[0] == 3 && cp[0] == 8);
        cr_assert(yp[0] == 0 && yp[3] == 0 && yp[6] == 0, "%d %d %d", yp[0], yp[3], yp[6]);
        for (int c = 0; c < 3; c++)  // the epoch's own positions: as without padding
            cr_assert_arr_eq(xp + (size_t)c * 8 * img, xa + (size_t)c * 3 * img,
                             3 * img * sizeof(float), "augment %d, channel %d", aug, c);
        int same03 = 1, same06 = 1, same36 = 1;
        for (int c = 0; c < 3; c++) {
            const float *ch = xp + (size_t)c * 8 * img;
            same03 &= !memcmp(ch, ch + 3 * img, img * sizeof(float));
            same06 &= !memcmp(ch, ch + 6 * img, img * sizeof(float));
            same36 &= !memcmp(ch + 3 * img, ch + 6 * img, img * sizeof(float));
        }
        cr_expect(!(same03 && same06 && same36), "augment %d: the padded repeats of image 0 "
                  "reuse its draw", aug);
        cr_expect(!same03 || !same06, "augment %d: both repeats equal the original", aug);
        // Deterministic: a second loader draws the same repeats.
        loader q;
        float *xq = calloc(per, sizeof(float));
        int32_t yq[8] = {0};
        int cq[1];
        cr_assert_eq(loader_init(&q, &s, &cfg, NULL, 0), 0);
        cr_assert_eq(tds_run_epoch(&q, 0, 0, xq, yq, cq), 1);
        cr_expect_arr_eq(xq, xp, per * sizeof(float), "augment %d: not reproducible", aug);
        loader_free(&q);
        loader_free(&a);
        loader_free(&p);
        free(xa); free(xp); free(xq);
    }
    tds_split_free(&s);
}

// Resuming at (epoch, first_batch) reproduces the uninterrupted run, augmentation included.
Test(loader, resume_matches_uninterrupted_run)
{
    dataset_split s = tds_split(37, 3, 8, 8);
    loader_config cfg = tds_config(5, 12);
    cfg.shuffle = 1; cfg.augment = 1; cfg.normalize = 1;
    loader a, b;
    cr_assert_eq(loader_init(&a, &s, &cfg, NULL, 0), 0);
    cr_assert_eq(loader_init(&b, &s, &cfg, NULL, 0), 0);
    size_t per = a.batch_floats;
    float *xa = calloc(8 * per, sizeof(float)), *xb = calloc(8 * per, sizeof(float));
    int32_t ya[40] = {0}, yb[40] = {0};
    int ca[8], cb[8];
    cr_assert_eq(tds_run_epoch(&a, 0, 0, xa, ya, ca), 8);
    cr_assert_eq(tds_run_epoch(&a, 1, 0, xa, ya, ca), 8);  // epoch 1, uninterrupted
    // b: abandon epoch 0 mid-way, then resume epoch 1 at batch 3.
    float x[3 * 5 * 144];
    int32_t y[5];
    loader_start_epoch(&b, 0, 0);
    cr_assert_eq(loader_next(&b, x, y), 5);
    int got = tds_run_epoch(&b, 1, 3, xb, yb, cb);
    cr_assert_eq(got, 5);
    for (int k = 0; k < got; k++) {
        cr_assert_eq(cb[k], ca[3 + k]);
        cr_assert_arr_eq(yb + k * 5, ya + (3 + k) * 5, cb[k] * sizeof(int32_t), "labels, batch %d", 3 + k);
        cr_assert_arr_eq(xb + k * per, xa + (3 + k) * per, 3 * cb[k] * 144 * sizeof(float),
                         "pixels, batch %d", 3 + k);
    }
    free(xa); free(xb);
    loader_free(&a); loader_free(&b);
    tds_split_free(&s);
}

Test(loader, flip_crop_is_deterministic_and_changes_images)
{
    dataset_split s = tds_split(16, 3, 8, 8);
    loader_config plain = tds_config(16, 8), aug = plain;
    aug.augment = 1;
    loader lp, la, lb;
    cr_assert_eq(loader_init(&lp, &s, &plain, NULL, 0), 0);
    cr_assert_eq(loader_init(&la, &s, &aug, NULL, 0), 0);
    cr_assert_eq(loader_init(&lb, &s, &aug, NULL, 0), 0);
    size_t per = lp.batch_floats;
    float *xp = malloc(per * sizeof(float)), *xa = malloc(per * sizeof(float));
    float *xb = malloc(per * sizeof(float)), *xe = malloc(per * sizeof(float));
    int32_t y[16];
    loader_start_epoch(&lp, 0, 0); loader_start_epoch(&la, 0, 0); loader_start_epoch(&lb, 0, 0);
    cr_assert_eq(loader_next(&lp, xp, y), 16);
    cr_assert_eq(loader_next(&la, xa, y), 16);
    cr_assert_eq(loader_next(&lb, xb, y), 16);
    cr_assert_arr_eq(xa, xb, per * sizeof(float), "same seed and epoch, same augmentation");
    int changed = 0, zeros = 0;
    for (int i = 0; i < 16; i++)
        changed += memcmp(xa + i * 64, xp + i * 64, 64 * sizeof(float)) != 0;
    for (size_t i = 0; i < per; i++) zeros += xa[i] == 0.0f;
    cr_assert_gt(changed, 8, "only %d of 16 images changed", changed);
    cr_assert_gt(zeros, 0, "no zero padding visible");
    loader_start_epoch(&la, 1, 0);
    cr_assert_eq(loader_next(&la, xe, y), 16);
    cr_assert_neq(memcmp(xa, xe, per * sizeof(float)), 0, "epoch 1 repeats epoch 0's crops");
    free(xp); free(xa); free(xb); free(xe);
    loader_free(&lp); loader_free(&la); loader_free(&lb);
    tds_split_free(&s);
}

Test(loader, gray_is_resized_then_replicated)
{
    dataset_split s = tds_split(3, 1, 28, 28);
    loader_config cfg = tds_config(3, 32);
    loader l;
    cr_assert_eq(loader_init(&l, &s, &cfg, NULL, 0), 0);
    float x[3 * 3 * 1024];
    int32_t y[3];
    loader_start_epoch(&l, 0, 0);
    cr_assert_eq(loader_next(&l, x, y), 3);
    uint8_t want[1024];
    cr_assert_eq(transform_resize_u8(want, 32, 32, s.pixels + 2 * 784, 28, 28), 0);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 1024; p++)
            cr_assert_eq(x[c * 3 * 1024 + 2 * 1024 + p], (float)want[p] / 255.0f, "c %d p %d", c, p);
    loader_free(&l);
    tds_split_free(&s);
}

Test(loader, limit_and_bad_config)
{
    dataset_split s = tds_split(10, 3, 4, 4);
    loader_config cfg = tds_config(4, 4);
    cfg.limit = 3;
    loader l;
    char err[256] = "";
    cr_assert_eq(loader_init(&l, &s, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(loader_batches_per_epoch(&l), 1);
    float x[3 * 4 * 16];
    int32_t y[4];
    loader_start_epoch(&l, 0, 0);
    cr_assert_eq(loader_next(&l, x, y), 3);
    cr_assert(y[0] == 0 && y[1] == 1 && y[2] == 2);
    cr_assert_eq(loader_next(&l, x, y), 0);
    loader_free(&l);
    cfg.batch_size = 0;
    cr_assert_neq(loader_init(&l, &s, &cfg, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "batch_size"), "%s", err);
    loader_free(&l);  // a failed init leaves a loader that _free accepts
    tds_split_free(&s);
}

Test(loader, free_mid_epoch)
{
    dataset_split s = tds_split(64, 3, 8, 8);
    loader_config cfg = tds_config(4, 16);
    cfg.shuffle = 1; cfg.augment = 1;
    loader l;
    cr_assert_eq(loader_init(&l, &s, &cfg, NULL, 0), 0);
    float x[3 * 4 * 256];
    int32_t y[4];
    loader_start_epoch(&l, 0, 0);
    cr_assert_eq(loader_next(&l, x, y), 4);
    loader_start_epoch(&l, 2, 5);  // restart mid-epoch while the worker is busy
    cr_assert_eq(loader_next(&l, x, y), 4);
    loader_free(&l);  // worker mid-epoch
    tds_split_free(&s);
}
