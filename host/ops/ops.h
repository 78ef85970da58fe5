// ops: one host launcher per ResNet operation (forward and backward), float32, on the
// device of a clrt. model/ calls these; they call the kernels of cl/ and CLBlast. Every
// launcher takes the ops_ctx (below) first: its runtime, configuration and GEMM state.
//
// Conventions
// - Activations are channel-major (C, N, H, W): one GEMM covers the whole batch, and every
//   per-channel reduction (batch norm) runs over one contiguous block of N*H*W values.
// - A tensor is a device buffer plus an offset in floats (dten). A dten whose mem is NULL
//   means "not needed": the launcher skips that output (frozen weights, the first layer's
//   input gradient).
// - Backward launchers OVERWRITE their gradient outputs (never accumulate); where two
//   gradients meet (residual connections) the model adds them with op_add.
// - Every launcher validates its shapes and exits with a message on misuse.
// - Everything is deterministic: no floating-point atomics; reductions run in a fixed order.
#ifndef CLTRAIN_OPS_H
#define CLTRAIN_OPS_H

#include "host/ops/gemm_tuning.h"
#include "host/runtime/clrt.h"

typedef struct dten {
    cl_mem mem;
    size_t off;                    // in floats (or int32 elements for label buffers)
} dten;

static inline dten dten_at(dten t, size_t off) { t.off += off; return t; }
static const dten DTEN_NONE = {0, 0};

// ---- configuration, handed down: the ops read no environment and no files ----
// The command layer fills one at start-up from the environment (docs/internals.md) and
// the tuning files (host/cli/startup.c) and hands it down in the ops_ctx; a test sets a field
// of its context's copy. Each performance switch: 0 off, 1 on, -1 the launcher's own rule.
typedef struct ops_config {
    int splitk;                    // CLTRAIN_SPLITK: 0 never splits a GEMM's k (op_gemm)
    int winograd;                  // CLTRAIN_WINOGRAD: Winograd 3x3 convs (-1: on CPUs whose
                                   // GEMMs are CLBlast's)
    int bn_interleave;             // CLTRAIN_BN_INTERLEAVE: batch norm's, op_finite_and's split
                                   // (-1: interleaved on GPUs)
    int gemm_packed;               // CLTRAIN_GEMM_PACKED: op_gemm's packed kernels instead of
                                   // CLBlast (-1: on CPUs)
    int keep_cols;                 // CLTRAIN_KEEP_COLS: 0 = no kept col matrices (the model's
                                   // plan option; session_plan hands it over)
    int has_gemm;                  // 1: gemm is what op_gemm starts with on this device
    tune_config gemm;              // the GEMM tuning that applies (host/tune/tune.h)
    char gemm_source[1100];        // where it came from ("cache /path", "shipped tune/x", ...)
} ops_config;
void ops_config_init(ops_config *c);   // every switch -1, no GEMM tuning

// ---- the context every launcher gets, made by whoever makes the runtime ----
// CLBlast's parameter overrides are per device and process-wide, so op_gemm's state (routine
// override, tuning in force, scratch, shape recorder) is per device too: it lives in an
// ops_shared registry (one per process, made by the command layer or the tests), and every
// ops_ctx on a device (data-parallel replicas on one device) shares that device's state.
struct gemm_state;
typedef struct ops_shared {
    struct gemm_state **gemm;      // one per device, made by ops_ctx_init (host/ops/ops_gemm.c)
    int n;
} ops_shared;                      // zeroed: empty
// Releases the GEMM states and their scratch buffers; accepts a zeroed registry. After every
// context using it is done.
void ops_shared_free(ops_shared *s);

typedef struct ops_ctx {
    clrt *rt;                      // the device the launchers run on
    ops_config cfg;                // a copy of what was handed down; a test sets a field
    struct gemm_state *gemm;       // rt's device's, in the registry given to ops_ctx_init
} ops_ctx;
// A context for rt with configuration cfg (NULL: ops_config_init's) and rt's device's GEMM
// state in s (made there on the device's first context). 0, or 1 with a message. It owns
// nothing: no _free; rt and s must outlive it.
int ops_ctx_init(ops_ctx *o, clrt *rt, const ops_config *cfg, ops_shared *s, char *err,
                 size_t errlen);

// ---- GEMM (CLBlast), row-major: C = alpha * op(A) * op(B) + beta * C ----
void op_gemm(ops_ctx *ops, int trans_a, int trans_b, int m, int n, int k, float alpha,
             dten a, int lda, dten b, int ldb, float beta, dten c, int ldc);

// `count` products at once: the j-th on a + j*stride_a, b + j*stride_b into c + j*stride_c.
void op_gemm_batched(ops_ctx *ops, int trans_a, int trans_b, int m, int n, int k, float alpha,
                     dten a, int lda, size_t stride_a, dten b, int ldb, size_t stride_b,
                     float beta, dten c, int ldc, size_t stride_c, int count);

