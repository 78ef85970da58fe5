// Plain-C references of the ops (see ref_ops.h). Straightforward loops over the documented
// layouts; no attempt at speed.
#include "tests/ref_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- float <-> double staging for the float entry points ----

// A double copy of n floats (NULL stays NULL).
static double *ref_dup(const float *x, size_t n) {
    if (!x) return NULL;
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) abort();
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// Scratch for an output that the caller wants (NULL when it does not).
static double *ref_out(const void *want, size_t n) {
    if (!want) return NULL;
    double *d = calloc(n ? n : 1, sizeof *d);
    if (!d) abort();
    return d;
}

// Round a double result into the caller's floats and release it.
static void ref_put(float *y, double *x, size_t n) {
    if (y && x)
        for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    free(x);
}

// ---- GEMM ----

void ref_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                double av = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double bv = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += av * bv;
            }
            float *cij = &c[(size_t)i * ldc + j];
            double old = beta == 0.0f ? 0.0 : (double)beta * *cij;
            *cij = (float)(alpha * s + old);
        }
    }
}

// ---- conv2d ----

// Input pixel (ci, ni, y, x), or -1 when (y, x) is in the padding.
static long conv_in_index(const conv_shape *s, int ci, int ni, int y, int x) {
    if (y < 0 || y >= s->h || x < 0 || x >= s->w) return -1;
    return (((long)ci * s->n + ni) * s->h + y) * s->w + x;
}

void ref_im2col(float *col, const float *in, const conv_shape *s) {
    size_t np = (size_t)s->n * s->oh * s->ow, r = 0;
    for (int ci = 0; ci < s->c; ci++)
        for (int ky = 0; ky < s->kh; ky++)
            for (int kx = 0; kx < s->kw; kx++, r++) {
                size_t p = 0;
                for (int ni = 0; ni < s->n; ni++)
                    for (int oy = 0; oy < s->oh; oy++)
                        for (int ox = 0; ox < s->ow; ox++, p++) {
                            long ii = conv_in_index(s, ci, ni, oy * s->stride - s->pad + ky,
                                                    ox * s->stride - s->pad + kx);
                            col[r * np + p] = ii < 0 ? 0.0f : in[ii];
                        }
            }
}

// The scatter form of the adjoint, rows in (c, ky, kx) order as PyTorch's col2im: each
// pixel receives its contributions in the same order as the device's gather.
void ref_col2im(float *in, const float *col, const conv_shape *s) {
    memset(in, 0, sizeof(float) * (size_t)s->c * s->n * s->h * s->w);
    size_t np = (size_t)s->n * s->oh * s->ow, r = 0;
    for (int ci = 0; ci < s->c; ci++)
        for (int ky = 0; ky < s->kh; ky++)
            for (int kx = 0; kx < s->kw; kx++, r++) {
                size_t p = 0;
                for (int ni = 0; ni < s->n; ni++)
                    for (int oy = 0; oy < s->oh; oy++)
                        for (int ox = 0; ox < s->ow; ox++, p++) {
                            long ii = conv_in_index(s, ci, ni, oy * s->stride - s->pad + ky,
                                                    ox * s->stride - s->pad + kx);
                            if (ii >= 0) in[ii] += col[r * np + p];
                        }
            }
}

// Weight (o, ci, ky, kx) and output (o, ni, oy, ox) indices.
static size_t conv_w_index(const conv_shape *s, int o, int ci, int ky, int kx) {
    return (((size_t)o * s->c + ci) * s->kh + ky) * s->kw + kx;
}
static size_t conv_out_index(const conv_shape *s, int o, int ni, int oy, int ox) {
    return (((size_t)o * s->n + ni) * s->oh + oy) * s->ow + ox;
}

void ref_conv2d_forward_d(double *out, const double *in, const double *w, const conv_shape *s) {
    for (int o = 0; o < s->o; o++)
        for (int ni = 0; ni < s->n; ni++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    double acc = 0.0;
                    for (int ci = 0; ci < s->c; ci++)
                        for (int ky = 0; ky < s->kh; ky++)
                            for (int kx = 0; kx < s->kw; kx++) {
                                long ii = conv_in_index(s, ci, ni, oy * s->stride - s->pad + ky,
                                                        ox * s->stride - s->pad + kx);
                                if (ii >= 0) acc += in[ii] * w[conv_w_index(s, o, ci, ky, kx)];
                            }
                    out[conv_out_index(s, o, ni, oy, ox)] = acc;
                }
}

