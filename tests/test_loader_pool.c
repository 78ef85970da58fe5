// Tests for the loader's worker pool on image folders: the batch at step t is the same for any
// number of workers and prefetch depth (shuffle and RandomResizedCrop on), resume mid-epoch, the
// eval pipeline equals transform_apply, and a file that fails mid-run is named or, with
// skip_bad, left out of its batch.
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include <criterion/criterion.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset/dataset.h"
#include "dataset/loader.h"

#define IMAGE_TOOL "/usr/bin/python3 tools/make_image_fixtures.py"

static int tlp_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

// dir/train/c<k>/ and dir/val/c<k>/ (k = file number % 3) filled with the fixture files of
// `kinds`, copied (so a test may damage one).
static int tlp_make_folder(char *dir, size_t size, const char *kinds)
{
    snprintf(dir, size, "/tmp/cltrain_pool_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cmd[4400], path[4096], name[256];
    snprintf(cmd, sizeof(cmd), "%s %s/src %s", IMAGE_TOOL, dir, kinds);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    snprintf(path, sizeof(path), "%s/src/expect.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    int w, h, n = 0;
    for (int k = 0; k < 3; k++)
        for (int s = 0; s < 2; s++) {
            snprintf(path, sizeof(path), "%s/%s", dir, s ? "val" : "train");
            mkdir(path, 0755);
            snprintf(path, sizeof(path), "%s/%s/c%d", dir, s ? "val" : "train", k);
            mkdir(path, 0755);
        }
    while (fscanf(f, "%255s %d %d", name, &w, &h) == 3) {
        snprintf(cmd, sizeof(cmd), "cp '%s/src/%s' '%s/%s/c%d/'", dir, name, dir,
                 n % 4 == 3 ? "val" : "train", n % 3);
        cr_assert_eq(system(cmd), 0);
        n++;
    }
    fclose(f);
    return n;
}

static float *tlp_epoch(const dataset_split *s, loader_config c, int epoch, int first,
                        int *total)
{
    loader l;
    char err[512];
    cr_assert_eq(loader_init(&l, s, &c, err, sizeof(err)), 0, "%s", err);
    size_t per = 3 * (size_t)c.batch_size * c.image_size * c.image_size;
    float *all = calloc(per * (size_t)l.batches, sizeof(float));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)c.batch_size);
    loader_start_epoch(&l, epoch, first);
    int n, b = first;
    *total = 0;
    while ((n = loader_next(&l, all + per * b, y)) > 0) {
        b++;
        *total += n;
    }
    cr_assert_eq(n, 0, "loader error: %s", l.error);
    free(y);
    loader_free(&l);
    return all;
}

Test(loader_pool, same_batches_for_any_worker_count)
{
    char dir[64], err[512];
    tlp_make_folder(dir, sizeof(dir), "jpeg png");
    dataset d;
    cr_assert_eq(dataset_open(&d, dir, "folder", err, sizeof(err)), 0, "%s", err);
    loader_config c = {.batch_size = 5, .image_size = 24, .normalize = 1, .shuffle = 1,
                       .seed = 99, .augment = LOADER_AUGMENT_RRC_FLIP, .workers = 1};
    int n1, n;
    float *ref = tlp_epoch(&d.train, c, 3, 0, &n1);
    cr_assert_eq(n1, d.train.n);
    size_t per = 3 * 5 * 24 * 24, batches = (size_t)(d.train.n + 4) / 5;
    int configs[][2] = {{2, 1}, {3, 2}, {7, 5}};
    for (int k = 0; k < 3; k++) {
        c.workers = configs[k][0];
        c.prefetch = configs[k][1];
        float *got = tlp_epoch(&d.train, c, 3, 0, &n);
        cr_assert_eq(n, n1);
        cr_assert_eq(memcmp(got, ref, per * batches * sizeof(float)), 0,
                     "workers %d prefetch %d: other batches", c.workers, c.prefetch);
        free(got);
    }
    c.workers = 2;
    float *resumed = tlp_epoch(&d.train, c, 3, 2, &n);  // batches 2.. of the same epoch
    cr_assert_eq(memcmp(resumed + 2 * per, ref + 2 * per, per * (batches - 2) * sizeof(float)), 0,
                 "resume at batch 2 differs");
    float *other = tlp_epoch(&d.train, c, 4, 0, &n);
    cr_assert_neq(memcmp(other, ref, per * batches * sizeof(float)), 0, "epoch 4 == epoch 3");
    free(resumed); free(other); free(ref);
    dataset_free(&d);
    nftw(dir, tlp_rm, 16, FTW_DEPTH | FTW_PHYS);
}

