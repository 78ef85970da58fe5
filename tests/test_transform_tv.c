// Tests for the torchvision-exact geometric transforms of dataset/transform.c on decoded files:
// Resize(N) + CenterCrop(S) and RandomResizedCrop's resized_crop + hflip for a given box, byte
// for byte against torchvision 0.14 on PIL (tools/torch_imagefolder.py, one run for all cases).
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset/image.h"
#include "dataset/transform.h"

#define IMAGE_TOOL "/usr/bin/python3 tools/make_image_fixtures.py"
#define TV_TOOL "/usr/bin/python3 tools/torch_imagefolder.py"

static int ttv_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

typedef struct ttv_case { const char *file; transform_op op; } ttv_case;

static void ttv_job(FILE *jobs, const char *dir, int i, const ttv_case *c)
{
    const transform_op *o = &c->op;
    if (o->kind == TRANSFORM_CENTER)
        fprintf(jobs, "transform\t%s/%s\t%s/out%d\t%d\t%d\n", dir, c->file, dir, i, o->resize,
                o->size);
    else
        fprintf(jobs, "rrc\t%s/%s\t%s/out%d\t%d\t%d\t%d\t%d\t%d\t%d\n", dir, c->file, dir, i,
                o->size, o->top, o->left, o->bh, o->bw, o->flip);
}

// Our pipeline on the decoded file vs torchvision's (S, S, 3) bytes; returns differing bytes.
static long ttv_compare(const char *dir, int i, const ttv_case *c)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, c->file);
    image img = {0};
    char err[512];
    cr_assert_eq(image_decode(path, &img, err, sizeof(err)), 0, "%s", err);
    int S = c->op.size;
    size_t plane = (size_t)S * S;
    uint8_t *got = malloc(3 * plane), want[3 * 96 * 96];
    transform_scratch s = {0};
    cr_assert_eq(transform_apply(got, img.pixels, img.c, img.h, img.w, &c->op, &s), 0);
    snprintf(path, sizeof(path), "%s/out%d", dir, i);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "torchvision wrote no %s", path);
    cr_assert_eq(fread(want, 1, 3 * plane, f), 3 * plane, "%s: short", path);
    fclose(f);
    long bad = 0;
    for (size_t p = 0; p < plane; p++)
        for (int ch = 0; ch < 3; ch++)
            bad += got[(img.c == 1 ? 0 : ch) * plane + p] != want[p * 3 + ch];
    transform_scratch_free(&s);
    image_free(&img);
    free(got);
    return bad;
}

Test(transform_tv, resize_center_crop_and_rrc_box_match_torchvision)
{
    static const ttv_case cases[] = {
        {"jpeg_420_101x57.jpg", {TRANSFORM_CENTER, 28, 32, 0, 0, 0, 0, 0}},   // shrink (antialias)
        {"jpeg_420_101x57.jpg", {TRANSFORM_CENTER, 56, 64, 0, 0, 0, 0, 0}},   // enlarge
        {"jpeg_gray_37x23.jpg", {TRANSFORM_CENTER, 30, 20, 0, 0, 0, 0, 0}},   // crop > image: pad
        {"png_rgb8.png", {TRANSFORM_CENTER, 23, 23, 0, 0, 0, 0, 0}},          // shorter side kept
        {"jpeg_prog_64x48.jpg", {TRANSFORM_CENTER, 33, 47, 0, 0, 0, 0, 0}},   // odd offsets
        {"jpeg_420_101x57.jpg", {TRANSFORM_BOX, 24, 0, 8, 11, 38, 75, 1}},
        {"jpeg_prog_64x48.jpg", {TRANSFORM_BOX, 48, 0, 0, 0, 48, 64, 0}},
        {"png_rgb8.png", {TRANSFORM_BOX, 32, 0, 3, 4, 15, 20, 1}},
        {"jpeg_gray_37x23.jpg", {TRANSFORM_BOX, 40, 0, 5, 2, 11, 9, 0}},
    };
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    char dir[64] = "/tmp/cltrain_tv_XXXXXX", cmd[4300], jobs_path[4096];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "%s %s jpeg png", IMAGE_TOOL, dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    snprintf(jobs_path, sizeof(jobs_path), "%s/jobs.txt", dir);
    FILE *jobs = fopen(jobs_path, "w");
    cr_assert_not_null(jobs);
    for (int i = 0; i < n; i++) ttv_job(jobs, dir, i, &cases[i]);
    fclose(jobs);
    snprintf(cmd, sizeof(cmd), "%s jobs %s", TV_TOOL, jobs_path);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    for (int i = 0; i < n; i++) {
        long bad = ttv_compare(dir, i, &cases[i]);
        cr_expect_eq(bad, 0, "case %d (%s, kind %d, size %d): %ld bytes differ from torchvision",
                     i, cases[i].file, cases[i].op.kind, cases[i].op.size, bad);
    }
    nftw(dir, ttv_rm, 16, FTW_DEPTH | FTW_PHYS);
}