// The packed path's panel layout of a (rows, cols) matrix, as im2col writes a col matrix for
// it (op_im2col_panels, cl/conv.cl): for each run of 32 columns, its rows rounded up to 8
// (op_gemm_panel_rows), 32 floats per row; columns past cols and rows past rows are 0. The two
// products below read it in place; CPU devices only (op_gemm_packed).
int op_gemm_panel_rows(int rows);
size_t op_gemm_panel_floats(int rows, int cols);
// C (m, n) = alpha * A (m, k) B + beta * C, B (k, n) in the panel layout at bp.
void op_gemm_bpanels(ops_ctx *ops, int m, int n, int k, float alpha, dten a, int lda, dten bp,
                     float beta, dten c, int ldc);
// C (m, n) = alpha * A (m, k) P^T + beta * C, P (n, k) in the panel layout at p.
void op_gemm_nt_panels(ops_ctx *ops, int m, int n, int k, float alpha, dten a, int lda, dten p,
                       float beta, dten c, int ldc);

// ---- conv2d (no bias), weights OIHW ----
typedef struct conv_shape {
    int n, c, h, w;                // input (C, N, H, W)
    int o, kh, kw, stride, pad;    // weights (O, C, KH, KW)
    int oh, ow;                    // output (O, N, OH, OW)
} conv_shape;
void conv_shape_init(conv_shape *s, int n, int c, int h, int w, int o, int k, int stride,
                     int pad);
// Floats of workspace the conv needs (the im2col matrix, (C*KH*KW, N*OH*OW), in either
// layout, and what the data gradient needs; host/ops/ops_conv.c).
size_t conv_workspace_floats(const conv_shape *s);
// out (O, N, OH, OW) = conv(in (C, N, H, W), w (O, C, KH, KW)); work: conv_workspace_floats.
// im2col + GEMM, or for 3x3 stride-1 pad-1 convs Winograd F(2x2, 3x3) where it pays (see
// host/ops/ops_conv.c, ops_config.winograd).
void op_conv2d_forward(ops_ctx *ops, dten out, dten in, dten w, const conv_shape *s, dten work);
// The forward as im2col + GEMM whatever the shape, leaving the col matrix of `in` in `work`
// for op_conv2d_backward_col (the weight gradient needs it anyway).
void op_conv2d_forward_col(ops_ctx *ops, dten out, dten in, dten w, const conv_shape *s,
                           dten work);
// din (C, N, H, W) and dw (O, C, KH, KW) from dout (O, N, OH, OW); either may be DTEN_NONE.
void op_conv2d_backward(ops_ctx *ops, dten din, dten dw, dten dout, dten in, dten w,
                        const conv_shape *s, dten work);
// The same when `work` still holds what op_conv2d_forward_col of `in` left in it (the col
// matrix): the weight gradient skips the im2col. The caller keeps one workspace per conv.
void op_conv2d_backward_col(ops_ctx *ops, dten din, dten dw, dten dout, dten in, dten w,
                            const conv_shape *s, dten work);
// The layout kernels on their own (tested against the C reference).
void op_im2col(ops_ctx *ops, dten col, dten in, const conv_shape *s);   // col (C*KH*KW, N*OH*OW)
// The col matrix in the packed path's panel layout (op_gemm_panel_floats(C*KH*KW, N*OH*OW)).
void op_im2col_panels(ops_ctx *ops, dten col, dten in, const conv_shape *s);
void op_col2im(ops_ctx *ops, dten in, dten col, const conv_shape *s);   // gather-sum, overwrite

// ---- batchnorm2d over (C, M) with M = N*H*W; eps 1e-5, momentum 0.1 in the ResNets ----
// Training mode: normalise with the batch mean and biased variance; save mean and 1/sqrt(var+eps)
// for backward; running_mean/running_var updated with momentum, the variance unbiased (PyTorch).
void op_bn_forward_train(ops_ctx *ops, dten out, dten save_mean, dten save_invstd,
                         dten running_mean, dten running_var, dten in, dten gamma,
                         dten beta, int c, int m, float momentum, float eps);
// Eval mode: normalise with the running statistics.
void op_bn_forward_eval(ops_ctx *ops, dten out, dten in, dten gamma, dten beta,
                        dten running_mean, dten running_var, int c, int m, float eps);
// Training-mode backward; din, dgamma, dbeta may each be DTEN_NONE.
void op_bn_backward_train(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                          dten gamma, dten save_mean, dten save_invstd, int c, int m);
// Eval-mode backward (statistics are constants); din, dgamma, dbeta may be DTEN_NONE.
void op_bn_backward_eval(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout, dten in,
                         dten gamma, dten running_mean, dten running_var, int c, int m,
                         float eps);