void ref_conv2d_backward_d(double *din, double *dw, const double *dout, const double *in,
                           const double *w, const conv_shape *s) {
    size_t nin = (size_t)s->c * s->n * s->h * s->w;
    size_t nw = (size_t)s->o * s->c * s->kh * s->kw;
    if (din) memset(din, 0, nin * sizeof *din);
    if (dw) memset(dw, 0, nw * sizeof *dw);
    for (int o = 0; o < s->o; o++)
        for (int ni = 0; ni < s->n; ni++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    double g = dout[conv_out_index(s, o, ni, oy, ox)];
                    for (int ci = 0; ci < s->c; ci++)
                        for (int ky = 0; ky < s->kh; ky++)
                            for (int kx = 0; kx < s->kw; kx++) {
                                long ii = conv_in_index(s, ci, ni, oy * s->stride - s->pad + ky,
                                                        ox * s->stride - s->pad + kx);
                                if (ii < 0) continue;
                                size_t wi = conv_w_index(s, o, ci, ky, kx);
                                if (din) din[ii] += g * w[wi];
                                if (dw) dw[wi] += g * in[ii];
                            }
                }
}

void ref_conv2d_forward(float *out, const float *in, const float *w, const conv_shape *s) {
    size_t nin = (size_t)s->c * s->n * s->h * s->w;
    size_t nw = (size_t)s->o * s->c * s->kh * s->kw;
    size_t nout = (size_t)s->o * s->n * s->oh * s->ow;
    double *ind = ref_dup(in, nin), *wd = ref_dup(w, nw), *outd = ref_out(out, nout);
    ref_conv2d_forward_d(outd, ind, wd, s);
    ref_put(out, outd, nout);
    free(ind);
    free(wd);
}

void ref_conv2d_backward(float *din, float *dw, const float *dout, const float *in,
                         const float *w, const conv_shape *s) {
    size_t nin = (size_t)s->c * s->n * s->h * s->w;
    size_t nw = (size_t)s->o * s->c * s->kh * s->kw;
    size_t nout = (size_t)s->o * s->n * s->oh * s->ow;
    double *doutd = ref_dup(dout, nout), *ind = ref_dup(in, nin), *wd = ref_dup(w, nw);
    double *dind = ref_out(din, nin), *dwd = ref_out(dw, nw);
    ref_conv2d_backward_d(dind, dwd, doutd, ind, wd, s);
    ref_put(din, dind, nin);
    ref_put(dw, dwd, nw);
    free(doutd);
    free(ind);
    free(wd);
}

// ---- batchnorm ----

void ref_bn_forward_train_d(double *out, double *save_mean, double *save_invstd,
                            double *running_mean, double *running_var, const double *in,
                            const double *gamma, const double *beta, int c, int m,
                            double momentum, double eps) {
    for (int ch = 0; ch < c; ch++) {
        const double *x = in + (size_t)ch * m;
        double mean = 0.0, var_sum = 0.0;
        for (int i = 0; i < m; i++) mean += x[i];
        mean /= m;
        for (int i = 0; i < m; i++) var_sum += (x[i] - mean) * (x[i] - mean);
        // Normalise with the biased variance (PyTorch training mode).
        double invstd = 1.0 / sqrt(var_sum / m + eps);
        for (int i = 0; i < m; i++)
            out[(size_t)ch * m + i] = (x[i] - mean) * invstd * gamma[ch] + beta[ch];
        if (save_mean) save_mean[ch] = mean;
        if (save_invstd) save_invstd[ch] = invstd;
        // running = momentum * batch + (1 - momentum) * running; running_var is UNBIASED.
        if (running_mean) running_mean[ch] = momentum * mean + (1 - momentum) * running_mean[ch];
        if (running_var)
            running_var[ch] = momentum * var_sum / (m - 1) + (1 - momentum) * running_var[ch];
    }
}

