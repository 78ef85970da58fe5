// The activation plan: every buffer the forward and backward passes use, sized for a batch
// and image size, checked against the device before anything is allocated.
#define _POSIX_C_SOURCE 200809L
#include "model/resnet.h"
#include "model/resnet_internal.h"

#include <stdlib.h>
#include <string.h>

static int out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

typedef struct planner {
    resnet *m;
    int alloc, keep;         // keep: a workspace per conv (resnet.h, keep_cols)
    size_t bytes, biggest;   // all buffers, the largest one
    size_t max_act, max_work;
    int failed;              // an allocation failed: its message is in err
    char *err;
    size_t errlen;
} planner;

static dten plan_buf(planner *pl, size_t floats, const char *what) {
    dten t = { 0, 0 };
    size_t bytes = (floats ? floats : 1) * sizeof(float);
    pl->bytes += bytes;
    if (bytes > pl->biggest) pl->biggest = bytes;
    if (pl->alloc && !pl->failed &&
        clrt_alloc_buf(pl->m->rt, &t.mem, bytes, what, pl->err, pl->errlen) != 0)
        pl->failed = 1;
    return t;
}

// Conv ci at input (h, w): records its sizes, its workspace and its activations' sizes.
// Returns 0, or -1 when the image is too small for it.
static int plan_conv(planner *pl, int ci, int n, int h, int w) {
    resnet_conv *c = &pl->m->convs[ci];
    c->ih = h; c->iw = w;
    c->oh = out_size(h, c->k, c->stride, c->pad);
    c->ow = out_size(w, c->k, c->stride, c->pad);
    if (h < 1 || w < 1 || c->oh < 1 || c->ow < 1) return -1;
    conv_shape s;
    conv_shape_init(&s, n, c->cin, h, w, c->cout, c->k, c->stride, c->pad);
    size_t ws = conv_workspace_floats(&s);
    if (pl->keep) pl->m->conv_work[ci] = plan_buf(pl, ws, "convolution workspace");
    else if (ws > pl->max_work) pl->max_work = ws;
    size_t a = (size_t)c->cout * n * c->oh * c->ow, in = (size_t)c->cin * n * h * w;
    if (a > pl->max_act) pl->max_act = a;
    if (in > pl->max_act) pl->max_act = in;
    return 0;
}

static int plan_block(planner *pl, int bi, int B) {
    resnet *m = pl->m;
    resnet_block *b = &m->blk[bi];
    resnet_block_act *a = &m->blocks[bi];
    int h = b->h, w = b->w;
    for (int j = 0; j < b->nconv; j++) {
        const resnet_conv *c = &m->convs[b->conv[j]];
        if (plan_conv(pl, b->conv[j], B, h, w) != 0) return -1;
        h = c->oh; w = c->ow;
        size_t act = (size_t)c->cout * B * h * w;
        int last = j == b->nconv - 1;
        a->c[j] = plan_buf(pl, act, "block activation");
        if (last) a->out = plan_buf(pl, act, "block output");
        else a->r[j] = plan_buf(pl, act, "block activation");
        a->mean[j] = plan_buf(pl, (size_t)c->cout, "bn mean");
        a->invstd[j] = plan_buf(pl, (size_t)c->cout, "bn 1/std");
    }
    b->oh = h; b->ow = w;
    if (b->convd >= 0) {
        if (plan_conv(pl, b->convd, B, b->h, b->w) != 0) return -1;
        a->cd = plan_buf(pl, (size_t)b->cout * B * h * w, "downsample activation");
        a->md = plan_buf(pl, (size_t)b->cout, "bn mean");
        a->sd = plan_buf(pl, (size_t)b->cout, "bn 1/std");
    }
    return 0;
}