// ToTensor + Normalize(ImageNet) after Resize + CenterCrop: the same float32 operations as
// torchvision's (x / 255, then (x - mean) / std), so the same bits.
Test(transform_tv, to_tensor_normalize_bits_match_torchvision)
{
    char dir[64] = "/tmp/cltrain_tvt_XXXXXX", cmd[4300], path[4200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "%s %s jpeg", IMAGE_TOOL, dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    snprintf(cmd, sizeof(cmd), "%s tensor %s/jpeg_444_101x57.jpg %s/t.bin 40 32", TV_TOOL, dir,
             dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    snprintf(path, sizeof(path), "%s/jpeg_444_101x57.jpg", dir);
    image img = {0};
    char err[512];
    cr_assert_eq(image_decode(path, &img, err, sizeof(err)), 0, "%s", err);
    uint8_t out[3 * 32 * 32];
    float got[3 * 32 * 32], want[3 * 32 * 32];
    transform_scratch s = {0};
    transform_op op = {.kind = TRANSFORM_CENTER, .size = 32, .resize = 40};
    cr_assert_eq(transform_apply(out, img.pixels, img.c, img.h, img.w, &op, &s), 0);
    static const float mean[3] = TRANSFORM_IMAGENET_MEAN, std[3] = TRANSFORM_IMAGENET_STD;
    for (int ch = 0; ch < 3; ch++) {
        transform_to_tensor(got + ch * 1024, out + ch * 1024, 1024);
        transform_normalize(got + ch * 1024, 1024, mean[ch], std[ch]);
    }
    snprintf(path, sizeof(path), "%s/t.bin", dir);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(want, sizeof(float), 3 * 1024, f), 3 * 1024);
    fclose(f);
    for (int i = 0; i < 3 * 1024; i++)
        cr_assert_eq(memcmp(&got[i], &want[i], sizeof(float)), 0, "element %d: %.9g vs %.9g", i,
                     got[i], want[i]);
    transform_scratch_free(&s);
    image_free(&img);
    nftw(dir, ttv_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static double ttv_const(void *ctx, int k) { (void)k; return *(double *)ctx; }

// torchvision's fallback when no attempt fits: the ratio clamped to (3/4, 4/3), centred.
Test(transform_tv, rrc_fallback_and_bounds)
{
    double u = 0.9999;  // area ~ 1 and aspect ~ 4/3: never fits a 100x10 or 10x100 image
    int top, left, bh, bw;
    transform_rrc_box(10, 100, ttv_const, &u, &top, &left, &bh, &bw);
    cr_assert(bh == 10 && bw == 13 && top == 0 && left == 43, "%d %d %d %d", top, left, bh, bw);
    transform_rrc_box(100, 10, ttv_const, &u, &top, &left, &bh, &bw);
    cr_assert(bh == 13 && bw == 10 && top == 43 && left == 0, "%d %d %d %d", top, left, bh, bw);
    u = 0.5;  // fits: area 0.54 * 57 * 101, aspect exp(0) = 1
    transform_rrc_box(57, 101, ttv_const, &u, &top, &left, &bh, &bw);
    cr_assert(bh == 56 && bw == 56, "%d x %d", bh, bw);
    cr_assert(top == 1 && left == 23, "top %d left %d", top, left);  // int(0.5 * 2), int(0.5 * 46)
}