// Eval mode: the running statistics are constants.
static void ref_bn_forward_eval_d(double *out, const double *in, const double *gamma,
                                  const double *beta, const double *running_mean,
                                  const double *running_var, int c, int m, double eps) {
    for (int ch = 0; ch < c; ch++) {
        double invstd = 1.0 / sqrt(running_var[ch] + eps);
        for (int i = 0; i < m; i++) {
            size_t j = (size_t)ch * m + i;
            out[j] = (in[j] - running_mean[ch]) * invstd * gamma[ch] + beta[ch];
        }
    }
}

// Shared by both modes: dgamma = sum(dout * xhat), dbeta = sum(dout); din by mode:
// train: gamma*invstd/M * (M*dout - sum(dout) - xhat*sum(dout*xhat)); eval: dout*gamma*invstd.
static void ref_bn_backward_d(double *din, double *dgamma, double *dbeta, const double *dout,
                              const double *in, const double *gamma, const double *mean,
                              const double *invstd, int c, int m, int train) {
    for (int ch = 0; ch < c; ch++) {
        const double *x = in + (size_t)ch * m, *dy = dout + (size_t)ch * m;
        double sum = 0.0, dot = 0.0;
        for (int i = 0; i < m; i++) {
            sum += dy[i];
            dot += dy[i] * (x[i] - mean[ch]) * invstd[ch];
        }
        if (dgamma) dgamma[ch] = dot;
        if (dbeta) dbeta[ch] = sum;
        if (!din) continue;
        for (int i = 0; i < m; i++) {
            double xhat = (x[i] - mean[ch]) * invstd[ch];
            double g = train ? (m * dy[i] - sum - xhat * dot) / m : dy[i];
            din[(size_t)ch * m + i] = gamma[ch] * invstd[ch] * g;
        }
    }
}

void ref_bn_backward_train_d(double *din, double *dgamma, double *dbeta, const double *dout,
                             const double *in, const double *gamma, const double *save_mean,
                             const double *save_invstd, int c, int m) {
    ref_bn_backward_d(din, dgamma, dbeta, dout, in, gamma, save_mean, save_invstd, c, m, 1);
}

void ref_bn_forward_train(float *out, float *save_mean, float *save_invstd,
                          float *running_mean, float *running_var, const float *in,
                          const float *gamma, const float *beta, int c, int m,
                          float momentum, float eps) {
    size_t n = (size_t)c * m;
    double *ind = ref_dup(in, n), *g = ref_dup(gamma, c), *b = ref_dup(beta, c);
    double *rm = ref_dup(running_mean, c), *rv = ref_dup(running_var, c);
    double *outd = ref_out(out, n), *sm = ref_out(save_mean, c), *si = ref_out(save_invstd, c);
    ref_bn_forward_train_d(outd, sm, si, rm, rv, ind, g, b, c, m, momentum, eps);
    ref_put(out, outd, n);
    ref_put(save_mean, sm, c);
    ref_put(save_invstd, si, c);
    ref_put(running_mean, rm, c);
    ref_put(running_var, rv, c);
    free(ind);
    free(g);
    free(b);
}

void ref_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                         const float *running_mean, const float *running_var, int c, int m,
                         float eps) {
    size_t n = (size_t)c * m;
    double *ind = ref_dup(in, n), *g = ref_dup(gamma, c), *b = ref_dup(beta, c);
    double *rm = ref_dup(running_mean, c), *rv = ref_dup(running_var, c);
    double *outd = ref_out(out, n);
    ref_bn_forward_eval_d(outd, ind, g, b, rm, rv, c, m, eps);
    ref_put(out, outd, n);
    free(ind);
    free(g);
    free(b);
    free(rm);
    free(rv);
}

// Float wrapper of both backward modes; `stat` is invstd (train) or the variance (eval).
static void ref_bn_backward_f(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *gamma, const float *mean,
                              const float *stat, int c, int m, int train, float eps) {
    size_t n = (size_t)c * m;
    double *dy = ref_dup(dout, n), *x = ref_dup(in, n), *g = ref_dup(gamma, c);
    double *mu = ref_dup(mean, c), *is = ref_dup(stat, c);
    if (!train)
        for (int ch = 0; ch < c; ch++) is[ch] = 1.0 / sqrt(is[ch] + eps);
    double *dx = ref_out(din, n), *dg = ref_out(dgamma, c), *db = ref_out(dbeta, c);
    ref_bn_backward_d(dx, dg, db, dy, x, g, mu, is, c, m, train);
    ref_put(din, dx, n);
    ref_put(dgamma, dg, c);
    ref_put(dbeta, db, c);
    free(dy);
    free(x);
    free(g);
    free(mu);
    free(is);
}

