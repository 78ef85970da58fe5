// The op launchers of host/ops.h against PyTorch 1.13 (tests/fixtures/op_*.bin, written by
// tools/make_fixtures.py). The reader and the weight generator: tests/test_fixture.c.
//
// Tolerances. Every float comparison passes when |got - want| <= atol + rtol * |want| with
// atol = ATOL_x * max|want| over the tensor (so it scales with the tensor's magnitude and
// near-zero elements produced by cancellation are judged against the tensor's scale). Two
// float32 implementations that sum the same K products in different orders differ by at most
// ~K * 2^-24 * sum|terms| and typically ~sqrt(K) * 2^-24 * sum|terms|; PyTorch's own float32
// results sit 0.3e-7..4e-7 * max|want| from a float64 evaluation of these fixtures
// (measured), so the bounds below are 10-100x that noise and still 1000x below what an
// indexing, layout or semantic bug produces (errors of order max|want|).
// Each comparison logs its worst relative error (|got - want| / max(|want|, 1e-3 max|want|))
// and its normalised error (max |got - want| / max|want|); each test ends with one line
// "[torch] <op>: worst rel err ..." on stderr for the lead's report.
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fixture.h"
#include "tests/testutil.h"

// ---- tolerances (fractions of max|want|, and relative) ----
// Reductions over up to ~150 terms (conv K = 3*7*7 = 147, linear I = 64, dw over N*OH*OW
// <= 180): worst-case order noise 150 * 6e-8 * sum|terms| ~ 1e-5 of the scale.
#define ATOL_REDUCE 2e-5
#define RTOL_REDUCE 1e-5
// Batch norm: two passes over M <= 42 values, then per-element affine maps; the backward
// combines three terms of similar size (cancellation), so the same budget as a reduction.
#define ATOL_BN 2e-5
#define RTOL_BN 1e-5
// Element-wise results of at most a few roundings (relu, add, the average, SGD): a few ulps.
#define ATOL_ELEM 1e-6
#define RTOL_ELEM 1e-6
// Running statistics: momentum blend of a reduction (unbiased variance): reduction budget.
#define ATOL_STATS 1e-5
#define RTOL_STATS 1e-5
// Cross-entropy: log-sum-exp of K = 10 terms; losses up to ~160 for the +-80 logits, where
// float32 itself resolves only ~1e-5 absolute, so a relative bound.
#define ATOL_XENT 1e-6
#define RTOL_XENT 1e-5

// ---- per-test report ----
static struct {
    char op[64];
    double worst_rel, worst_norm;
    char worst_what[96];
} report;

static void report_begin(const char *op)
{
    memset(&report, 0, sizeof report);
    snprintf(report.op, sizeof report.op, "%s", op);
}

static void report_end(void)
{
    fprintf(stderr, "[torch] %s: worst rel err %.3e (%s), worst normalised err %.3e\n",
            report.op, report.worst_rel, report.worst_what, report.worst_norm);
    cr_log_info("[torch] %s: worst rel err %.3e (%s)", report.op, report.worst_rel,
                report.worst_what);
}

