#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "dataset/loader.h"
#include "dataset/rng.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOADER_PAD 4               // torchvision RandomCrop(size, padding=4)
#define LOADER_MAX_SIDE 4096
#define LOADER_MAX_BATCH 1048576  // as --batch-size; the device limit comes first
#define LOADER_TAG_PERM 0x7065726d5f746167ull
#define LOADER_TAG_AUG 0x6175675f74616721ull

static int loader_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return 1;
}

// Fisher-Yates over [0, n) with the i-th draw = hash(seed, epoch, i): no state carried over.
static void loader_make_perm(loader *l, int epoch)
{
    for (int i = 0; i < l->n; i++) l->perm[i] = i;
    if (l->cfg.shuffle)
        for (int i = l->n - 1; i > 0; i--) {
            int j = rng_below(rng_hash(LOADER_TAG_PERM, l->cfg.seed, (uint64_t)epoch,
                                             (uint64_t)i), i + 1);
            int t = l->perm[i]; l->perm[i] = l->perm[j]; l->perm[j] = t;
        }
    l->perm_epoch = epoch;
}

// One image into slot `slot` of a batch x (3, count, S, S): [flip-crop] -> resize -> ToTensor ->
// [Normalize]; gray is resized once, then replicated to 3 channels (PIL convert("RGB")).
static void loader_prepare_image(loader *l, float *x, int slot, int count, int epoch, int idx)
{
    const dataset_split *s = l->split;
    int S = l->cfg.image_size;
    size_t plane = (size_t)s->h * s->w, out_plane = (size_t)S * S;
    const uint8_t *src = s->pixels + (size_t)idx * s->c * plane;
    if (l->cfg.augment) {
        uint64_t r = rng_hash(LOADER_TAG_AUG, l->cfg.seed, (uint64_t)epoch, (uint64_t)idx);
        int top = rng_below(r, 2 * LOADER_PAD + 1);
        int left = rng_below(r << 32, 2 * LOADER_PAD + 1);
        int flip = (int)(rng_mix(r) & 1);
        transform_flip_crop_u8(l->crop, src, s->c, s->h, s->w, LOADER_PAD, top, left, flip);
        src = l->crop;
    }
    for (int ch = 0; ch < s->c; ch++)
        transform_resize_apply(&l->resize, l->resized + ch * out_plane, src + ch * plane);
    static const float mean[3] = TRANSFORM_IMAGENET_MEAN, std[3] = TRANSFORM_IMAGENET_STD;
    for (int ch = 0; ch < 3; ch++) {
        float *dst = x + ((size_t)ch * count + slot) * out_plane;
        transform_to_tensor(dst, l->resized + (s->c == 1 ? 0 : ch) * out_plane, out_plane);
        if (l->cfg.normalize) transform_normalize(dst, out_plane, mean[ch], std[ch]);
    }
}

// Batch `b` of `epoch` into the worker's buffers; returns its image count.
static int loader_prepare_batch(loader *l, int epoch, int b)
{
    if (l->perm_epoch != epoch) loader_make_perm(l, epoch);
    int first = b * l->cfg.batch_size;
    int count = l->n - first < l->cfg.batch_size ? l->n - first : l->cfg.batch_size;
    for (int i = 0; i < count; i++) {
        int idx = l->perm[first + i];
        loader_prepare_image(l, l->work_x, i, count, epoch, idx);
        l->work_y[i] = l->split->labels[idx];
    }
    return count;
}

// Worker: prepare the next batch of the current generation, then wait for the ready slot to
// empty and publish it by swapping buffers. Work for an outdated generation is dropped.
static void *loader_worker(void *arg)
{
    loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && (!l->started || l->next_batch >= l->batches))
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        uint64_t gen = l->gen;
        int epoch = l->epoch, b = l->next_batch++;
        pthread_mutex_unlock(&l->mu);
        int count = loader_prepare_batch(l, epoch, b);
        pthread_mutex_lock(&l->mu);
        while (!l->quit && gen == l->gen && l->ready_full) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        if (gen != l->gen) continue;
        float *tx = l->ready_x; l->ready_x = l->work_x; l->work_x = tx;
        int32_t *ty = l->ready_y; l->ready_y = l->work_y; l->work_y = ty;
        l->ready_count = count;
        l->ready_full = 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static int loader_check(const dataset_split *s, const loader_config *c, char *err, size_t errlen)
{
    if (!s || s->n < 1 || !s->pixels || !s->labels)
        return loader_error(err, errlen, "loader: the data split is empty");
    if ((s->c != 1 && s->c != 3) || s->h < 1 || s->w < 1 || s->h > LOADER_MAX_SIDE ||
        s->w > LOADER_MAX_SIDE)
        return loader_error(err, errlen, "loader: unsupported image shape (%d, %d, %d)", s->c,
                            s->h, s->w);
    if (c->batch_size < 1 || c->batch_size > LOADER_MAX_BATCH)
        return loader_error(err, errlen, "loader: batch_size %d out of range [1, %d]",
                            c->batch_size, LOADER_MAX_BATCH);
    if (c->image_size < 1 || c->image_size > LOADER_MAX_SIDE)
        return loader_error(err, errlen, "loader: image_size %d out of range [1, %d]",
                            c->image_size, LOADER_MAX_SIDE);
    if (c->normalize < 0 || c->normalize > 1 || c->augment < 0 || c->augment > 1)
        return loader_error(err, errlen, "loader: normalize %d / augment %d must be 0 or 1",
                            c->normalize, c->augment);
    if (c->limit < 0) return loader_error(err, errlen, "loader: limit %d is negative", c->limit);
    return 0;
}

