// Batch norm over (C, M), M = N*H*W, in training and eval mode (PyTorch's BatchNorm2d).
#include "host/ops/ops_internal.h"

static void bn_check(int c, int m, const char *op) {
    OPS_REQUIRE(c > 0 && m > 0, op, "bad sizes c=%d m=%d", c, m);
    ops_int((size_t)c * m, op, "C*M");
}

// Work items per channel of the reducing kernels: on a CPU device a work-group runs as a
// loop on one core, so a few items (each reading a long contiguous run with float16 loads)
// do best (4, 8, 16 within noise of each other on pocl, 64 ~15% slower); elsewhere the usual
// reduction width. The channels give the parallelism (64 or more in ResNet).
static size_t bn_group_size(clrt *rt, cl_kernel k, size_t local_bytes_per_item) {
    size_t cap = (rt->dev.type & CL_DEVICE_TYPE_CPU) ? 8 : OPS_REDUCE_CAP;
    return ops_group_size(rt, k, cap, local_bytes_per_item);
}

// How the reducing kernels split a channel among a group's items (cl/bn.cl): contiguous runs
// on a CPU, interleaved vectors elsewhere (coalesced loads on a GPU). ops_config.bn_interleave
// (CLTRAIN_BN_INTERLEAVE, 0 or 1) overrides it, for tests and comparisons.
static int bn_interleave(const ops_ctx *ops) {
    const clrt *rt = ops->rt;
    int sw = OPS_SWITCH(ops, bn_interleave);
    return sw >= 0 ? sw : !(rt->dev.type & CL_DEVICE_TYPE_CPU);
}

// Launch a one-work-group-per-channel kernel whose last two arguments are the split
// (bn_interleave) at `arg` and a float scratch of `per_item` floats per work item plus 2.
static void bn_launch_channels(ops_ctx *ops, cl_kernel k, cl_uint arg, int c, size_t per_item,
                               const char *op) {
    clrt *rt = ops->rt;
    int il = bn_interleave(ops);
    CLRT_ARG(k, arg, il);
    size_t l = bn_group_size(rt, k, (per_item + 2) * sizeof(float));
    ops_set_local(rt, k, arg + 1, (l * per_item + 2) * sizeof(float), op);
    size_t global = (size_t)c * l;
    clrt_launch(rt, k, 1, &global, &l);
}

// Training-mode forward of (C, M): batch statistics, normalisation, the relu when `relu`.
static void bn_forward_train(ops_ctx *ops, dten out, dten save_mean, dten save_invstd,
                             dten running_mean, dten running_var, dten in, dten gamma,
                             dten beta, int c, int m, float momentum, float eps, int relu,
                             const char *op) {
    clrt *rt = ops->rt;
    bn_check(c, m, op);
    // PyTorch: "Expected more than 1 value per channel when training".
    OPS_REQUIRE(m > 1, op, "training needs more than 1 value per channel (m=%d)", m);
    OPS_REQUIRE(ops_has(out) && ops_has(save_mean) && ops_has(save_invstd) && ops_has(in) &&
                    ops_has(gamma) && ops_has(beta),
                op, "missing buffer");
    OPS_REQUIRE(ops_has(running_mean) == ops_has(running_var), op,
                "running_mean and running_var go together");
    int update = ops_has(running_mean) && ops_has(running_var);
    dten ts[] = {out, save_mean, save_invstd, running_mean, running_var, in, gamma, beta};
    cl_kernel k = ops_kernel_ten(rt, "bn_forward_train", ts, 8);
    CLRT_ARG(k, 16, c);
    CLRT_ARG(k, 17, m);
    CLRT_ARG(k, 18, momentum);
    CLRT_ARG(k, 19, eps);
    CLRT_ARG(k, 20, update);
    CLRT_ARG(k, 21, relu);
    bn_launch_channels(ops, k, 22, c, 2, op);
}

// Eval-mode forward: normalise with the running statistics, the relu when `relu`.
static void bn_forward_eval(clrt *rt, dten out, dten in, dten gamma, dten beta,
                            dten running_mean, dten running_var, int c, int m, float eps,
                            int relu, const char *op) {
    bn_check(c, m, op);
    OPS_REQUIRE(ops_has(out) && ops_has(in) && ops_has(gamma) && ops_has(beta) &&
                    ops_has(running_mean) && ops_has(running_var),
                op, "missing buffer");
    cl_kernel k = ops_kernel_ten(rt, "bn_forward_eval",
                                 (dten[]){out, in, gamma, beta, running_mean, running_var}, 6);
    CLRT_ARG(k, 12, c);
    CLRT_ARG(k, 13, m);
    CLRT_ARG(k, 14, eps);
    CLRT_ARG(k, 15, relu);
    // Items of a group walk one channel's contiguous elements.
    size_t global[2] = {(size_t)m, (size_t)c}, local[2] = {64, 1};
    clrt_launch(rt, k, 2, global, local);
}