// ---- fixture access ----
static void load(fixture *f, const char *name)
{
    char err[1024];
    int rc = fixture_load_named(f, name, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
}

// Tensor "<case>.<name>" (case < 0: plain "<name>") of dtype and ndim, asserted present.
static const fixture_tensor *need(const fixture *f, int ci, const char *name,
                                  fixture_dtype dtype, int ndim)
{
    char full[128];
    if (ci >= 0)
        snprintf(full, sizeof full, "%d.%s", ci, name);
    else
        snprintf(full, sizeof full, "%s", name);
    const fixture_tensor *t = fixture_get(f, full);
    cr_assert_not_null(t, "%s: no tensor %s (regenerate with tools/make_fixtures.py)",
                       f->path, full);
    cr_assert_eq(t->dtype, dtype, "%s: tensor %s has dtype %d, want %d", f->path, full,
                 (int)t->dtype, (int)dtype);
    cr_assert(ndim < 0 || t->ndim == ndim, "%s: tensor %s has %d dims, want %d", f->path,
              full, t->ndim, ndim);
    return t;
}

static const fixture_tensor *need_f32(const fixture *f, int ci, const char *name, int ndim)
{
    return need(f, ci, name, FIXTURE_F32, ndim);
}

static int dim(const fixture_tensor *t, int d)
{
    return fixture_dim(t, d);
}

static float *xmalloc_f(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    return p;
}

// ---- device helpers ----
// A device buffer of n floats all equal to v: outputs start as garbage so a launcher that
// accumulates into (or skips) an output it must overwrite fails.
static dten upload_fill(clrt *rt, size_t n, float v)
{
    float *h = xmalloc_f(n);
    for (size_t i = 0; i < n; i++)
        h[i] = v;
    dten d = test_upload(rt, h, n);
    free(h);
    return d;
}

static const float GARBAGE = 777.0f;

// Upload an (N, C, H, W) tensor (or (N, C) as (N, C, 1, 1)) in cltrain's (C, N, H, W).
static dten upload_cnhw(clrt *rt, const fixture_tensor *t)
{
    float *h = xmalloc_f(t->numel);
    fixture_nchw_to_cnhw(h, fixture_f32(t), dim(t, 0), dim(t, 1), dim(t, 2), dim(t, 3));
    dten d = test_upload(rt, h, t->numel);
    free(h);
    return d;
}

// Upload a (rows, cols) tensor transposed to (cols, rows): PyTorch (N, K) -> ours (K, N).
static dten upload_transposed(clrt *rt, const fixture_tensor *t)
{
    float *h = xmalloc_f(t->numel);
    fixture_transpose(h, fixture_f32(t), dim(t, 0), dim(t, 1));
    dten d = test_upload(rt, h, t->numel);
    free(h);
    return d;
}

static dten upload_plain(clrt *rt, const fixture_tensor *t)
{
    return test_upload(rt, fixture_f32(t), t->numel);
}

static void release(dten t)
{
    if (t.mem)
        clReleaseMemObject(t.mem);
}

// ---- comparisons ----
static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

// got and want in PyTorch's layout. atol_frac * max|want| + rtol * |want| per element.
static void check(const char *what, const float *got, const float *want, size_t n,
                  double atol_frac, double rtol)
{
    double scale = max_abs(want, n);
    double rel = test_max_rel_err(got, want, n, fmax(1e-3 * scale, 1e-30));
    double worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]));
    double norm = scale > 0 ? worst / scale : worst;
    char label[160];
    snprintf(label, sizeof label, "%s %s", report.op, what);
    cr_log_info("%s: max rel err %.3e, normalised %.3e (max|want| %.3g)", label, rel, norm,
                scale);
    if (rel > report.worst_rel || report.worst_what[0] == '\0') {
        report.worst_rel = rel;
        snprintf(report.worst_what, sizeof report.worst_what, "%s", what);
    }
    report.worst_norm = fmax(report.worst_norm, norm);
    test_expect_close(label, got, want, n, (float)(atol_frac * scale), (float)rtol);
}

// Download a (C, N, H, W) result and compare it with PyTorch's (N, C, H, W) tensor.
static void check_cnhw(clrt *rt, const char *what, dten d, const fixture_tensor *want,
                       double atol_frac, double rtol)
{
    float *got = test_download(rt, d, want->numel), *back = xmalloc_f(want->numel);
    fixture_cnhw_to_nchw(back, got, dim(want, 0), dim(want, 1), dim(want, 2), dim(want, 3));
    check(what, back, fixture_f32(want), want->numel, atol_frac, rtol);
    free(got);
    free(back);
}

// Download a (cols, rows) result and compare it with PyTorch's (rows, cols) tensor.
static void check_transposed(clrt *rt, const char *what, dten d, const fixture_tensor *want,
                             double atol_frac, double rtol)
{
    float *got = test_download(rt, d, want->numel), *back = xmalloc_f(want->numel);
    fixture_transpose(back, got, dim(want, 1), dim(want, 0));
    check(what, back, fixture_f32(want), want->numel, atol_frac, rtol);
    free(got);
    free(back);
}

static void check_plain(clrt *rt, const char *what, dten d, const fixture_tensor *want,
                        double atol_frac, double rtol)
{
    float *got = test_download(rt, d, want->numel);
    check(what, got, fixture_f32(want), want->numel, atol_frac, rtol);
    free(got);
}

