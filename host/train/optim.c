// The optimizers: see optim.h.
#include "host/train/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_names[] = { "sgd", "adam", "adamw" };

void optim_config_defaults(optim_config *c) {
    memset(c, 0, sizeof *c);
    c->kind = OPTIM_SGD;
    c->lr = 0.001;
    c->momentum = 0.9;
    c->beta1 = 0.9;                // torch.optim.Adam's betas=(0.9, 0.999), eps=1e-8
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->accumulate = 1;
}

const char *optim_kind_name(optim_kind k) {
    return k >= OPTIM_SGD && k <= OPTIM_ADAMW ? kind_names[k] : "?";
}

int optim_kind_from_name(const char *name) {
    for (int k = 0; k < 3; k++)
        if (!strcmp(name, kind_names[k])) return k;
    return -1;
}

const char *optim_state_name(optim_kind k, int which) {
    if (k == OPTIM_SGD) return "momentum";  // torch.optim.SGD's state['momentum_buffer']
    return which ? "exp_avg_sq" : "exp_avg";
}

// The per-float selector: 1 over each batch-norm weight and bias of the table.
static int make_selector(optim *o, char *err, size_t errlen) {
    model *m = o->m;
    unsigned char *h = calloc(m->n_param_floats + 1, 1);
    if (!h) {
        snprintf(err, errlen, "out of host memory for the weight-decay selector");
        return -1;
    }
    for (int i = 0; i < m->nparams; i++) {
        const model_param *p = &m->params[i];
        if (p->kind == PARAM_BN_W || p->kind == PARAM_BN_B) memset(h + p->off, 1, p->numel);
    }
    o->sel = clrt_alloc(m->rt, m->n_param_floats, "weight-decay selector");
    clrt_write(m->rt, o->sel, 0, h, m->n_param_floats);
    free(h);
    return 0;
}

int optim_init(optim *o, model *m, const optim_config *c, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    o->m = m;
    o->cfg = *c;
    o->off = model_first_trainable(m);  // the trainable suffix of the arena
    o->n = m->n_param_floats - o->off;
    o->nstate = c->kind == OPTIM_SGD ? 1 : 2;
    size_t pbytes = m->n_param_floats * sizeof(float);
    if (clrt_alloc_buf(m->rt, &o->state, o->nstate * pbytes, "optimizer state", err, errlen))
        return -1;
    clrt_fill_zero(m->rt, o->state, 0, o->nstate * pbytes);  // torch: zeros_like
    if (c->norm_decay_set && make_selector(o, err, errlen)) return -1;
    if (c->accumulate > 1 && clrt_alloc_buf(m->rt, &o->acc, pbytes + sizeof(float),
                                            "gradient accumulation", err, errlen))
        return -1;
    if (c->clip_grad_norm > 0)
        o->clip = clrt_alloc(m->rt, (OPS_CLIP_GROUPS + 2) * sizeof(float), "gradient norm");
    return 0;
}

void optim_free(optim *o) {
    cl_mem mems[] = { o->state, o->sel, o->acc, o->clip };
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    memset(o, 0, sizeof *o);
}

dten optim_state(const optim *o, int which) {
    return (dten){ o->state, (size_t)which * o->m->n_param_floats };
}

static void require_fit(const optim *o, const optim_config *c, int need) {
    if (c->kind == o->cfg.kind && !c->norm_decay_set == !o->cfg.norm_decay_set && need) return;
    fprintf(stderr, "cltrain: internal error: a %s step on an optimizer set up for %s\n",
            optim_kind_name(c->kind), optim_kind_name(o->cfg.kind));
    abort();
}

void optim_accumulate(optim *o, dten loss_mean, int k, int last) {
    require_fit(o, &o->cfg, o->acc != NULL && k >= 0);
    model *m = o->m;
    int mode = last ? 2 : k == 0 ? 0 : 1;
    float scale = 1.0f / (float)(k + 1);
    if (last && k == 0) return;  // a group of one batch: the gradient is its own mean
    if (o->n)
        op_grad_accumulate(m->ops, (dten){ o->acc, o->off }, (dten){ m->arena_grads, o->off },
                           o->n, mode, scale);
    op_grad_accumulate(m->ops, (dten){ o->acc, m->n_param_floats }, loss_mean, 1, mode, scale);
}

void optim_clip(optim *o, const optim_config *c, dten norm) {
    if (!(c->clip_grad_norm > 0)) return;
    require_fit(o, c, o->clip != NULL);
    if (!o->n) return;
    model *m = o->m;
    clrt_profile_layer(m->rt, "clip");
    op_clip_grad_norm(m->ops, (dten){ m->arena_grads, o->off }, o->n, (float)c->clip_grad_norm,
                      (dten){ o->clip, 0 }, (dten){ o->clip, OPS_CLIP_GROUPS });
    clrt_copy(m->rt, norm.mem, norm.off * sizeof(float), o->clip,
              OPS_CLIP_GROUPS * sizeof(float), sizeof(float));
}

void optim_step(optim *o, const optim_config *c, dten guard) {
    require_fit(o, c, 1);
    model *m = o->m;
    long step = o->step++;
    if (!o->n) return;
    clrt_profile_layer(m->rt, c->kind == OPTIM_SGD ? "sgd" : optim_kind_name(c->kind));
    dten p = { m->arena_params, o->off }, g = { m->arena_grads, o->off };
    dten s0 = dten_at(optim_state(o, 0), o->off);
    dten sel = o->sel ? (dten){ o->sel, o->off } : DTEN_NONE;
    // --norm-weight-decay: batch-norm weights and biases take their own decay (torchvision's
    // set_weight_decay param groups).
    double norm_wd = c->norm_decay_set ? c->norm_weight_decay : c->weight_decay;
    if (c->kind == OPTIM_SGD && !c->nesterov && !o->sel) {
        // Plain SGD: sgd_step, as every run before the optimizer flags (bitwise).
        op_sgd_step_guarded(m->ops, p, g, s0, o->n, (float)c->lr, (float)c->momentum,
                            (float)c->weight_decay, step == 0, guard);
    } else if (c->kind == OPTIM_SGD) {
        op_sgd_args a = { (float)c->lr, (float)c->momentum, (float)c->weight_decay,
                          (float)norm_wd, c->nesterov, step == 0 };
        op_sgd_step_ex(m->ops, p, g, s0, sel, guard, o->n, &a);
    } else {
        op_adam_args a = { c->lr, c->beta1, c->beta2, c->eps, c->weight_decay, norm_wd,
                           c->kind == OPTIM_ADAMW, step + 1 };
        op_adam_step(m->ops, p, g, s0, dten_at(optim_state(o, 1), o->off), sel, guard, o->n, &a);
    }
}

size_t optim_device_bytes(const optim *o) {
    if (!o->m) return 0;
    size_t np = o->m->n_param_floats;
    return (size_t)o->nstate * np * sizeof(float) + (o->sel ? np : 0) +
           (o->acc ? (np + 1) * sizeof(float) : 0) +
           (o->clip ? (OPS_CLIP_GROUPS + 2) * sizeof(float) : 0);
}
