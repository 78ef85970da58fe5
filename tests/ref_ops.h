// Plain-C references of every op of host/ops.h, on host arrays in the same layouts
// (activations (C, N, H, W), weights OIHW, linear (K, I) x (I, N)) and with the same
// PyTorch semantics. Backward references overwrite their outputs; a NULL output is skipped.
//
// Two precisions:
// - The float entry points (ref_xxx) are what the device results are compared against. Ops
//   that are exact or round once (layout, relu, add, maxpool, SGD) compute in float; ops that
//   sum (conv, bn, pools, linear, GEMM, cross-entropy) compute in double and round once, so
//   the tolerance of a test measures the device's error alone.
// - The double versions (ref_xxx_d) are that same code in double, for the finite-difference
//   checks that verify each reference backward against its own forward.
#ifndef CLTRAIN_REF_OPS_H
#define CLTRAIN_REF_OPS_H

#include "host/ops/ops.h"

#include <stddef.h>
#include <stdint.h>

// ---- GEMM, row-major: c = alpha * op(a) * op(b) + beta * c (c not read when beta == 0) ----
void ref_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc);

// ---- conv2d (no bias): in (C, N, H, W), w (O, C, KH, KW), out (O, N, OH, OW) ----
void ref_im2col(float *col, const float *in, const conv_shape *s);   // (C*KH*KW, N*OH*OW)
void ref_col2im(float *in, const float *col, const conv_shape *s);   // adjoint of im2col
void ref_conv2d_forward(float *out, const float *in, const float *w, const conv_shape *s);
void ref_conv2d_backward(float *din, float *dw, const float *dout, const float *in,
                         const float *w, const conv_shape *s);
void ref_conv2d_forward_d(double *out, const double *in, const double *w, const conv_shape *s);
void ref_conv2d_backward_d(double *din, double *dw, const double *dout, const double *in,
                           const double *w, const conv_shape *s);

// ---- batchnorm over (C, M) ----
// Training: save_mean, save_invstd (C); running_mean/running_var updated in place when given.
void ref_bn_forward_train(float *out, float *save_mean, float *save_invstd,
                          float *running_mean, float *running_var, const float *in,
                          const float *gamma, const float *beta, int c, int m,
                          float momentum, float eps);
void ref_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                         const float *running_mean, const float *running_var, int c, int m,
                         float eps);
void ref_bn_backward_train(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *in, const float *gamma, const float *save_mean,
                           const float *save_invstd, int c, int m);
void ref_bn_backward_eval(float *din, float *dgamma, float *dbeta, const float *dout,
                          const float *in, const float *gamma, const float *running_mean,
                          const float *running_var, int c, int m, float eps);
// Batch norm then relu (the fused ops): the compositions of the two references above and
// ref_relu_*, out = relu(bn(in)); backward takes dout of the relu's output `out`.
void ref_bn_relu_forward_train(float *out, float *save_mean, float *save_invstd,
                               float *running_mean, float *running_var, const float *in,
                               const float *gamma, const float *beta, int c, int m,
                               float momentum, float eps);
void ref_bn_relu_forward_eval(float *out, const float *in, const float *gamma,
                              const float *beta, const float *running_mean,
                              const float *running_var, int c, int m, float eps);
void ref_bn_relu_backward_train(float *din, float *dgamma, float *dbeta, const float *dout,
                                const float *out, const float *in, const float *gamma,
                                const float *save_mean, const float *save_invstd, int c, int m);
void ref_bn_relu_backward_eval(float *din, float *dgamma, float *dbeta, const float *dout,
                               const float *out, const float *in, const float *gamma,
                               const float *running_mean, const float *running_var, int c,
                               int m, float eps);
void ref_bn_forward_train_d(double *out, double *save_mean, double *save_invstd,
                            double *running_mean, double *running_var, const double *in,
                            const double *gamma, const double *beta, int c, int m,
                            double momentum, double eps);
void ref_bn_backward_train_d(double *din, double *dgamma, double *dbeta, const double *dout,
                             const double *in, const double *gamma, const double *save_mean,
                             const double *save_invstd, int c, int m);

// ---- element-wise ----
void ref_relu_forward(float *out, const float *in, size_t n);
void ref_relu_backward(float *din, const float *dout, const float *out, size_t n);
void ref_add(float *out, const float *a, const float *b, size_t n);
void ref_add_relu(float *out, const float *a, const float *b, size_t n);

// ---- activations (op_act): the piecewise-linear kinds in float with PyTorch's order of
// operations (exact); silu and sigmoid in double, rounded once ----
void ref_act_forward(op_act kind, float *out, const float *in, size_t n);
void ref_act_backward(op_act kind, float *din, const float *dout, const float *in, size_t n);

// ---- max pool: out, argmax (C, N, OH, OW), argmax indexes the H*W plane ----
void ref_maxpool_forward(float *out, int32_t *argmax, const float *in, const pool_shape *s);
void ref_maxpool_backward(float *din, const float *dout, const int32_t *argmax,
                          const pool_shape *s);
void ref_maxpool_forward_d(double *out, int32_t *argmax, const double *in,
                           const pool_shape *s);
void ref_maxpool_backward_d(double *din, const double *dout, const int32_t *argmax,
                            const pool_shape *s);

// ---- global average pool: (C, N, HW) -> (C, N) ----
void ref_avgpool_forward(float *out, const float *in, int c, int n, int hw);
void ref_avgpool_backward(float *din, const float *dout, int c, int n, int hw);
void ref_avgpool_forward_d(double *out, const double *in, int c, int n, int hw);
void ref_avgpool_backward_d(double *din, const double *dout, int c, int n, int hw);

// ---- linear: out (K, N) = w (K, I) x (I, N) + b (K) ----
void ref_linear_forward(float *out, const float *x, const float *w, const float *b, int k,
                        int i, int n);
void ref_linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                         const float *w, int k, int i, int n);
void ref_linear_forward_d(double *out, const double *x, const double *w, const double *b,
                          int k, int i, int n);
void ref_linear_backward_d(double *dx, double *dw, double *db, const double *dout,
                           const double *x, const double *w, int k, int i, int n);

// ---- softmax cross-entropy, mean over the batch: logits (K, N), labels (N) ----
void ref_xent(float *loss_mean, float *losses, float *dlogits, const float *logits,
              const int32_t *labels, int k, int n);
void ref_xent_d(double *loss_mean, double *losses, double *dlogits, const double *logits,
                const int32_t *labels, int k, int n);

// ---- SGD with momentum (PyTorch), in place on params and bufs ----
void ref_sgd_step(float *params, const float *grads, float *bufs, size_t n, float lr,
                  float momentum, float weight_decay, int first_step);

// ---- the optimizers of host/train/optim.h (sel: per-float norm-decay selector or NULL) ----
void ref_sgd_step_ex(float *params, const float *grads, float *bufs, const unsigned char *sel,
                     size_t n, float lr, float momentum, float decay, float norm_decay,
                     int nesterov, int first_step);
void ref_adam_step(float *params, const float *grads, float *m, float *v,
                   const unsigned char *sel, size_t n, double lr, double beta1, double beta2,
                   double eps, double decay, double norm_decay, int decoupled, long step);
// Scales grads in place; returns the total norm, *coef the coefficient applied.
double ref_clip_grad_norm(float *grads, size_t n, double max_norm, double *coef);

// ---- 1 when all n floats are finite ----
int ref_all_finite(const float *x, size_t n);

#endif
