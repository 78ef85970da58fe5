// Element-wise ops, pooling, the loss, the optimizer step and the finiteness check.
#include "host/ops/ops_internal.h"

#include <string.h>

// ---- element-wise ----

void op_relu_forward(ops_ctx *ops, dten out, dten in, size_t n) {
    clrt *rt = ops->rt;
    ops_launch_ew(rt, "relu_forward", "op_relu_forward", n, (dten[]){out, in}, 2);
}

void op_relu_backward(ops_ctx *ops, dten din, dten dout, dten out, size_t n) {
    clrt *rt = ops->rt;
    ops_launch_ew(rt, "relu_backward", "op_relu_backward", n, (dten[]){din, dout, out}, 3);
}

void op_add(ops_ctx *ops, dten out, dten a, dten b, size_t n) {
    clrt *rt = ops->rt;
    ops_launch_ew(rt, "add", "op_add", n, (dten[]){out, a, b}, 3);
}

void op_add_relu(ops_ctx *ops, dten out, dten a, dten b, size_t n) {
    clrt *rt = ops->rt;
    ops_launch_ew(rt, "add_relu", "op_add_relu", n, (dten[]){out, a, b}, 3);
}

// ---- max pool ----

void pool_shape_init(pool_shape *s, int n, int c, int h, int w, int k, int stride, int pad) {
    const char *op = "pool_shape_init";
    OPS_REQUIRE(n > 0 && c > 0 && h > 0 && w > 0 && k > 0 && stride > 0 && pad >= 0, op,
                "bad pool n=%d c=%d h=%d w=%d k=%d stride=%d pad=%d", n, c, h, w, k, stride,
                pad);
    // PyTorch: "pad should be at most half of kernel size" (so no window is all padding).
    OPS_REQUIRE(2 * pad <= k, op, "pad %d is more than half the kernel %d", pad, k);
    OPS_REQUIRE(h + 2 * pad >= k && w + 2 * pad >= k, op,
                "kernel %d larger than the padded input %dx%d (pad %d)", k, h, w, pad);
    *s = (pool_shape){.n = n, .c = c, .h = h, .w = w, .k = k, .stride = stride, .pad = pad};
    s->oh = (h + 2 * pad - k) / stride + 1;   // floor mode
    s->ow = (w + 2 * pad - k) / stride + 1;
}

static void pool_check(const pool_shape *s, const char *op) {
    OPS_REQUIRE(s->n > 0 && s->c > 0 && s->oh > 0 && s->ow > 0, op,
                "pool_shape not initialised (use pool_shape_init)");
    ops_int((size_t)s->c * s->n * s->h * s->w, op, "C*N*H*W");
}

// ResNet's 3x3 stride-2 pool has its own backward kernel (2-D range, written-out window),
// which splits plane indices with float arithmetic exact below 2^30 (cl/pool.cl, pool_div).
static int pool_is_k3s2(const pool_shape *s) {
    return s->k == 3 && s->stride == 2 && (size_t)s->h * s->w < (1u << 30);
}

// The 2-D range (plane positions, C*N planes) of the _k3s2 kernel.
static void pool_launch_planes(clrt *rt, cl_kernel k, size_t positions, const pool_shape *s) {
    size_t global[2] = {positions, (size_t)s->c * s->n}, local[2] = {64, 1};
    clrt_launch(rt, k, 2, global, local);
}

static void pool_layout_args(cl_kernel k, cl_uint i, const pool_shape *s) {
    CLRT_ARG(k, i + 0, s->n);
    CLRT_ARG(k, i + 1, s->c);
    CLRT_ARG(k, i + 2, s->h);
    CLRT_ARG(k, i + 3, s->w);
    CLRT_ARG(k, i + 4, s->k);
    CLRT_ARG(k, i + 5, s->stride);
    CLRT_ARG(k, i + 6, s->pad);
    CLRT_ARG(k, i + 7, s->oh);
    CLRT_ARG(k, i + 8, s->ow);
}

// Both directions: kernel `name` (`name_k3s2` for that shape) with the tensors ts[0..3) and
// the layout, one work item per element of the (C, N, plane) maps it writes.
static void maxpool_launch(clrt *rt, const char *name, const char *name_k3s2, const char *op,
                           const dten ts[3], const pool_shape *s, size_t plane) {
    pool_check(s, op);
    OPS_REQUIRE(ops_has(ts[0]) && ops_has(ts[1]) && ops_has(ts[2]), op, "missing buffer");
    int k3s2 = pool_is_k3s2(s);
    cl_kernel k = ops_kernel_ten(rt, k3s2 ? name_k3s2 : name, ts, 3);
    pool_layout_args(k, 6, s);
    if (k3s2)
        pool_launch_planes(rt, k, plane, s);
    else
        clrt_launch1d(rt, k, (size_t)s->c * s->n * plane);
}