void ref_bn_backward_train(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *in, const float *gamma, const float *save_mean,
                           const float *save_invstd, int c, int m) {
    ref_bn_backward_f(din, dgamma, dbeta, dout, in, gamma, save_mean, save_invstd, c, m, 1,
                      0.0f);
}

void ref_bn_backward_eval(float *din, float *dgamma, float *dbeta, const float *dout,
                          const float *in, const float *gamma, const float *running_mean,
                          const float *running_var, int c, int m, float eps) {
    ref_bn_backward_f(din, dgamma, dbeta, dout, in, gamma, running_mean, running_var, c, m, 0,
                      eps);
}

void ref_bn_relu_forward_train(float *out, float *save_mean, float *save_invstd,
                               float *running_mean, float *running_var, const float *in,
                               const float *gamma, const float *beta, int c, int m,
                               float momentum, float eps) {
    ref_bn_forward_train(out, save_mean, save_invstd, running_mean, running_var, in, gamma,
                         beta, c, m, momentum, eps);
    ref_relu_forward(out, out, (size_t)c * m);
}

void ref_bn_relu_forward_eval(float *out, const float *in, const float *gamma,
                              const float *beta, const float *running_mean,
                              const float *running_var, int c, int m, float eps) {
    ref_bn_forward_eval(out, in, gamma, beta, running_mean, running_var, c, m, eps);
    ref_relu_forward(out, out, (size_t)c * m);
}

// The gradient through the relu first (threshold_backward on its output), then batch norm.
static float *ref_relu_grad(const float *dout, const float *out, size_t n) {
    float *g = malloc((n ? n : 1) * sizeof *g);
    if (!g) abort();
    ref_relu_backward(g, dout, out, n);
    return g;
}

void ref_bn_relu_backward_train(float *din, float *dgamma, float *dbeta, const float *dout,
                                const float *out, const float *in, const float *gamma,
                                const float *save_mean, const float *save_invstd, int c,
                                int m) {
    float *g = ref_relu_grad(dout, out, (size_t)c * m);
    ref_bn_backward_train(din, dgamma, dbeta, g, in, gamma, save_mean, save_invstd, c, m);
    free(g);
}

void ref_bn_relu_backward_eval(float *din, float *dgamma, float *dbeta, const float *dout,
                               const float *out, const float *in, const float *gamma,
                               const float *running_mean, const float *running_var, int c,
                               int m, float eps) {
    float *g = ref_relu_grad(dout, out, (size_t)c * m);
    ref_bn_backward_eval(din, dgamma, dbeta, g, in, gamma, running_mean, running_var, c, m,
                         eps);
    free(g);
}

// ---- element-wise ----

// PyTorch relu: negatives to 0, NaN passes.
static float ref_relu(float x) { return x < 0.0f ? 0.0f : x; }

void ref_relu_forward(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ref_relu(in[i]);
}

void ref_relu_backward(float *din, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) din[i] = out[i] <= 0.0f ? 0.0f : dout[i];
}

