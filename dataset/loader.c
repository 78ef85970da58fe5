#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "common/check.h"
#include "dataset/loader.h"
#include "dataset/rng.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOADER_PAD 4               // torchvision RandomCrop(size, padding=4)
#define LOADER_MAX_SIDE 4096
#define LOADER_MAX_BATCH 1048576  // as --batch-size; the device limit comes first
#define LOADER_MAX_PREFETCH 64
#define LOADER_TAG_PERM 0x7065726d5f746167ull
#define LOADER_TAG_AUG 0x6175675f74616721ull
#define LOADER_TAG_RRC 0x7272635f64726177ull
#define LOADER_TAG_COPY 0x7061645f636f7079ull

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
    // DistributedSampler(drop_last=False): indices += indices[:padding] (repeated as needed).
    for (int i = l->n; i < l->total; i++) l->perm[i] = l->perm[(i - l->n) % l->n];
}

// The uniforms of RandomResizedCrop for one image: hash(seed, (epoch, image), k).
typedef struct loader_draw { uint64_t seed, key; } loader_draw;

static double loader_uniform(void *ctx, int k)
{
    loader_draw *d = ctx;
    return rng_unit(rng_hash(LOADER_TAG_RRC, d->seed, d->key, (uint64_t)k));
}

// The geometric step for image idx: [flip-crop the source] then resize, Resize + CenterCrop,
// or RandomResizedCrop + flip. May point *src at the worker's crop buffer. copy: 0 for the
// epoch's own position of the image, k for its k-th padded repeat (DistributedSampler), which
// draws its own augmentation as PyTorch's does (a padded index is one more __getitem__).
static int loader_geometry(loader_worker *w, int epoch, int idx, int copy, const uint8_t **src,
                           transform_op *op)
{
    const loader_config *c = &w->l->cfg;
    const image *im = &w->img;
    uint64_t key = (uint64_t)epoch << 32 | (uint32_t)idx;  // the draw's key: (epoch, image)
    if (copy) key = rng_hash(LOADER_TAG_COPY, c->seed, key, (uint64_t)copy);
    uint64_t r = copy ? rng_hash(LOADER_TAG_AUG, c->seed, key, 0)
                      : rng_hash(LOADER_TAG_AUG, c->seed, (uint64_t)epoch, (uint64_t)idx);
    *op = (transform_op){.kind = TRANSFORM_SQUARE, .size = c->image_size};
    if (c->augment == LOADER_AUGMENT_FLIP_CROP) {
        size_t bytes = (size_t)im->c * im->h * im->w;
        if (bytes > w->crop_cap) {
            uint8_t *p = realloc(w->crop, bytes);
            if (!p) return 1;
            w->crop = p;
            w->crop_cap = bytes;
        }
        int top = rng_below(r, 2 * LOADER_PAD + 1), left = rng_below(r << 32, 2 * LOADER_PAD + 1);
        transform_flip_crop_u8(w->crop, im->pixels, im->c, im->h, im->w, LOADER_PAD, top, left,
                               (int)(rng_mix(r) & 1));
        *src = w->crop;
    } else if (c->augment == LOADER_AUGMENT_RRC_FLIP) {
        loader_draw d = {c->seed, key};
        op->kind = TRANSFORM_BOX;
        transform_rrc_box(im->h, im->w, loader_uniform, &d, &op->top, &op->left, &op->bh, &op->bw);
        op->flip = (int)(rng_mix(r) & 1);
    } else if (c->resize > 0) {
        op->kind = TRANSFORM_CENTER;
        op->resize = c->resize;
    }
    return 0;
}

// Image `pos` of batch `b` into its place in slot s: decode, transform, ToTensor, [Normalize];
// gray is transformed once, then replicated to 3 channels (PIL convert("RGB")).
static int loader_image(loader_worker *w, loader_slot *s, int b, int pos, int epoch, char *msg,
                        size_t msglen)
{
    loader *l = w->l;
    int at = b * l->cfg.batch_size + pos, idx = l->perm[at], S = l->cfg.image_size;
    int copy = at < l->n ? 0 : (at - l->n) / l->n + 1;  // a padded repeat (loader_make_perm)
    s->y[pos] = dataset_label(l->split, idx);
    if (dataset_read(l->split, idx, &w->img, msg, msglen)) return 1;
    const uint8_t *src = w->img.pixels;
    transform_op op;
    if (loader_geometry(w, epoch, idx, copy, &src, &op) ||
        transform_apply(w->out, src, w->img.c, w->img.h, w->img.w, &op, &w->scratch))
        return util_error(msg, msglen, "loader: out of memory transforming a %dx%d image",
                            w->img.w, w->img.h);
    static const float mean[3] = TRANSFORM_IMAGENET_MEAN, std[3] = TRANSFORM_IMAGENET_STD;
    size_t plane = (size_t)S * S;
    for (int ch = 0; ch < 3; ch++) {
        float *dst = s->x + ((size_t)ch * s->count + pos) * plane;
        transform_to_tensor(dst, w->out + (w->img.c == 1 ? 0 : ch) * plane, plane);
        if (l->cfg.normalize) transform_normalize(dst, plane, mean[ch], std[ch]);
    }
    return 0;
}

