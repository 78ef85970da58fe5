// The parameter table walked from the architecture config, and initialisation.
#define _POSIX_C_SOURCE 200809L
#include "model/resnet.h"
#include "model/resnet_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Capacities of the tables for cfg: every block may have a downsample.
static void table_sizes(const resnet_config *cfg, int *nconvs, int *nparams, int *nblocks) {
    int nb = 0, per = cfg->block == RESNET_BOTTLENECK ? 3 : 2;
    for (int s = 0; s < RESNET_LAYERS; s++) nb += cfg->blocks[s];
    *nblocks = nb;
    *nconvs = 1 + nb * (per + 1);
    *nparams = *nconvs * 6 + 2;  // a conv weight and a bn's five entries each, then fc
}

typedef struct table {
    resnet *m;
    int cap_params, cap_convs;
} table;

static int add_param(table *t, const char *name, resnet_param_kind kind, int stage, int ndim,
                     int d0, int d1, int d2, int d3) {
    resnet *m = t->m;
    if (m->nparams >= t->cap_params) return -1;
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

// conv `name` and its batch norm `bn_name` (the table keeps them parallel: bns[i] follows
// convs[i]). Returns the conv's index, or -1 when the table is full.
static int add_conv_bn(table *t, const char *name, const char *bn_name, int cin, int cout,
                       int k, int stride, int pad, int stage) {
    static const char *suffix[5] = { "weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked" };
    static const resnet_param_kind kinds[5] = { RP_BN_W, RP_BN_B, RP_BN_MEAN, RP_BN_VAR,
                                                RP_BN_COUNT };
    resnet *m = t->m;
    if (m->nconvs >= t->cap_convs) return -1;
    char full[96];
    snprintf(full, sizeof full, "%s.weight", name);
    resnet_conv *c = &m->convs[m->nconvs];
    c->w = add_param(t, full, RP_CONV, stage, 4, cout, cin, k, k);
    c->cin = cin; c->cout = cout; c->k = k; c->stride = stride; c->pad = pad; c->stage = stage;
    snprintf(c->label, sizeof c->label, "%s", name);
    resnet_bn *b = &m->bns[m->nbns];
    int idx[5];
    for (int i = 0; i < 5; i++) {
        snprintf(full, sizeof full, "%s.%s", bn_name, suffix[i]);
        idx[i] = add_param(t, full, kinds[i], stage, i == 4 ? 0 : 1, cout, 0, 0, 0);
        if (idx[i] < 0 || c->w < 0) return -1;
    }
    b->w = idx[0]; b->b = idx[1]; b->mean = idx[2]; b->var = idx[3]; b->count = idx[4];
    b->c = cout;
    b->stage = stage;
    snprintf(b->label, sizeof b->label, "%s", bn_name);
    m->nbns++;
    return m->nconvs++;
}

// One block of layer s (1-based stage), j-th in its layer: torchvision's BasicBlock or
// Bottleneck (stride on the 3x3 conv, v1.5), downsample when the shape changes.
static int add_block(table *t, resnet_block *b, int s, int j, int cin, int stride) {
    const resnet_config *cfg = &t->m->cfg;
    int planes = cfg->widths[s - 1], bottle = cfg->block == RESNET_BOTTLENECK;
    char pre[40], name[64], bn[64];
    snprintf(pre, sizeof pre, "layer%d.%d", s, j);
    b->stage = s;
    b->cin = cin;
    b->cout = planes * resnet_expansion(cfg);
    b->stride = stride;
    b->nconv = bottle ? 3 : 2;
    for (int i = 0; i < b->nconv; i++) {
        // Basic: 3x3 s, 3x3. Bottleneck: 1x1, 3x3 s, 1x1 (to planes * 4).
        int k = bottle && i != 1 ? 1 : 3, st = (bottle ? i == 1 : i == 0) ? stride : 1;
        int ci = i == 0 ? cin : planes, co = i == b->nconv - 1 ? b->cout : planes;
        snprintf(name, sizeof name, "%s.conv%d", pre, i + 1);
        snprintf(bn, sizeof bn, "%s.bn%d", pre, i + 1);
        b->conv[i] = b->bn[i] = add_conv_bn(t, name, bn, ci, co, k, st, k / 2, s);
        if (b->conv[i] < 0) return -1;
    }
    b->convd = b->bnd = -1;
    if (stride != 1 || cin != b->cout) {
        snprintf(name, sizeof name, "%s.downsample.0", pre);
        snprintf(bn, sizeof bn, "%s.downsample.1", pre);
        b->convd = b->bnd = add_conv_bn(t, name, bn, cin, b->cout, 1, stride, 0, s);
        if (b->convd < 0) return -1;
    }
    return 0;
}

int resnet_table_build(resnet *m, const resnet_config *cfg, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->freeze = -1;
    m->cfg = *cfg;
    m->num_classes = cfg->num_classes;
    m->features = resnet_features(cfg);
    int nconvs, nparams, nblocks;
    table_sizes(cfg, &nconvs, &nparams, &nblocks);
    table t = { m, nparams, nconvs };
    m->params = calloc((size_t)nparams, sizeof *m->params);
    m->convs = calloc((size_t)nconvs, sizeof *m->convs);
    m->bns = calloc((size_t)nconvs, sizeof *m->bns);
    m->bn_count = calloc((size_t)nconvs, sizeof *m->bn_count);
    m->blk = calloc((size_t)nblocks, sizeof *m->blk);
    m->blocks = calloc((size_t)nblocks, sizeof *m->blocks);
    m->conv_work = calloc((size_t)nconvs, sizeof *m->conv_work);
    m->col_ready = calloc((size_t)nconvs, sizeof *m->col_ready);
    if (!m->params || !m->convs || !m->bns || !m->bn_count || !m->blk || !m->blocks ||
        !m->conv_work || !m->col_ready) {
        snprintf(err, errlen, "out of host memory for the %s tables", cfg->arch);
        return 1;
    }
    int rc = add_conv_bn(&t, "conv1", "bn1", 3, cfg->stem_width, 7, 2, 3, 0) < 0;
    int cin = cfg->stem_width, in_stage = 0;
    for (int s = 1; s <= RESNET_LAYERS && !rc; s++) {
        for (int j = 0; j < cfg->blocks[s - 1] && !rc; j++) {
            resnet_block *b = &m->blk[m->nblocks++];
            rc = add_block(&t, b, s, j, cin, j == 0 && s > 1 ? 2 : 1);
            b->in_stage = in_stage;
            cin = b->cout;
            in_stage = s;
        }
    }
    if (!rc) {
        m->fc_w = add_param(&t, "fc.weight", RP_FC_W, RESNET_STAGE_FC, 2, m->num_classes,
                            m->features, 0, 0);
        m->fc_b = add_param(&t, "fc.bias", RP_FC_B, RESNET_STAGE_FC, 1, m->num_classes, 0, 0, 0);
        rc = m->fc_w < 0 || m->fc_b < 0;
    }
    if (rc) snprintf(err, errlen, "%s: the parameter table overflowed (a bug)", cfg->arch);
    return rc;
}

void resnet_table_free(resnet *m) {
    free(m->params);
    free(m->convs);
    free(m->bns);
    free(m->bn_count);
    free(m->blk);
    free(m->blocks);
    free(m->conv_work);
    free(m->col_ready);
    m->params = NULL; m->convs = NULL; m->bns = NULL; m->bn_count = NULL;
    m->blk = NULL; m->blocks = NULL; m->conv_work = NULL; m->col_ready = NULL;
}

static int valid_config(const resnet_config *cfg, char *err, size_t errlen) {
    if (cfg->num_classes < 1 || cfg->num_classes > 100000) {
        snprintf(err, errlen, "number of classes %d out of range (1..100000)", cfg->num_classes);
        return 0;
    }
    int ok = cfg->stem_width > 0 && cfg->stem_width <= 65536;
    for (int s = 0; s < RESNET_LAYERS; s++)
        ok = ok && cfg->blocks[s] >= 1 && cfg->blocks[s] <= 1000 && cfg->widths[s] >= 1 &&
             cfg->widths[s] <= 65536;
    if (!ok) snprintf(err, errlen, "architecture '%s': invalid blocks or widths", cfg->arch);
    return ok;
}

int resnet_init(resnet *m, clrt *rt, const resnet_config *cfg, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (!valid_config(cfg, err, errlen)) return 2;
    if (resnet_table_build(m, cfg, err, errlen) != 0) {
        resnet_table_free(m);
        return 1;
    }
    m->rt = rt;
    size_t pbytes = m->n_param_floats * sizeof(float);
    size_t bbytes = m->n_buffer_floats * sizeof(float);
    if (clrt_alloc_buf(rt, &m->arena_params, pbytes, "parameters", err, errlen) ||
        clrt_alloc_buf(rt, &m->arena_grads, pbytes, "gradients", err, errlen) ||
        clrt_alloc_buf(rt, &m->arena_momentum, pbytes, "SGD momentum", err, errlen) ||
        clrt_alloc_buf(rt, &m->arena_buffers, bbytes, "batch-norm statistics", err, errlen))
        return 1;  // resnet_free releases what was made
    m->device_bytes = 3 * pbytes + bbytes;
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
        double bound = 1.0 / sqrt((double)m->features);
        for (size_t j = 0; j < p->numel; j++)
            host[j] = (float)((2.0 * uniform01(&s) - 1.0) * bound);
        break;
    }
    case RP_BN_COUNT: break;
    }
}

static int init_some(resnet *m, uint64_t seed, int only_fc) {
    float *hp = calloc(m->n_param_floats, sizeof(float));
    float *hb = calloc(m->n_buffer_floats ? m->n_buffer_floats : 1, sizeof(float));
    if (!hp || !hb) {
        free(hp);
        free(hb);
        return -1;
    }
    if (only_fc) clrt_read(m->rt, m->arena_params, 0, hp, m->n_param_floats * sizeof(float));
    for (int i = 0; i < m->nparams; i++) {
        const resnet_param *p = &m->params[i];
        if (only_fc && p->stage != RESNET_STAGE_FC) continue;
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
    return 0;
}

int resnet_init_weights(resnet *m, uint64_t seed) { return init_some(m, seed, 0); }
int resnet_init_fc(resnet *m, uint64_t seed) { return init_some(m, seed, 1); }