// ======================================================================== conv2d
static void conv_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_conv2d.bin");
    const fixture_tensor *x = need_f32(&f, ci, "x", 4), *w = need_f32(&f, ci, "w", 4);
    const fixture_tensor *out = need_f32(&f, ci, "out", 4), *dout = need_f32(&f, ci, "dout", 4);
    const fixture_tensor *dx = need_f32(&f, ci, "dx", 4), *dw = need_f32(&f, ci, "dw", 4);
    const int32_t *prm = fixture_i32(need(&f, ci, "params", FIXTURE_I32, 1));
    cr_assert_eq(dim(w, 2), dim(w, 3), "square kernels only");

    conv_shape s;
    conv_shape_init(&s, dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), dim(w, 0), dim(w, 2),
                    prm[0], prm[1]);
    cr_assert(s.oh == dim(out, 2) && s.ow == dim(out, 3),
              "conv_shape_init: output %dx%d, PyTorch %dx%d", s.oh, s.ow, dim(out, 2),
              dim(out, 3));
    size_t nwork = conv_workspace_floats(&s);
    dten d_x = upload_cnhw(rt, x), d_w = upload_plain(rt, w);
    dten d_work = upload_fill(rt, nwork ? nwork : 1, GARBAGE);
    dten d_out = upload_fill(rt, out->numel, GARBAGE);
    op_conv2d_forward(ops, d_out, d_x, d_w, &s, d_work);
    check_cnhw(rt, "out", d_out, out, ATOL_REDUCE, RTOL_REDUCE);

    dten d_dout = upload_cnhw(rt, dout);
    dten d_dx = upload_fill(rt, dx->numel, GARBAGE), d_dw = upload_fill(rt, dw->numel, GARBAGE);
    op_conv2d_backward(ops, d_dx, d_dw, d_dout, d_x, d_w, &s, d_work);
    check_cnhw(rt, "dx", d_dx, dx, ATOL_REDUCE, RTOL_REDUCE);
    check_plain(rt, "dw", d_dw, dw, ATOL_REDUCE, RTOL_REDUCE);

    // DTEN_NONE skips one output; the other must still come out right (frozen layers, the
    // first layer's input gradient).
    dten d_dx2 = upload_fill(rt, dx->numel, GARBAGE), d_dw2 = upload_fill(rt, dw->numel, GARBAGE);
    op_conv2d_backward(ops, DTEN_NONE, d_dw2, d_dout, d_x, d_w, &s, d_work);
    check_plain(rt, "dw (dx skipped)", d_dw2, dw, ATOL_REDUCE, RTOL_REDUCE);
    op_conv2d_backward(ops, d_dx2, DTEN_NONE, d_dout, d_x, d_w, &s, d_work);
    check_cnhw(rt, "dx (dw skipped)", d_dx2, dx, ATOL_REDUCE, RTOL_REDUCE);

    dten all[] = {d_x, d_w, d_work, d_out, d_dout, d_dx, d_dw, d_dx2, d_dw2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        release(all[i]);
    fixture_free(&f);
    report_end();
}

Test(torch_conv2d, k7s2p3_nonsquare) { conv_case(0, "conv2d 7x7/s2/p3 12x10"); }
Test(torch_conv2d, k3s1p1) { conv_case(1, "conv2d 3x3/s1/p1 6x5"); }
Test(torch_conv2d, k3s2p1_odd) { conv_case(2, "conv2d 3x3/s2/p1 7x9"); }
Test(torch_conv2d, k1s2p0_batch1) { conv_case(3, "conv2d 1x1/s2/p0 7x6 n=1"); }

// ======================================================================== batchnorm2d
// The saved statistics in double from the fixture's input: mean and 1/sqrt(biased var + eps).
static void bn_saved_stats(const fixture_tensor *x, float eps, float *mean, float *invstd)
{
    int n = dim(x, 0), c = dim(x, 1);
    size_t hw = (size_t)dim(x, 2) * dim(x, 3), m = (size_t)n * hw;
    const float *v = fixture_f32(x);
    for (int ic = 0; ic < c; ic++) {
        double s = 0.0, s2 = 0.0;
        for (int in = 0; in < n; in++)
            for (size_t j = 0; j < hw; j++)
                s += v[((size_t)in * c + ic) * hw + j];
        double mu = s / (double)m;
        for (int in = 0; in < n; in++)
            for (size_t j = 0; j < hw; j++) {
                double d = v[((size_t)in * c + ic) * hw + j] - mu;
                s2 += d * d;
            }
        mean[ic] = (float)mu;
        invstd[ic] = (float)(1.0 / sqrt(s2 / (double)m + eps));
    }
}

