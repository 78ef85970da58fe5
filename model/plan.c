// The activation plan: shapes walked from the image size, the relus that run inside the batch
// norm or add before them, and every buffer the walks use placed in one arena (in chunks of at
// most one allocation each) at offsets from their lifetimes: two buffers share memory when
// they are never alive at the same time. Checked against the device before anything is
// allocated.
#define _POSIX_C_SOURCE 200809L
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALIGN_FLOATS = 256 };       // 1 KiB: any device's base address alignment, and cache lines

int plan_use(act_plan *p, int *id, size_t floats, int t) {
    if (*id < 0) {
        if (!p->planning) {
            fprintf(stderr, "cltrain: internal error: a buffer the plan never saw\n");
            abort();
        }
        if (p->nbufs == p->capbufs) {
            int cap = p->capbufs ? 2 * p->capbufs : 256;
            plan_buf *nb = realloc(p->bufs, (size_t)cap * sizeof *nb);
            if (!nb) {
                fprintf(stderr, "cltrain: error: out of host memory for the activation plan\n");
                exit(1);
            }
            p->bufs = nb;
            p->capbufs = cap;
        }
        plan_buf *b = &p->bufs[p->nbufs];
        memset(b, 0, sizeof *b);
        b->floats = floats ? floats : 1;
        b->lo = b->hi = t;
        *id = p->nbufs++;
    }
    plan_buf *b = &p->bufs[*id];
    if (p->planning) {
        if (t < b->lo) b->lo = t;
        if (t > b->hi) b->hi = t;
    }
    return *id;
}

static int out_size(int in, int k, int s, int p, int d) {
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static const char *kind_name(node_kind k) {
    static const char *names[] = { "input", "conv", "batch norm", "activation", "add",
                                   "channel scale", "max pool", "average pool",
                                   "global average pool", "flatten", "linear", "dropout" };
    return names[k];
}

// Shapes at image size S, and whether every node has kernels. 0, or 2 with a message.
static int plan_shapes(model *m, int S, char *err, size_t errlen) {
    for (int i = 0; i < m->desc.nnodes; i++) {
        node *nd = &m->desc.nodes[i];
        const node *src = nd->in[0] >= 0 ? &m->desc.nodes[nd->in[0]] : NULL;
        int h = src ? src->h : S, w = src ? src->w : S;
        int ok = 1;
        switch (nd->kind) {
        case NODE_INPUT: h = w = S; break;
        case NODE_CONV:
            ok = nd->groups == 1 && nd->dilation == 1 && !nd->bias;
            h = out_size(h, nd->k, nd->stride, nd->pad, nd->dilation);
            w = out_size(w, nd->k, nd->stride, nd->pad, nd->dilation);
            break;
        case NODE_MAXPOOL:
            h = out_size(h, nd->k, nd->stride, nd->pad, 1);
            w = out_size(w, nd->k, nd->stride, nd->pad, 1);
            break;
        case NODE_GAP: case NODE_FLATTEN: case NODE_LINEAR: h = w = 1; break;
        case NODE_ACT: ok = nd->act >= ACT_RELU && nd->act <= ACT_SIGMOID; break;
        case NODE_ADD: {
            const node *b = &m->desc.nodes[nd->in[1]];
            if (b->h != h || b->w != w) {
                snprintf(err, errlen, "image size %d: node %d of %s adds %dx%d to %dx%d", S, i,
                         m->arch, h, w, b->h, b->w);
                return 2;
            }
            break;
        }
        case NODE_BN: break;
        case NODE_MUL: {
            const node *s = &m->desc.nodes[nd->in[1]];
            if (s->h != 1 || s->w != 1) {
                snprintf(err, errlen, "%s: node %d scales by a %dx%d map (1x1 per channel)",
                         m->arch, i, s->h, s->w);
                return 2;
            }
            break;
        }
        default: ok = 0; break;
        }
        if (!ok) {
            snprintf(err, errlen, "%s: '%s' (%s) has no kernels in this version", m->arch,
                     nd->name[0] ? nd->name : kind_name(nd->kind), kind_name(nd->kind));
            return 2;
        }
        if (nd->kind == NODE_LINEAR && (src->h != 1 || src->w != 1)) {
            snprintf(err, errlen, "%s: linear '%s' reads a %dx%d map", m->arch, nd->name, src->h,
                     src->w);
            return 2;
        }
        if (S < 1 || h < 1 || w < 1) {
            snprintf(err, errlen, "image size %d is too small for %s", S, m->arch);
            return 2;
        }
        nd->h = h;
        nd->w = w;
    }
    return 0;
}

static void plan_release(act_plan *p) {
    if (!p) return;
    for (int c = 0; c < p->nchunks; c++)
        if (p->chunks[c]) clReleaseMemObject(p->chunks[c]);
    int *arrays[] = { p->val, p->grad, p->aux0, p->aux1, p->work_f, p->work_b, p->tmp,
                      p->fused, p->absorbed, p->col_ready, p->needs, p->gstate, p->gcur };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) free(arrays[i]);
    free(p->bufs);
    free(p);
}

