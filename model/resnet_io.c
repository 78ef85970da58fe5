// ResNet18 <-> checkpoint entries with torchvision's state_dict names.
#define _POSIX_C_SOURCE 200809L
#include "model/resnet.h"

#include <stdlib.h>
#include <string.h>

typedef struct host_copy { float *params, *buffers; } host_copy;

static int download(resnet *m, host_copy *h) {
    h->params = malloc(m->n_param_floats * sizeof(float));
    h->buffers = malloc((m->n_buffer_floats ? m->n_buffer_floats : 1) * sizeof(float));
    if (!h->params || !h->buffers) return -1;
    clrt_read(m->rt, m->arena_params, 0, h->params, m->n_param_floats * sizeof(float));
    clrt_read(m->rt, m->arena_buffers, 0, h->buffers, m->n_buffer_floats * sizeof(float));
    return 0;
}

static void host_free(host_copy *h) { free(h->params); free(h->buffers); }

static float *host_ptr(const resnet *m, host_copy *h, int i) {
    const resnet_param *p = &m->params[i];
    return ((p->kind == RP_BN_MEAN || p->kind == RP_BN_VAR) ? h->buffers : h->params) + p->off;
}

static int bn_of_count(const resnet *m, int i) {
    for (int b = 0; b < m->nbns; b++)
        if (m->bns[b].count == i) return b;
    return -1;
}

int resnet_to_ckpt(resnet *m, ckpt *c, const char *prefix) {
    host_copy h = { 0, 0 };
    if (download(m, &h) != 0) { host_free(&h); return -1; }
    int rc = 0;
    for (int i = 0; i < m->nparams && rc == 0; i++) {
        const resnet_param *p = &m->params[i];
        char name[128];
        snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", p->name);
        int64_t shape[4];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (p->kind == RP_BN_COUNT) {
            int64_t v = m->bn_count[bn_of_count(m, i)];
            rc = ckpt_add_tensor_i64(c, name, 0, shape, &v);
        } else {
            rc = ckpt_add_tensor_f32(c, name, p->ndim, shape, host_ptr(m, &h, i));
        }
    }
    host_free(&h);
    return rc;
}

static void shape_str(char *out, size_t len, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(out, len, "[");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(out + k, len - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < len) snprintf(out + k, len - k, "]");
}

// The key prefix the file uses: "", "module.", "state_dict.", "model.", and combinations.
static const char *find_prefix(const ckpt *c, const char *base) {
    static const char *cands[] = { "", "module.", "state_dict.", "state_dict.module.",
                                   "model.", "model.module.", NULL };
    static char buf[160];
    for (int i = 0; cands[i]; i++) {
        snprintf(buf, sizeof buf, "%s%s%s", base ? base : "", cands[i], "conv1.weight");
        if (ckpt_find(c, buf) >= 0) {
            snprintf(buf, sizeof buf, "%s%s", base ? base : "", cands[i]);
            return buf;
        }
    }
    return NULL;
}

int resnet_from_ckpt(resnet *m, const ckpt *c, const char *base, int strict, uint64_t fc_seed,
                     int *fc_replaced, const char *fname, char *err, size_t errlen) {
    *fc_replaced = 0;
    const char *pf = find_prefix(c, base);
    if (!pf) {
        snprintf(err, errlen, "%s: no ResNet18 weights found (no 'conv1.weight' key)", fname);
        return 1;
    }
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s", pf);
    size_t plen = strlen(prefix);
    host_copy h = { 0, 0 };
    if (download(m, &h) != 0) { host_free(&h); snprintf(err, errlen, "out of memory"); return 1; }
    char *used = calloc((size_t)c->n + 1, 1);
    int rc = 0, fc_other = 0;
    for (int i = 0; i < m->nparams && rc == 0; i++) {
        const resnet_param *p = &m->params[i];
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, p->name);
        int k = ckpt_find(c, key);
        if (k < 0) {
            if (p->kind == RP_BN_COUNT) continue;  // older files lack num_batches_tracked: 0
            snprintf(err, errlen, "%s: missing parameter '%s'", fname, p->name);
            rc = 1;
            break;
        }
        used[k] = 1;
        const ckpt_entry *e = &c->e[k];
        int same = e->kind == CKPT_TENSOR && e->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = e->shape[d] == p->shape[d];
        if (p->kind == RP_BN_COUNT) {
            if (e->kind != CKPT_TENSOR || e->numel != 1) same = 0;
            else {
                int b = bn_of_count(m, i);
                m->bn_count[b] = e->dtype == CKPT_I64 ? ((int64_t *)e->data)[0]
                                                      : (int64_t)((float *)e->data)[0];
                continue;
            }
        }
        if (!same && p->stage == 5 && e->kind == CKPT_TENSOR && e->ndim == p->ndim &&
            (p->ndim == 1 || e->shape[1] == p->shape[1])) {
            fc_other = 1;  // another number of classes: fc is replaced below
            continue;
        }
        if (!same || e->dtype != CKPT_F32) {
            char a[96], b[96];
            int64_t ps[4];
            for (int d = 0; d < p->ndim; d++) ps[d] = p->shape[d];
            shape_str(a, sizeof a, e->kind == CKPT_TENSOR ? e->ndim : 0, e->shape);
            shape_str(b, sizeof b, p->ndim, ps);
            snprintf(err, errlen, "%s: '%s' has shape %s%s, ResNet18 needs %s", fname, p->name,
                     e->kind == CKPT_TENSOR ? a : "(not a tensor)",
                     e->kind == CKPT_TENSOR && e->dtype != CKPT_F32 ? " of integers" : "", b);
            rc = 1;
            break;
        }
        memcpy(host_ptr(m, &h, i), e->data, p->numel * sizeof(float));
    }
    if (rc == 0) {
        int unknown = 0;
        for (int k = 0; k < c->n; k++) {
            if (used[k] || strncmp(c->e[k].name, prefix, plen) != 0) continue;
            if (plen == 0 && base && *base) continue;
            if (!plen && !base && c->e[k].kind != CKPT_TENSOR && !strict) continue;
            if (!unknown++)
                fprintf(stderr, "cltrain: %s: %s keys not used by ResNet18:", fname,
                        strict ? "error:" : "warning:");
            fprintf(stderr, " %s", c->e[k].name);
        }
        if (unknown) fprintf(stderr, "\n");
        if (unknown && strict) {
            snprintf(err, errlen, "%s: %d unknown key%s (--strict)", fname, unknown,
                     unknown > 1 ? "s" : "");
            rc = 1;
        }
    }
    if (rc == 0) {
        clrt_write(m->rt, m->arena_params, 0, h.params, m->n_param_floats * sizeof(float));
        clrt_write(m->rt, m->arena_buffers, 0, h.buffers, m->n_buffer_floats * sizeof(float));
        if (fc_other) {
            resnet_init_fc(m, fc_seed);
            *fc_replaced = 1;
        }
    }
    free(used);
    host_free(&h);
    return rc;
}