static void bn_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_bn.bin");
    const fixture_tensor *x = need_f32(&f, ci, "x", 4), *dout = need_f32(&f, ci, "dout", 4);
    const fixture_tensor *gamma = need_f32(&f, ci, "weight", 1);
    const fixture_tensor *beta = need_f32(&f, ci, "bias", 1);
    const fixture_tensor *rm = need_f32(&f, ci, "running_mean", 1);
    const fixture_tensor *rv = need_f32(&f, ci, "running_var", 1);
    const float *prm = fixture_f32(need_f32(&f, ci, "params", 1));
    float momentum = prm[0], eps = prm[1];
    int c = dim(x, 1), m = dim(x, 0) * dim(x, 2) * dim(x, 3);
    cr_assert_eq((int)gamma->numel, c);

    dten d_x = upload_cnhw(rt, x), d_dout = upload_cnhw(rt, dout);
    dten d_g = upload_plain(rt, gamma), d_b = upload_plain(rt, beta);
    dten d_rm = upload_plain(rt, rm), d_rv = upload_plain(rt, rv);
    dten d_mean = upload_fill(rt, c, GARBAGE), d_invstd = upload_fill(rt, c, GARBAGE);
    dten d_out = upload_fill(rt, x->numel, GARBAGE);

    // ---- training mode ----
    op_bn_forward_train(ops, d_out, d_mean, d_invstd, d_rm, d_rv, d_x, d_g, d_b, c, m,
                        momentum, eps);
    check_cnhw(rt, "train out", d_out, need_f32(&f, ci, "out", 4), ATOL_BN, RTOL_BN);
    check_plain(rt, "running_mean after", d_rm, need_f32(&f, ci, "after_running_mean", 1),
                ATOL_STATS, RTOL_STATS);
    check_plain(rt, "running_var after (unbiased)", d_rv,
                need_f32(&f, ci, "after_running_var", 1), ATOL_STATS, RTOL_STATS);
    // save_mean / save_invstd are ours, not PyTorch outputs: against a double evaluation.
    float *mean = xmalloc_f(c), *invstd = xmalloc_f(c);
    bn_saved_stats(x, eps, mean, invstd);
    float *got = test_download(rt, d_mean, c);
    check("save_mean", got, mean, c, ATOL_STATS, RTOL_STATS);
    free(got);
    got = test_download(rt, d_invstd, c);
    check("save_invstd", got, invstd, c, ATOL_STATS, RTOL_STATS);
    free(got);

    dten d_dx = upload_fill(rt, x->numel, GARBAGE);
    dten d_dg = upload_fill(rt, c, GARBAGE), d_db = upload_fill(rt, c, GARBAGE);
    op_bn_backward_train(ops, d_dx, d_dg, d_db, d_dout, d_x, d_g, d_mean, d_invstd, c, m);
    check_cnhw(rt, "train dx", d_dx, need_f32(&f, ci, "dx", 4), ATOL_BN, RTOL_BN);
    check_plain(rt, "train dweight", d_dg, need_f32(&f, ci, "dweight", 1), ATOL_BN, RTOL_BN);
    check_plain(rt, "train dbias", d_db, need_f32(&f, ci, "dbias", 1), ATOL_BN, RTOL_BN);
    // Only the input gradient (frozen batch norm parameters).
    dten d_dx2 = upload_fill(rt, x->numel, GARBAGE);
    op_bn_backward_train(ops, d_dx2, DTEN_NONE, DTEN_NONE, d_dout, d_x, d_g, d_mean, d_invstd,
                         c, m);
    check_cnhw(rt, "train dx (dweight, dbias skipped)", d_dx2, need_f32(&f, ci, "dx", 4),
               ATOL_BN, RTOL_BN);

    // ---- eval mode, on the initial running statistics ----
    dten d_rm0 = upload_plain(rt, rm), d_rv0 = upload_plain(rt, rv);
    dten d_eout = upload_fill(rt, x->numel, GARBAGE);
    op_bn_forward_eval(ops, d_eout, d_x, d_g, d_b, d_rm0, d_rv0, c, m, eps);
    check_cnhw(rt, "eval out", d_eout, need_f32(&f, ci, "eval_out", 4), ATOL_BN, RTOL_BN);
    dten d_edx = upload_fill(rt, x->numel, GARBAGE);
    dten d_edg = upload_fill(rt, c, GARBAGE), d_edb = upload_fill(rt, c, GARBAGE);
    op_bn_backward_eval(ops, d_edx, d_edg, d_edb, d_dout, d_x, d_g, d_rm0, d_rv0, c, m, eps);
    check_cnhw(rt, "eval dx", d_edx, need_f32(&f, ci, "eval_dx", 4), ATOL_BN, RTOL_BN);
    check_plain(rt, "eval dweight", d_edg, need_f32(&f, ci, "eval_dweight", 1), ATOL_BN,
                RTOL_BN);
    check_plain(rt, "eval dbias", d_edb, need_f32(&f, ci, "eval_dbias", 1), ATOL_BN, RTOL_BN);

    dten all[] = {d_x, d_dout, d_g, d_b, d_rm, d_rv, d_mean, d_invstd, d_out, d_dx, d_dg,
                  d_db, d_dx2, d_rm0, d_rv0, d_eout, d_edx, d_edg, d_edb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        release(all[i]);
    free(mean);
    free(invstd);
    fixture_free(&f);
    report_end();
}