// Batch norm followed by relu, fused (BasicBlock's bn1 + relu, the stem): out = relu(bn(in)),
// bit for bit what op_bn_forward_* then op_relu_forward give, in one pass.
void op_bn_relu_forward_train(ops_ctx *ops, dten out, dten save_mean, dten save_invstd,
                              dten running_mean, dten running_var, dten in, dten gamma,
                              dten beta, int c, int m, float momentum, float eps);
void op_bn_relu_forward_eval(ops_ctx *ops, dten out, dten in, dten gamma, dten beta,
                             dten running_mean, dten running_var, int c, int m, float eps);
// Their backward: dout is the gradient of the relu's output `out` (C, M); the same results
// as op_relu_backward (on out) then op_bn_backward_*, without the intermediate tensor.
void op_bn_relu_backward_train(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout,
                               dten out, dten in, dten gamma, dten save_mean,
                               dten save_invstd, int c, int m);
void op_bn_relu_backward_eval(ops_ctx *ops, dten din, dten dgamma, dten dbeta, dten dout,
                              dten out, dten in, dten gamma, dten running_mean,
                              dten running_var, int c, int m, float eps);

// ---- element-wise, n floats ----
void op_relu_forward(ops_ctx *ops, dten out, dten in, size_t n);
// din = dout where out > 0 (PyTorch's threshold_backward on the result); may run in place.
void op_relu_backward(ops_ctx *ops, dten din, dten dout, dten out, size_t n);
void op_add(ops_ctx *ops, dten out, dten a, dten b, size_t n);
void op_add_relu(ops_ctx *ops, dten out, dten a, dten b, size_t n);   // relu(a + b)

// ---- activations of MobileNet / EfficientNet, n floats (host/ops/ops_act.c, cl/act.cl) ----
// The same order as model/model.h's act_kind (ACT_RELU ... ACT_SIGMOID); keep the two in step.
typedef enum {
    OP_ACT_RELU,                   // PyTorch relu
    OP_ACT_RELU6,                  // hardtanh(x, 0, 6)
    OP_ACT_HARDSWISH,              // x * relu6(x + 3) / 6
    OP_ACT_HARDSIGMOID,            // relu6(x + 3) / 6
    OP_ACT_SILU,                   // x * sigmoid(x)
    OP_ACT_SIGMOID
} op_act;
// out = f(in), PyTorch 1.13's formulas in their order of operations; may run in place.
void op_act_forward(ops_ctx *ops, op_act kind, dten out, dten in, size_t n);
// din = dout * f'(in), from the forward INPUT (PyTorch's *_backward kernels, their boundary
// cases included; hardswish at x = 3 gives dout * 1.5, as its scalar and CUDA paths do);
// overwrites din; may run in place on dout.
void op_act_backward(ops_ctx *ops, op_act kind, dten din, dten dout, dten in, size_t n);

// ---- channel scale (squeeze-and-excitation's gate): x (C, N, H, W) times s (C, N) ----
// out = x * s[c, n] over each plane (cn = C*N planes of hw values); out may alias x.
void op_channel_scale_forward(ops_ctx *ops, dten out, dten x, dten s, int cn, int hw);
// dx = dout * s[c, n]; ds[c, n] = sum over the plane of dout * x (in order). Either output may
// be DTEN_NONE; dx may alias dout.
void op_channel_scale_backward(ops_ctx *ops, dten dx, dten ds, dten dout, dten x, dten s, int cn,
                               int hw);

// ---- max pool (PyTorch MaxPool2d: padding never wins, first maximum in scan order) ----
typedef struct pool_shape { int n, c, h, w, k, stride, pad, oh, ow; } pool_shape;
void pool_shape_init(pool_shape *s, int n, int c, int h, int w, int k, int stride, int pad);
// out (C, N, OH, OW); argmax (C, N, OH, OW) int32 index into the H*W plane.
void op_maxpool_forward(ops_ctx *ops, dten out, dten argmax, dten in, const pool_shape *s);
void op_maxpool_backward(ops_ctx *ops, dten din, dten dout, dten argmax, const pool_shape *s);

// ---- adaptive average pool to 1x1: (C, N, HW) -> (C, N) ----
void op_avgpool_forward(ops_ctx *ops, dten out, dten in, int c, int n, int hw);
void op_avgpool_backward(ops_ctx *ops, dten din, dten dout, int c, int n, int hw);

// ---- linear with bias: out (K, N) = w (K, I) * x (I, N) + b (K) ----
void op_linear_forward(ops_ctx *ops, dten out, dten x, dten w, dten b, int k, int i, int n);
// dx (I, N), dw (K, I), db (K); any may be DTEN_NONE.
void op_linear_backward(ops_ctx *ops, dten dx, dten dw, dten db, dten dout, dten x, dten w,
                        int k, int i, int n);

