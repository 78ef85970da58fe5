// ResNet18: the parameter table walked from a static stage table, initialisation, the
// activation plan, forward, backward and SGD as straight lists of op calls.
#define _POSIX_C_SOURCE 200809L
#include "model/resnet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// torchvision resnet18: BasicBlock, layers [2, 2, 2, 2].
static const struct { int channels, stride, blocks; } stages[4] = {
    { 64, 1, 2 }, { 128, 2, 2 }, { 256, 2, 2 }, { 512, 2, 2 },
};

static int add_param(resnet *m, const char *name, resnet_param_kind kind, int stage, int ndim,
                     int d0, int d1, int d2, int d3) {
    resnet_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    p->stage = stage;
    p->ndim = ndim;
    int d[4] = { d0, d1, d2, d3 };
    p->numel = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = d[i]; p->numel *= (size_t)d[i]; }
    if (kind == RP_BN_MEAN || kind == RP_BN_VAR) {
        p->off = m->n_buffer_floats;
        m->n_buffer_floats += p->numel;
    } else if (kind != RP_BN_COUNT) {
        p->off = m->n_param_floats;
        m->n_param_floats += p->numel;
    }
    return m->nparams++;
}

static int add_conv(resnet *m, const char *name, int cin, int cout, int k, int stride, int pad,
                    int stage) {
    char full[48];
    snprintf(full, sizeof full, "%s.weight", name);
    resnet_conv *c = &m->convs[m->nconvs];
    c->w = add_param(m, full, RP_CONV, stage, 4, cout, cin, k, k);
    c->cin = cin; c->cout = cout; c->k = k; c->stride = stride; c->pad = pad; c->stage = stage;
    return m->nconvs++;
}

static int add_bn(resnet *m, const char *name, int c, int stage) {
    static const char *suffix[5] = { "weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked" };
    static const resnet_param_kind kinds[5] = { RP_BN_W, RP_BN_B, RP_BN_MEAN, RP_BN_VAR,
                                                RP_BN_COUNT };
    resnet_bn *b = &m->bns[m->nbns];
    int idx[5];
    for (int i = 0; i < 5; i++) {
        char full[48];
        snprintf(full, sizeof full, "%s.%s", name, suffix[i]);
        idx[i] = add_param(m, full, kinds[i], stage, i == 4 ? 0 : 1, c, 0, 0, 0);
    }
    b->w = idx[0]; b->b = idx[1]; b->mean = idx[2]; b->var = idx[3]; b->count = idx[4];
    b->c = c;
    b->stage = stage;
    return m->nbns++;
}

// The parameter table alone (no device).
static void build_table(resnet *m, int num_classes) {
    memset(m, 0, sizeof *m);
    m->freeze = -1;
    m->num_classes = num_classes;
    add_conv(m, "conv1", 3, 64, 7, 2, 3, 0);
    add_bn(m, "bn1", 64, 0);
    int cin = 64, nb = 0;
    for (int s = 0; s < 4; s++) {
        for (int j = 0; j < stages[s].blocks; j++) {
            resnet_block *b = &m->blk[nb++];
            char pre[32], name[48];
            int stride = j == 0 ? stages[s].stride : 1, cout = stages[s].channels;
            snprintf(pre, sizeof pre, "layer%d.%d", s + 1, j);
            b->stage = s + 1;
            b->cin = cin; b->cout = cout; b->stride = stride;
            snprintf(name, sizeof name, "%s.conv1", pre);
            b->conv1 = add_conv(m, name, cin, cout, 3, stride, 1, s + 1);
            snprintf(name, sizeof name, "%s.bn1", pre);
            b->bn1 = add_bn(m, name, cout, s + 1);
            snprintf(name, sizeof name, "%s.conv2", pre);
            b->conv2 = add_conv(m, name, cout, cout, 3, 1, 1, s + 1);
            snprintf(name, sizeof name, "%s.bn2", pre);
            b->bn2 = add_bn(m, name, cout, s + 1);
            b->convd = b->bnd = -1;
            if (stride != 1 || cin != cout) {
                snprintf(name, sizeof name, "%s.downsample.0", pre);
                b->convd = add_conv(m, name, cin, cout, 1, stride, 0, s + 1);
                snprintf(name, sizeof name, "%s.downsample.1", pre);
                b->bnd = add_bn(m, name, cout, s + 1);
            }
            cin = cout;
        }
    }
    add_param(m, "fc.weight", RP_FC_W, 5, 2, num_classes, 512, 0, 0);
    add_param(m, "fc.bias", RP_FC_B, 5, 1, num_classes, 0, 0, 0);
}

