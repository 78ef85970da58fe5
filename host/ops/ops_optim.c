// The optimizers' ops beyond sgd_step: SGD with Nesterov and a decay per float, Adam/AdamW,
// clip_grad_norm_'s norm and scale, gradient accumulation (cl/optim.cl).
#include "host/ops/ops_internal.h"

#include <math.h>

// A valid buffer for an argument the kernel does not read (the selector or guard left out).
static dten stand_in(dten t, dten other) { return ops_has(t) ? t : other; }

void op_sgd_step_ex(ops_ctx *ops, dten params, dten grads, dten bufs, dten sel, dten guard,
                    size_t n, const op_sgd_args *a) {
    clrt *rt = ops->rt;
    const char *op = "op_sgd_step_ex";
    int ni = ops_int(n, op, "n");
    OPS_REQUIRE(ops_has(params) && ops_has(grads), op, "missing buffer");
    OPS_REQUIRE(a->momentum == 0.0f || ops_has(bufs), op, "momentum %g needs momentum buffers",
                (double)a->momentum);
    OPS_REQUIRE(!a->nesterov || a->momentum != 0.0f, op, "Nesterov needs momentum");
    int has_sel = ops_has(sel), guarded = ops_has(guard);
    int first = a->first_step ? 1 : 0, nesterov = a->nesterov ? 1 : 0;
    cl_kernel k = ops_kernel_ten(rt, "sgd_step_ex",
                                 (dten[]){ params, grads, stand_in(bufs, params),
                                           stand_in(sel, params), stand_in(guard, params) }, 5);
    CLRT_ARG(k, 10, ni);
    CLRT_ARG(k, 11, a->lr);
    CLRT_ARG(k, 12, a->momentum);
    CLRT_ARG(k, 13, a->decay);
    CLRT_ARG(k, 14, a->norm_decay);
    CLRT_ARG(k, 15, first);
    CLRT_ARG(k, 16, nesterov);
    CLRT_ARG(k, 17, has_sel);
    CLRT_ARG(k, 18, guarded);
    clrt_launch1d(rt, k, n);
}

void op_adam_step(ops_ctx *ops, dten params, dten grads, dten exp_avg, dten exp_avg_sq, dten sel,
                  dten guard, size_t n, const op_adam_args *a) {
    clrt *rt = ops->rt;
    const char *op = "op_adam_step";
    int ni = ops_int(n, op, "n");
    OPS_REQUIRE(ops_has(params) && ops_has(grads) && ops_has(exp_avg) && ops_has(exp_avg_sq),
                op, "missing buffer");
    OPS_REQUIRE(a->step >= 1, op, "step %ld: torch counts from 1", a->step);
    OPS_REQUIRE(a->beta1 >= 0 && a->beta1 < 1 && a->beta2 >= 0 && a->beta2 < 1 && a->eps > 0,
                op, "betas (%g, %g) or eps %g out of range", a->beta1, a->beta2, a->eps);
    // torch: bias_correction1 = 1 - beta1 ** step; step_size = lr / bias_correction1;
    // bias_correction2_sqrt = math.sqrt(1 - beta2 ** step), all Python floats (double).
    double bc1 = 1.0 - pow(a->beta1, (double)a->step), bc2 = 1.0 - pow(a->beta2, (double)a->step);
    float beta1 = (float)a->beta1, beta2 = (float)a->beta2;
    float omb1 = (float)(1.0 - a->beta1), omb2 = (float)(1.0 - a->beta2);
    float neg_step = -(float)(a->lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)a->eps;
    float decay = (float)a->decay, norm_decay = (float)a->norm_decay;
    float factor = (float)(1.0 - a->lr * a->decay), norm_factor = (float)(1.0 - a->lr * a->norm_decay);
    int decoupled = a->decoupled ? 1 : 0, has_sel = ops_has(sel), guarded = ops_has(guard);
    cl_kernel k = ops_kernel_ten(rt, "adam_step",
                                 (dten[]){ params, grads, exp_avg, exp_avg_sq,
                                           stand_in(sel, params), stand_in(guard, params) }, 6);
    CLRT_ARG(k, 12, ni);
    CLRT_ARG(k, 13, beta1);
    CLRT_ARG(k, 14, omb1);
    CLRT_ARG(k, 15, beta2);
    CLRT_ARG(k, 16, omb2);
    CLRT_ARG(k, 17, neg_step);
    CLRT_ARG(k, 18, bc2_sqrt);
    CLRT_ARG(k, 19, eps);
    CLRT_ARG(k, 20, decay);
    CLRT_ARG(k, 21, norm_decay);
    CLRT_ARG(k, 22, factor);
    CLRT_ARG(k, 23, norm_factor);
    CLRT_ARG(k, 24, decoupled);
    CLRT_ARG(k, 25, has_sel);
    CLRT_ARG(k, 26, guarded);
    clrt_launch1d(rt, k, n);
}