void op_maxpool_forward(ops_ctx *ops, dten out, dten argmax, dten in, const pool_shape *s) {
    clrt *rt = ops->rt;
    maxpool_launch(rt, "maxpool_forward", "maxpool_forward_k3s2", "op_maxpool_forward",
                   (dten[]){out, argmax, in}, s, (size_t)s->oh * s->ow);
}

void op_maxpool_backward(ops_ctx *ops, dten din, dten dout, dten argmax, const pool_shape *s) {
    clrt *rt = ops->rt;
    maxpool_launch(rt, "maxpool_backward", "maxpool_backward_k3s2", "op_maxpool_backward",
                   (dten[]){din, dout, argmax}, s, (size_t)s->h * s->w);
}

// ---- global average pool ----

// Both directions over (C*N, HW) maps: kernel `name` with the tensors ts[0..2), one work item
// per map, or per element when `per_element`.
static void avgpool_launch(clrt *rt, const char *name, const char *op, const dten ts[2], int c,
                           int n, int hw, int per_element) {
    OPS_REQUIRE(c > 0 && n > 0 && hw > 0, op, "bad sizes c=%d n=%d hw=%d", c, n, hw);
    int cn = ops_int((size_t)c * n, op, "C*N");
    ops_int((size_t)cn * hw, op, "C*N*HW");
    OPS_REQUIRE(ops_has(ts[0]) && ops_has(ts[1]), op, "missing buffer");
    cl_kernel k = ops_kernel_ten(rt, name, ts, 2);
    CLRT_ARG(k, 4, cn);
    CLRT_ARG(k, 5, hw);
    clrt_launch1d(rt, k, per_element ? (size_t)cn * hw : (size_t)cn);
}

void op_avgpool_forward(ops_ctx *ops, dten out, dten in, int c, int n, int hw) {
    clrt *rt = ops->rt;
    avgpool_launch(rt, "avgpool_forward", "op_avgpool_forward", (dten[]){out, in}, c, n, hw, 0);
}

void op_avgpool_backward(ops_ctx *ops, dten din, dten dout, int c, int n, int hw) {
    clrt *rt = ops->rt;
    avgpool_launch(rt, "avgpool_backward", "op_avgpool_backward", (dten[]){din, dout}, c, n, hw,
                   1);
}

// ---- softmax cross-entropy ----

void op_xent_forward_backward(ops_ctx *ops, dten loss_mean, dten losses, dten dlogits,
                              dten logits, dten labels, int k, int n) {
    op_xent_smooth_forward_backward(ops, loss_mean, losses, dlogits, logits, labels, k, n, 0.0f);
}

void op_xent_smooth_forward_backward(ops_ctx *ops, dten loss_mean, dten losses, dten dlogits,
                                     dten logits, dten labels, int k, int n, float smoothing) {
    clrt *rt = ops->rt;
    const char *op = "op_xent_forward_backward";
    OPS_REQUIRE(smoothing >= 0.0f && smoothing <= 1.0f, op, "label smoothing %g outside [0, 1]",
                (double)smoothing);
    OPS_REQUIRE(k > 0 && n > 0, op, "bad sizes k=%d n=%d", k, n);
    ops_int((size_t)k * n, op, "K*N");
    OPS_REQUIRE(ops_has(logits) && ops_has(labels), op, "missing buffer");
    int want = (ops_has(loss_mean) ? 1 : 0) | (ops_has(losses) ? 2 : 0) |
               (ops_has(dlogits) ? 4 : 0);
    if (!want) return;
    cl_kernel kr = ops_kernel_ten(rt, "xent_forward_backward",
                                  (dten[]){loss_mean, losses, dlogits, logits, labels}, 5);
    CLRT_ARG(kr, 10, k);
    CLRT_ARG(kr, 11, n);
    CLRT_ARG(kr, 12, want);
    // One work-group; the per-sample losses wait in local memory for the ordered mean.
    ops_set_local(rt, kr, 13, (size_t)n * sizeof(float), op);
    CLRT_ARG(kr, 14, smoothing);
    size_t l = ops_group_size(rt, kr, OPS_REDUCE_CAP, 0);
    clrt_launch(rt, kr, 1, &l, &l);
}

// ---- SGD ----

