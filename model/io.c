// A model <-> checkpoint entries with torchvision's state_dict names.
#define _POSIX_C_SOURCE 200809L
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct host_copy { float *params, *buffers; } host_copy;

static int download(model *m, host_copy *h) {
    h->params = malloc(m->n_param_floats * sizeof(float));
    h->buffers = malloc((m->n_buffer_floats ? m->n_buffer_floats : 1) * sizeof(float));
    if (!h->params || !h->buffers) return -1;
    clrt_read(m->rt, m->arena_params, 0, h->params, m->n_param_floats * sizeof(float));
    clrt_read(m->rt, m->arena_buffers, 0, h->buffers, m->n_buffer_floats * sizeof(float));
    return 0;
}

static void host_free(host_copy *h) { free(h->params); free(h->buffers); }

static float *host_ptr(const model *m, host_copy *h, int i) {
    const model_param *p = &m->params[i];
    return ((p->kind == PARAM_BN_MEAN || p->kind == PARAM_BN_VAR) ? h->buffers : h->params) + p->off;
}

int model_to_ckpt(model *m, ckpt *c, const char *prefix) {
    host_copy h = { 0, 0 };
    if (download(m, &h) != 0) { host_free(&h); return -1; }
    int rc = 0;
    for (int i = 0; i < m->nparams && rc == 0; i++) {
        const model_param *p = &m->params[i];
        char name[128];
        snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", p->name);
        int64_t shape[4];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (p->kind == PARAM_BN_COUNT) {
            int64_t v = m->bn_count[p->bn];
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

// Keys named by a failed or partial load: the count, the first, and the first few.
typedef struct key_list {
    int n;
    char first[64];
    char names[320];
} key_list;

static void key_add(key_list *l, const char *name) {
    size_t k = strlen(l->names);
    if (!l->n) snprintf(l->first, sizeof l->first, "%s", name);
    if (l->n++ < 6 && k + strlen(name) + 3 < sizeof l->names)
        snprintf(l->names + k, sizeof l->names - k, "%s%s", k ? ", " : "", name);
}

// "missing 'a' (3 keys)" for the summary line; "" when empty.
static void key_summary(char *out, size_t len, const char *what, const key_list *l) {
    if (l->n) snprintf(out, len, "%s '%s' (%d key%s)", what, l->first, l->n, l->n == 1 ? "" : "s");
    else out[0] = 0;
}

// "\n  missing keys: a, b, ..." for the details; "" when empty.
static void key_details(char *out, size_t len, const char *what, const key_list *l) {
    if (l->n) snprintf(out, len, "\n  %s keys: %s%s", what, l->names, l->n > 6 ? ", ..." : "");
    else out[0] = 0;
}

// The loaded values, checked entry by entry against the table.
typedef struct load_ctx {
    model *m;
    const ckpt *c;
    const char *fname, *prefix;
    host_copy h;
    key_list missing, unexpected;
    int head_other;     // the classifier has another number of classes: replaced
} load_ctx;

// Parameter i from the file. 0, or 1 with a message (shape or type).
static int load_param(load_ctx *x, int i, char *used, char *err, size_t errlen) {
    model *m = x->m;
    const model_param *p = &m->params[i];
    char key[256];
    snprintf(key, sizeof key, "%s%s", x->prefix, p->name);
    int k = ckpt_find(x->c, key);
    if (k < 0) {
        if (p->kind != PARAM_BN_COUNT) key_add(&x->missing, p->name);  // older files: 0
        return 0;
    }
    used[k] = 1;
    const ckpt_entry *e = &x->c->e[k];
    int same = e->kind == CKPT_TENSOR && e->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = e->shape[d] == p->shape[d];
    if (p->kind == PARAM_BN_COUNT && e->kind == CKPT_TENSOR && e->numel == 1) {
        m->bn_count[p->bn] = e->dtype == CKPT_I64 ? ((int64_t *)e->data)[0]
                                              : (int64_t)((float *)e->data)[0];
        return 0;
    }
    if (!same && p->stage == m->desc.nstages - 1 && e->kind == CKPT_TENSOR && e->ndim == p->ndim &&
        (p->ndim == 1 || e->shape[1] == p->shape[1])) {
        x->head_other = 1;  // another number of classes: the classifier is replaced
        return 0;
    }
    if (!same || e->dtype != CKPT_F32) {
        char a[96], b[96];
        int64_t ps[4];
        for (int d = 0; d < p->ndim; d++) ps[d] = p->shape[d];
        shape_str(a, sizeof a, e->kind == CKPT_TENSOR ? e->ndim : 0, e->shape);
        shape_str(b, sizeof b, p->ndim, ps);
        snprintf(err, errlen, "%s: '%s' has shape %s%s, %s needs %s", x->fname, p->name,
                 e->kind == CKPT_TENSOR ? a : "(not a tensor)",
                 e->kind == CKPT_TENSOR && e->dtype != CKPT_F32 ? " of integers" : "",
                 m->arch, b);
        return 1;
    }
    memcpy(host_ptr(m, &x->h, i), e->data, p->numel * sizeof(float));
    return 0;
}

// Entries under the prefix that no parameter used (other values, such as a training state's
// integers, are not parameters: PyTorch's state_dict never holds them).
static void find_unexpected(load_ctx *x, const char *used, const char *base) {
    size_t plen = strlen(x->prefix);
    for (int k = 0; k < x->c->n; k++) {
        const ckpt_entry *e = &x->c->e[k];
        if (used[k] || e->kind != CKPT_TENSOR || strncmp(e->name, x->prefix, plen) != 0)
            continue;
        if (plen == 0 && base && *base) continue;
        key_add(&x->unexpected, e->name + plen);
    }
}

// The strict=True error, or the non-strict warning: one line naming the first missing and the
// first unexpected key with the counts, then the details on the next lines.
static void describe_mismatch(const load_ctx *x, int strict, char *err, size_t errlen) {
    char miss[128], unex[128], dmiss[400], dunex[400];
    key_summary(miss, sizeof miss, "missing", &x->missing);
    key_summary(unex, sizeof unex, "unexpected", &x->unexpected);
    key_details(dmiss, sizeof dmiss, "missing", &x->missing);
    key_details(dunex, sizeof dunex, "unexpected", &x->unexpected);
    const char *sep = x->missing.n && x->unexpected.n ? ", " : "";
    if (strict)
        snprintf(err, errlen, "%s does not fit %s: %s%s%s (--non-strict loads what fits)%s%s",
                 x->fname, x->m->arch, miss, sep, unex, dmiss, dunex);
    else
        snprintf(err, errlen, "%s: partial load into %s (--non-strict): %s%s%s%s%s", x->fname,
                 x->m->arch, miss, sep, unex, dmiss, dunex);
}

int model_from_ckpt(model *m, const ckpt *c, const char *base, int strict, uint64_t head_seed,
                    int *head_replaced, const char *fname, char *err, size_t errlen) {
    *head_replaced = 0;
    char prefix[192];
    if (model_ckpt_prefix(c, base, prefix, sizeof prefix) != 0) {
        snprintf(err, errlen, "%s: no ResNet weights found (no 'conv1.weight' key)", fname);
        return 1;
    }
    load_ctx x = { .m = m, .c = c, .fname = fname, .prefix = prefix };
    char *used = calloc((size_t)c->n + 1, 1);
    if (!used || download(m, &x.h) != 0) {
        free(used);
        host_free(&x.h);
        snprintf(err, errlen, "out of host memory");
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < m->nparams && rc == 0; i++) rc = load_param(&x, i, used, err, errlen);
    if (rc == 0) find_unexpected(&x, used, base);
    if (rc == 0 && strict && (x.missing.n || x.unexpected.n)) {
        describe_mismatch(&x, 1, err, errlen);
        rc = 1;
    }
    if (rc == 0) {
        clrt_write(m->rt, m->arena_params, 0, x.h.params, m->n_param_floats * sizeof(float));
        clrt_write(m->rt, m->arena_buffers, 0, x.h.buffers, m->n_buffer_floats * sizeof(float));
        if (x.head_other) {
            rc = model_init_head(m, head_seed);
            *head_replaced = 1;
            if (rc) snprintf(err, errlen, "out of host memory");
        }
        if (rc == 0 && errlen) err[0] = 0;
        if (rc == 0 && (x.missing.n || x.unexpected.n)) describe_mismatch(&x, 0, err, errlen);
    }
    free(used);
    host_free(&x.h);
    return rc;
}