void ref_add(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ref_add_relu(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ref_relu(a[i] + b[i]);
}

// ---- activations: PyTorch 1.13's CPU formulas (aten/src/ATen/native/cpu/Activation.cpp) ----

// std::min(std::max(x, 0), 6): NaN passes.
static float ref_clamp06(float x) {
    float t = x < 0.0f ? 0.0f : x;
    return 6.0f < t ? 6.0f : t;
}

static double ref_sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

static float ref_act_fwd(op_act kind, float x) {
    switch (kind) {
    case OP_ACT_RELU: return ref_relu(x);
    case OP_ACT_RELU6: return ref_clamp06(x);                         // hardtanh(x, 0, 6)
    case OP_ACT_HARDSWISH: return x * ref_clamp06(x + 3.0f) / 6.0f;   // x*relu6(x+3)/6
    case OP_ACT_HARDSIGMOID: return ref_clamp06(x + 3.0f) / 6.0f;     // relu6(x+3)/6
    case OP_ACT_SILU: return (float)(x * ref_sigmoid_d(x));
    case OP_ACT_SIGMOID: return (float)ref_sigmoid_d(x);
    }
    return NAN;
}

static float ref_act_bwd(op_act kind, float g, float x) {
    switch (kind) {
    case OP_ACT_RELU: return x <= 0.0f ? 0.0f : g;                    // threshold_backward
    case OP_ACT_RELU6: return (x <= 0.0f || x >= 6.0f) ? 0.0f : g;    // hardtanh_backward
    case OP_ACT_HARDSWISH:   // hardswish_backward's scalar path (x = 3 in the middle branch)
        if (x < -3.0f) return 0.0f;
        if (x <= 3.0f) return g * (x / 3.0f + 0.5f);
        return g;
    case OP_ACT_HARDSIGMOID:                    // hardsigmoid_backward: 1/6 on the open (-3, 3)
        return (x > -3.0f && x < 3.0f) ? g * (1.0f / 6.0f) : 0.0f;
    case OP_ACT_SILU: {                         // silu_backward: s * (1 + x * (1 - s))
        double s = ref_sigmoid_d(x);
        return (float)(g * s * (1.0 + x * (1.0 - s)));
    }
    case OP_ACT_SIGMOID: {                      // sigmoid_backward: s * (1 - s)
        double s = ref_sigmoid_d(x);
        return (float)(g * (1.0 - s) * s);
    }
    }
    return NAN;
}

void ref_act_forward(op_act kind, float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ref_act_fwd(kind, in[i]);
}

void ref_act_backward(op_act kind, float *din, const float *dout, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) din[i] = ref_act_bwd(kind, dout[i], in[i]);
}

// ---- max pool ----

void ref_maxpool_forward_d(double *out, int32_t *argmax, const double *in,
                           const pool_shape *s) {
    size_t o = 0;
    for (int plane = 0; plane < s->c * s->n; plane++) {
        const double *x = in + (size_t)plane * s->h * s->w;
        for (int oy = 0; oy < s->oh; oy++)
            for (int ox = 0; ox < s->ow; ox++, o++) {
                int y0 = oy * s->stride - s->pad, x0 = ox * s->stride - s->pad;
                int y1 = y0 + s->k < s->h ? y0 + s->k : s->h;
                int x1 = x0 + s->k < s->w ? x0 + s->k : s->w;
                if (y0 < 0) y0 = 0;
                if (x0 < 0) x0 = 0;
                // Padding never wins; first maximum in row-major order; NaN takes over.
                double best = -INFINITY;
                int best_i = y0 * s->w + x0;
                for (int y = y0; y < y1; y++)
                    for (int xx = x0; xx < x1; xx++) {
                        double v = x[y * s->w + xx];
                        if (v > best || isnan(v)) {
                            best = v;
                            best_i = y * s->w + xx;
                        }
                    }
                out[o] = best;
                argmax[o] = best_i;
            }
    }
}

// PyTorch's scatter-add of dout at argmax, outputs in row-major order.
void ref_maxpool_backward_d(double *din, const double *dout, const int32_t *argmax,
                            const pool_shape *s) {
    size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
    memset(din, 0, sizeof *din * hw * s->c * s->n);
    for (size_t plane = 0; plane < (size_t)s->c * s->n; plane++)
        for (size_t j = 0; j < ohw; j++)
            din[plane * hw + argmax[plane * ohw + j]] += dout[plane * ohw + j];
}

void ref_maxpool_forward(float *out, int32_t *argmax, const float *in, const pool_shape *s) {
    size_t nin = (size_t)s->c * s->n * s->h * s->w, nout = (size_t)s->c * s->n * s->oh * s->ow;
    double *ind = ref_dup(in, nin), *outd = ref_out(out, nout);
    ref_maxpool_forward_d(outd, argmax, ind, s);
    ref_put(out, outd, nout);
    free(ind);
}