Test(torch_bn, n4_c3_5x3) { bn_case(0, "batchnorm2d n=4 c=3 5x3"); }
Test(torch_bn, batch1_shifted_mean) { bn_case(1, "batchnorm2d n=1 c=4 6x7 mean 3"); }
Test(torch_bn, spatial1x1) { bn_case(2, "batchnorm2d n=8 c=5 1x1"); }

// ======================================================================== relu, add
Test(torch_relu, fwd_bwd_with_zeros)
{
    report_begin("relu");
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_relu.bin");
    const fixture_tensor *x = need_f32(&f, 0, "x", 4), *out = need_f32(&f, 0, "out", 4);
    const fixture_tensor *dout = need_f32(&f, 0, "dout", 4), *dx = need_f32(&f, 0, "dx", 4);
    size_t n = x->numel;
    // Element-wise: the layout does not matter, PyTorch's is used as is. Exact results.
    dten d_x = upload_plain(rt, x), d_out = upload_fill(rt, n, GARBAGE);
    op_relu_forward(ops, d_out, d_x, n);
    check_plain(rt, "out", d_out, out, 0.0, 0.0);
    dten d_dout = upload_plain(rt, dout), d_dx = upload_fill(rt, n, GARBAGE);
    op_relu_backward(ops, d_dx, d_dout, d_out, n);
    check_plain(rt, "dx (x == 0 passes nothing)", d_dx, dx, 0.0, 0.0);
    op_relu_backward(ops, d_dout, d_dout, d_out, n);    // in place, as the header allows
    check_plain(rt, "dx in place", d_dout, dx, 0.0, 0.0);
    release(d_x);
    release(d_out);
    release(d_dout);
    release(d_dx);
    fixture_free(&f);
    report_end();
}

// ======================================================================== activations
// op_act kind k against case k of op_act.bin (x at the boundaries and 1, 2 ulp off them).
// The piecewise-linear kinds use PyTorch's operations in its order: exact. silu and sigmoid
// call exp (OpenCL's, not PyTorch's vectorised one): the element-wise budget of a few ulps.
static void act_case(op_act k, const char *op, double atol_frac, double rtol)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_act.bin");
    const fixture_tensor *x = need_f32(&f, (int)k, "x", 1), *out = need_f32(&f, (int)k, "out", 1);
    const fixture_tensor *dout = need_f32(&f, (int)k, "dout", 1);
    const fixture_tensor *dx = need_f32(&f, (int)k, "dx", 1);
    size_t n = x->numel;
    dten d_x = upload_plain(rt, x), d_out = upload_fill(rt, n, GARBAGE);
    op_act_forward(ops, k, d_out, d_x, n);
    check_plain(rt, "out", d_out, out, atol_frac, rtol);
    dten d_dout = upload_plain(rt, dout), d_dx = upload_fill(rt, n, GARBAGE);
    op_act_backward(ops, k, d_dx, d_dout, d_x, n);   // from the input, not the output
    check_plain(rt, "dx", d_dx, dx, atol_frac, rtol);
    op_act_backward(ops, k, d_dout, d_dout, d_x, n);   // in place, as the header allows
    check_plain(rt, "dx in place", d_dout, dx, atol_frac, rtol);
    release(d_x);
    release(d_out);
    release(d_dout);
    release(d_dx);
    fixture_free(&f);
    report_end();
}

Test(torch_act, relu) { act_case(OP_ACT_RELU, "act relu", 0.0, 0.0); }
Test(torch_act, relu6) { act_case(OP_ACT_RELU6, "act relu6", 0.0, 0.0); }
Test(torch_act, hardswish) { act_case(OP_ACT_HARDSWISH, "act hardswish", 0.0, 0.0); }
Test(torch_act, hardsigmoid) { act_case(OP_ACT_HARDSIGMOID, "act hardsigmoid", 0.0, 0.0); }
Test(torch_act, silu) { act_case(OP_ACT_SILU, "act silu", ATOL_ELEM, RTOL_ELEM); }
Test(torch_act, sigmoid) { act_case(OP_ACT_SIGMOID, "act sigmoid", ATOL_ELEM, RTOL_ELEM); }