static int plan_walk(resnet *m, int B, int S, int alloc, int keep, size_t *bytes_out,
                     size_t *biggest, char *err, size_t errlen) {
    planner pl = { m, alloc, keep, 0, 0, 0, 0, 0, err, errlen };
    const resnet_conv *stem = &m->convs[0];
    int C0 = stem->cout, rc = S < 1 || plan_conv(&pl, 0, B, S, S) != 0;
    int h = stem->oh, w = stem->ow;
    int ph = out_size(h, 3, 2, 1), pw = out_size(w, 3, 2, 1);
    if (rc || ph < 1 || pw < 1) {
        snprintf(err, errlen, "image size %d is too small for %s", S, m->cfg.arch);
        return 2;
    }
    m->stem_h = h; m->stem_w = w; m->pool_h = ph; m->pool_w = pw;
    size_t K = (size_t)m->num_classes, F = (size_t)m->features;
    m->x = plan_buf(&pl, (size_t)3 * B * S * S, "input batch");
    m->labels = plan_buf(&pl, (size_t)B, "labels");
    m->stem_c = plan_buf(&pl, (size_t)C0 * B * h * w, "conv1 output");
    m->stem_r = plan_buf(&pl, (size_t)C0 * B * h * w, "bn1 output");
    m->stem_pool = plan_buf(&pl, (size_t)C0 * B * ph * pw, "maxpool output");
    m->stem_argmax = plan_buf(&pl, (size_t)C0 * B * ph * pw, "maxpool indices");
    m->stem_m = plan_buf(&pl, (size_t)C0, "bn1 mean");
    m->stem_s = plan_buf(&pl, (size_t)C0, "bn1 1/std");
    h = ph; w = pw;
    for (int i = 0; i < m->nblocks && !rc; i++) {
        m->blk[i].h = h; m->blk[i].w = w;
        rc = plan_block(&pl, i, B);
        h = m->blk[i].oh; w = m->blk[i].ow;
    }
    if (rc) {
        snprintf(err, errlen, "image size %d is too small for %s", S, m->cfg.arch);
        return 2;
    }
    m->pooled = plan_buf(&pl, F * B, "pooled features");
    m->dpooled = plan_buf(&pl, F * B, "pooled gradient");
    m->logits = plan_buf(&pl, K * B, "logits");
    m->dlogits = plan_buf(&pl, K * B, "logit gradient");
    m->losses = plan_buf(&pl, (size_t)B, "losses");
    m->loss_mean = plan_buf(&pl, 1, "loss");
    m->flag = plan_buf(&pl, 1, "finite flag");
    for (int i = 0; i < 4; i++) m->g[i] = plan_buf(&pl, pl.max_act, "gradient scratch");
    if (!keep) m->work = plan_buf(&pl, pl.max_work, "convolution workspace");
    *bytes_out = pl.bytes;
    if (biggest) *biggest = pl.biggest;
    return pl.failed;  // resnet_free releases what was made
}

static size_t arena_bytes(const resnet *m) {
    return (3 * m->n_param_floats + m->n_buffer_floats) * sizeof(float);
}

size_t resnet_plan_bytes(const resnet_config *cfg, int batch, int image_size) {
    resnet *m = malloc(sizeof *m);  // the tables only: nothing is allocated on a device
    char err[256];
    size_t bytes = 0;
    if (!m) return 0;
    if (resnet_table_build(m, cfg, err, sizeof err) == 0 &&
        plan_walk(m, batch, image_size, 0, 0, &bytes, NULL, err, sizeof err) == 0)
        bytes += arena_bytes(m);
    else
        bytes = 0;
    resnet_table_free(m);
    free(m);
    return bytes;
}

int resnet_final_hw(const resnet *m) {
    const resnet_block *last = &m->blk[m->nblocks - 1];
    return last->oh * last->ow;
}