void op_bn_forward_train(ops_ctx *ops, dten out, dten save_mean, dten save_invstd,
                         dten running_mean, dten running_var, dten in, dten gamma,
                         dten beta, int c, int m, float momentum, float eps) {
    bn_forward_train(ops, out, save_mean, save_invstd, running_mean, running_var, in, gamma,
                     beta, c, m, momentum, eps, 0, "op_bn_forward_train");
}

void op_bn_relu_forward_train(ops_ctx *ops, dten out, dten save_mean, dten save_invstd,
                              dten running_mean, dten running_var, dten in, dten gamma,
                              dten beta, int c, int m, float momentum, float eps) {
    bn_forward_train(ops, out, save_mean, save_invstd, running_mean, running_var, in, gamma,
                     beta, c, m, momentum, eps, 1, "op_bn_relu_forward_train");
}

void op_bn_forward_eval(ops_ctx *ops, dten out, dten in, dten gamma, dten beta,
                        dten running_mean, dten running_var, int c, int m, float eps) {
    clrt *rt = ops->rt;
    bn_forward_eval(rt, out, in, gamma, beta, running_mean, running_var, c, m, eps, 0,
                    "op_bn_forward_eval");
}

void op_bn_relu_forward_eval(ops_ctx *ops, dten out, dten in, dten gamma, dten beta,
                             dten running_mean, dten running_var, int c, int m, float eps) {
    clrt *rt = ops->rt;
    bn_forward_eval(rt, out, in, gamma, beta, running_mean, running_var, c, m, eps, 1,
                    "op_bn_relu_forward_eval");
}

// Both backward modes, with or without the relu: mean/stat are (save_mean, save_invstd) in
// training mode and (running_mean, running_var) in eval mode; yrelu is the relu's output
// when `relu`.
static void bn_backward(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout, dten yrelu,
                        dten in, dten gamma, dten mean, dten stat, int c, int m, int train,
                        float eps, int relu, const char *op) {
    clrt *rt = ops->rt;
    bn_check(c, m, op);
    OPS_REQUIRE(ops_has(dout) && ops_has(in) && ops_has(gamma) && ops_has(mean) &&
                    ops_has(stat) && (!relu || ops_has(yrelu)),
                op, "missing buffer");
    int want = (ops_has(din) ? 1 : 0) | (ops_has(dgamma) ? 2 : 0) | (ops_has(dbeta) ? 4 : 0);
    if (!want) return;
    dten yr = relu ? yrelu : dout;   // not read without the relu
    dten ts[] = {din, dgamma, dbeta, dout, in, yr, gamma, mean, stat};
    cl_kernel k = ops_kernel_ten(rt, "bn_backward", ts, 9);
    CLRT_ARG(k, 18, c);
    CLRT_ARG(k, 19, m);
    CLRT_ARG(k, 20, train);
    CLRT_ARG(k, 21, eps);
    CLRT_ARG(k, 22, want);
    CLRT_ARG(k, 23, relu);
    bn_launch_channels(ops, k, 24, c, 2, op);
}

void op_bn_backward_train(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                          dten gamma, dten save_mean, dten save_invstd, int c, int m) {
    bn_backward(ops, din, dgamma, dbeta, dout, DTEN_NONE, in, gamma, save_mean, save_invstd, c,
                m, 1, 0.0f, 0, "op_bn_backward_train");
}

void op_bn_relu_backward_train(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout,
                               dten out, dten in, dten gamma, dten save_mean,
                               dten save_invstd, int c, int m) {
    bn_backward(ops, din, dgamma, dbeta, dout, out, in, gamma, save_mean, save_invstd, c, m, 1,
                0.0f, 1, "op_bn_relu_backward_train");
}

void op_bn_backward_eval(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                         dten gamma, dten running_mean, dten running_var, int c, int m,
                         float eps) {
    bn_backward(ops, din, dgamma, dbeta, dout, DTEN_NONE, in, gamma, running_mean, running_var,
                c, m, 0, eps, 0, "op_bn_backward_eval");
}

void op_bn_relu_backward_eval(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout,
                              dten out, dten in, dten gamma, dten running_mean,
                              dten running_var, int c, int m, float eps) {
    bn_backward(ops, din, dgamma, dbeta, dout, out, in, gamma, running_mean, running_var, c, m,
                0, eps, 1, "op_bn_relu_backward_eval");
}