Test(torch_add, add_and_add_relu)
{
    report_begin("residual add");
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_add.bin");
    const fixture_tensor *a = need_f32(&f, 0, "a", 4), *b = need_f32(&f, 0, "b", 4);
    size_t n = a->numel;
    dten d_a = upload_plain(rt, a), d_b = upload_plain(rt, b);
    dten d_out = upload_fill(rt, n, GARBAGE), d_out2 = upload_fill(rt, n, GARBAGE);
    // One rounded addition each: bit-exact.
    op_add(ops, d_out, d_a, d_b, n);
    check_plain(rt, "a + b", d_out, need_f32(&f, 0, "out", 4), 0.0, 0.0);
    op_add_relu(ops, d_out2, d_a, d_b, n);
    check_plain(rt, "relu(a + b)", d_out2, need_f32(&f, 0, "out_relu", 4), 0.0, 0.0);
    release(d_a);
    release(d_b);
    release(d_out);
    release(d_out2);
    fixture_free(&f);
    report_end();
}

// ======================================================================== max pool
static void maxpool_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_maxpool.bin");
    const fixture_tensor *x = need_f32(&f, ci, "x", 4), *out = need_f32(&f, ci, "out", 4);
    const fixture_tensor *idx = need(&f, ci, "indices", FIXTURE_I64, 4);
    const fixture_tensor *dout = need_f32(&f, ci, "dout", 4), *dx = need_f32(&f, ci, "dx", 4);
    const int32_t *prm = fixture_i32(need(&f, ci, "params", FIXTURE_I32, 1));
    pool_shape s;
    pool_shape_init(&s, dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), prm[0], prm[1], prm[2]);
    cr_assert(s.oh == dim(out, 2) && s.ow == dim(out, 3),
              "pool_shape_init: output %dx%d, PyTorch %dx%d", s.oh, s.ow, dim(out, 2),
              dim(out, 3));

    dten d_x = upload_cnhw(rt, x), d_out = upload_fill(rt, out->numel, GARBAGE);
    dten d_arg = test_upload_i32(rt, NULL, out->numel);
    op_maxpool_forward(ops, d_out, d_arg, d_x, &s);
    // A maximum is one of the inputs: exact.
    check_cnhw(rt, "out", d_out, out, 0.0, 0.0);

    // argmax (C, N, OH, OW) int32 vs PyTorch's int64 (N, C, OH, OW): exact, ties included.
    int32_t *arg = malloc(out->numel * sizeof *arg);
    cr_assert_not_null(arg);
    clrt_read(rt, d_arg.mem, d_arg.off * sizeof(int32_t), arg, out->numel * sizeof *arg);
    const int64_t *want = fixture_i64(idx);
    int n = dim(out, 0), c = dim(out, 1);
    size_t plane = (size_t)dim(out, 2) * dim(out, 3), bad = 0, first_bad = 0;
    for (int in = 0; in < n; in++)
        for (int ic = 0; ic < c; ic++)
            for (size_t j = 0; j < plane; j++) {
                size_t i_t = ((size_t)in * c + ic) * plane + j;
                size_t i_o = ((size_t)ic * n + in) * plane + j;
                if ((int64_t)arg[i_o] != want[i_t] && bad++ == 0)
                    first_bad = i_t;
            }
    if (bad) {
        size_t j = first_bad % plane, nc = first_bad / plane;
        size_t i_o = ((nc % c) * n + nc / c) * plane + j;
        cr_expect_fail("%s argmax: %zu of %zu differ; first at NCHW index %zu (n %zu c %zu "
                       "pos %zu): got %d, PyTorch %lld (first maximum in scan order)",
                       op, bad, out->numel, first_bad, nc / c, nc % c, j, arg[i_o],
                       (long long)want[first_bad]);
    }
    cr_log_info("%s argmax: %zu of %zu differ", op, bad, out->numel);

    dten d_dout = upload_cnhw(rt, dout), d_dx = upload_fill(rt, dx->numel, GARBAGE);
    op_maxpool_backward(ops, d_dx, d_dout, d_arg, &s);
    // Sums of at most 4 upstream values (overlapping 3x3/s2 windows): a few ulps.
    check_cnhw(rt, "dx", d_dx, dx, ATOL_ELEM, RTOL_ELEM);
    free(arg);
    release(d_x);
    release(d_out);
    release(d_arg);
    release(d_dout);
    release(d_dx);
    fixture_free(&f);
    report_end();
}