static int *ids(int n, int fill) {
    int *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    for (int i = 0; a && i < n; i++) a[i] = fill;
    return a;
}

// An external buffer (a tensor of its own, not in the arena).
static int external(act_plan *p, int *id, size_t floats) {
    p->planning = 1;
    plan_use(p, id, floats, 0);
    p->bufs[*id].chunk = -1;
    p->bufs[*id].lo = 1;  // never placed
    p->bufs[*id].hi = 0;
    return *id;
}

// The plan's tables, fusions and recorded uses for batch B (no device memory).
static act_plan *plan_walk(model *m, int B, int training, int keep) {
    int N = m->desc.nnodes;
    act_plan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->training = training;
    p->keep_cols = keep && training;
    p->batch = B;
    p->val = ids(N, -1); p->grad = ids(N, -1); p->aux0 = ids(N, -1); p->aux1 = ids(N, -1);
    p->work_f = ids(N, -1); p->work_b = ids(N, -1); p->tmp = ids(2 * N, -1);
    p->fused = ids(N, -1); p->absorbed = ids(N, 0); p->col_ready = ids(N, 0);
    p->needs = ids(N, 0); p->gstate = ids(N, 0); p->gcur = ids(N, -1);
    int *consumers = ids(N, 0);
    if (!p->val || !p->grad || !p->aux0 || !p->aux1 || !p->work_f || !p->work_b || !p->tmp ||
        !p->fused || !p->absorbed || !p->col_ready || !p->needs || !p->gstate || !p->gcur ||
        !consumers) {
        free(consumers);
        plan_release(p);
        return NULL;
    }
    // A relu whose input is a batch norm or an add read by nothing else runs inside it.
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 2; k++)
            if (m->desc.nodes[i].in[k] >= 0) consumers[m->desc.nodes[i].in[k]]++;
    for (int j = 0; j < N; j++) {
        const node *r = &m->desc.nodes[j];
        if (r->kind != NODE_ACT || r->act != ACT_RELU) continue;
        int i = r->in[0];
        node_kind k = m->desc.nodes[i].kind;
        if ((k == NODE_BN || k == NODE_ADD) && consumers[i] == 1) {
            p->fused[i] = j;
            p->absorbed[j] = 1;
        }
    }
    free(consumers);
    const node *head = &m->desc.nodes[N - 1];
    external(p, &p->val[0], (size_t)3 * B * m->image_size * m->image_size);
    external(p, &p->val[N - 1], (size_t)head->out * B);
    external(p, &p->grad[N - 1], (size_t)head->out * B);
    // The walks, recording.
    act_plan *saved = m->plan;
    m->plan = p;
    p->planning = 1;
    model_walk_forward(m, B, training);
    if (training) model_walk_backward(m, B);
    p->planning = 0;
    m->plan = saved;
    return p;
}