// In float: the device adds in the same order, so the result should match exactly.
void ref_maxpool_backward(float *din, const float *dout, const int32_t *argmax,
                          const pool_shape *s) {
    size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
    memset(din, 0, sizeof *din * hw * s->c * s->n);
    for (size_t plane = 0; plane < (size_t)s->c * s->n; plane++)
        for (size_t j = 0; j < ohw; j++)
            din[plane * hw + argmax[plane * ohw + j]] += dout[plane * ohw + j];
}

// ---- global average pool ----

void ref_avgpool_forward_d(double *out, const double *in, int c, int n, int hw) {
    for (size_t i = 0; i < (size_t)c * n; i++) {
        double s = 0.0;
        for (int j = 0; j < hw; j++) s += in[i * hw + j];
        out[i] = s / hw;
    }
}

void ref_avgpool_backward_d(double *din, const double *dout, int c, int n, int hw) {
    for (size_t i = 0; i < (size_t)c * n; i++)
        for (int j = 0; j < hw; j++) din[i * hw + j] = dout[i] / hw;
}

void ref_avgpool_forward(float *out, const float *in, int c, int n, int hw) {
    size_t cn = (size_t)c * n;
    double *ind = ref_dup(in, cn * hw), *outd = ref_out(out, cn);
    ref_avgpool_forward_d(outd, ind, c, n, hw);
    ref_put(out, outd, cn);
    free(ind);
}

void ref_avgpool_backward(float *din, const float *dout, int c, int n, int hw) {
    size_t cn = (size_t)c * n;
    double *doutd = ref_dup(dout, cn), *dind = ref_out(din, cn * hw);
    ref_avgpool_backward_d(dind, doutd, c, n, hw);
    ref_put(din, dind, cn * hw);
    free(doutd);
}

// ---- linear ----

void ref_linear_forward_d(double *out, const double *x, const double *w, const double *b,
                          int k, int i, int n) {
    for (int r = 0; r < k; r++)
        for (int j = 0; j < n; j++) {
            double s = b[r];
            for (int p = 0; p < i; p++) s += w[(size_t)r * i + p] * x[(size_t)p * n + j];
            out[(size_t)r * n + j] = s;
        }
}

void ref_linear_backward_d(double *dx, double *dw, double *db, const double *dout,
                           const double *x, const double *w, int k, int i, int n) {
    for (int p = 0; dx && p < i; p++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int r = 0; r < k; r++) s += w[(size_t)r * i + p] * dout[(size_t)r * n + j];
            dx[(size_t)p * n + j] = s;
        }
    for (int r = 0; dw && r < k; r++)
        for (int p = 0; p < i; p++) {
            double s = 0.0;
            for (int j = 0; j < n; j++) s += dout[(size_t)r * n + j] * x[(size_t)p * n + j];
            dw[(size_t)r * i + p] = s;
        }
    for (int r = 0; db && r < k; r++) {
        double s = 0.0;
        for (int j = 0; j < n; j++) s += dout[(size_t)r * n + j];
        db[r] = s;
    }
}

void ref_linear_forward(float *out, const float *x, const float *w, const float *b, int k,
                        int i, int n) {
    size_t nk = (size_t)k * n;
    double *xd = ref_dup(x, (size_t)i * n), *wd = ref_dup(w, (size_t)k * i);
    double *bd = ref_dup(b, k), *outd = ref_out(out, nk);
    ref_linear_forward_d(outd, xd, wd, bd, k, i, n);
    ref_put(out, outd, nk);
    free(xd);
    free(wd);
    free(bd);
}

void ref_linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                         const float *w, int k, int i, int n) {
    size_t nx = (size_t)i * n, nw = (size_t)k * i;
    double *doutd = ref_dup(dout, (size_t)k * n), *xd = ref_dup(x, nx), *wd = ref_dup(w, nw);
    double *dxd = ref_out(dx, nx), *dwd = ref_out(dw, nw), *dbd = ref_out(db, k);
    ref_linear_backward_d(dxd, dwd, dbd, doutd, xd, wd, k, i, n);
    ref_put(dx, dxd, nx);
    ref_put(dw, dwd, nw);
    ref_put(db, dbd, k);
    free(doutd);
    free(xd);
    free(wd);
}

// ---- softmax cross-entropy ----