static void sgd_launch(clrt *rt, dten params, dten grads, dten bufs, size_t n, float lr,
                       float momentum, float weight_decay, int first_step, dten guard) {
    const char *op = "op_sgd_step";
    int ni = ops_int(n, op, "n");
    OPS_REQUIRE(ops_has(params) && ops_has(grads), op, "missing buffer");
    OPS_REQUIRE(momentum == 0.0f || ops_has(bufs), op, "momentum %g needs momentum buffers",
                (double)momentum);
    int first = first_step ? 1 : 0, guarded = ops_has(guard);
    if (!guarded) guard = params;  // a valid buffer the kernel does not read
    cl_kernel k = ops_kernel_ten(rt, "sgd_step", (dten[]){params, grads, bufs}, 3);
    CLRT_ARG(k, 6, ni);
    CLRT_ARG(k, 7, lr);
    CLRT_ARG(k, 8, momentum);
    CLRT_ARG(k, 9, weight_decay);
    CLRT_ARG(k, 10, first);
    ops_arg_ten(k, 11, guard);
    CLRT_ARG(k, 13, guarded);
    clrt_launch1d(rt, k, n);
}

void op_sgd_step(ops_ctx *ops, dten params, dten grads, dten bufs, size_t n, float lr,
                 float momentum, float weight_decay, int first_step) {
    clrt *rt = ops->rt;
    sgd_launch(rt, params, grads, bufs, n, lr, momentum, weight_decay, first_step, (dten){0});
}

void op_sgd_step_guarded(ops_ctx *ops, dten params, dten grads, dten bufs, size_t n, float lr,
                         float momentum, float weight_decay, int first_step, dten guard) {
    clrt *rt = ops->rt;
    OPS_REQUIRE(ops_has(guard), "op_sgd_step", "missing guard");
    sgd_launch(rt, params, grads, bufs, n, lr, momentum, weight_decay, first_step, guard);
}

// ---- checks ----

// How many items scan, and in which pattern (cl/elementwise.cl all_finite): on a CPU a few
// groups of one item per compute unit, each over a contiguous run; elsewhere interleaved
// groups of up to 256, enough to fill the device. Sized by n and the device only.
// ops_config.bn_interleave (CLTRAIN_BN_INTERLEAVE) picks the pattern, as for batch norm.
void op_finite_and(ops_ctx *ops, dten flag, dten x, size_t n) {
    clrt *rt = ops->rt;
    const char *op = "op_all_finite";
    OPS_REQUIRE(ops_has(x) && ops_has(flag), op, "missing buffer");
    if (!n) return;  // nothing to read: the flag stays as it is
    int ni = ops_int(n, op, "n");
    cl_kernel k = ops_kernel_ten(rt, "all_finite", (dten[]){flag, x}, 2);
    int sw = OPS_SWITCH(ops, bn_interleave);
    int interleave = sw >= 0 ? sw : !(rt->dev.type & CL_DEVICE_TYPE_CPU), cpu = !interleave;
    CLRT_ARG(k, 4, ni);
    CLRT_ARG(k, 5, interleave);
    size_t cu = rt->dev.compute_units ? rt->dev.compute_units : 1;
    size_t l = cpu ? 1 : ops_group_size(rt, k, OPS_REDUCE_CAP, 0);
    size_t per_item = cpu ? 16384 : 64;  // floats an item scans at least
    size_t groups = (n + l * per_item - 1) / (l * per_item), cap = cpu ? 4 * cu : 16 * cu;
    if (groups > cap) groups = cap;
    if (groups < 1) groups = 1;
    size_t global = groups * l;
    clrt_launch(rt, k, 1, &global, &l);
}

void op_all_finite_flag(ops_ctx *ops, dten flag, dten x, size_t n) {
    clrt *rt = ops->rt;
    OPS_REQUIRE(ops_has(x) && ops_has(flag), "op_all_finite", "missing buffer");
    clrt_fill_int(rt, flag.mem, flag.off * sizeof(cl_int), sizeof(cl_int), 1);
    op_finite_and(ops, flag, x, n);
}

int op_all_finite(ops_ctx *ops, dten x, size_t n, dten scratch_int) {
    clrt *rt = ops->rt;
    op_all_finite_flag(ops, scratch_int, x, n);
    cl_int flag = 0;
    clrt_read(rt, scratch_int.mem, scratch_int.off * sizeof(cl_int), &flag, sizeof flag);
    return flag == 1;
}

void ops_config_init(ops_config *c) {
    memset(c, 0, sizeof *c);
    c->splitk = c->winograd = c->bn_interleave = c->keep_cols = c->gemm_packed = -1;
    tune_config_init(&c->gemm);
    snprintf(c->gemm_source, sizeof c->gemm_source, "none");
}