typedef struct placed { size_t off, end; int lo, hi, chunk; } placed;

static int by_off(const void *a, const void *b) {
    const placed *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

typedef struct order { size_t floats; int id; } order;

static int by_size(const void *a, const void *b) {
    const order *x = a, *y = b;
    if (x->floats != y->floats) return x->floats > y->floats ? -1 : 1;
    return x->id - y->id;
}

// Places every buffer (largest first, each at the lowest offset of the first chunk where no
// buffer alive at an overlapping time is). cap: floats per chunk. 0, or -1 when a buffer is
// larger than cap (or no host memory).
static int plan_place(act_plan *p, size_t cap) {
    order *o = malloc((size_t)(p->nbufs ? p->nbufs : 1) * sizeof *o);
    placed *done = malloc((size_t)(p->nbufs ? p->nbufs : 1) * sizeof *done);
    placed *near = malloc((size_t)(p->nbufs ? p->nbufs : 1) * sizeof *near);
    int no = 0, ndone = 0, rc = 0;
    if (!o || !done || !near) rc = -1;
    for (int i = 0; !rc && i < p->nbufs; i++)
        if (p->bufs[i].chunk >= 0 && p->bufs[i].lo <= p->bufs[i].hi)
            o[no++] = (order){ (p->bufs[i].floats + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS,
                               i };
    if (!rc) qsort(o, (size_t)no, sizeof *o, by_size);
    p->nchunks = 0;
    for (int k = 0; !rc && k < no; k++) {
        plan_buf *b = &p->bufs[o[k].id];
        size_t size = o[k].floats;
        if (size > cap) { rc = -1; break; }
        int chunk = -1;
        size_t at = 0;
        for (int c = 0; c <= p->nchunks && chunk < 0; c++) {
            if (c == p->nchunks) {
                if (c == PLAN_MAX_CHUNKS) { rc = -1; break; }
                p->chunk_floats[p->nchunks++] = 0;
            }
            int nn = 0;
            for (int j = 0; j < ndone; j++)
                if (done[j].chunk == c && done[j].lo <= b->hi && b->lo <= done[j].hi)
                    near[nn++] = done[j];
            qsort(near, (size_t)nn, sizeof *near, by_off);
            size_t cur = 0;
            for (int j = 0; j < nn && cur + size > near[j].off; j++)
                if (near[j].end > cur) cur = near[j].end;
            if (cur + size <= cap) { chunk = c; at = cur; }
        }
        if (rc) break;
        b->chunk = chunk;
        b->off = at;
        done[ndone++] = (placed){ at, at + size, b->lo, b->hi, chunk };
        if (at + size > p->chunk_floats[chunk]) p->chunk_floats[chunk] = at + size;
    }
    free(o);
    free(done);
    free(near);
    return rc;
}

static size_t plan_bytes_of(const act_plan *p) {
    size_t floats = 0;
    for (int c = 0; c < p->nchunks; c++) floats += p->chunk_floats[c];
    for (int i = 0; i < p->nbufs; i++)
        if (p->bufs[i].chunk < 0) floats += p->bufs[i].floats;
    return floats * sizeof(float);
}

// The parameter arenas: parameters and running statistics, and for training the gradients
// and (counted here, allocated by host/train/optim) one optimizer state tensor (SGD's
// momentum; Adam's second adds as much again).
static size_t arena_bytes(const model *m, int training) {
    return ((training ? 3 : 1) * m->n_param_floats + m->n_buffer_floats) * sizeof(float);
}

// The plan for (B, S): NULL when the image is too small (message in err) or no memory.
// *total: the bytes it takes with the parameter arenas and the small buffers.
static act_plan *plan_make(model *m, int B, int S, int training, int keep, size_t cap,
                             size_t *total, char *err, size_t errlen) {
    *total = 0;
    if (B < 1 || plan_shapes(m, S, err, errlen) != 0) return NULL;
    m->image_size = S;
    act_plan *p = plan_walk(m, B, training, keep);
    if (!p) {
        snprintf(err, errlen, "out of host memory for the activation plan");
        return NULL;
    }
    if (plan_place(p, cap) != 0) {
        *total = (size_t)-1;
        return p;
    }
    *total = plan_bytes_of(p) + arena_bytes(m, training) + ((size_t)B * 2 + 4) * sizeof(float);
    return p;
}

static size_t device_cap(const model *m) {
    size_t cap = m->rt ? m->rt->dev.max_alloc / sizeof(float) : (size_t)-1;
    return cap < 0x7fffffff ? cap : 0x7fffffff;
}

// Does the plan for (B, S) fit the device: all of it in share of its global memory, every
// chunk one allocation? *total gets the bytes (0 when S is too small).
static int plan_fits(model *m, int B, int S, int training, int keep, double share,
                     size_t *total) {
    char e[256];
    act_plan *p = plan_make(m, B, S, training, keep, device_cap(m), total, e, sizeof e);
    int ok = p && *total != (size_t)-1 && *total <= (double)m->rt->dev.global_mem * share;
    if (p && *total == (size_t)-1) *total = 0;
    plan_release(p);
    return ok;
}

int model_kept_cols(const model *m) { return m->plan && m->plan->keep_cols; }

int model_largest_batch(model *m, int max_batch, int image_size, int forward_only) {
    // Memory grows with the batch: bisect. lo fits (0: nothing does), hi does not.
    int lo = 0, hi = max_batch + 1, saved = m->image_size;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        size_t t;
        if (plan_fits(m, mid, image_size, !forward_only, 0, 1.0, &t)) lo = mid;
        else hi = mid;
    }
    m->image_size = saved;
    return lo;
}

static void release(dten *t) {
    if (t->mem) clReleaseMemObject(t->mem);
    t->mem = NULL;
}

static void free_plan(model *m) {
    dten *all[] = { &m->x, &m->labels, &m->logits, &m->dlogits, &m->losses, &m->loss_mean,
                    &m->flag };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) release(all[i]);
    plan_release(m->plan);
    m->plan = NULL;
}