// ---- softmax cross-entropy, mean over the batch, fused with its gradient ----
// logits (K, N), labels int32 (N). losses (N) per-sample -log softmax; loss_mean (1) their
// mean; dlogits (K, N) = (softmax - onehot) / N. Stable (log-sum-exp).
void op_xent_forward_backward(ops_ctx *ops, dten loss_mean, dten losses, dten dlogits,
                              dten logits, dten labels, int k, int n);
// The same with CrossEntropyLoss(label_smoothing=smoothing): targets (1 - s) onehot + s / K,
// dlogits = (softmax - targets) / N; smoothing 0 gives op_xent_forward_backward's bits.
void op_xent_smooth_forward_backward(ops_ctx *ops, dten loss_mean, dten losses, dten dlogits,
                                     dten logits, dten labels, int k, int n, float smoothing);

// ---- SGD with momentum over one contiguous range of n parameters (PyTorch's SGD):
// g = grad + weight_decay * p; buf = first_step ? g : momentum * buf + g; p -= lr * buf.
// With momentum == 0 the buffer is not used: p -= lr * g.
void op_sgd_step(ops_ctx *ops, dten params, dten grads, dten bufs, size_t n, float lr,
                 float momentum, float weight_decay, int first_step);
// The same, guarded: guard (one int32) is 1 when the step may update; otherwise nothing is
// written (the trainer's on-device skip of a non-finite step).
void op_sgd_step_guarded(ops_ctx *ops, dten params, dten grads, dten bufs, size_t n, float lr,
                         float momentum, float weight_decay, int first_step, dten guard);

// ---- the optimizers of host/train/optim.h (cl/optim.cl); any guarded launch writes
// nothing unless guard (one int32) is 1, as op_sgd_step_guarded ----
// A per-float weight-decay selector sel (uchar, n; DTEN_NONE: every float takes `decay`):
// 1 for a batch-norm weight or bias, which takes `norm_decay` (--norm-weight-decay).
typedef struct op_sgd_args {
    float lr, momentum, decay, norm_decay;
    int nesterov;                  // torch.optim.SGD(nesterov=True): g + momentum * buf
    int first_step;                // buf = g (torch clones the first gradient)
} op_sgd_args;
// SGD over n parameters, op_sgd_step's float operations plus Nesterov and the selector.
void op_sgd_step_ex(ops_ctx *ops, dten params, dten grads, dten bufs, dten sel, dten guard,
                    size_t n, const op_sgd_args *a);
// Hyperparameters in double: torch computes the bias corrections and AdamW's 1 - lr * wd
// in Python floats; the kernel gets them rounded once.
typedef struct op_adam_args {
    double lr, beta1, beta2, eps, decay, norm_decay;
    int decoupled;                 // 1: AdamW (p *= 1 - lr * wd); 0: Adam (g += wd * p)
    long step;                     // this step's number, from 1 (torch's state['step'])
} op_adam_args;
// torch.optim.Adam/AdamW (amsgrad off) over n parameters with moments exp_avg, exp_avg_sq.
void op_adam_step(ops_ctx *ops, dten params, dten grads, dten exp_avg, dten exp_avg_sq, dten sel,
                  dten guard, size_t n, const op_adam_args *a);
// torch.nn.utils.clip_grad_norm_(max_norm) over grads (n) on the device, no host read:
// partial (OPS_CLIP_GROUPS floats) is scratch; out (2 floats) gets the total 2-norm and the
// coefficient min(max_norm / (norm + 1e-6), 1) that every gradient is then multiplied by.
enum { OPS_CLIP_GROUPS = 64 };
void op_clip_grad_norm(ops_ctx *ops, dten grads, size_t n, float max_norm, dten partial, dten out);
// Accumulation over micro-batches: mode 0 acc = grads, 1 acc += grads, 2 grads = (acc +
// grads) * scale (the last one: the mean back into the gradient arena).
void op_grad_accumulate(ops_ctx *ops, dten acc, dten grads, size_t n, int mode, float scale);

// ---- checks ----
// 1 when all n floats are finite (deterministic; reads back one int).
int op_all_finite(ops_ctx *ops, dten x, size_t n, dten scratch_int);
// The same without the read: flag (one int32) gets 1 or 0 on the device (the trainer reads
// several flags and the loss in one transfer).
void op_all_finite_flag(ops_ctx *ops, dten flag, dten x, size_t n);
// The sticky form: flag (one int32) is set to 0 when a float is not finite and left as it is
// otherwise, so one flag can AND several checks (and steps) without a pass to combine them.
void op_finite_and(ops_ctx *ops, dten flag, dten x, size_t n);

#endif