int resnet_init(resnet *m, clrt *rt, int num_classes, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (num_classes < 1 || num_classes > 100000) {
        snprintf(err, errlen, "number of classes %d out of range (1..100000)", num_classes);
        return 2;
    }
    build_table(m, num_classes);
    m->rt = rt;
    size_t pbytes = m->n_param_floats * sizeof(float);
    m->arena_params = clrt_alloc(rt, pbytes, "parameters");
    m->arena_grads = clrt_alloc(rt, pbytes, "gradients");
    m->arena_momentum = clrt_alloc(rt, pbytes, "SGD momentum");
    m->arena_buffers = clrt_alloc(rt, m->n_buffer_floats * sizeof(float), "batch-norm statistics");
    m->device_bytes = 3 * pbytes + m->n_buffer_floats * sizeof(float);
    clrt_fill_zero(rt, m->arena_grads, 0, pbytes);
    clrt_fill_zero(rt, m->arena_momentum, 0, pbytes);
    return 0;
}

// ---- initialisation (host side, then one upload) ----

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; }

static double normal01(uint64_t *s) {  // Box-Muller
    double u1 = uniform01(s), u2 = uniform01(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

// Fill parameter i on the host according to torchvision's defaults.
static void init_param(const resnet *m, int i, float *host, uint64_t seed) {
    const resnet_param *p = &m->params[i];
    uint64_t s = seed ^ (0xC0FFEEULL + (uint64_t)i * 0x9E3779B97F4A7C15ULL);
    switch (p->kind) {
    case RP_CONV: {  // kaiming_normal_(mode='fan_out', nonlinearity='relu')
        double std = sqrt(2.0 / (double)(p->shape[0] * p->shape[2] * p->shape[3]));
        for (size_t j = 0; j < p->numel; j++) host[j] = (float)(std * normal01(&s));
        break;
    }
    case RP_BN_W: case RP_BN_VAR:
        for (size_t j = 0; j < p->numel; j++) host[j] = 1.0f;
        break;
    case RP_BN_B: case RP_BN_MEAN:
        for (size_t j = 0; j < p->numel; j++) host[j] = 0.0f;
        break;
    case RP_FC_W: case RP_FC_B: {  // nn.Linear: U(-1/sqrt(in_features), 1/sqrt(in_features))
        double bound = 1.0 / sqrt(512.0);
        for (size_t j = 0; j < p->numel; j++)
            host[j] = (float)((2.0 * uniform01(&s) - 1.0) * bound);
        break;
    }
    case RP_BN_COUNT: break;
    }
}

static void init_some(resnet *m, uint64_t seed, int only_fc) {
    float *hp = calloc(m->n_param_floats, sizeof(float));
    float *hb = calloc(m->n_buffer_floats ? m->n_buffer_floats : 1, sizeof(float));
    if (!hp || !hb) { fprintf(stderr, "cltrain: error: out of host memory\n"); exit(1); }
    if (only_fc) clrt_read(m->rt, m->arena_params, 0, hp, m->n_param_floats * sizeof(float));
    for (int i = 0; i < m->nparams; i++) {
        const resnet_param *p = &m->params[i];
        if (only_fc && p->stage != 5) continue;
        float *dst = (p->kind == RP_BN_MEAN || p->kind == RP_BN_VAR) ? hb : hp;
        init_param(m, i, dst + p->off, seed);
    }
    clrt_write(m->rt, m->arena_params, 0, hp, m->n_param_floats * sizeof(float));
    if (!only_fc) {
        clrt_write(m->rt, m->arena_buffers, 0, hb, m->n_buffer_floats * sizeof(float));
        for (int i = 0; i < m->nbns; i++) m->bn_count[i] = 0;
    }
    free(hp);
    free(hb);
}

void resnet_init_weights(resnet *m, uint64_t seed) { init_some(m, seed, 0); }
void resnet_init_fc(resnet *m, uint64_t seed) { init_some(m, seed, 1); }

// ---- activation plan ----

static int out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

typedef struct planner {
    resnet *m;
    int alloc, keep;         // keep: a workspace per conv (resnet.h, keep_cols)
    size_t bytes, biggest;   // all buffers, the largest one
    size_t max_act, max_work;
} planner;

static dten plan_buf(planner *pl, size_t floats, const char *what) {
    dten t = { 0, 0 };
    size_t bytes = (floats ? floats : 1) * sizeof(float);
    pl->bytes += bytes;
    if (bytes > pl->biggest) pl->biggest = bytes;
    if (pl->alloc) t.mem = clrt_alloc(pl->m->rt, bytes, what);
    return t;
}

static void plan_conv(planner *pl, const resnet_conv *c, int n, int h, int w) {
    conv_shape s;
    conv_shape_init(&s, n, c->cin, h, w, c->cout, c->k, c->stride, c->pad);
    size_t ws = conv_workspace_floats(&s);
    if (pl->keep) pl->m->conv_work[c - pl->m->convs] = plan_buf(pl, ws, "convolution workspace");
    else if (ws > pl->max_work) pl->max_work = ws;
    size_t a = (size_t)c->cout * n * s.oh * s.ow, in = (size_t)c->cin * n * h * w;
    if (a > pl->max_act) pl->max_act = a;
    if (in > pl->max_act) pl->max_act = in;
}

static int plan_walk(resnet *m, int B, int S, int alloc, int keep, size_t *bytes_out,
                     size_t *biggest, char *err, size_t errlen) {
    planner pl = { m, alloc, keep, 0, 0, 0, 0 };
    int h = out_size(S, 7, 2, 3), w = h;
    int ph = out_size(h, 3, 2, 1), pw = ph;
    if (S < 1 || ph < 1) {
        snprintf(err, errlen, "image size %d is too small for ResNet18", S);
        return 2;
    }
    m->stem_h = h; m->stem_w = w; m->pool_h = ph; m->pool_w = pw;
    size_t K = (size_t)m->num_classes;
    m->x = plan_buf(&pl, (size_t)3 * B * S * S, "input batch");
    m->labels = plan_buf(&pl, (size_t)B, "labels");
    plan_conv(&pl, &m->convs[0], B, S, S);
    m->stem_c = plan_buf(&pl, (size_t)64 * B * h * w, "conv1 output");
    m->stem_r = plan_buf(&pl, (size_t)64 * B * h * w, "bn1 output");
    m->stem_pool = plan_buf(&pl, (size_t)64 * B * ph * pw, "maxpool output");
    m->stem_argmax = plan_buf(&pl, (size_t)64 * B * ph * pw, "maxpool indices");
    m->stem_m = plan_buf(&pl, 64, "bn1 mean");
    m->stem_s = plan_buf(&pl, 64, "bn1 1/std");
    h = ph; w = pw;
    for (int i = 0; i < 8; i++) {
        resnet_block *b = &m->blk[i];
        resnet_block_act *a = &m->blocks[i];
        b->h = h; b->w = w;
        b->oh = out_size(h, 3, b->stride, 1);
        b->ow = out_size(w, 3, b->stride, 1);
        if (b->oh < 1 || b->ow < 1) {
            snprintf(err, errlen, "image size %d is too small for ResNet18", S);
            return 2;
        }
        size_t act = (size_t)b->cout * B * b->oh * b->ow;
        plan_conv(&pl, &m->convs[b->conv1], B, h, w);
        plan_conv(&pl, &m->convs[b->conv2], B, b->oh, b->ow);
        a->c1 = plan_buf(&pl, act, "block activation");
        a->r1 = plan_buf(&pl, act, "block activation");
        a->c2 = plan_buf(&pl, act, "block activation");
        a->out = plan_buf(&pl, act, "block output");
        a->m1 = plan_buf(&pl, (size_t)b->cout, "bn mean");
        a->s1 = plan_buf(&pl, (size_t)b->cout, "bn 1/std");
        a->m2 = plan_buf(&pl, (size_t)b->cout, "bn mean");
        a->s2 = plan_buf(&pl, (size_t)b->cout, "bn 1/std");
        if (b->convd >= 0) {
            plan_conv(&pl, &m->convs[b->convd], B, h, w);
            a->cd = plan_buf(&pl, act, "downsample activation");
            a->md = plan_buf(&pl, (size_t)b->cout, "bn mean");
            a->sd = plan_buf(&pl, (size_t)b->cout, "bn 1/std");
        }
        h = b->oh; w = b->ow;
    }
    m->pooled = plan_buf(&pl, (size_t)512 * B, "pooled features");
    m->dpooled = plan_buf(&pl, (size_t)512 * B, "pooled gradient");
    m->logits = plan_buf(&pl, K * B, "logits");
    m->dlogits = plan_buf(&pl, K * B, "logit gradient");
    m->losses = plan_buf(&pl, (size_t)B, "losses");
    m->loss_mean = plan_buf(&pl, 1, "loss");
    m->flag = plan_buf(&pl, 1, "finite flag");
    for (int i = 0; i < 4; i++) m->g[i] = plan_buf(&pl, pl.max_act, "gradient scratch");
    if (!keep) m->work = plan_buf(&pl, pl.max_work, "convolution workspace");
    *bytes_out = pl.bytes;
    if (biggest) *biggest = pl.biggest;
    return 0;
}

size_t resnet_plan_bytes(int num_classes, int batch, int image_size) {
    resnet *m = malloc(sizeof *m);  // the table only: nothing is allocated on a device
    char err[256];
    size_t bytes = 0;
    if (!m) return 0;
    build_table(m, num_classes);
    if (plan_walk(m, batch, image_size, 0, 0, &bytes, NULL, err, sizeof err) == 0)
        bytes += 3 * m->n_param_floats * sizeof(float) + m->n_buffer_floats * sizeof(float);
    else
        bytes = 0;
    free(m);
    return bytes;
}

// Does the plan for batch B fit the device: all buffers in its global memory, the largest
// within CL_DEVICE_MAX_MEM_ALLOC_SIZE, and under 2^31 floats (the kernels' and CLBlast's
// 32-bit element counts)? *total gets the bytes needed (0 when S is too small).
static int plan_fits(resnet *m, int B, int S, size_t *total) {
    size_t bytes = 0, biggest = 0;
    char e[128];
    *total = 0;
    if (plan_walk(m, B, S, 0, 0, &bytes, &biggest, e, sizeof e) != 0) return 0;
    *total = bytes + m->device_bytes;
    return *total <= m->rt->dev.global_mem && biggest <= m->rt->dev.max_alloc &&
           biggest / sizeof(float) <= 0x7fffffff;
}

int resnet_plan(resnet *m, int max_batch, int image_size, char *err, size_t errlen) {
    size_t bytes = 0, total = 0;
    int rc = plan_walk(m, max_batch, image_size, 0, 0, &bytes, NULL, err, errlen);
    if (rc) return rc;
    if (!plan_fits(m, max_batch, image_size, &total)) {
        // Said before any activation is allocated; memory grows with the batch: bisect.
        int lo = 0, hi = max_batch;  // lo fits (0: nothing does), hi does not
        while (hi - lo > 1) {
            int mid = lo + (hi - lo) / 2;
            size_t t;
            if (plan_fits(m, mid, image_size, &t)) lo = mid;
            else hi = mid;
        }
        int n = snprintf(err, errlen, "--batch-size %d at --image-size %d needs %.0f MiB on %s, "
                                      "which has %.0f MiB (at most %.0f MiB in one buffer); ",
                         max_batch, image_size, total / 1048576.0, m->rt->dev.name,
                         m->rt->dev.global_mem / 1048576.0, m->rt->dev.max_alloc / 1048576.0);
        if (n >= 0 && (size_t)n < errlen && lo)
            snprintf(err + n, errlen - (size_t)n, "the largest batch size that fits is %d", lo);
        else if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, "not even batch size 1 fits: use a smaller "
                                                  "--image-size");
        return 1;
    }
    m->max_batch = max_batch;
    m->image_size = image_size;
    // A workspace per conv (the forward's im2col kept for the weight gradient) when the whole
    // plan then takes at most half the device's memory (room for CLBlast's scratch and other
    // programs) and every buffer fits one allocation. CLTRAIN_KEEP_COLS=0: never (to compare).
    size_t kbytes = 0, kbiggest = 0;
    const char *kc = getenv("CLTRAIN_KEEP_COLS");
    m->keep_cols = !(kc && !strcmp(kc, "0")) &&
                   plan_walk(m, max_batch, image_size, 0, 1, &kbytes, &kbiggest, err,
                             errlen) == 0 &&
                   kbytes + m->device_bytes <= m->rt->dev.global_mem / 2 &&
                   kbiggest <= m->rt->dev.max_alloc && kbiggest / sizeof(float) <= 0x7fffffff;
    memset(m->col_ready, 0, sizeof m->col_ready);
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
    for (int i = 0; i < 20; i++) release(&m->conv_work[i]);
    for (int i = 0; i < 8; i++) {
        resnet_block_act *a = &m->blocks[i];
        dten *ba[] = { &a->c1, &a->r1, &a->c2, &a->cd, &a->out, &a->m1, &a->s1,
                       &a->m2, &a->s2, &a->md, &a->sd };
        for (size_t j = 0; j < sizeof ba / sizeof ba[0]; j++) release(ba[j]);
    }
    if (m->arena_params) clReleaseMemObject(m->arena_params);
    if (m->arena_grads) clReleaseMemObject(m->arena_grads);
    if (m->arena_momentum) clReleaseMemObject(m->arena_momentum);
    if (m->arena_buffers) clReleaseMemObject(m->arena_buffers);
    memset(m, 0, sizeof *m);
}
