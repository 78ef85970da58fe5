// Descriptions, and what model_init derives from one: the parameter table, the arenas and
// the initialisation.
#define _POSIX_C_SOURCE 200809L
#include "model/model.h"
#include "model/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int model_desc_init(model_desc *d, const char *arch, int cap) {
    memset(d, 0, sizeof *d);
    snprintf(d->arch, sizeof d->arch, "%s", arch);
    d->nodes = calloc((size_t)(cap > 1 ? cap : 1), sizeof *d->nodes);
    if (!d->nodes) return -1;
    d->cap = cap;
    node in = { .kind = NODE_INPUT, .in = { -1, -1 } };
    return model_desc_add(d, &in) == 0 ? 0 : -1;
}

void model_desc_free(model_desc *d) {
    free(d->nodes);
    memset(d, 0, sizeof *d);
}

int model_desc_stage(model_desc *d, const char *name) {
    if (d->nstages >= MODEL_MAX_STAGES) return -1;
    snprintf(d->stages[d->nstages], sizeof d->stages[0], "%s", name);
    return d->nstages++;
}

int model_desc_add(model_desc *d, const node *n) {
    if (d->nnodes >= d->cap) return -1;
    node *t = &d->nodes[d->nnodes];
    *t = *n;
    if (t->kind == NODE_CONV) {
        if (!t->dilation) t->dilation = 1;
        if (!t->groups) t->groups = 1;
    }
    for (int i = 0; i < 5; i++) t->param[i] = -1;
    t->bn = -1;
    return d->nnodes++;
}

// ---- the parameter table ----

typedef struct table {
    model *m;
    int cap;
} table;

static int add_param(table *t, int node_i, const char *suffix, model_param_kind kind, int ndim,
                     int d0, int d1, int d2, int d3) {
    model *m = t->m;
    const node *n = &m->desc.nodes[node_i];
    if (m->nparams >= t->cap) return -1;
    model_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", n->name, suffix);
    p->kind = kind;
    p->stage = n->stage;
    p->node = node_i;
    p->bn = -1;
    p->ndim = ndim;
    int d[4] = { d0, d1, d2, d3 };
    p->numel = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = d[i]; p->numel *= (size_t)d[i]; }
    if (kind == PARAM_BN_MEAN || kind == PARAM_BN_VAR) {
        p->off = m->n_buffer_floats;
        m->n_buffer_floats += p->numel;
    } else if (kind != PARAM_BN_COUNT) {
        p->off = m->n_param_floats;
        m->n_param_floats += p->numel;
    }
    return m->nparams++;
}

// Channels of node i's output, walked from the input's 3 (shapes need no image size).
static int channels(model *m, int i, char *err, size_t errlen) {
    node *n = &m->desc.nodes[i];
    int c0 = n->in[0] >= 0 ? m->desc.nodes[n->in[0]].c : 3;
    switch (n->kind) {
    case NODE_INPUT: return 3;
    case NODE_CONV:
        if (n->out < 1 || n->groups < 1 || c0 % n->groups || n->out % n->groups || n->k < 1 ||
            n->stride < 1 || n->pad < 0 || n->dilation < 1) {
            snprintf(err, errlen, "%s: conv '%s' (%d -> %d channels, groups %d) is invalid",
                     m->arch, n->name, c0, n->out, n->groups);
            return -1;
        }
        return n->out;
    case NODE_LINEAR:
        if (n->out < 1) {
            snprintf(err, errlen, "%s: linear '%s' has no outputs", m->arch, n->name);
            return -1;
        }
        return n->out;
    case NODE_ADD: case NODE_MUL: {
        int c1 = n->in[1] >= 0 ? m->desc.nodes[n->in[1]].c : -1;
        if (c1 != c0) {
            snprintf(err, errlen, "%s: node %d adds or scales %d channels by %d", m->arch, i,
                     c0, c1);
            return -1;
        }
        return c0;
    }
    default: return c0;
    }
}