int model_plan(model *m, int max_batch, int image_size, const model_plan_options *opt,
               char *err, size_t errlen) {
    int training = !(opt && opt->forward_only);
    size_t total = 0;
    act_plan *p = plan_make(m, max_batch, image_size, training, 0, device_cap(m), &total, err,
                              errlen);
    if (!p) return max_batch < 1 ? 1 : 2;
    plan_release(p);
    if (total == (size_t)-1 || total > m->rt->dev.global_mem) {
        size_t need = total;
        if (need == (size_t)-1) {  // some buffer alone exceeds one allocation: say how much
            plan_release(plan_make(m, max_batch, image_size, training, 0, (size_t)-1 / 8, &need,
                                   err, errlen));
            if (need == (size_t)-1) need = 0;
        }
        snprintf(err, errlen, "%s needs %.0f MiB on %s, which has %.0f MiB (at most %.0f MiB in "
                              "one buffer)", m->arch, need / 1048576.0, m->rt->dev.name,
                 m->rt->dev.global_mem / 1048576.0, m->rt->dev.max_alloc / 1048576.0);
        return MODEL_PLAN_NO_FIT;
    }
    // A workspace per conv (the forward's im2col kept for the weight gradient) when the whole
    // plan then takes at most half the device's memory (room for CLBlast's scratch and other
    // programs); keep_cols 0: never (to compare).
    int keep = training && !(opt && opt->keep_cols == 0) &&
               plan_fits(m, max_batch, image_size, 1, 1, 0.5, &total);
    free_plan(m);
    p = plan_make(m, max_batch, image_size, training, keep, device_cap(m), &total, err, errlen);
    if (!p || total == (size_t)-1) {
        plan_release(p);
        if (p) snprintf(err, errlen, "%s: the activation plan does not place (a bug)", m->arch);
        return 1;
    }
    m->plan = p;
    m->max_batch = max_batch;
    m->image_size = image_size;
    int rc = 0;
    size_t arena = 0;
    for (int c = 0; c < p->nchunks && !rc; c++) {
        rc = clrt_alloc_buf(m->rt, &p->chunks[c], p->chunk_floats[c] * sizeof(float),
                            "activations", err, errlen);
        arena += p->chunk_floats[c] * sizeof(float);
    }
    int N = m->desc.nnodes, K = m->num_classes, B = max_batch;
    size_t S = (size_t)image_size;
    struct { dten *t; size_t floats; const char *what; } io[] = {
        { &m->x, 3 * (size_t)B * S * S, "input batch" }, { &m->labels, (size_t)B, "labels" },
        { &m->logits, (size_t)K * B, "logits" }, { &m->dlogits, (size_t)K * B, "logit gradient" },
        { &m->losses, (size_t)B, "losses" }, { &m->loss_mean, 1, "loss" },
        { &m->flag, 1, "finite flag" },
    };
    size_t io_bytes = 0;
    for (size_t i = 0; i < sizeof io / sizeof io[0] && !rc; i++) {
        rc = clrt_alloc_buf(m->rt, &io[i].t->mem, io[i].floats * sizeof(float), io[i].what, err,
                            errlen);
        io[i].t->off = 0;
        io_bytes += io[i].floats * sizeof(float);
    }
    size_t pbytes = m->n_param_floats * sizeof(float);
    if (training && !m->arena_grads && !rc) {
        rc = clrt_alloc_buf(m->rt, &m->arena_grads, pbytes, "gradients", err, errlen);
        if (!rc) {
            clrt_fill_zero(m->rt, m->arena_grads, 0, pbytes);
            m->device_bytes += pbytes;
        }
    }
    if (rc) return rc;  // model_free releases what was made
    for (int i = 0; i < p->nbufs; i++)
        if (p->bufs[i].chunk >= 0)
            p->bufs[i].dt = (dten){ p->chunks[p->bufs[i].chunk], p->bufs[i].off };
    p->bufs[p->val[0]].dt = m->x;
    p->bufs[p->val[N - 1]].dt = m->logits;
    if (p->grad[N - 1] >= 0) p->bufs[p->grad[N - 1]].dt = m->dlogits;
    m->arena_bytes = arena;
    m->device_bytes += arena + io_bytes;
    return 0;
}

size_t model_plan_bytes(const model_arch *a, int batch, int image_size, int forward_only) {
    model *m = malloc(sizeof *m);  // the tables only: nothing is allocated on a device
    model_desc d;
    char err[256];
    size_t bytes = 0;
    if (!m) return 0;
    memset(m, 0, sizeof *m);
    if (model_desc_named(&d, a->arch, a->num_classes, err, sizeof err) == 0 &&
        model_table_build(m, &d, err, sizeof err) == 0) {
        act_plan *p = plan_make(m, batch, image_size, !forward_only, 0, 0x7fffffff, &bytes, err,
                                  sizeof err);
        if (!p || bytes == (size_t)-1) bytes = 0;
        plan_release(p);
    }
    model_desc_free(&d);
    model_table_free(m);
    free(m);
    return bytes;
}

void model_free(model *m) {
    if (!m) return;
    free_plan(m);
    cl_mem arenas[] = { m->arena_params, m->arena_grads, m->arena_buffers };
    for (int i = 0; i < 3; i++)
        if (arenas[i]) clReleaseMemObject(arenas[i]);
    model_table_free(m);
    memset(m, 0, sizeof *m);
}