static int loader_alloc(loader *l)
{
    const dataset_split *s = l->split;
    size_t S = (size_t)l->cfg.image_size, B = (size_t)l->cfg.batch_size;
    l->batch_floats = 3 * B * S * S;  // <= 3 * 2^16 * 2^24: no overflow in 64-bit size_t
    l->perm = malloc(sizeof(int) * (size_t)l->n);
    l->crop = malloc((size_t)s->c * s->h * s->w);
    l->resized = malloc((size_t)s->c * S * S);
    l->work_x = malloc(sizeof(float) * l->batch_floats);
    l->ready_x = malloc(sizeof(float) * l->batch_floats);
    l->work_y = malloc(sizeof(int32_t) * B);
    l->ready_y = malloc(sizeof(int32_t) * B);
    return !l->perm || !l->crop || !l->resized || !l->work_x || !l->ready_x || !l->work_y ||
           !l->ready_y;
}

int loader_init(loader *l, const dataset_split *split, const loader_config *cfg, char *err,
                size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->perm_epoch = -1;
    if (loader_check(split, cfg, err, errlen)) return 1;
    l->split = split;
    l->cfg = *cfg;
    l->n = cfg->limit > 0 && cfg->limit < split->n ? cfg->limit : split->n;
    l->batches = (l->n + cfg->batch_size - 1) / cfg->batch_size;
    if (loader_alloc(l) ||
        transform_resize_init(&l->resize, cfg->image_size, cfg->image_size, split->h, split->w)) {
        loader_free(l);
        return loader_error(err, errlen, "loader: out of memory for batches of %d at %dx%d",
                            cfg->batch_size, cfg->image_size, cfg->image_size);
    }
    l->have_mu = pthread_mutex_init(&l->mu, NULL) == 0;
    l->have_cv = l->have_mu && pthread_cond_init(&l->cv, NULL) == 0;
    l->have_thread = l->have_cv && pthread_create(&l->thread, NULL, loader_worker, l) == 0;
    if (!l->have_thread) {
        loader_free(l);
        return loader_error(err, errlen, "loader: cannot start the worker thread");
    }
    return 0;
}

int loader_batches_per_epoch(const loader *l)
{
    return l->batches;
}

void loader_start_epoch(loader *l, int epoch, int first_batch)
{
    if (first_batch < 0) first_batch = 0;
    if (first_batch > l->batches) first_batch = l->batches;
    pthread_mutex_lock(&l->mu);
    l->gen++;
    l->epoch = epoch < 0 ? 0 : epoch;
    l->next_batch = l->consumed = first_batch;
    l->ready_full = 0;
    l->started = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

int loader_next(loader *l, float *x, int32_t *labels)
{
    pthread_mutex_lock(&l->mu);
    if (!l->started || l->consumed >= l->batches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    while (!l->ready_full) pthread_cond_wait(&l->cv, &l->mu);
    int count = l->ready_count;
    pthread_mutex_unlock(&l->mu);
    // The worker never touches the ready buffers while ready_full is set.
    size_t S = (size_t)l->cfg.image_size;
    memcpy(x, l->ready_x, sizeof(float) * 3 * (size_t)count * S * S);
    memcpy(labels, l->ready_y, sizeof(int32_t) * (size_t)count);
    pthread_mutex_lock(&l->mu);
    l->consumed++;
    l->ready_full = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return count;
}

void loader_free(loader *l)
{
    if (!l) return;
    if (l->have_thread) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    if (l->have_cv) pthread_cond_destroy(&l->cv);
    if (l->have_mu) pthread_mutex_destroy(&l->mu);
    transform_resize_free(&l->resize);
    free(l->perm); free(l->crop); free(l->resized);
    free(l->work_x); free(l->ready_x); free(l->work_y); free(l->ready_y);
    memset(l, 0, sizeof(*l));
}