static int build_params(model *m, char *err, size_t errlen) {
    model_desc *d = &m->desc;
    int cap = 0;
    for (int i = 0; i < d->nnodes; i++) {
        node *n = &d->nodes[i];
        if (n->kind == NODE_CONV || n->kind == NODE_LINEAR) cap += 2;
        if (n->kind == NODE_BN) { cap += 5; m->nbns++; }
    }
    m->params = calloc((size_t)(cap ? cap : 1), sizeof *m->params);
    m->bn_count = calloc((size_t)(m->nbns ? m->nbns : 1), sizeof *m->bn_count);
    if (!m->params || !m->bn_count) {
        snprintf(err, errlen, "out of host memory for the %s tables", m->arch);
        return 1;
    }
    table t = { m, cap };
    int nb = 0;
    for (int i = 0; i < d->nnodes; i++) {
        node *n = &d->nodes[i];
        for (int j = 0; j < 2; j++) {
            if (n->in[j] >= i || (i > 0 && j == 0 && n->in[0] < 0)) {
                snprintf(err, errlen, "%s: node %d reads node %d, which does not come before it",
                         m->arch, i, n->in[j]);
                return 1;
            }
        }
        if ((n->kind == NODE_ADD || n->kind == NODE_MUL) && n->in[1] < 0) {
            snprintf(err, errlen, "%s: node %d needs two inputs", m->arch, i);
            return 1;
        }
        if (n->stage < 0 || n->stage >= d->nstages) {
            snprintf(err, errlen, "%s: node %d is in no stage", m->arch, i);
            return 1;
        }
        if ((n->c = channels(m, i, err, errlen)) < 0) return 1;
        int c0 = n->in[0] >= 0 ? d->nodes[n->in[0]].c : 3;
        if (n->kind == NODE_CONV) {
            n->param[0] = add_param(&t, i, "weight", PARAM_WEIGHT, 4, n->out, c0 / n->groups,
                                    n->k, n->k);
            if (n->bias) n->param[1] = add_param(&t, i, "bias", PARAM_BIAS, 1, n->out, 0, 0, 0);
        } else if (n->kind == NODE_LINEAR) {
            n->param[0] = add_param(&t, i, "weight", PARAM_WEIGHT, 2, n->out, c0, 0, 0);
            n->param[1] = add_param(&t, i, "bias", PARAM_BIAS, 1, n->out, 0, 0, 0);
        } else if (n->kind == NODE_BN) {
            static const char *suffix[5] = { "weight", "bias", "running_mean", "running_var",
                                             "num_batches_tracked" };
            static const model_param_kind kinds[5] = { PARAM_BN_W, PARAM_BN_B, PARAM_BN_MEAN,
                                                       PARAM_BN_VAR, PARAM_BN_COUNT };
            for (int k = 0; k < 5; k++)
                n->param[k] = add_param(&t, i, suffix[k], kinds[k], k == 4 ? 0 : 1, c0, 0, 0, 0);
            n->bn = nb++;
            m->params[n->param[4]].bn = n->bn;
        }
    }
    const node *last = &d->nodes[d->nnodes - 1];
    if (last->kind != NODE_LINEAR || last->stage != d->nstages - 1) {
        snprintf(err, errlen, "%s: the last node must be the classifier's linear layer, in the "
                              "last stage", m->arch);
        return 1;
    }
    // The trainable parameters must form one suffix per frozen prefix: stages in order.
    for (int i = 1; i < m->nparams; i++) {
        if (m->params[i].stage < m->params[i - 1].stage) {
            snprintf(err, errlen, "%s: '%s' comes after a later stage's parameters", m->arch,
                     m->params[i].name);
            return 1;
        }
    }
    m->num_classes = last->out;
    return 0;
}

int model_table_build(model *m, model_desc *d, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->freeze = -1;
    m->desc = *d;
    memset(d, 0, sizeof *d);
    snprintf(m->arch, sizeof m->arch, "%s", m->desc.arch);
    if (m->desc.nnodes < 2 || m->desc.nstages < 1) {
        snprintf(err, errlen, "%s: an empty network", m->arch);
        return 1;
    }
    if (m->desc.nstages > MODEL_FREEZE_BACKBONE + 2) {  // --freeze backbone must cover them
        snprintf(err, errlen, "%s: %d stages before the classifier, at most %d", m->arch,
                 m->desc.nstages - 1, MODEL_FREEZE_BACKBONE + 1);
        return 1;
    }
    return build_params(m, err, errlen);
}

void model_table_free(model *m) {
    free(m->params);
    free(m->bn_count);
    model_desc_free(&m->desc);
    m->params = NULL;
    m->bn_count = NULL;
}

int model_init(model *m, ops_ctx *ops, model_desc *d, char *err, size_t errlen) {
    if (model_table_build(m, d, err, errlen) != 0) return 1;  // model_free releases it
    clrt *rt = ops->rt;
    m->ops = ops;
    m->rt = rt;
    size_t pbytes = m->n_param_floats * sizeof(float);
    size_t bbytes = m->n_buffer_floats * sizeof(float);
    if (clrt_alloc_buf(rt, &m->arena_params, pbytes, "parameters", err, errlen) ||
        clrt_alloc_buf(rt, &m->arena_buffers, bbytes ? bbytes : 4, "batch-norm statistics",
                       err, errlen))
        return 1;
    m->device_bytes = pbytes + bbytes;  // the gradients come with a training plan
    return 0;
}