static int loader_has_task(const loader *l)
{
    return l->started && l->next_batch < l->batches && l->next_batch < l->consumed + l->nslots;
}

// Takes the next image under mu; a batch's slot is reset when its first image is taken.
static loader_slot *loader_take(loader *l, int *b, int *pos)
{
    *b = l->next_batch;
    *pos = l->next_pos;
    loader_slot *s = &l->slots[*b % l->nslots];
    if (*pos == 0) {
        int first = *b * l->cfg.batch_size;
        s->batch = *b;
        s->count = l->total - first < l->cfg.batch_size ? l->total - first : l->cfg.batch_size;
        s->done = 0;
        s->nfails = 0;
    }
    if (++l->next_pos == s->count) {
        l->next_batch++;
        l->next_pos = 0;
    }
    return s;
}

// Records under mu why the image at pos failed. Without room for the message the position is
// still marked bad; loader_next_ex then names the file alone.
static void loader_record_fail(loader_slot *s, int pos, const char *msg)
{
    if (s->nfails == s->fails_cap) {
        int cap = s->fails_cap ? 2 * s->fails_cap : 4;
        loader_fail *f = realloc(s->fails, sizeof(*f) * (size_t)cap);
        if (!f) return;
        s->fails = f;
        s->fails_cap = cap;
    }
    s->fails[s->nfails].pos = pos;
    snprintf(s->fails[s->nfails].msg, sizeof(s->fails[s->nfails].msg), "%s", msg);
    s->nfails++;
}

static void *loader_work(void *arg)
{
    loader_worker *w = arg;
    loader *l = w->l;
    char msg[512];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !loader_has_task(l)) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        int b, pos, epoch = l->epoch;
        loader_slot *s = loader_take(l, &b, &pos);
        // A file already found bad is not decoded again: its result is known.
        int idx = l->perm[b * l->cfg.batch_size + pos];
        int known = l->cfg.skip_bad && l->cfg.failed[idx];
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        int failed = known || loader_image(w, s, b, pos, epoch, msg, sizeof(msg));
        pthread_mutex_lock(&l->mu);
        l->busy--;
        s->bad[pos] = (uint8_t)(failed != 0);
        if (failed && !known) loader_record_fail(s, pos, msg);
        s->done++;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static int loader_check(const dataset_split *s, const loader_config *c, char *err, size_t errlen)
{
    if (!s || s->n < 1 || (!s->files && (!s->pixels || !s->labels)))
        return util_error(err, errlen, "loader: the data split is empty");
    if (!s->files && ((s->c != 1 && s->c != 3) || s->h < 1 || s->w < 1 ||
                      s->h > LOADER_MAX_SIDE || s->w > LOADER_MAX_SIDE))
        return util_error(err, errlen, "loader: unsupported image shape (%d, %d, %d)", s->c,
                            s->h, s->w);
    if (c->batch_size < 1 || c->batch_size > LOADER_MAX_BATCH)
        return util_error(err, errlen, "loader: batch_size %d out of range [1, %d]",
                            c->batch_size, LOADER_MAX_BATCH);
    if (c->image_size < 1 || c->image_size > LOADER_MAX_SIDE)
        return util_error(err, errlen, "loader: image_size %d out of range [1, %d]",
                            c->image_size, LOADER_MAX_SIDE);
    if (c->skip_bad < 0 || c->skip_bad > 1)
        return util_error(err, errlen, "loader: skip_bad %d must be 0 or 1", c->skip_bad);
    if (c->normalize < 0 || c->normalize > 1 || c->augment < 0 || c->augment > 2)
        return util_error(err, errlen, "loader: normalize %d must be 0 or 1, augment %d 0-2",
                            c->normalize, c->augment);
    if (c->pad_to < 0 || c->pad_to > LOADER_MAX_BATCH)
        return util_error(err, errlen, "loader: pad_to %d out of range [0, %d]", c->pad_to,
                          LOADER_MAX_BATCH);
    if (c->limit < 0 || c->resize < 0 || c->resize > LOADER_MAX_SIDE)
        return util_error(err, errlen, "loader: limit %d / resize %d out of range", c->limit,
                            c->resize);
    if (c->workers < 0 || c->workers > LOADER_MAX_WORKERS || c->prefetch < 0 ||
        c->prefetch > LOADER_MAX_PREFETCH)
        return util_error(err, errlen, "loader: workers %d (0-%d) / prefetch %d (0-%d) out of "
                            "range", c->workers, LOADER_MAX_WORKERS, c->prefetch,
                            LOADER_MAX_PREFETCH);
    return 0;
}