void op_clip_grad_norm(ops_ctx *ops, dten grads, size_t n, float max_norm, dten partial, dten out) {
    clrt *rt = ops->rt;
    const char *op = "op_clip_grad_norm";
    int ni = ops_int(n, op, "n");
    OPS_REQUIRE(ops_has(grads) && ops_has(partial) && ops_has(out), op, "missing buffer");
    OPS_REQUIRE(max_norm > 0, op, "max_norm %g must be positive", (double)max_norm);
    cl_kernel k = ops_kernel_ten(rt, "sumsq_partial", (dten[]){ partial, grads }, 2);
    CLRT_ARG(k, 4, ni);
    // As all_finite (op_finite_and): on a CPU each of the groups is one item over a contiguous
    // run, elsewhere groups of up to 256 interleaved items. The grid depends on n and the
    // device only: one order of the sums.
    int sw = OPS_SWITCH(ops, bn_interleave);
    int interleave = sw >= 0 ? sw : !(rt->dev.type & CL_DEVICE_TYPE_CPU);
    size_t l = interleave ? ops_group_size(rt, k, OPS_REDUCE_CAP, sizeof(float)) : 1;
    int chunk = interleave ? 0 : (int)((n + OPS_CLIP_GROUPS - 1) / OPS_CLIP_GROUPS);
    ops_set_local(rt, k, 5, l * sizeof(float), op);
    CLRT_ARG(k, 6, chunk);
    size_t global = (size_t)OPS_CLIP_GROUPS * l;
    clrt_launch(rt, k, 1, &global, &l);
    int groups = OPS_CLIP_GROUPS;
    cl_kernel kc = ops_kernel_ten(rt, "clip_coef", (dten[]){ out, partial }, 2);
    CLRT_ARG(kc, 4, groups);
    CLRT_ARG(kc, 5, max_norm);
    clrt_launch1d(rt, kc, 1);
    dten coef = { out.mem, out.off + 1 };
    cl_kernel ks = ops_kernel_ten(rt, "scale_by", (dten[]){ grads, coef }, 2);
    CLRT_ARG(ks, 4, ni);
    clrt_launch1d(rt, ks, n);
}

void op_grad_accumulate(ops_ctx *ops, dten acc, dten grads, size_t n, int mode, float scale) {
    clrt *rt = ops->rt;
    const char *op = "op_grad_accumulate";
    int ni = ops_int(n, op, "n");
    OPS_REQUIRE(ops_has(acc) && ops_has(grads), op, "missing buffer");
    OPS_REQUIRE(mode >= 0 && mode <= 2, op, "mode %d is not 0, 1 or 2", mode);
    cl_kernel k = ops_kernel_ten(rt, "grad_accumulate", (dten[]){ acc, grads }, 2);
    CLRT_ARG(k, 4, ni);
    CLRT_ARG(k, 5, mode);
    CLRT_ARG(k, 6, scale);
    clrt_launch1d(rt, k, n);
}