Test(torch_maxpool, integer_ties) { maxpool_case(0, "maxpool 3x3/s2/p1 ties 7x8"); }
Test(torch_maxpool, all_negative) { maxpool_case(1, "maxpool 3x3/s2/p1 all negative 5x5"); }
Test(torch_maxpool, random_batch1) { maxpool_case(2, "maxpool 3x3/s2/p1 9x6 n=1"); }

// ======================================================================== avgpool
static void avgpool_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_avgpool.bin");
    const fixture_tensor *x = need_f32(&f, ci, "x", 4), *out = need_f32(&f, ci, "out", 4);
    const fixture_tensor *dout = need_f32(&f, ci, "dout", 4), *dx = need_f32(&f, ci, "dx", 4);
    int n = dim(x, 0), c = dim(x, 1), hw = dim(x, 2) * dim(x, 3);
    // out and dout are (N, C, 1, 1) in PyTorch, i.e. (N, C): ours (C, N) is the transpose,
    // which is also their (C, N, 1, 1) channel-major form.
    dten d_x = upload_cnhw(rt, x), d_out = upload_fill(rt, out->numel, GARBAGE);
    op_avgpool_forward(ops, d_out, d_x, c, n, hw);
    // A mean of hw <= 35 values: the reduction budget.
    check_cnhw(rt, "out", d_out, out, ATOL_REDUCE, RTOL_REDUCE);
    dten d_dout = upload_cnhw(rt, dout), d_dx = upload_fill(rt, dx->numel, GARBAGE);
    op_avgpool_backward(ops, d_dx, d_dout, c, n, hw);
    // dout / hw: one rounding.
    check_cnhw(rt, "dx", d_dx, dx, ATOL_ELEM, RTOL_ELEM);
    release(d_x);
    release(d_out);
    release(d_dout);
    release(d_dx);
    fixture_free(&f);
    report_end();
}

Test(torch_avgpool, hw4x4) { avgpool_case(0, "avgpool 4x4"); }
Test(torch_avgpool, hw1x1) { avgpool_case(1, "avgpool 1x1"); }
Test(torch_avgpool, hw7x5_batch1) { avgpool_case(2, "avgpool 7x5 n=1"); }

// ======================================================================== linear
static void linear_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_linear.bin");
    const fixture_tensor *x = need_f32(&f, ci, "x", 2), *w = need_f32(&f, ci, "w", 2);
    const fixture_tensor *b = need_f32(&f, ci, "b", 1), *out = need_f32(&f, ci, "out", 2);
    const fixture_tensor *dout = need_f32(&f, ci, "dout", 2), *dx = need_f32(&f, ci, "dx", 2);
    const fixture_tensor *dw = need_f32(&f, ci, "dw", 2), *db = need_f32(&f, ci, "db", 1);
    int n = dim(x, 0), i = dim(x, 1), k = dim(w, 0);
    // PyTorch x (N, I) -> ours (I, N); out/dout (N, K) <-> (K, N); w (K, I) as is.
    dten d_x = upload_transposed(rt, x), d_w = upload_plain(rt, w), d_b = upload_plain(rt, b);
    dten d_out = upload_fill(rt, out->numel, GARBAGE);
    op_linear_forward(ops, d_out, d_x, d_w, d_b, k, i, n);
    check_transposed(rt, "out", d_out, out, ATOL_REDUCE, RTOL_REDUCE);
    dten d_dout = upload_transposed(rt, dout);
    dten d_dx = upload_fill(rt, dx->numel, GARBAGE), d_dw = upload_fill(rt, dw->numel, GARBAGE);
    dten d_db = upload_fill(rt, db->numel, GARBAGE);
    op_linear_backward(ops, d_dx, d_dw, d_db, d_dout, d_x, d_w, k, i, n);
    check_transposed(rt, "dx", d_dx, dx, ATOL_REDUCE, RTOL_REDUCE);
    check_plain(rt, "dw", d_dw, dw, ATOL_REDUCE, RTOL_REDUCE);
    check_plain(rt, "db", d_db, db, ATOL_REDUCE, RTOL_REDUCE);
    // Skipping dx (the fc layer's input gradient when the backbone is frozen).
    dten d_dw2 = upload_fill(rt, dw->numel, GARBAGE), d_db2 = upload_fill(rt, db->numel, GARBAGE);
    op_linear_backward(ops, DTEN_NONE, d_dw2, d_db2, d_dout, d_x, d_w, k, i, n);
    check_plain(rt, "dw (dx skipped)", d_dw2, dw, ATOL_REDUCE, RTOL_REDUCE);
    check_plain(rt, "db (dx skipped)", d_db2, db, ATOL_REDUCE, RTOL_REDUCE);
    dten all[] = {d_x, d_w, d_b, d_out, d_dout, d_dx, d_dw, d_db, d_dw2, d_db2};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
        release(all[j]);
    fixture_free(&f);
    report_end();
}