static int loader_alloc(loader *l)
{
    size_t S = (size_t)l->cfg.image_size, B = (size_t)l->cfg.batch_size;
    l->batch_floats = 3 * B * S * S;  // <= 3 * 2^20 * 2^24: no overflow in 64-bit size_t
    l->perm = malloc(sizeof(int) * (size_t)l->total);
    l->slots = calloc((size_t)l->nslots, sizeof(loader_slot));
    l->workers = calloc((size_t)l->nworkers, sizeof(loader_worker));
    if (!l->perm || !l->slots || !l->workers) return 1;
    for (int i = 0; i < l->nslots; i++) {
        l->slots[i].batch = -1;
        l->slots[i].x = malloc(sizeof(float) * l->batch_floats);
        l->slots[i].y = malloc(sizeof(int32_t) * B);
        l->slots[i].bad = malloc(B);
        if (!l->slots[i].x || !l->slots[i].y || !l->slots[i].bad) return 1;
    }
    if (l->cfg.skip_bad && !l->cfg.failed) {
        if (!(l->own_failed = calloc((size_t)l->split->n, 1))) return 1;
        l->cfg.failed = l->own_failed;
    }
    for (int i = 0; i < l->nworkers; i++) {
        l->workers[i].l = l;
        if (!(l->workers[i].out = malloc(3 * S * S))) return 1;
    }
    return 0;
}

static int loader_default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > LOADER_MAX_WORKERS ? LOADER_MAX_WORKERS : (int)n;
}

