// Batch norm over (C, M), M = N*H*W, in training and eval mode (PyTorch's BatchNorm2d).
#include "host/ops_internal.h"

static void bn_check(int c, int m, const char *op) {
    OPS_REQUIRE(c > 0 && m > 0, op, "bad sizes c=%d m=%d", c, m);
    ops_int((size_t)c * m, op, "C*M");
}

// Launch a one-work-group-per-channel kernel whose last argument `arg` is a float scratch.
static void bn_launch_channels(clrt *rt, cl_kernel k, cl_uint arg, int c, const char *op) {
    size_t l = ops_group_size(rt, k, OPS_REDUCE_CAP, sizeof(float));
    ops_set_local(rt, k, arg, l * sizeof(float), op);
    size_t global = (size_t)c * l;
    clrt_launch(rt, k, 1, &global, &l);
}

// Per-channel batch mean and invstd; running statistics updated when both are given.
static void bn_stats_train(clrt *rt, dten save_mean, dten save_invstd, dten running_mean,
                           dten running_var, dten in, int c, int m, float momentum,
                           float eps) {
    int update = ops_has(running_mean) && ops_has(running_var);
    cl_kernel k = clrt_kernel(rt, "bn_stats_train");
    ops_arg_ten(k, 0, save_mean);
    ops_arg_ten(k, 2, save_invstd);
    ops_arg_ten(k, 4, running_mean);
    ops_arg_ten(k, 6, running_var);
    ops_arg_ten(k, 8, in);
    CLRT_ARG(k, 10, c);
    CLRT_ARG(k, 11, m);
    CLRT_ARG(k, 12, momentum);
    CLRT_ARG(k, 13, eps);
    CLRT_ARG(k, 14, update);
    bn_launch_channels(rt, k, 15, c, "op_bn_forward_train");
}

// out = x * (invstd * gamma) + (beta - mean * invstd * gamma); stat is invstd, or the
// variance when stat_is_var.
static void bn_apply(clrt *rt, dten out, dten in, dten mean, dten stat, dten gamma,
                     dten beta, int c, int m, int stat_is_var, float eps) {
    cl_kernel k = clrt_kernel(rt, "bn_apply");
    ops_arg_ten(k, 0, out);
    ops_arg_ten(k, 2, in);
    ops_arg_ten(k, 4, mean);
    ops_arg_ten(k, 6, stat);
    ops_arg_ten(k, 8, gamma);
    ops_arg_ten(k, 10, beta);
    CLRT_ARG(k, 12, c);
    CLRT_ARG(k, 13, m);
    CLRT_ARG(k, 14, stat_is_var);
    CLRT_ARG(k, 15, eps);
    clrt_launch1d(rt, k, (size_t)c * m);
}

void op_bn_forward_train(clrt *rt, dten out, dten save_mean, dten save_invstd,
                         dten running_mean, dten running_var, dten in, dten gamma,
                         dten beta, int c, int m, float momentum, float eps) {
    const char *op = "op_bn_forward_train";
    bn_check(c, m, op);
    // PyTorch: "Expected more than 1 value per channel when training".
    OPS_REQUIRE(m > 1, op, "training needs more than 1 value per channel (m=%d)", m);
    OPS_REQUIRE(ops_has(out) && ops_has(save_mean) && ops_has(save_invstd) && ops_has(in) &&
                    ops_has(gamma) && ops_has(beta),
                op, "missing buffer");
    OPS_REQUIRE(ops_has(running_mean) == ops_has(running_var), op,
                "running_mean and running_var go together");
    bn_stats_train(rt, save_mean, save_invstd, running_mean, running_var, in, c, m, momentum,
                   eps);
    bn_apply(rt, out, in, save_mean, save_invstd, gamma, beta, c, m, 0, eps);
}

void op_bn_forward_eval(clrt *rt, dten out, dten in, dten gamma, dten beta,
                        dten running_mean, dten running_var, int c, int m, float eps) {
    const char *op = "op_bn_forward_eval";
    bn_check(c, m, op);
    OPS_REQUIRE(ops_has(out) && ops_has(in) && ops_has(gamma) && ops_has(beta) &&
                    ops_has(running_mean) && ops_has(running_var),
                op, "missing buffer");
    bn_apply(rt, out, in, running_mean, running_var, gamma, beta, c, m, 1, eps);
}

// Both backward modes: mean/stat are (save_mean, save_invstd) in training mode and
// (running_mean, running_var) in eval mode.
static void bn_backward(clrt *rt, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                        dten gamma, dten mean, dten stat, int c, int m, int train,
                        float eps) {
    int want = (ops_has(din) ? 1 : 0) | (ops_has(dgamma) ? 2 : 0) | (ops_has(dbeta) ? 4 : 0);
    if (!want) return;
    cl_kernel k = clrt_kernel(rt, "bn_backward");
    ops_arg_ten(k, 0, din);
    ops_arg_ten(k, 2, dgamma);
    ops_arg_ten(k, 4, dbeta);
    ops_arg_ten(k, 6, dout);
    ops_arg_ten(k, 8, in);
    ops_arg_ten(k, 10, gamma);
    ops_arg_ten(k, 12, mean);
    ops_arg_ten(k, 14, stat);
    CLRT_ARG(k, 16, c);
    CLRT_ARG(k, 17, m);
    CLRT_ARG(k, 18, train);
    CLRT_ARG(k, 19, eps);
    CLRT_ARG(k, 20, want);
    bn_launch_channels(rt, k, 21, c,
                       train ? "op_bn_backward_train" : "op_bn_backward_eval");
}

void op_bn_backward_train(clrt *rt, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                          dten gamma, dten save_mean, dten save_invstd, int c, int m) {
    const char *op = "op_bn_backward_train";
    bn_check(c, m, op);
    OPS_REQUIRE(ops_has(dout) && ops_has(in) && ops_has(gamma) && ops_has(save_mean) &&
                    ops_has(save_invstd),
                op, "missing buffer");
    bn_backward(rt, din, dgamma, dbeta, dout, in, gamma, save_mean, save_invstd, c, m, 1,
                0.0f);
}

void op_bn_backward_eval(clrt *rt, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                         dten gamma, dten running_mean, dten running_var, int c, int m,
                         float eps) {
    const char *op = "op_bn_backward_eval";
    bn_check(c, m, op);
    OPS_REQUIRE(ops_has(dout) && ops_has(in) && ops_has(gamma) && ops_has(running_mean) &&
                    ops_has(running_var),
                op, "missing buffer");
    bn_backward(rt, din, dgamma, dbeta, dout, in, gamma, running_mean, running_var, c, m, 0,
                eps);
}