Test(torch_linear, n3_i7_k5) { linear_case(0, "linear 7->5 n=3"); }
Test(torch_linear, batch1) { linear_case(1, "linear 16->10 n=1"); }
Test(torch_linear, n4_i64_k10) { linear_case(2, "linear 64->10 n=4"); }

// ======================================================================== cross-entropy
static void xent_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_xent.bin");
    const fixture_tensor *logits = need_f32(&f, ci, "logits", 2);
    const fixture_tensor *labels = need(&f, ci, "labels", FIXTURE_I64, 1);
    const fixture_tensor *dlogits = need_f32(&f, ci, "dlogits", 2);
    int n = dim(logits, 0), k = dim(logits, 1);
    int32_t lab[64];
    cr_assert(n <= 64);
    for (int j = 0; j < n; j++)
        lab[j] = (int32_t)fixture_i64(labels)[j];
    dten d_logits = upload_transposed(rt, logits), d_lab = test_upload_i32(rt, lab, n);
    dten d_loss = upload_fill(rt, 1, GARBAGE), d_losses = upload_fill(rt, n, GARBAGE);
    dten d_dlogits = upload_fill(rt, logits->numel, GARBAGE);
    op_xent_forward_backward(ops, d_loss, d_losses, d_dlogits, d_logits, d_lab, k, n);
    check_plain(rt, "loss (mean)", d_loss, need_f32(&f, ci, "loss", 1), ATOL_XENT, RTOL_XENT);
    check_plain(rt, "losses", d_losses, need_f32(&f, ci, "losses", 1), ATOL_XENT, RTOL_XENT);
    check_transposed(rt, "dlogits", d_dlogits, dlogits, ATOL_XENT, RTOL_XENT);
    release(d_logits);
    release(d_lab);
    release(d_loss);
    release(d_losses);
    release(d_dlogits);
    fixture_free(&f);
    report_end();
}

Test(torch_xent, random) { xent_case(0, "cross-entropy n=4"); }
Test(torch_xent, logits_pm80) { xent_case(1, "cross-entropy logits +-80"); }
Test(torch_xent, batch1) { xent_case(2, "cross-entropy n=1"); }

// ======================================================================== SGD
static void sgd_case(int ci, const char *op)
{
    report_begin(op);
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    fixture f;
    load(&f, "op_sgd.bin");
    const float *prm = fixture_f32(need_f32(&f, ci, "params", 1));
    const fixture_tensor *p0 = need_f32(&f, ci, "p0", 1);
    size_t n = p0->numel;
    dten d_p = upload_plain(rt, p0), d_g = upload_fill(rt, n, 0.0f);
    dten d_buf = upload_fill(rt, n, GARBAGE);    // the first step must not read it
    for (int step = 1; step <= 3; step++) {
        char name[32], what[64];
        snprintf(name, sizeof name, "grad%d", step);
        const fixture_tensor *g = need_f32(&f, ci, name, 1);
        clrt_write(rt, d_g.mem, d_g.off * sizeof(float), fixture_f32(g), n * sizeof(float));
        op_sgd_step(ops, d_p, d_g, d_buf, n, prm[0], prm[1], prm[2], step == 1);
        snprintf(name, sizeof name, "p%d", step);
        snprintf(what, sizeof what, "params after step %d", step);
        // Three roundings per step (g + wd*p, momentum blend, p - lr*buf), compounded over
        // three steps; FMA contraction on either side moves results by an ulp: a few ulps.
        check_plain(rt, what, d_p, need_f32(&f, ci, name, 1), ATOL_ELEM, RTOL_ELEM);
    }
    release(d_p);
    release(d_g);
    release(d_buf);
    fixture_free(&f);
    report_end();
}

Test(torch_sgd, momentum_weight_decay) { sgd_case(0, "sgd lr 0.01 momentum 0.9 wd 5e-4"); }
Test(torch_sgd, momentum_only) { sgd_case(1, "sgd lr 0.001 momentum 0.9"); }