int loader_init(loader *l, const dataset_split *split, const loader_config *cfg, char *err,
                size_t errlen)
{
    memset(l, 0, sizeof(*l));
    if (loader_check(split, cfg, err, errlen)) return 1;
    l->split = split;
    l->cfg = *cfg;
    l->n = cfg->limit > 0 && cfg->limit < split->n ? cfg->limit : split->n;
    long long pad = cfg->pad_to > 1 ? cfg->pad_to : 1, total = (l->n + pad - 1) / pad * pad;
    if (total > INT_MAX)
        return util_error(err, errlen, "loader: %d images padded to a multiple of %lld are too "
                          "many", l->n, pad);
    l->total = (int)total;
    l->batches = (l->total + cfg->batch_size - 1) / cfg->batch_size;
    l->nworkers = cfg->workers > 0 ? cfg->workers : loader_default_workers();
    l->nslots = cfg->prefetch > 0 ? cfg->prefetch : 2;
    if (loader_alloc(l)) {
        loader_free(l);
        return util_error(err, errlen, "loader: out of memory for batches of %d at %dx%d",
                            cfg->batch_size, cfg->image_size, cfg->image_size);
    }
    l->have_mu = pthread_mutex_init(&l->mu, NULL) == 0;
    l->have_cv = l->have_mu && pthread_cond_init(&l->cv, NULL) == 0;
    for (int i = 0; l->have_cv && i < l->nworkers; i++) {
        loader_worker *w = &l->workers[i];
        w->started = pthread_create(&w->thread, NULL, loader_work, w) == 0;
        if (!w->started) {
            loader_free(l);
            return util_error(err, errlen, "loader: cannot start worker thread %d", i);
        }
    }
    if (!l->have_cv) {
        loader_free(l);
        return util_error(err, errlen, "loader: cannot create its lock");
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
    l->started = 0;  // hand out nothing more; wait for the images in flight
    while (l->busy) pthread_cond_wait(&l->cv, &l->mu);
    l->epoch = epoch < 0 ? 0 : epoch;
    loader_make_perm(l, l->epoch);
    for (int i = 0; i < l->nslots; i++) l->slots[i].batch = -1;
    l->next_batch = l->consumed = first_batch;
    l->next_pos = 0;
    l->started = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

// Why the image at pos of slot s failed: its worker's message, or (when that found no room)
// the file's name alone, in buf.
static const char *loader_fail_msg(const loader *l, const loader_slot *s, int pos, char *buf,
                                   size_t len)
{
    for (int k = 0; k < s->nfails; k++)
        if (s->fails[k].pos == pos) return s->fails[k].msg;
    char path[480];
    dataset_path(l->split, l->perm[s->batch * l->cfg.batch_size + pos], path, sizeof(path));
    snprintf(buf, len, "%s: cannot be decoded", path);
    return buf;
}

// skip_bad: marks the batch's bad files as found, in position order (the same lines for any
// number of workers), and warns once per file. No worker touches the slot meanwhile.
static void loader_report_fails(loader *l, const loader_slot *s)
{
    for (int pos = 0; pos < s->count; pos++) {
        if (!s->bad[pos]) continue;
        int idx = l->perm[s->batch * l->cfg.batch_size + pos];
        pthread_mutex_lock(&l->mu);
        int fresh = !l->cfg.failed[idx];
        l->cfg.failed[idx] = 1;
        pthread_mutex_unlock(&l->mu);
        char buf[512];
        if (fresh && l->cfg.warn) l->cfg.warn(l->cfg.warn_ctx, loader_fail_msg(l, s, pos, buf,
                                                                               sizeof(buf)));
    }
}

// The slot's good images packed into x (3, n, S, S), labels and index, in position order.
static int loader_pack(const loader *l, const loader_slot *s, float *x, int32_t *labels,
                       int *index)
{
    size_t plane = (size_t)l->cfg.image_size * l->cfg.image_size;
    int n = 0;
    for (int pos = 0; pos < s->count; pos++) n += !s->bad[pos];
    if (n == s->count) {  // the common case: one copy
        memcpy(x, s->x, sizeof(float) * 3 * (size_t)n * plane);
        memcpy(labels, s->y, sizeof(int32_t) * (size_t)n);
    }
    for (int pos = 0, k = 0; pos < s->count; pos++) {
        if (s->bad[pos]) continue;
        if (index) index[k] = l->perm[s->batch * l->cfg.batch_size + pos];
        if (n < s->count) {
            labels[k] = s->y[pos];
            for (int ch = 0; ch < 3; ch++)
                memcpy(x + ((size_t)ch * n + k) * plane, s->x + ((size_t)ch * s->count + pos) *
                       plane, sizeof(float) * plane);
        }
        k++;
    }
    return n;
}

int loader_next_ex(loader *l, float *x, int32_t *labels, int *index, int *n)
{
    *n = 0;
    pthread_mutex_lock(&l->mu);
    if (!l->started || l->consumed >= l->batches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    loader_slot *s = &l->slots[l->consumed % l->nslots];
    while (s->batch != l->consumed || s->done < s->count) pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    // No worker writes this slot until `consumed` moves past it.
    int rc = 1;
    const uint8_t *bad = l->cfg.skip_bad ? NULL : memchr(s->bad, 1, (size_t)s->count);
    if (bad) {  // without skip_bad the batch's first bad image stops the run
        char buf[512];
        snprintf(l->error, sizeof(l->error), "%s",
                 loader_fail_msg(l, s, (int)(bad - s->bad), buf, sizeof(buf)));
        rc = -1;
    } else {
        if (l->cfg.skip_bad) loader_report_fails(l, s);
        *n = loader_pack(l, s, x, labels, index);
    }
    pthread_mutex_lock(&l->mu);
    l->consumed++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int loader_next(loader *l, float *x, int32_t *labels)
{
    int n, rc;
    while ((rc = loader_next_ex(l, x, labels, NULL, &n)) == 1 && n == 0) {}
    return rc == 1 ? n : rc;
}

void loader_free(loader *l)
{
    if (!l) return;
    if (l->have_cv) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    for (int i = 0; l->workers && i < l->nworkers; i++) {
        loader_worker *w = &l->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
        image_free(&w->img);
        transform_scratch_free(&w->scratch);
        free(w->crop);
        free(w->out);
    }
    for (int i = 0; l->slots && i < l->nslots; i++) {
        free(l->slots[i].x);
        free(l->slots[i].y);
        free(l->slots[i].bad);
        free(l->slots[i].fails);
    }
    if (l->have_cv) pthread_cond_destroy(&l->cv);
    if (l->have_mu) pthread_mutex_destroy(&l->mu);
    free(l->perm); free(l->slots); free(l->workers); free(l->own_failed);
    memset(l, 0, sizeof(*l));
}