// Resize(N) + CenterCrop(S) + ToTensor through the loader equals the transform by hand.
Test(loader_pool, eval_pipeline_is_transform_apply)
{
    char dir[64], err[512];
    tlp_make_folder(dir, sizeof(dir), "bmp pnm");
    dataset d;
    cr_assert_eq(dataset_open(&d, dir, "auto", err, sizeof(err)), 0, "%s", err);
    loader_config c = {.batch_size = 4, .image_size = 20, .resize = 22, .workers = 2};
    int n;
    float *x = tlp_epoch(&d.test, c, 0, 0, &n);
    cr_assert_eq(n, d.test.n);
    image img = {0};
    transform_scratch s = {0};
    uint8_t out[3 * 400];
    transform_op op = {.kind = TRANSFORM_CENTER, .size = 20, .resize = 22};
    for (int i = 0; i < n; i++) {
        cr_assert_eq(dataset_read(&d.test, i, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(transform_apply(out, img.pixels, img.c, img.h, img.w, &op, &s), 0);
        int b = i / 4, pos = i % 4, count = n - b * 4 < 4 ? n - b * 4 : 4;
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 400; p++) {
                float want = (float)out[(img.c == 1 ? 0 : ch) * 400 + p] / 255.0f;
                float got = x[3 * 4 * 400 * b + ((size_t)ch * count + pos) * 400 + p];
                cr_assert_eq(got, want, "image %d ch %d pixel %d", i, ch, p);
            }
    }
    transform_scratch_free(&s);
    image_free(&img);
    free(x);
    dataset_free(&d);
    nftw(dir, tlp_rm, 16, FTW_DEPTH | FTW_PHYS);
}

// A file whose header is fine but whose data is cut: opened, then loader_next says -1 naming it.
Test(loader_pool, decode_failure_mid_run_names_the_file)
{
    char dir[64], err[512], path[4096];
    tlp_make_folder(dir, sizeof(dir), "jpeg");
    dataset d;
    cr_assert_eq(dataset_open(&d, dir, "folder", err, sizeof(err)), 0, "%s", err);
    dataset_path(&d.train, 4, path, sizeof(path));
    cr_assert_eq(truncate(path, 300), 0, "%s", path);  // cut after the open's header check
    loader_config c = {.batch_size = 3, .image_size = 16, .workers = 2};
    loader l;
    cr_assert_eq(loader_init(&l, &d.train, &c, err, sizeof(err)), 0, "%s", err);
    float x[3 * 3 * 256];
    int32_t y[3];
    loader_start_epoch(&l, 0, 0);
    int n, good = 0;
    while ((n = loader_next(&l, x, y)) > 0) good += n;
    cr_assert_eq(n, -1, "the cut file was not reported");
    cr_assert_not_null(strstr(l.error, path), "'%s' does not name %s", l.error, path);
    cr_assert_not_null(strstr(l.error, "truncated"), "%s", l.error);
    cr_assert_eq(good, 3, "the batch before the cut file came through");
    loader_free(&l);
    dataset_free(&d);
    nftw(dir, tlp_rm, 16, FTW_DEPTH | FTW_PHYS);
}

// One epoch through loader_next_ex: every batch's count, images (3, B, S, S at batch * per),
// labels and split indices (at batch * B).
typedef struct tlp_run {
    int batches, *n;
    float *x;
    int32_t *y;
    int *idx;
} tlp_run;

static void tlp_run_epoch(tlp_run *r, loader *l, int epoch)
{
    const loader_config *c = &l->cfg;
    size_t per = 3 * (size_t)c->batch_size * c->image_size * c->image_size;
    r->batches = loader_batches_per_epoch(l);
    r->n = calloc((size_t)r->batches, sizeof(int));
    r->x = calloc(per * (size_t)r->batches, sizeof(float));
    r->y = calloc((size_t)c->batch_size * r->batches, sizeof(int32_t));
    r->idx = calloc((size_t)c->batch_size * r->batches, sizeof(int));
    loader_start_epoch(l, epoch, 0);
    int b = 0, rc, n;
    while ((rc = loader_next_ex(l, r->x + per * b, r->y + c->batch_size * b,
                                r->idx + c->batch_size * b, &n)) == 1) {
        cr_assert_lt(b, r->batches);
        r->n[b++] = n;
    }
    cr_assert_eq(rc, 0, "loader error: %s", l->error);
    cr_assert_eq(b, r->batches, "every batch counts, an emptied one too");
}

static void tlp_run_free(tlp_run *r)
{
    free(r->n); free(r->x); free(r->y); free(r->idx);
}

typedef struct tlp_warned {
    int count;
    char last[512];
} tlp_warned;

static void tlp_warn(void *ctx, const char *msg)
{
    tlp_warned *w = ctx;
    w->count++;
    snprintf(w->last, sizeof(w->last), "%s", msg);
}

// With skip_bad, a JPEG cut in its data (header intact, so the open keeps it) is left out of
// its batch, which is one image shorter; every other image is the one the intact file's run
// gave, augmentation included (draws are per image, not per position), for 1 or 3 workers; the
// file is reported once over two passes of the epoch. A batch of that file alone
// comes back empty (still one batch of the epoch).
Test(loader_pool, skip_bad_drops_a_cut_file_from_its_batch)
{
    char dir[64], err[512], path[4096];
    tlp_make_folder(dir, sizeof(dir), "jpeg");
    dataset d;
    cr_assert_eq(dataset_open(&d, dir, "folder", err, sizeof(err)), 0, "%s", err);
    cr_assert_geq(d.train.n, 6, "the fixtures make too few files");
    loader_config c = {.batch_size = 3, .image_size = 16, .shuffle = 1, .seed = 5,
                       .augment = LOADER_AUGMENT_RRC_FLIP, .workers = 1, .skip_bad = 1};
    const int B = 3;
    size_t plane = 16 * 16, per = 3 * (size_t)B * plane;
    loader l;
    tlp_run ref;
    cr_assert_eq(loader_init(&l, &d.train, &c, err, sizeof(err)), 0, "%s", err);
    tlp_run_epoch(&ref, &l, 0);
    loader_free(&l);
    int victim = ref.idx[B + 1];  // the middle image of batch 1
    dataset_path(&d.train, victim, path, sizeof(path));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size * 6 / 10), 0, "%s", path);

    uint8_t *failed = calloc((size_t)d.train.n, 1);
    int workers[2][2] = {{1, 1}, {3, 3}};
    for (int k = 0; k < 2; k++) {
        tlp_warned w = {0};
        memset(failed, 0, (size_t)d.train.n);
        c.workers = workers[k][0];
        c.prefetch = workers[k][1];
        c.failed = failed;
        c.warn = tlp_warn;
        c.warn_ctx = &w;
        cr_assert_eq(loader_init(&l, &d.train, &c, err, sizeof(err)), 0, "%s", err);
        for (int pass = 0; pass < 2; pass++) {
            tlp_run got;
            tlp_run_epoch(&got, &l, 0);
            cr_assert_eq(got.batches, ref.batches);
            for (int b = 0; b < ref.batches; b++) {
                int short_by = b == 1;
                cr_assert_eq(got.n[b], ref.n[b] - short_by, "workers %d pass %d batch %d: "
                             "%d images", c.workers, pass, b, got.n[b]);
                for (int i = 0, j = 0; i < ref.n[b]; i++) {  // i: intact run, j: this run
                    int at = b * B + i;
                    if (ref.idx[at] == victim) continue;
                    cr_assert_eq(got.idx[b * B + j], ref.idx[at], "batch %d image %d", b, j);
                    cr_assert_eq(got.y[b * B + j], ref.y[at]);
                    for (int ch = 0; ch < 3; ch++)
                        cr_assert_eq(memcmp(got.x + per * b + ((size_t)ch * got.n[b] + j) * plane,
                                            ref.x + per * b + ((size_t)ch * ref.n[b] + i) * plane,
                                            plane * sizeof(float)), 0,
                                     "workers %d batch %d image %d channel %d differs", c.workers,
                                     b, j, ch);
                    j++;
                }
            }
            tlp_run_free(&got);
        }
        cr_assert_eq(w.count, 1, "workers %d: %d warnings for one bad file", c.workers, w.count);
        cr_assert_not_null(strstr(w.last, path), "'%s' does not name %s", w.last, path);
        cr_assert_not_null(strstr(w.last, "truncated"), "%s", w.last);
        cr_assert_eq(failed[victim], 1);
        for (int i = 0; i < d.train.n; i++)
            cr_assert_eq(failed[i], i == victim, "image %d marked %d", i, failed[i]);
        loader_free(&l);
    }
    // Batches of one, the loader's own record: the cut file's batch is empty, loader_next
    // passes over it.
    c.batch_size = 1;
    c.failed = NULL;
    c.warn = NULL;
    c.shuffle = 0;
    cr_assert_eq(loader_init(&l, &d.train, &c, err, sizeof(err)), 0, "%s", err);
    float x[3 * 256];
    int32_t y[1];
    int idx[1], n, rc, empty = 0, batches = 0;
    loader_start_epoch(&l, 0, 0);
    while ((rc = loader_next_ex(&l, x, y, idx, &n)) == 1) {
        batches++;
        if (n == 0) empty++;
        else cr_assert_neq(idx[0], victim);
    }
    cr_assert_eq(rc, 0, "%s", l.error);
    cr_assert_eq(batches, d.train.n);
    cr_assert_eq(empty, 1);
    loader_start_epoch(&l, 0, 0);
    int images = 0;
    while ((n = loader_next(&l, x, y)) > 0) images += n;
    cr_assert_eq(n, 0, "%s", l.error);
    cr_assert_eq(images, d.train.n - 1);
    loader_free(&l);
    // Without skip_bad the same file stops the epoch, named.
    c.skip_bad = 0;
    cr_assert_eq(loader_init(&l, &d.train, &c, err, sizeof(err)), 0, "%s", err);
    loader_start_epoch(&l, 0, 0);
    while ((n = loader_next(&l, x, y)) > 0) {}
    cr_assert_eq(n, -1);
    cr_assert_not_null(strstr(l.error, path), "'%s' does not name %s", l.error, path);
    loader_free(&l);
    free(failed);
    tlp_run_free(&ref);
    dataset_free(&d);
    nftw(dir, tlp_rm, 16, FTW_DEPTH | FTW_PHYS);
}