// Does the plan for batch B fit the device: all buffers in its global memory, the largest
// within CL_DEVICE_MAX_MEM_ALLOC_SIZE, and under 2^31 floats (the kernels' and CLBlast's
// 32-bit element counts)? keep: with a workspace per conv; share: of the global memory it may
// take. *total gets the bytes needed (0 when S is too small).
static int plan_fits(resnet *m, int B, int S, int keep, double share, size_t *total) {
    size_t bytes = 0, biggest = 0;
    char e[128];
    *total = 0;
    if (plan_walk(m, B, S, 0, keep, &bytes, &biggest, e, sizeof e) != 0) return 0;
    *total = bytes + arena_bytes(m);
    return *total <= (double)m->rt->dev.global_mem * share &&
           biggest <= m->rt->dev.max_alloc && biggest / sizeof(float) <= 0x7fffffff;
}

int resnet_largest_batch(resnet *m, int max_batch, int image_size) {
    // Memory grows with the batch: bisect. lo fits (0: nothing does), hi does not.
    int lo = 0, hi = max_batch + 1;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        size_t t;
        if (plan_fits(m, mid, image_size, 0, 1.0, &t)) lo = mid;
        else hi = mid;
    }
    return lo;
}

int resnet_plan(resnet *m, int max_batch, int image_size, const resnet_plan_options *opt,
                char *err, size_t errlen) {
    size_t bytes = 0, total = 0;
    int rc = plan_walk(m, max_batch, image_size, 0, 0, &bytes, NULL, err, errlen);
    if (rc) return rc;
    if (!plan_fits(m, max_batch, image_size, 0, 1.0, &total)) {
        snprintf(err, errlen, "%s needs %.0f MiB on %s, which has %.0f MiB (at most %.0f MiB in "
                              "one buffer)", m->cfg.arch, total / 1048576.0, m->rt->dev.name,
                 m->rt->dev.global_mem / 1048576.0, m->rt->dev.max_alloc / 1048576.0);
        return RESNET_PLAN_NO_FIT;
    }
    m->max_batch = max_batch;
    m->image_size = image_size;
    // A workspace per conv (the forward's im2col kept for the weight gradient) when the whole
    // plan then takes at most half the device's memory (room for CLBlast's scratch and other
    // programs) and every buffer fits one allocation; keep_cols 0: never (to compare).
    m->keep_cols = !(opt && opt->keep_cols == 0) &&
                   plan_fits(m, max_batch, image_size, 1, 0.5, &total);
    memset(m->col_ready, 0, (size_t)m->nconvs * sizeof *m->col_ready);
    rc = plan_walk(m, max_batch, image_size, 1, m->keep_cols, &bytes, NULL, err, errlen);
    m->device_bytes += bytes;
    return rc;
}

static void release(dten *t) {
    if (t->mem) clReleaseMemObject(t->mem);
    t->mem = NULL;
}

void resnet_free(resnet *m) {
    if (!m) return;
    dten *all[] = { &m->x, &m->labels, &m->stem_c, &m->stem_r, &m->stem_pool, &m->stem_argmax,
                    &m->stem_m, &m->stem_s, &m->pooled, &m->dpooled, &m->logits, &m->dlogits,
                    &m->losses, &m->loss_mean, &m->flag, &m->g[0], &m->g[1], &m->g[2],
                    &m->g[3], &m->work };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) release(all[i]);
    for (int i = 0; m->conv_work && i < m->nconvs; i++) release(&m->conv_work[i]);
    for (int i = 0; m->blocks && i < m->nblocks; i++) {
        resnet_block_act *a = &m->blocks[i];
        for (int j = 0; j < RESNET_MAX_BLOCK_CONVS; j++) {
            release(&a->c[j]);
            release(&a->mean[j]);
            release(&a->invstd[j]);
            if (j < RESNET_MAX_BLOCK_CONVS - 1) release(&a->r[j]);
        }
        dten *ba[] = { &a->cd, &a->out, &a->md, &a->sd };
        for (size_t j = 0; j < sizeof ba / sizeof ba[0]; j++) release(ba[j]);
    }
    cl_mem arenas[] = { m->arena_params, m->arena_grads, m->arena_momentum, m->arena_buffers };
    for (int i = 0; i < 4; i++)
        if (arenas[i]) clReleaseMemObject(arenas[i]);
    resnet_table_free(m);
    memset(m, 0, sizeof *m);
}