void ref_xent_d(double *loss_mean, double *losses, double *dlogits, const double *logits,
                const int32_t *labels, int k, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < k; j++)
            if (logits[(size_t)j * n + i] > mx) mx = logits[(size_t)j * n + i];
        for (int j = 0; j < k; j++) sum += exp(logits[(size_t)j * n + i] - mx);
        double lse = mx + log(sum);
        // loss_i = logsumexp(z) - z[label]; d(mean)/dz = (softmax - onehot) / N.
        double loss = lse - logits[(size_t)labels[i] * n + i];
        total += loss;
        if (losses) losses[i] = loss;
        for (int j = 0; dlogits && j < k; j++) {
            double p = exp(logits[(size_t)j * n + i] - lse);
            dlogits[(size_t)j * n + i] = (p - (j == labels[i] ? 1.0 : 0.0)) / n;
        }
    }
    if (loss_mean) *loss_mean = total / n;
}

void ref_xent(float *loss_mean, float *losses, float *dlogits, const float *logits,
              const int32_t *labels, int k, int n) {
    size_t nz = (size_t)k * n;
    double *z = ref_dup(logits, nz), *lm = ref_out(loss_mean, 1), *ls = ref_out(losses, n);
    double *dz = ref_out(dlogits, nz);
    ref_xent_d(lm, ls, dz, z, labels, k, n);
    ref_put(loss_mean, lm, 1);
    ref_put(losses, ls, n);
    ref_put(dlogits, dz, nz);
    free(z);
}

// ---- SGD ----

// In float, operation for operation as PyTorch's _single_tensor_sgd.
void ref_sgd_step(float *params, const float *grads, float *bufs, size_t n, float lr,
                  float momentum, float weight_decay, int first_step) {
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (weight_decay != 0.0f) g = g + weight_decay * params[i];
        if (momentum != 0.0f) {
            bufs[i] = first_step ? g : momentum * bufs[i] + g;
            g = bufs[i];
        }
        params[i] = params[i] - lr * g;
    }
}

// SGD with Nesterov and a decay per float (sel may be NULL), as _single_tensor_sgd.
void ref_sgd_step_ex(float *params, const float *grads, float *bufs, const unsigned char *sel,
                     size_t n, float lr, float momentum, float decay, float norm_decay,
                     int nesterov, int first_step) {
    for (size_t i = 0; i < n; i++) {
        float g = grads[i], wd = sel && sel[i] ? norm_decay : decay;
        if (wd != 0.0f) g = g + wd * params[i];
        if (momentum != 0.0f) {
            bufs[i] = first_step ? g : momentum * bufs[i] + g;
            g = nesterov ? g + momentum * bufs[i] : bufs[i];
        }
        params[i] = params[i] - lr * g;
    }
}

// Adam/AdamW in float, operation for operation as _single_tensor_adam(w) (amsgrad off).
void ref_adam_step(float *params, const float *grads, float *m, float *v,
                   const unsigned char *sel, size_t n, double lr, double beta1, double beta2,
                   double eps, double decay, double norm_decay, int decoupled, long step) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float neg_step = -(float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (size_t i = 0; i < n; i++) {
        int norm = sel && sel[i];
        float p = params[i], g = grads[i];
        if (decoupled) {
            p = p * (float)(1.0 - lr * (norm ? norm_decay : decay));
        } else {
            float wd = (float)(norm ? norm_decay : decay);
            if (wd != 0.0f) g = g + wd * p;
        }
        m[i] = m[i] * (float)beta1 + (float)(1.0 - beta1) * g;
        v[i] = v[i] * (float)beta2 + (float)(1.0 - beta2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + (float)eps;
        params[i] = p + neg_step * m[i] / denom;
    }
}

// clip_grad_norm_ in double: the total 2-norm, then every gradient times the clamped coef.
double ref_clip_grad_norm(float *grads, size_t n, double max_norm, double *coef) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)grads[i] * grads[i];
    double norm = sqrt(s), c = max_norm / (norm + 1e-6);
    if (c > 1) c = 1;
    for (size_t i = 0; i < n; i++) grads[i] = (float)(grads[i] * c);
    *coef = c;
    return norm;
}

int ref_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}