int model_init_arch(model *m, ops_ctx *ops, const model_arch *a, char *err, size_t errlen) {
    model_desc d;
    memset(m, 0, sizeof *m);
    int rc = model_desc_named(&d, a->arch, a->num_classes, err, errlen);
    if (rc) return rc;
    rc = model_init(m, ops, &d, err, errlen);
    model_desc_free(&d);
    return rc;
}

int model_init_like(model *m, ops_ctx *ops, const model *like, char *err, size_t errlen) {
    model_desc d = like->desc;
    memset(m, 0, sizeof *m);
    d.nodes = malloc((size_t)d.cap * sizeof *d.nodes);
    if (!d.nodes) {
        snprintf(err, errlen, "out of host memory for the %s description", like->arch);
        return 1;
    }
    memcpy(d.nodes, like->desc.nodes, (size_t)d.nnodes * sizeof *d.nodes);
    int rc = model_init(m, ops, &d, err, errlen);
    model_desc_free(&d);
    return rc;
}

int model_stage_frozen(const model *m, int stage) {
    return stage <= m->freeze && stage < m->desc.nstages - 1;
}

int model_param_trainable(const model *m, int i) {
    const model_param *p = &m->params[i];
    if (p->kind == PARAM_BN_MEAN || p->kind == PARAM_BN_VAR || p->kind == PARAM_BN_COUNT)
        return 0;
    return !model_stage_frozen(m, p->stage);
}

size_t model_first_trainable(const model *m) {
    for (int i = 0; i < m->nparams; i++)
        if (model_param_trainable(m, i)) return m->params[i].off;
    return m->n_param_floats;
}

int model_freeze_from_name(const char *s) {
    static const char *names[] = { "none", "stem", "layer1", "layer2", "layer3", "layer4",
                                   "backbone" };
    static const int value[] = { -1, 0, 1, 2, 3, 4, MODEL_FREEZE_BACKBONE };
    for (int i = 0; i < 7; i++)
        if (s && !strcmp(s, names[i])) return value[i];
    return -2;
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
static void init_param(const model *m, int i, float *host, uint64_t seed) {
    const model_param *p = &m->params[i];
    const node *n = &m->desc.nodes[p->node];
    uint64_t s = seed ^ (0xC0FFEEULL + (uint64_t)i * 0x9E3779B97F4A7C15ULL);
    float fill = p->kind == PARAM_BN_W || p->kind == PARAM_BN_VAR ? 1.0f : 0.0f;
    if (p->kind == PARAM_WEIGHT && n->kind == NODE_CONV) {
        // kaiming_normal_(mode='fan_out', nonlinearity='relu')
        double std = sqrt(2.0 / (double)(p->shape[0] * p->shape[2] * p->shape[3]));
        for (size_t j = 0; j < p->numel; j++) host[j] = (float)(std * normal01(&s));
    } else if (n->kind == NODE_LINEAR) {
        // nn.Linear: U(-1/sqrt(in_features), 1/sqrt(in_features)) for weight and bias
        int in = m->params[n->param[0]].shape[1];
        double bound = 1.0 / sqrt((double)in);
        for (size_t j = 0; j < p->numel; j++)
            host[j] = (float)((2.0 * uniform01(&s) - 1.0) * bound);
    } else if (p->kind != PARAM_BN_COUNT) {  // batch norm; a conv's bias: zeros
        for (size_t j = 0; j < p->numel; j++) host[j] = fill;
    }
}

static int init_some(model *m, uint64_t seed, int only_head) {
    float *hp = calloc(m->n_param_floats ? m->n_param_floats : 1, sizeof(float));
    float *hb = calloc(m->n_buffer_floats ? m->n_buffer_floats : 1, sizeof(float));
    if (!hp || !hb) {
        free(hp);
        free(hb);
        return -1;
    }
    int head = m->desc.nstages - 1;
    if (only_head) clrt_read(m->rt, m->arena_params, 0, hp, m->n_param_floats * sizeof(float));
    for (int i = 0; i < m->nparams; i++) {
        const model_param *p = &m->params[i];
        if (only_head && p->stage != head) continue;
        float *dst = (p->kind == PARAM_BN_MEAN || p->kind == PARAM_BN_VAR) ? hb : hp;
        init_param(m, i, dst + p->off, seed);
    }
    clrt_write(m->rt, m->arena_params, 0, hp, m->n_param_floats * sizeof(float));
    if (!only_head) {
        clrt_write(m->rt, m->arena_buffers, 0, hb, m->n_buffer_floats * sizeof(float));
        for (int i = 0; i < m->nbns; i++) m->bn_count[i] = 0;
    }
    free(hp);
    free(hb);
    return 0;
}

int model_init_weights(model *m, uint64_t seed) { return init_some(m, seed, 0); }
int model_init_head(model *m, uint64_t seed) { return init_some(m, seed, 1); }
