// The ops of host/ops.h on the test device against the plain-C references of ref_ops.c, and
// finite-difference checks of those references' backward passes (in double).
//
// Every device tensor sits at an offset inside a larger buffer whose guard cells hold a
// sentinel: each check also proves the op respected the offset and wrote nothing outside its
// output, and an output the op forgot to write keeps the sentinel and fails the comparison.
// CLTRAIN_TEST_REPORT=1 prints each comparison's worst errors to stderr.
#define _POSIX_C_SOURCE 200809L
#include "tests/ref_ops.h"
#include "tests/testutil.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 5
#define SENTINEL (-777.25f)

// ---- device tensors with guard cells ----

// n 4-byte elements copied from host (or the sentinel everywhere when host is NULL), at
// offset GUARD in a buffer of n + 2*GUARD sentinel-filled cells.
static dten dev_tensor(const void *host, size_t n) {
    size_t total = n + 2 * GUARD;
    float *h = malloc(total * sizeof *h);
    cr_assert_not_null(h);
    for (size_t i = 0; i < total; i++) h[i] = SENTINEL;
    if (host) memcpy(h + GUARD, host, n * sizeof *h);
    dten t = test_upload(test_rt(), h, total);
    free(h);
    return dten_at(t, GUARD);
}

static float *dev_read(dten t, size_t n) { return test_download(test_rt(), t, n); }

static int32_t *dev_read_i32(dten t, size_t n) {
    int32_t *h = malloc((n ? n : 1) * sizeof *h);
    cr_assert_not_null(h);
    clrt_read(test_rt(), t.mem, t.off * sizeof *h, h, n * sizeof *h);
    return h;
}

// The guard cells around t must still hold the sentinel, bit for bit.
static void expect_guards(const char *what, dten t, size_t n) {
    dten base = t;
    base.off -= GUARD;
    float *all = dev_read(base, n + 2 * GUARD);
    float s = SENTINEL;
    for (size_t i = 0; i < n + 2 * GUARD; i++) {
        if (i == GUARD) i += n;
        if (i >= n + 2 * GUARD) break;
        cr_expect(memcmp(&all[i], &s, sizeof s) == 0,
                  "%s: wrote outside its %zu elements (guard cell %zu holds %g)", what, n, i,
                  (double)all[i]);
    }
    free(all);
}

static void report(const char *what, const float *got, const float *want, size_t n) {
    if (!getenv("CLTRAIN_TEST_REPORT")) return;
    double abs_err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > abs_err) abs_err = d;
    }
    fprintf(stderr, "[ops] %-28s max abs err %.3g, max rel err %.3g (floor 1e-3), n %zu\n",
            what, abs_err, test_max_rel_err(got, want, n, 1e-3), n);
}

// Exact: the same bits, or both NaN (infinities included, which a difference cannot test).
static void expect_exact(const char *what, const float *got, const float *want, size_t n) {
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        int same = memcmp(&got[i], &want[i], sizeof got[i]) == 0 ||
                   (isnan(got[i]) && isnan(want[i]));
        if (!same && bad++ == 0) first = i;
    }
    cr_expect_eq(bad, 0, "%s: %zu of %zu values differ (exact); first at %zu: got %.9g, want "
                 "%.9g", what, bad, n, first, first < n ? (double)got[first] : 0.0,
                 first < n ? (double)want[first] : 0.0);
}

// Device result vs reference: |got - want| <= atol + rtol*|want| everywhere (bit-exact when
// both are 0), guards intact.
static void check(const char *what, dten got, const float *want, size_t n, float atol,
                  float rtol) {
    float *g = dev_read(got, n);
    report(what, g, want, n);
    if (atol == 0.0f && rtol == 0.0f) expect_exact(what, g, want, n);
    else test_expect_close(what, g, want, n, atol, rtol);
    expect_guards(what, got, n);
    free(g);
}

static void check_i32(const char *what, dten got, const int32_t *want, size_t n) {
    int32_t *g = dev_read_i32(got, n);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(g[i], want[i], "%s[%zu]: got %d, want %d", what, i, g[i], want[i]);
    expect_guards(what, got, n);
    free(g);
}

// ---- host data ----

static float *rnd(size_t n, uint64_t seed, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    cr_assert_not_null(x);
    test_fill_uniform(x, n, seed, lo, hi);
    return x;
}

static float *zeros(size_t n) {
    float *x = calloc(n ? n : 1, sizeof *x);
    cr_assert_not_null(x);
    return x;
}

static double *to_double(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    cr_assert_not_null(d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// Bitwise equality of two device results of the same computation.
static void expect_same_bits(const char *what, dten a, dten b, size_t n) {
    float *x = dev_read(a, n), *y = dev_read(b, n);
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
        if (memcmp(&x[i], &y[i], sizeof x[i]) != 0) first = i;
    cr_expect_eq(first, n, "%s: run 2 differs from run 1 at %zu (%.9g vs %.9g)", what, first,
                 first < n ? (double)x[first] : 0.0, first < n ? (double)y[first] : 0.0);
    free(x);
    free(y);
}

// ============================== GEMM ==============================

Test(ops_gemm, transposes_offsets_and_beta) {
    int m = 5, n = 7, k = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            // Leading dimensions wider than the rows they hold.
            int lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
            size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
            size_t nc = (size_t)m * ldc;
            float *a = rnd(na, 1, -1, 1), *b = rnd(nb, 2, -1, 1), *c = rnd(nc, 3, -1, 1);
            float *want = malloc(nc * sizeof *want), *nan_c = malloc(nc * sizeof *nan_c);
            for (size_t i = 0; i < nc; i++) nan_c[i] = NAN;
            dten da = dev_tensor(a, na), db = dev_tensor(b, nb);
            // beta = 1.5 reads C; beta = 0 must not (C full of NaN).
            dten dc = dev_tensor(c, nc);
            op_gemm(test_ops(), ta, tb, m, n, k, 0.5f, da, lda, db, ldb, 1.5f, dc, ldc);
            memcpy(want, c, nc * sizeof *want);
            ref_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 1.5f, want, ldc);
            // Sums of 3 products of [-1, 1] values, plus 1.5*c: a few float ulps.
            check("gemm C (beta 1.5)", dc, want, nc, 1e-6f, 1e-6f);
            dten dz = dev_tensor(nan_c, nc);
            op_gemm(test_ops(), ta, tb, m, n, k, 1.0f, da, lda, db, ldb, 0.0f, dz, ldc);
            memcpy(want, nan_c, nc * sizeof *want);
            ref_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, want, ldc);
            // The columns past n keep their NaN in both (NaN matches NaN).
            check("gemm C (beta 0)", dz, want, nc, 1e-6f, 1e-6f);
            free(a), free(b), free(c), free(want), free(nan_c);
        }
}

// A GEMM test's C (n floats, random; all NaN at beta 0, where C must not be read) and the
// copy *want the reference then computes into.
static float *gemm_c(size_t n, uint64_t seed, float beta, float **want) {
    float *c = rnd(n, seed, -1, 1);
    *want = malloc(n * sizeof **want);
    cr_assert_not_null(*want);
    if (beta == 0.0f)
        for (size_t i = 0; i < n; i++) c[i] = NAN;
    memcpy(*want, c, n * sizeof **want);
    return c;
}

// One product (or `count` of them, batched) through the path `packed` selects (1: the packed
// kernels of cl/gemm_packed.cl, the CPU default; 0: CLBlast), against the double reference:
// leading dimensions wider than the rows, operands at offsets (dev_tensor's guard cells, which
// must stay untouched), beta reading C or, at 0, not reading it (C full of NaN). Returns the
// device result for a bitwise comparison of two runs.
static float *gemm_case(int packed, int ta, int tb, int m, int n, int k, float alpha,
                        float beta, int count) {
    ops_ctx *ops = test_ops();
    ops->cfg.gemm_packed = packed;
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
    size_t nc = (size_t)m * ldc;
    size_t sa = na + 5, sb = nb + 2, sc = nc + 1;   // batch strides past the last row
    size_t ta_n = sa * count, tb_n = sb * count, tc_n = sc * count;
    float *a = rnd(ta_n, 11 + m, -1, 1), *b = rnd(tb_n, 12 + n, -1, 1), *want;
    float *c = gemm_c(tc_n, 13 + k, beta, &want);
    dten da = dev_tensor(a, ta_n), db = dev_tensor(b, tb_n), dc = dev_tensor(c, tc_n);
    if (count == 1)
        op_gemm(ops, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    else
        op_gemm_batched(ops, ta, tb, m, n, k, alpha, da, lda, sa, db, ldb, sb, beta, dc, ldc, sc,
                        count);
    for (int j = 0; j < count; j++)
        ref_gemm(ta, tb, m, n, k, alpha, a + j * sa, lda, b + j * sb, ldb, beta, want + j * sc,
                 ldc);
    char what[96];
    snprintf(what, sizeof what, "gemm %s ta=%d tb=%d %dx%dx%d beta=%g count=%d",
             packed ? "packed" : "clblast", ta, tb, m, n, k, (double)beta, count);
    // Sums of k products of [-1, 1] values in float: error grows like sqrt(k) ulps; C's cells
    // outside the product (ldc > n, batch gaps) keep their values (NaN matches NaN).
    check(what, dc, want, tc_n, 1e-6f + 2e-7f * (float)k, 1e-5f);
    float *got = dev_read(dc, tc_n);
    ops->cfg.gemm_packed = -1;
    free(a), free(b), free(c), free(want);
    return got;
}

Test(ops_gemm, packed_and_clblast_ragged_tiles) {
    // m, n, k around the packed kernels' tiles (8 rows, 32 columns, 16 steps of k per
    // packing item): whole tiles, one short of them, one past, and single rows or columns.
    const int shapes[][3] = { {8, 32, 16}, {13, 45, 37}, {1, 1, 1}, {7, 33, 15},
                              {17, 31, 49}, {64, 96, 300}, {3, 70, 5} };
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    const int *z = shapes[i];
                    free(gemm_case(p, ta, tb, z[0], z[1], z[2], 0.75f, 1.5f, 1));
                    free(gemm_case(p, ta, tb, z[0], z[1], z[2], 1.0f, 0.0f, 1));
                }
}

Test(ops_gemm, packed_and_clblast_batched) {
    for (int p = 0; p < 2; p++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                free(gemm_case(p, ta, tb, 13, 45, 37, 1.0f, 0.0f, 3));
                free(gemm_case(p, ta, tb, 8, 64, 32, 0.5f, 2.0f, 2));
            }
}

// The packed path gives the same bits run after run (each element one sum in k order), and
// a deep product (k past the 4096 steps of one tile-kernel launch: chunks of k, the later
// ones adding to C) is right too, with beta 0 (C not read) and beta 1.5.
Test(ops_gemm, packed_deterministic_and_deep) {
    int m = 24, n = 40, k = 9000;   // 3 chunks of 3000
    size_t nc = (size_t)m * (n + 2);
    free(gemm_case(1, 1, 0, m, n, k, 0.5f, 1.5f, 1));
    float *x = gemm_case(1, 0, 1, m, n, k, 1.0f, 0.0f, 1);
    float *y = gemm_case(1, 0, 1, m, n, k, 1.0f, 0.0f, 1);
    size_t first = nc;
    for (size_t i = 0; i < nc && first == nc; i++)
        if (memcmp(&x[i], &y[i], sizeof x[i]) != 0 && !(isnan(x[i]) && isnan(y[i]))) first = i;
    cr_expect_eq(first, nc, "packed gemm: run 2 differs from run 1 at %zu", first);
    free(x), free(y);
}

// A (rows, cols) matrix in the packed GEMM's panel layout, as op_gemm_panel_floats describes
// it (im2col's for a col matrix): runs of 32 columns, each holding the rows rounded up to 8;
// 0 past the matrix.
static float *to_panels(const float *m, int rows, int cols) {
    size_t nf = op_gemm_panel_floats(rows, cols);
    int rp = op_gemm_panel_rows(rows);
    float *p = zeros(nf);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            p[((size_t)(j / 32) * rp + r) * 32 + j % 32] = m[(size_t)r * cols + j];
    return p;
}

// The products that read an operand in the panel layout in place (the convs' forward and
// weight gradient on CPU devices) against the double reference: op_gemm_bpanels, C = A B
// with B (k, n) as panels, and op_gemm_nt_panels, C = A P^T with P (n, k) as panels; leading
// dimensions wider than the rows, beta 0 (C full of NaN, not read) and beta reading C.
static void gemm_panels_case(int nt, int m, int n, int k, float alpha, float beta) {
    ops_ctx *ops = test_ops();
    ops->cfg.gemm_packed = 1;
    int lda = k + 3, ldc = n + 2;
    size_t na = (size_t)m * lda, nb = (size_t)k * n, nc = (size_t)m * ldc;
    float *a = rnd(na, 21 + m, -1, 1), *b = rnd(nb, 22 + n, -1, 1), *want;
    float *c = gemm_c(nc, 23 + k, beta, &want);
    // b is B (k, n) row-major for bpanels, P (n, k) row-major for nt_panels.
    float *bp = nt ? to_panels(b, n, k) : to_panels(b, k, n);
    size_t nbp = nt ? op_gemm_panel_floats(n, k) : op_gemm_panel_floats(k, n);
    dten da = dev_tensor(a, na), dbp = dev_tensor(bp, nbp), dc = dev_tensor(c, nc);
    if (nt)
        op_gemm_nt_panels(ops, m, n, k, alpha, da, lda, dbp, beta, dc, ldc);
    else
        op_gemm_bpanels(ops, m, n, k, alpha, da, lda, dbp, beta, dc, ldc);
    ref_gemm(0, nt, m, n, k, alpha, a, lda, b, nt ? k : n, beta, want, ldc);
    char what[96];
    snprintf(what, sizeof what, "gemm %s %dx%dx%d beta=%g", nt ? "nt_panels" : "bpanels", m, n,
             k, (double)beta);
    check(what, dc, want, nc, 1e-6f + 2e-7f * (float)k, 1e-5f);
    expect_guards("panels operand", dbp, nbp);
    ops->cfg.gemm_packed = -1;
    free(a), free(b), free(c), free(want), free(bp);
}

Test(ops_gemm, panels_ragged_and_deep) {
    // Around the tiles (8 rows, 32 columns), single rows and columns, and a k past one
    // tile-kernel launch (chunks of k, multiples of 32 for nt_panels, the later adding to C).
    const int shapes[][3] = { {8, 32, 16}, {13, 45, 37}, {1, 1, 1}, {7, 33, 27},
                              {64, 147, 300}, {3, 70, 5}, {24, 40, 9000} };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int nt = 0; nt < 2; nt++) {
            gemm_panels_case(nt, shapes[i][0], shapes[i][1], shapes[i][2], 1.0f, 0.0f);
            gemm_panels_case(nt, shapes[i][0], shapes[i][1], shapes[i][2], 0.5f, 1.5f);
        }
}

// ============================== conv2d ==============================

static size_t conv_in_n(const conv_shape *s) { return (size_t)s->c * s->n * s->h * s->w; }
static size_t conv_w_n(const conv_shape *s) { return (size_t)s->o * s->c * s->kh * s->kw; }
static size_t conv_out_n(const conv_shape *s) { return (size_t)s->o * s->n * s->oh * s->ow; }
static size_t conv_col_n(const conv_shape *s) {
    return (size_t)s->c * s->kh * s->kw * s->n * s->oh * s->ow;
}

// op_im2col_panels: exactly the col matrix in the panel layout, padding 0 (the workspace's
// NaN first, so that every float of it is written).
static void expect_im2col_panels(const conv_shape *s, const float *in, const float *want_col) {
    ops_ctx *ops = test_ops();
    int rows = s->c * s->kh * s->kw, cols = s->n * s->oh * s->ow;
    size_t nf = op_gemm_panel_floats(rows, cols), nin = conv_in_n(s);
    float *want = to_panels(want_col, rows, cols), *nan = malloc(nf * sizeof *nan);
    cr_assert_not_null(nan);
    for (size_t i = 0; i < nf; i++) nan[i] = NAN;
    dten d_in = dev_tensor(in, nin), d_p = dev_tensor(nan, nf);
    op_im2col_panels(ops, d_p, d_in, s);
    check("im2col panels", d_p, want, nf, 0, 0);
    free(want), free(nan);
}

// im2col exactly (both layouts); col2im exactly (same summation order); forward and both
// gradients against the double reference.
static void conv_case(int n, int c, int h, int w, int o, int k, int stride, int pad,
                      uint64_t seed) {
    ops_ctx *ops = test_ops();
    conv_shape s;
    conv_shape_init(&s, n, c, h, w, o, k, stride, pad);
    size_t nin = conv_in_n(&s), nw = conv_w_n(&s), nout = conv_out_n(&s), ncol = conv_col_n(&s);
    float *in = rnd(nin, seed, -1, 1), *wt = rnd(nw, seed + 1, -1, 1);
    float *dout = rnd(nout, seed + 2, -1, 1), *col = rnd(ncol, seed + 3, -1, 1);
    float *want_col = malloc(ncol * sizeof(float)), *want_in = malloc(nin * sizeof(float));
    float *want_out = malloc(nout * sizeof(float)), *want_dw = malloc(nw * sizeof(float));
    dten d_in = dev_tensor(in, nin), d_w = dev_tensor(wt, nw), d_dout = dev_tensor(dout, nout);
    size_t nwork = conv_workspace_floats(&s);
    dten work = dev_tensor(NULL, nwork ? nwork : 1);

    if (nwork) {
        dten d_col = dev_tensor(NULL, ncol), d_colin = dev_tensor(col, ncol);
        dten d_back = dev_tensor(NULL, nin);
        op_im2col(ops, d_col, d_in, &s);
        ref_im2col(want_col, in, &s);
        check("im2col col", d_col, want_col, ncol, 0, 0);            // a copy: exact
        expect_im2col_panels(&s, in, want_col);
        op_col2im(ops, d_back, d_colin, &s);
        ref_col2im(want_in, col, &s);
        check("col2im in", d_back, want_in, nin, 0, 0);              // same order: exact
    }

    dten d_out = dev_tensor(NULL, nout);
    op_conv2d_forward(ops, d_out, d_in, d_w, &s, work);
    ref_conv2d_forward(want_out, in, wt, &s);
    // Sums of C*KH*KW <= 147 products of [-1, 1] values in another order than the double
    // reference: a few float ulps of the sum of |terms| (<= 147), so 2e-5 absolute.
    check("conv forward out", d_out, want_out, nout, 2e-5f, 1e-5f);
    expect_guards("conv forward workspace", work, nwork ? nwork : 1);

    dten d_din = dev_tensor(NULL, nin), d_dw = dev_tensor(NULL, nw);
    op_conv2d_backward(ops, d_din, d_dw, d_dout, d_in, d_w, &s, work);
    ref_conv2d_backward(want_in, want_dw, dout, in, wt, &s);
    // din: sums of O*KH*KW/stride^2 products (<= 49*4); dw: sums of N*OH*OW (<= 126); as above.
    check("conv backward din", d_din, want_in, nin, 2e-5f, 1e-5f);
    check("conv backward dw", d_dw, want_dw, nw, 2e-5f, 1e-5f);
    expect_guards("conv backward workspace", work, nwork ? nwork : 1);

    // The forward that leaves its col matrix in the workspace (im2col + GEMM whatever the
    // shape): the same outputs, and with the col matrix kept, bit for bit the same gradients.
    float *got_din = dev_read(d_din, nin), *got_dw = dev_read(d_dw, nw);
    dten d_din2 = dev_tensor(NULL, nin), d_dw2 = dev_tensor(NULL, nw);
    op_conv2d_forward_col(ops, d_out, d_in, d_w, &s, work);
    check("conv forward_col out", d_out, want_out, nout, 2e-5f, 1e-5f);
    op_conv2d_backward_col(ops, d_din2, d_dw2, d_dout, d_in, d_w, &s, work);
    float *got_din2 = dev_read(d_din2, nin), *got_dw2 = dev_read(d_dw2, nw);
    cr_expect(!memcmp(got_din, got_din2, nin * sizeof(float)), "kept col: din differs");
    cr_expect(!memcmp(got_dw, got_dw2, nw * sizeof(float)), "kept col: dw differs");
    free(got_din), free(got_dw), free(got_din2), free(got_dw2);

    free(in), free(wt), free(dout), free(col);
    free(want_col), free(want_in), free(want_out), free(want_dw);
}

// The kernels the launchers pick: im2col_k1/k3/k7 or the generic im2col; col2im_k3s1,
// col2im_k3s2, col2im_k1s2 or the generic col2im. Shapes off ResNet's path take the generic
// kernels.
Test(ops_conv, k5_s1_p2_generic) { conv_case(2, 3, 9, 8, 4, 5, 1, 2, 70); }
Test(ops_conv, k3_s3_p0_generic_col2im) { conv_case(2, 2, 10, 11, 3, 3, 3, 0, 80); }
Test(ops_conv, k1_s1_p1_generic_col2im) { conv_case(2, 3, 4, 5, 3, 1, 1, 1, 90); }

// On a CPU device the convs read the col matrix in the packed GEMM's panel layout; the same
// ops through CLBlast's path (GPUs), which keeps it row-major, on the shapes of ResNet's
// kernels: 3x3 stride 1 and 2, the stem's 7x7, a 1x1 stride 2.
Test(ops_conv, clblast_path) {
    ops_ctx *ops = test_ops();
    ops->cfg.gemm_packed = 0;
    conv_case(2, 3, 6, 7, 4, 3, 1, 1, 130);
    conv_case(2, 3, 9, 8, 5, 3, 2, 1, 131);
    conv_case(1, 3, 12, 11, 4, 7, 2, 3, 132);
    conv_case(3, 4, 5, 5, 6, 1, 2, 0, 133);
    ops->cfg.gemm_packed = -1;
}

// im2col and col2im alone (exact) on shapes with many work-groups and indices in the
// millions: the kernels split flat indices with float arithmetic (conv_div in cl/conv.cl).
static void layout_case(int n, int c, int h, int w, int k, int stride, int pad, uint64_t seed) {
    ops_ctx *ops = test_ops();
    conv_shape s;
    conv_shape_init(&s, n, c, h, w, 1, k, stride, pad);
    size_t nin = conv_in_n(&s), ncol = conv_col_n(&s);
    float *in = rnd(nin, seed, -1, 1), *col = rnd(ncol, seed + 1, -1, 1);
    float *want_col = malloc(ncol * sizeof(float)), *want_in = malloc(nin * sizeof(float));
    cr_assert(want_col && want_in);
    dten d_in = dev_tensor(in, nin), d_col = dev_tensor(NULL, ncol);
    op_im2col(ops, d_col, d_in, &s);
    ref_im2col(want_col, in, &s);
    check("im2col col (large)", d_col, want_col, ncol, 0, 0);
    dten d_colin = dev_tensor(col, ncol), d_back = dev_tensor(NULL, nin);
    op_col2im(ops, d_back, d_colin, &s);
    ref_col2im(want_in, col, &s);
    check("col2im in (large)", d_back, want_in, nin, 0, 0);
    free(in), free(col), free(want_col), free(want_in);
}

Test(ops_conv, layout_large_index) {
    layout_case(8, 2, 517, 509, 1, 2, 0, 95);    // N*H*W = 2.1M, N*OH*OW = 528K
    layout_case(3, 2, 131, 67, 3, 1, 1, 96);
    layout_case(2, 1, 200, 190, 7, 2, 3, 97);
    layout_case(5, 1, 61, 59, 3, 2, 1, 98);
}

// Kernels that overhang a small map: the live window runs (less workspace than the whole
// kernel's col matrix), with the same results, and exact zeros in the dead taps' gradient.
static void conv_window_case(int n, int c, int h, int w, int o, int k, int stride, int pad,
                             uint64_t seed) {
    conv_shape s;
    conv_shape_init(&s, n, c, h, w, o, k, stride, pad);
    // (The workspace holds the col matrix in either layout: the panels' rounding is in both.)
    size_t full = op_gemm_panel_floats(c * k * k, n * s.oh * s.ow);
    cr_expect_lt(conv_workspace_floats(&s), full, "%dx%d map, k%d s%d p%d: windowed", h, w, k,
                 stride, pad);
    conv_case(n, c, h, w, o, k, stride, pad, seed);
}
// layer4's 3x3 convs at 32x32 (1x1 maps): a pointwise conv on the centre taps.
Test(ops_conv, k3_s1_p1_on_1x1_window) { conv_window_case(5, 6, 1, 1, 4, 3, 1, 1, 110); }
// layer4.0.conv1 at 32x32 (2x2 -> 1x1, stride 2): the lower-right 2x2 taps.
Test(ops_conv, k3_s2_p1_on_2x2_window) { conv_window_case(16, 5, 2, 2, 4, 3, 2, 1, 120); }
// conv1 on a 2x2 image: taps 3..4 of the 7x7.
Test(ops_conv, k7_s2_p3_on_2x2_window) { conv_window_case(2, 3, 2, 2, 4, 7, 2, 3, 130); }
// A 1x3 map: the rows' window starts at 1, the columns' at 0: no window (one padding).
Test(ops_conv, k3_s1_p1_on_1x3_no_window) {
    conv_shape s;
    conv_shape_init(&s, 2, 3, 1, 3, 4, 3, 1, 1);
    cr_expect_geq(conv_workspace_floats(&s), conv_col_n(&s), "not windowed");
    conv_case(2, 3, 1, 3, 4, 3, 1, 1, 140);
}

// Winograd (3x3 s1 p1, >= 128 input channels, >= 7x7 maps; on by default only where the
// GEMMs are CLBlast's, so forced here) at tile-multiple sizes: CLBlast's batched kernel then
// reads operands in place; odd map sizes: partial tiles. And the same shapes without it.
Test(ops_conv, k3_s1_p1_winograd) {
    ops_ctx *ops = test_ops();
    for (int w = 1; w >= 0; w--) {
        ops->cfg.winograd = w;
        conv_case(2, 128, 8, 8, 64, 3, 1, 1, 150);
        conv_case(1, 128, 7, 9, 32, 3, 1, 1, 155);
    }
    ops->cfg.winograd = -1;
}

// ResNet18's conv1, on a non-square odd image.
Test(ops_conv, k7_s2_p3) { conv_case(2, 3, 13, 11, 4, 7, 2, 3, 10); }
// The 3x3 convs of every BasicBlock; batch 1, non-square.
Test(ops_conv, k3_s1_p1_batch1) { conv_case(1, 5, 6, 7, 3, 3, 1, 1, 20); }
// The first conv of layer2..4: stride 2 on odd sizes.
Test(ops_conv, k3_s2_p1_odd) { conv_case(3, 4, 9, 7, 5, 3, 2, 1, 30); }
// The downsample convs; an even height leaves the last row out of every window (din 0).
Test(ops_conv, k1_s2_p0) { conv_case(2, 6, 6, 5, 4, 1, 2, 0, 40); }
// A 1x1 stride-1 conv reads its input as the col matrix (no workspace).
Test(ops_conv, k1_s1_pointwise) { conv_case(2, 3, 4, 5, 6, 1, 1, 0, 50); }

Test(ops_conv, skip_outputs) {
    ops_ctx *ops = test_ops();
    conv_shape s;
    conv_shape_init(&s, 2, 3, 5, 4, 2, 3, 2, 1);
    size_t nin = conv_in_n(&s), nw = conv_w_n(&s), nout = conv_out_n(&s);
    float *in = rnd(nin, 60, -1, 1), *wt = rnd(nw, 61, -1, 1), *dout = rnd(nout, 62, -1, 1);
    float *want_in = malloc(nin * sizeof(float)), *want_dw = malloc(nw * sizeof(float));
    ref_conv2d_backward(want_in, want_dw, dout, in, wt, &s);
    dten d_in = dev_tensor(in, nin), d_w = dev_tensor(wt, nw), d_dout = dev_tensor(dout, nout);
    dten work = dev_tensor(NULL, conv_workspace_floats(&s));
    dten d_din = dev_tensor(NULL, nin), d_dw = dev_tensor(NULL, nw);
    // The first layer: no input gradient.
    op_conv2d_backward(ops, DTEN_NONE, d_dw, d_dout, d_in, d_w, &s, work);
    check("conv dw (din skipped)", d_dw, want_dw, nw, 2e-5f, 1e-5f);
    // Frozen weights: no weight gradient; din must not depend on a dw pass.
    op_conv2d_backward(ops, d_din, DTEN_NONE, d_dout, d_in, d_w, &s, work);
    check("conv din (dw skipped)", d_din, want_in, nin, 2e-5f, 1e-5f);
    // Nothing wanted: nothing happens, even without inputs.
    op_conv2d_backward(ops, DTEN_NONE, DTEN_NONE, d_dout, DTEN_NONE, DTEN_NONE, &s, DTEN_NONE);
    free(in), free(wt), free(dout), free(want_in), free(want_dw);
}

// ============================== batch norm ==============================

typedef struct bn_data {
    int c, m;
    float *in, *gamma, *beta, *rmean, *rvar, *dout;
} bn_data;

static bn_data bn_data_make(int c, int m, float center, uint64_t seed) {
    bn_data d = {.c = c, .m = m};
    d.in = rnd((size_t)c * m, seed, center - 2, center + 3);
    d.gamma = rnd(c, seed + 1, 0.5f, 1.5f);
    d.beta = rnd(c, seed + 2, -0.5f, 0.5f);
    d.rmean = rnd(c, seed + 3, -0.2f, 0.2f);
    d.rvar = rnd(c, seed + 4, 0.5f, 2.0f);
    d.dout = rnd((size_t)c * m, seed + 5, -1, 1);
    return d;
}

static void bn_data_free(bn_data *d) {
    free(d->in), free(d->gamma), free(d->beta), free(d->rmean), free(d->rvar), free(d->dout);
}

static void bn_train_case(int c, int m, float center, uint64_t seed) {
    ops_ctx *ops = test_ops();
    bn_data d = bn_data_make(c, m, center, seed);
    size_t n = (size_t)c * m;
    dten in = dev_tensor(d.in, n), gamma = dev_tensor(d.gamma, c), beta = dev_tensor(d.beta, c);
    dten rmean = dev_tensor(d.rmean, c), rvar = dev_tensor(d.rvar, c);
    dten out = dev_tensor(NULL, n), smean = dev_tensor(NULL, c), sinv = dev_tensor(NULL, c);
    op_bn_forward_train(ops, out, smean, sinv, rmean, rvar, in, gamma, beta, c, m, 0.1f, 1e-5f);

    float *w_out = zeros(n), *w_smean = zeros(c), *w_sinv = zeros(c);
    ref_bn_forward_train(w_out, w_smean, w_sinv, d.rmean, d.rvar, d.in, d.gamma, d.beta, c, m,
                         0.1f, 1e-5f);
    // Float two-pass statistics vs double: the mean is off by ~|center| * 1e-7, which the
    // tolerance on out (values of a few units) absorbs; invstd relative ~1e-6.
    check("bn train save_mean", smean, w_smean, c, 1e-6f + fabsf(center) * 2e-7f, 1e-6f);
    check("bn train save_invstd", sinv, w_sinv, c, 0, 1e-5f);
    check("bn train out", out, w_out, n, 2e-5f, 1e-5f);
    check("bn train running_mean", rmean, d.rmean, c, 1e-6f + fabsf(center) * 2e-7f, 1e-6f);
    check("bn train running_var", rvar, d.rvar, c, 0, 1e-5f);

    // Backward from the device's saved statistics (the reference gets the same ones).
    float *h_smean = dev_read(smean, c), *h_sinv = dev_read(sinv, c);
    dten dout = dev_tensor(d.dout, n), din = dev_tensor(NULL, n);
    dten dgamma = dev_tensor(NULL, c), dbeta = dev_tensor(NULL, c);
    op_bn_backward_train(ops, din, dgamma, dbeta, dout, in, gamma, smean, sinv, c, m);
    float *w_din = zeros(n), *w_dg = zeros(c), *w_db = zeros(c);
    ref_bn_backward_train(w_din, w_dg, w_db, d.dout, d.in, d.gamma, h_smean, h_sinv, c, m);
    // dgamma, dbeta: sums of m terms of size ~1 (m <= 1292): float error ~1e-4 worst case.
    check("bn train dbeta", dbeta, w_db, c, 2e-4f, 1e-5f);
    check("bn train dgamma", dgamma, w_dg, c, 2e-4f, 1e-5f);
    // din subtracts the projections: absolute error ~ gamma*invstd*(sum errors)/m.
    check("bn train din", din, w_din, n, 2e-5f, 1e-4f);

    free(w_out), free(w_smean), free(w_sinv), free(h_smean), free(h_sinv);
    free(w_din), free(w_dg), free(w_db);
    bn_data_free(&d);
}

Test(ops_bn, train_forward_backward) {
    bn_train_case(3, 2 * 5 * 7, 0.0f, 100);     // a few channels, small batch
    bn_train_case(1, 2, 1.0f, 110);             // the smallest legal m
    bn_train_case(2, 4 * 17 * 19, 0.5f, 120);   // m much larger than the work-group
    bn_train_case(2, 3 * 11 * 13, 50.0f, 130);  // a large mean: the two-pass variance holds
    // Several statistics blocks per work item and a tail that is not a whole vector.
    bn_train_case(3, 40007, -1.5f, 140);
    bn_train_case(2, 15, 2.0f, 150);            // fewer values than one vector
}

// The same cases with a GPU's split of a channel among the work items (interleaved vectors,
// host/ops_bn.c): same references, same tolerances.
Test(ops_bn, train_interleaved) {
    test_ops()->cfg.bn_interleave = 1;
    bn_train_case(3, 2 * 5 * 7, 0.0f, 100);
    bn_train_case(2, 4 * 17 * 19, 0.5f, 120);
    bn_train_case(2, 3 * 11 * 13, 50.0f, 130);
    bn_train_case(3, 40007, -1.5f, 140);
    bn_train_case(2, 15, 2.0f, 150);
    test_ops()->cfg.bn_interleave = -1;
}

// Batch norm + relu fused, training mode: against the references, and bit for bit against
// the unfused device ops (op_bn_* then op_relu_*), forward and backward.
static void bn_relu_train_case(int c, int m, float center, uint64_t seed) {
    ops_ctx *ops = test_ops();
    bn_data d = bn_data_make(c, m, center, seed);
    size_t n = (size_t)c * m;
    float *rm0 = malloc(c * sizeof(float)), *rv0 = malloc(c * sizeof(float));
    cr_assert(rm0 && rv0);
    memcpy(rm0, d.rmean, c * sizeof(float));
    memcpy(rv0, d.rvar, c * sizeof(float));
    dten in = dev_tensor(d.in, n), gamma = dev_tensor(d.gamma, c), beta = dev_tensor(d.beta, c);
    dten rmean = dev_tensor(d.rmean, c), rvar = dev_tensor(d.rvar, c);
    dten out = dev_tensor(NULL, n), smean = dev_tensor(NULL, c), sinv = dev_tensor(NULL, c);
    op_bn_relu_forward_train(ops, out, smean, sinv, rmean, rvar, in, gamma, beta, c, m, 0.1f,
                             1e-5f);
    float *w_out = zeros(n), *w_smean = zeros(c), *w_sinv = zeros(c);
    ref_bn_relu_forward_train(w_out, w_smean, w_sinv, d.rmean, d.rvar, d.in, d.gamma, d.beta,
                              c, m, 0.1f, 1e-5f);
    check("bn+relu train out", out, w_out, n, 2e-5f, 1e-5f);
    check("bn+relu train save_mean", smean, w_smean, c, 1e-6f + fabsf(center) * 2e-7f, 1e-6f);
    check("bn+relu train save_invstd", sinv, w_sinv, c, 0, 1e-5f);
    check("bn+relu train running_var", rvar, d.rvar, c, 0, 1e-5f);

    dten rmean2 = dev_tensor(rm0, c), rvar2 = dev_tensor(rv0, c);
    dten out2 = dev_tensor(NULL, n), smean2 = dev_tensor(NULL, c), sinv2 = dev_tensor(NULL, c);
    op_bn_forward_train(ops, out2, smean2, sinv2, rmean2, rvar2, in, gamma, beta, c, m, 0.1f,
                        1e-5f);
    op_relu_forward(ops, out2, out2, n);
    expect_same_bits("bn+relu train out vs unfused", out, out2, n);
    expect_same_bits("bn+relu train running_mean vs unfused", rmean, rmean2, c);

    // Backward through the relu: dout is the gradient of `out`; a few exact zeros of out too.
    float *h_out = dev_read(out, n), *h_smean = dev_read(smean, c), *h_sinv = dev_read(sinv, c);
    dten dout = dev_tensor(d.dout, n), din = dev_tensor(NULL, n);
    dten dgamma = dev_tensor(NULL, c), dbeta = dev_tensor(NULL, c);
    op_bn_relu_backward_train(ops, din, dgamma, dbeta, dout, out, in, gamma, smean, sinv, c, m);
    float *w_din = zeros(n), *w_dg = zeros(c), *w_db = zeros(c);
    ref_bn_relu_backward_train(w_din, w_dg, w_db, d.dout, h_out, d.in, d.gamma, h_smean,
                               h_sinv, c, m);
    check("bn+relu train dbeta", dbeta, w_db, c, 2e-4f, 1e-5f);
    check("bn+relu train dgamma", dgamma, w_dg, c, 2e-4f, 1e-5f);
    check("bn+relu train din", din, w_din, n, 2e-5f, 1e-4f);

    dten g2 = dev_tensor(NULL, n), din2 = dev_tensor(NULL, n);
    dten dgamma2 = dev_tensor(NULL, c), dbeta2 = dev_tensor(NULL, c);
    op_relu_backward(ops, g2, dout, out, n);
    op_bn_backward_train(ops, din2, dgamma2, dbeta2, g2, in, gamma, smean, sinv, c, m);
    expect_same_bits("bn+relu train din vs unfused", din, din2, n);
    expect_same_bits("bn+relu train dgamma vs unfused", dgamma, dgamma2, c);
    expect_same_bits("bn+relu train dbeta vs unfused", dbeta, dbeta2, c);

    free(rm0), free(rv0), free(w_out), free(w_smean), free(w_sinv);
    free(h_out), free(h_smean), free(h_sinv), free(w_din), free(w_dg), free(w_db);
    bn_data_free(&d);
}

Test(ops_bn, relu_fused_train) {
    bn_relu_train_case(3, 2 * 5 * 7, 0.0f, 160);
    bn_relu_train_case(2, 40007, 0.5f, 170);
    bn_relu_train_case(4, 9, -0.3f, 180);
}

Test(ops_bn, relu_fused_train_interleaved) {
    test_ops()->cfg.bn_interleave = 1;
    bn_relu_train_case(3, 2 * 5 * 7, 0.0f, 160);
    bn_relu_train_case(2, 40007, 0.5f, 170);
    test_ops()->cfg.bn_interleave = -1;
}

Test(ops_bn, relu_fused_eval) {
    ops_ctx *ops = test_ops();
    int c = 3, m = 2 * 7 * 9 + 5;
    size_t n = (size_t)c * m;
    bn_data d = bn_data_make(c, m, 0.4f, 190);
    dten in = dev_tensor(d.in, n), gamma = dev_tensor(d.gamma, c), beta = dev_tensor(d.beta, c);
    dten rmean = dev_tensor(d.rmean, c), rvar = dev_tensor(d.rvar, c);
    dten out = dev_tensor(NULL, n), out2 = dev_tensor(NULL, n);
    op_bn_relu_forward_eval(ops, out, in, gamma, beta, rmean, rvar, c, m, 1e-5f);
    float *w_out = zeros(n);
    ref_bn_relu_forward_eval(w_out, d.in, d.gamma, d.beta, d.rmean, d.rvar, c, m, 1e-5f);
    check("bn+relu eval out", out, w_out, n, 1e-5f, 1e-5f);
    op_bn_forward_eval(ops, out2, in, gamma, beta, rmean, rvar, c, m, 1e-5f);
    op_relu_forward(ops, out2, out2, n);
    expect_same_bits("bn+relu eval out vs unfused", out, out2, n);

    float *h_out = dev_read(out, n);
    dten dout = dev_tensor(d.dout, n), din = dev_tensor(NULL, n);
    dten dgamma = dev_tensor(NULL, c), dbeta = dev_tensor(NULL, c);
    op_bn_relu_backward_eval(ops, din, dgamma, dbeta, dout, out, in, gamma, rmean, rvar, c, m,
                             1e-5f);
    float *w_din = zeros(n), *w_dg = zeros(c), *w_db = zeros(c);
    ref_bn_relu_backward_eval(w_din, w_dg, w_db, d.dout, h_out, d.in, d.gamma, d.rmean,
                              d.rvar, c, m, 1e-5f);
    check("bn+relu eval din", din, w_din, n, 1e-6f, 1e-5f);
    check("bn+relu eval dgamma", dgamma, w_dg, c, 2e-5f, 1e-5f);
    check("bn+relu eval dbeta", dbeta, w_db, c, 2e-5f, 1e-5f);
    dten g2 = dev_tensor(NULL, n), din2 = dev_tensor(NULL, n);
    op_relu_backward(ops, g2, dout, out, n);
    op_bn_backward_eval(ops, din2, DTEN_NONE, DTEN_NONE, g2, in, gamma, rmean, rvar, c, m,
                        1e-5f);
    expect_same_bits("bn+relu eval din vs unfused", din, din2, n);
    free(w_out), free(h_out), free(w_din), free(w_dg), free(w_db);
    bn_data_free(&d);
}

// Hand-computed: x = 1 2 3 4, mean 2.5, biased var 1.25, unbiased var 5/3.
Test(ops_bn, running_stats_unbiased) {
    ops_ctx *ops = test_ops();
    float x[4] = {1, 2, 3, 4}, one = 1.0f, zero = 0.0f;
    dten in = dev_tensor(x, 4), gamma = dev_tensor(&one, 1), beta = dev_tensor(&zero, 1);
    dten rmean = dev_tensor(&zero, 1), rvar = dev_tensor(&one, 1);
    dten out = dev_tensor(NULL, 4), smean = dev_tensor(NULL, 1), sinv = dev_tensor(NULL, 1);
    op_bn_forward_train(ops, out, smean, sinv, rmean, rvar, in, gamma, beta, 1, 4, 0.1f, 1e-5f);
    float w_mean = 2.5f, w_inv = (float)(1.0 / sqrt(1.25 + 1e-5));
    float w_rmean = 0.25f, w_rvar = (float)(0.9 + 0.1 * 5.0 / 3.0);
    check("save_mean", smean, &w_mean, 1, 0, 1e-6f);
    check("save_invstd (biased variance)", sinv, &w_inv, 1, 0, 1e-6f);
    check("running_mean", rmean, &w_rmean, 1, 0, 1e-6f);
    check("running_var (unbiased variance)", rvar, &w_rvar, 1, 0, 1e-6f);
    // A second step moves the running statistics again from their new values.
    op_bn_forward_train(ops, out, smean, sinv, rmean, rvar, in, gamma, beta, 1, 4, 0.1f, 1e-5f);
    float w_rmean2 = 0.9f * 0.25f + 0.25f, w_rvar2 = (float)(0.9 * w_rvar + 0.1 * 5.0 / 3.0);
    check("running_mean step 2", rmean, &w_rmean2, 1, 0, 1e-6f);
    check("running_var step 2", rvar, &w_rvar2, 1, 0, 1e-6f);
    // Without running statistics the step still normalises (and touches nothing else).
    op_bn_forward_train(ops, out, smean, sinv, DTEN_NONE, DTEN_NONE, in, gamma, beta, 1, 4, 0.1f,
                        1e-5f);
    check("save_invstd (no running stats)", sinv, &w_inv, 1, 0, 1e-6f);
}

Test(ops_bn, eval_forward_backward) {
    ops_ctx *ops = test_ops();
    int c = 4, m = 3 * 5 * 3;
    size_t n = (size_t)c * m;
    bn_data d = bn_data_make(c, m, 0.3f, 200);
    dten in = dev_tensor(d.in, n), gamma = dev_tensor(d.gamma, c), beta = dev_tensor(d.beta, c);
    dten rmean = dev_tensor(d.rmean, c), rvar = dev_tensor(d.rvar, c);
    dten out = dev_tensor(NULL, n);
    op_bn_forward_eval(ops, out, in, gamma, beta, rmean, rvar, c, m, 1e-5f);
    float *w_out = zeros(n);
    ref_bn_forward_eval(w_out, d.in, d.gamma, d.beta, d.rmean, d.rvar, c, m, 1e-5f);
    check("bn eval out", out, w_out, n, 1e-5f, 1e-5f);    // a few flops per value
    check("bn eval running_mean untouched", rmean, d.rmean, c, 0, 0);
    check("bn eval running_var untouched", rvar, d.rvar, c, 0, 0);

    dten dout = dev_tensor(d.dout, n), din = dev_tensor(NULL, n);
    dten dgamma = dev_tensor(NULL, c), dbeta = dev_tensor(NULL, c);
    op_bn_backward_eval(ops, din, dgamma, dbeta, dout, in, gamma, rmean, rvar, c, m, 1e-5f);
    float *w_din = zeros(n), *w_dg = zeros(c), *w_db = zeros(c);
    ref_bn_backward_eval(w_din, w_dg, w_db, d.dout, d.in, d.gamma, d.rmean, d.rvar, c, m,
                         1e-5f);
    check("bn eval din", din, w_din, n, 1e-6f, 1e-5f);   // one product per value
    check("bn eval dgamma", dgamma, w_dg, c, 2e-5f, 1e-5f);  // sums of 45 terms
    check("bn eval dbeta", dbeta, w_db, c, 2e-5f, 1e-5f);
    free(w_out), free(w_din), free(w_dg), free(w_db);
    bn_data_free(&d);
}

// Every subset of (din, dgamma, dbeta): the wanted ones are right, the others never written.
Test(ops_bn, skip_outputs) {
    ops_ctx *ops = test_ops();
    int c = 2, m = 30;
    size_t n = (size_t)c * m;
    bn_data d = bn_data_make(c, m, 0.0f, 300);
    dten in = dev_tensor(d.in, n), gamma = dev_tensor(d.gamma, c), beta = dev_tensor(d.beta, c);
    dten rmean = dev_tensor(d.rmean, c), rvar = dev_tensor(d.rvar, c), dout = dev_tensor(d.dout, n);
    dten out = dev_tensor(NULL, n), smean = dev_tensor(NULL, c), sinv = dev_tensor(NULL, c);
    op_bn_forward_train(ops, out, smean, sinv, rmean, rvar, in, gamma, beta, c, m, 0.1f, 1e-5f);
    float *h_smean = dev_read(smean, c), *h_sinv = dev_read(sinv, c);
    float *w_din = zeros(n), *w_dg = zeros(c), *w_db = zeros(c);
    ref_bn_backward_train(w_din, w_dg, w_db, d.dout, d.in, d.gamma, h_smean, h_sinv, c, m);
    float *sent = malloc(n * sizeof *sent);
    for (size_t i = 0; i < n; i++) sent[i] = SENTINEL;
    for (int mask = 0; mask < 8; mask++) {
        for (int train = 0; train < 2; train++) {
            dten din = dev_tensor(NULL, n), dg = dev_tensor(NULL, c), db = dev_tensor(NULL, c);
            dten a = (mask & 1) ? din : DTEN_NONE, b = (mask & 2) ? dg : DTEN_NONE;
            dten e = (mask & 4) ? db : DTEN_NONE;
            if (train) {
                op_bn_backward_train(ops, a, b, e, dout, in, gamma, smean, sinv, c, m);
                check("bn din", din, (mask & 1) ? w_din : sent, n, 2e-5f, 1e-4f);
                check("bn dgamma", dg, (mask & 2) ? w_dg : sent, c, 1e-4f, 1e-5f);
                check("bn dbeta", db, (mask & 4) ? w_db : sent, c, 1e-4f, 1e-5f);
            } else {
                // Only the skipping is under test here: written outputs are not sentinels.
                op_bn_backward_eval(ops, a, b, e, dout, in, gamma, rmean, rvar, c, m, 1e-5f);
                float *g = dev_read(din, n), *gg = dev_read(dg, c), *gb = dev_read(db, c);
                cr_expect_eq(g[n - 1] == SENTINEL, !(mask & 1), "eval din mask %d", mask);
                cr_expect_eq(gg[c - 1] == SENTINEL, !(mask & 2), "eval dgamma mask %d", mask);
                cr_expect_eq(gb[c - 1] == SENTINEL, !(mask & 4), "eval dbeta mask %d", mask);
                free(g), free(gg), free(gb);
            }
        }
    }
    free(h_smean), free(h_sinv), free(w_din), free(w_dg), free(w_db), free(sent);
    bn_data_free(&d);
}

// ============================== element-wise ==============================

// Includes the edge cases: -0, 0, NaN (PyTorch's relu keeps NaN; its backward uses out <= 0).
Test(ops_elementwise, relu_forward_backward) {
    ops_ctx *ops = test_ops();
    size_t n = 1001;
    float *x = rnd(n, 400, -1, 1), *g = rnd(n, 401, -1, 1);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = NAN, x[3] = -INFINITY, x[4] = INFINITY;
    float *w_out = zeros(n), *w_din = zeros(n);
    ref_relu_forward(w_out, x, n);
    ref_relu_backward(w_din, g, w_out, n);
    dten in = dev_tensor(x, n), out = dev_tensor(NULL, n), dout = dev_tensor(g, n);
    op_relu_forward(ops, out, in, n);
    check("relu out", out, w_out, n, 0, 0);
    dten din = dev_tensor(NULL, n);
    op_relu_backward(ops, din, dout, out, n);
    check("relu din", din, w_din, n, 0, 0);
    op_relu_backward(ops, dout, dout, out, n);   // in place, as the model runs it
    check("relu din (in place)", dout, w_din, n, 0, 0);
    free(x), free(g), free(w_out), free(w_din);
}

Test(ops_elementwise, add_and_add_relu) {
    ops_ctx *ops = test_ops();
    size_t n = 777;
    float *a = rnd(n, 410, -1, 1), *b = rnd(n, 411, -1, 1), *want = zeros(n);
    dten da = dev_tensor(a, n), db = dev_tensor(b, n), out = dev_tensor(NULL, n);
    op_add(ops, out, da, db, n);
    ref_add(want, a, b, n);
    check("add out", out, want, n, 0, 0);
    op_add_relu(ops, out, da, db, n);
    ref_add_relu(want, a, b, n);
    check("add_relu out", out, want, n, 0, 0);
    op_add(ops, da, da, db, n);                 // in place: the residual gradient sum
    ref_add(want, a, b, n);
    check("add out (in place)", da, want, n, 0, 0);
    free(a), free(b), free(want);
}

// ---- activations (op_act) ----

// Per kind: its name and tolerance. The piecewise-linear kinds run the same float operations
// as the reference (PyTorch's order), so they must agree bit for bit, NaN and Inf included.
// silu and sigmoid call exp, whose OpenCL error bound (3 ulp) is not libm's; the reference is
// double rounded once, so the bound is the device's error: 4 ulp relative (4 * FLT_EPSILON),
// plus an absolute 4 * FLT_EPSILON for the backward where 1 + x*(1-s) cancels near x = -1.28
// (dout is in [-1, 1]) and 1e-30 for the forward's underflow tail (exp(100) is Inf in float).
typedef struct act_case {
    op_act kind;
    const char *name;
    float atol_fwd, atol_bwd, rtol;   // all 0: exact
} act_case;

static const act_case ACT_CASES[] = {
    {OP_ACT_RELU, "relu", 0, 0, 0},
    {OP_ACT_RELU6, "relu6", 0, 0, 0},
    {OP_ACT_HARDSWISH, "hardswish", 0, 0, 0},
    {OP_ACT_HARDSIGMOID, "hardsigmoid", 0, 0, 0},
    {OP_ACT_SILU, "silu", 1e-30f, 4 * FLT_EPSILON, 4 * FLT_EPSILON},
    {OP_ACT_SIGMOID, "sigmoid", 1e-30f, 4 * FLT_EPSILON, 4 * FLT_EPSILON},
};

// The inputs: each boundary (-6, -3, 0, 3, 6) exactly and 1, 2, 3 ulp either side, -0, values
// whose exp over- or underflows, then random ones in [-8, 8]; with `special`, NaN and +-Inf.
static float *act_inputs(size_t *n, int special) {
    const float bounds[] = {-6.0f, -3.0f, 0.0f, 3.0f, 6.0f};
    size_t nb = sizeof bounds / sizeof *bounds, nrand = 1000;
    size_t cap = nb * 7 + 8 + nrand;
    float *x = rnd(cap, 470, -8.0f, 8.0f);
    size_t k = 0;
    for (size_t b = 0; b < nb; b++) {
        float lo = bounds[b], hi = bounds[b];
        x[k++] = bounds[b];
        for (int u = 0; u < 3; u++) {
            lo = nextafterf(lo, -INFINITY), hi = nextafterf(hi, INFINITY);
            x[k++] = lo, x[k++] = hi;
        }
    }
    x[k++] = -0.0f, x[k++] = 20.0f, x[k++] = -20.0f, x[k++] = 100.0f, x[k++] = -100.0f;
    if (special) x[k++] = NAN, x[k++] = INFINITY, x[k++] = -INFINITY;
    *n = k + nrand;   // the random values fill the rest
    memmove(x + k, x + cap - nrand, nrand * sizeof *x);
    return x;
}

static void act_check(const act_case *c, const char *what, dten got, const float *want,
                      size_t n, float atol) {
    char name[64];
    snprintf(name, sizeof name, "%s %s", c->name, what);
    check(name, got, want, n, atol, c->rtol);
}

// Every kind, forward and backward against the reference, out of place and in place.
Test(ops_act, forward_backward_boundaries) {
    ops_ctx *ops = test_ops();
    for (size_t t = 0; t < sizeof ACT_CASES / sizeof *ACT_CASES; t++) {
        const act_case *c = &ACT_CASES[t];
        int exact = c->rtol == 0.0f;
        size_t n;
        float *x = act_inputs(&n, exact);
        float *g = rnd(n, 471 + t, -1.0f, 1.0f);
        float *w_out = zeros(n), *w_din = zeros(n);
        ref_act_forward(c->kind, w_out, x, n);
        ref_act_backward(c->kind, w_din, g, x, n);
        dten in = dev_tensor(x, n), out = dev_tensor(NULL, n);
        dten dout = dev_tensor(g, n), din = dev_tensor(NULL, n);
        op_act_forward(ops, c->kind, out, in, n);
        act_check(c, "out", out, w_out, n, c->atol_fwd);
        op_act_backward(ops, c->kind, din, dout, in, n);
        act_check(c, "din", din, w_din, n, c->atol_bwd);
        op_act_backward(ops, c->kind, dout, dout, in, n);   // in place on dout
        act_check(c, "din (in place)", dout, w_din, n, c->atol_bwd);
        op_act_forward(ops, c->kind, in, in, n);            // in place
        act_check(c, "out (in place)", in, w_out, n, c->atol_fwd);
        free(x), free(g), free(w_out), free(w_din);
    }
}

// The gradients at the boundaries, written out: PyTorch's choice of side at each one.
Test(ops_act, boundary_gradients_written_out) {
    float x[] = {-3.0f, 0.0f, 3.0f, 6.0f}, g[] = {1.0f, 1.0f, 1.0f, 1.0f}, d[4];
    ref_act_backward(OP_ACT_RELU, d, g, x, 4);
    cr_expect(d[0] == 0 && d[1] == 0 && d[2] == 1 && d[3] == 1, "relu");
    ref_act_backward(OP_ACT_RELU6, d, g, x, 4);   // hardtanh_backward: 0 at x <= 0, x >= 6
    cr_expect(d[0] == 0 && d[1] == 0 && d[2] == 1 && d[3] == 0, "relu6");
    ref_act_backward(OP_ACT_HARDSWISH, d, g, x, 4);   // x/3 + 0.5 on the closed [-3, 3]
    cr_expect(d[0] == -0.5f && d[1] == 0.5f && d[2] == 1.5f && d[3] == 1, "hardswish");
    ref_act_backward(OP_ACT_HARDSIGMOID, d, g, x, 4);   // 1/6 on the open (-3, 3)
    cr_expect(d[0] == 0 && d[1] == 1.0f / 6.0f && d[2] == 0 && d[3] == 0, "hardsigmoid");
}

Test(ops_elementwise, avgpool_forward_backward) {
    ops_ctx *ops = test_ops();
    int shapes[3][3] = {{5, 3, 7}, {4, 2, 1}, {3, 1, 49}};   // (c, n, hw); 1x1 maps too
    for (int t = 0; t < 3; t++) {
        int c = shapes[t][0], n = shapes[t][1], hw = shapes[t][2];
        size_t cn = (size_t)c * n, nin = cn * hw;
        float *x = rnd(nin, 420 + t, -1, 1), *g = rnd(cn, 430 + t, -1, 1);
        float *w_out = zeros(cn), *w_din = zeros(nin);
        ref_avgpool_forward(w_out, x, c, n, hw);
        ref_avgpool_backward(w_din, g, c, n, hw);
        dten in = dev_tensor(x, nin), out = dev_tensor(NULL, cn);
        dten dout = dev_tensor(g, cn), din = dev_tensor(NULL, nin);
        op_avgpool_forward(ops, out, in, c, n, hw);
        op_avgpool_backward(ops, din, dout, c, n, hw);
        check("avgpool out", out, w_out, cn, 1e-6f, 1e-6f);   // a float sum of <= 49 terms
        check("avgpool din", din, w_din, nin, 0, 1e-7f);      // one division: exact
        free(x), free(g), free(w_out), free(w_din);
    }
}

// The multi-item check against the host reference: sizes that are no multiple of any group
// size or run length, an Inf or NaN at the first, a middle and the last element, both split
// patterns (contiguous runs, interleaved), and the sticky form's AND over several arrays.
Test(ops_elementwise, all_finite_positions) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    size_t sizes[] = {1, 2, 3, 255, 257, 16385, 100003, 300007};
    float bad[3] = {NAN, INFINITY, -INFINITY};
    dten flag = test_upload_i32(rt, NULL, 1);
    for (int il = 0; il < 2; il++) {
        ops->cfg.bn_interleave = il;
        for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
            size_t n = sizes[t];
            float *x = rnd(n, 445 + (unsigned)t, -1e38f, 1e38f);
            dten d = dev_tensor(x, n);
            cr_expect_eq(op_all_finite(ops, d, n, flag), ref_all_finite(x, n), "n %zu", n);
            size_t where[3] = {0, n / 2, n - 1};
            for (int w = 0; w < 3; w++) {
                float keep = x[where[w]];
                x[where[w]] = bad[w];
                dten e = dev_tensor(x, n);
                cr_expect_eq(ref_all_finite(x, n), 0);
                cr_expect_eq(op_all_finite(ops, e, n, flag), 0, "interleave %d, n %zu, %g at %zu",
                             il, n, (double)bad[w], where[w]);
                // Sticky: a finite array after a bad one leaves the flag at 0; before it, 1.
                dten ok = dev_tensor(&keep, 1);
                int32_t one = 1, got = -1;
                clrt_write(rt, flag.mem, flag.off * sizeof one, &one, sizeof one);
                op_finite_and(ops, flag, ok, 1);
                clrt_read(rt, flag.mem, flag.off * sizeof got, &got, sizeof got);
                cr_expect_eq(got, 1, "finite value keeps the flag");
                op_finite_and(ops, flag, e, n);
                op_finite_and(ops, flag, ok, 1);
                clrt_read(rt, flag.mem, flag.off * sizeof got, &got, sizeof got);
                cr_expect_eq(got, 0, "sticky after n %zu", n);
                if (n > 1) {  // exactly n values: the bad last one just past n - 1 does not count
                    cr_expect_eq(op_all_finite(ops, e, n - 1, flag), where[w] == n - 1,
                                 "n - 1 of %zu", n);
                }
                x[where[w]] = keep;
            }
            // n = 0 reads nothing: the flag says finite.
            cr_expect_eq(op_all_finite(ops, d, 0, flag), 1, "n = 0");
            free(x);
        }
    }
    ops->cfg.bn_interleave = -1;
}

Test(ops_elementwise, all_finite) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    size_t n = 12345;
    float *x = rnd(n, 440, -1e30f, 1e30f);
    dten flag = test_upload_i32(rt, NULL, 1);
    dten d = dev_tensor(x, n);
    cr_expect_eq(op_all_finite(ops, d, n, flag), 1, "finite data");
    cr_expect_eq(ref_all_finite(x, n), 1);
    float bad[4] = {INFINITY, -INFINITY, NAN, -NAN};
    size_t where[4] = {n - 1, 0, 5000, 4097};
    for (int i = 0; i < 4; i++) {
        float keep = x[where[i]];
        x[where[i]] = bad[i];
        dten e = dev_tensor(x, n);
        cr_expect_eq(op_all_finite(ops, e, n, flag), 0, "%g at %zu", (double)bad[i], where[i]);
        cr_expect_eq(ref_all_finite(x, n), 0);
        x[where[i]] = keep;
    }
    // The check reads exactly n values: a NaN just past the end does not count.
    x[n - 1] = NAN;
    cr_expect_eq(op_all_finite(ops, dev_tensor(x, n), n - 1, flag), 1, "n - 1 values");
    float v = 3.0f;
    cr_expect_eq(op_all_finite(ops, dev_tensor(&v, 1), 1, flag), 1, "a single value");
    free(x);
}

// ============================== max pool ==============================

static void maxpool_case(const float *x, int n, int c, int h, int w, int k, int stride,
                         int pad) {
    ops_ctx *ops = test_ops();
    pool_shape s;
    pool_shape_init(&s, n, c, h, w, k, stride, pad);
    size_t nin = (size_t)c * n * h * w, nout = (size_t)c * n * s.oh * s.ow;
    float *g = rnd(nout, 500 + h, -1, 1), *w_out = zeros(nout), *w_din = zeros(nin);
    int32_t *w_arg = calloc(nout, sizeof *w_arg);
    ref_maxpool_forward(w_out, w_arg, x, &s);
    ref_maxpool_backward(w_din, g, w_arg, &s);
    dten in = dev_tensor(x, nin), out = dev_tensor(NULL, nout), arg = dev_tensor(NULL, nout);
    op_maxpool_forward(ops, out, arg, in, &s);
    check("maxpool out", out, w_out, nout, 0, 0);           // comparisons only: exact
    check_i32("maxpool argmax", arg, w_arg, nout);
    dten dout = dev_tensor(g, nout), din = dev_tensor(NULL, nin);
    op_maxpool_backward(ops, din, dout, arg, &s);
    check("maxpool din", din, w_din, nin, 0, 0);            // same summation order: exact
    free(g), free(w_out), free(w_din), free(w_arg);
}

Test(ops_maxpool, resnet_3x3_s2_p1) {
    size_t n1 = 3 * 2 * 9 * 7, n2 = 2 * 1 * 8 * 5;
    float *x1 = rnd(n1, 510, -1, 1), *x2 = rnd(n2, 511, -1, 1);
    maxpool_case(x1, 2, 3, 9, 7, 3, 2, 1);      // odd, non-square
    maxpool_case(x2, 1, 2, 8, 5, 3, 2, 1);      // batch 1
    maxpool_case(x1, 2, 3, 9, 7, 2, 2, 0);      // 2x2/s2, the last row and column dropped
    maxpool_case(x1, 2, 3, 9, 7, 3, 1, 1);      // overlapping windows, stride 1
    free(x1), free(x2);
    // 3x3/s2 has its own backward kernel: unpadded too, and planes spanning many groups.
    size_t n3 = 3 * 2 * 37 * 29, n4 = (size_t)4 * 3 * 66 * 70;
    float *x3 = rnd(n3, 512, -1, 1), *x4 = rnd(n4, 513, -1, 1);
    maxpool_case(x3, 3, 2, 37, 29, 3, 2, 0);
    maxpool_case(x4, 4, 3, 66, 70, 3, 2, 1);
    free(x3), free(x4);
}

// PyTorch's rules: first maximum on ties, padding never wins, NaN propagates.
Test(ops_maxpool, ties_padding_nan) {
    ops_ctx *ops = test_ops();
    pool_shape s;
    pool_shape_init(&s, 1, 1, 4, 4, 3, 2, 1);   // 2x2 outputs, windows start at -1 and 1
    float ties[16], neg[16], nans[16];
    for (int i = 0; i < 16; i++) ties[i] = 2.0f, neg[i] = -INFINITY, nans[i] = (float)i;
    nans[5] = NAN, nans[6] = NAN;               // in windows 0..3; 6 is later in scan order
    int32_t first[4] = {0, 1, 4, 5};            // first in-image pixel of each window
    int32_t nan_arg[4] = {5, 6, 5, 6};
    float *inputs[3] = {ties, neg, nans};
    int32_t *want_arg[3] = {first, first, nan_arg};
    const char *names[3] = {"ties (first wins)", "all -inf (padding never wins)", "NaN"};
    for (int t = 0; t < 3; t++) {
        dten in = dev_tensor(inputs[t], 16), out = dev_tensor(NULL, 4), arg = dev_tensor(NULL, 4);
        op_maxpool_forward(ops, out, arg, in, &s);
        float w_out[4];
        int32_t w_arg[4];
        ref_maxpool_forward(w_out, w_arg, inputs[t], &s);
        for (int i = 0; i < 4; i++)
            cr_expect_eq(w_arg[i], want_arg[t][i], "reference %s argmax[%d]", names[t], i);
        check(names[t], out, w_out, 4, 0, 0);
        check_i32(names[t], arg, want_arg[t], 4);
    }
    maxpool_case(ties, 1, 1, 4, 4, 3, 2, 1);    // tied gradients go to the first pixel
}

// ============================== linear ==============================

static void linear_case(int k, int i, int n, uint64_t seed) {
    ops_ctx *ops = test_ops();
    size_t nx = (size_t)i * n, nw = (size_t)k * i, nout = (size_t)k * n;
    float *x = rnd(nx, seed, -1, 1), *w = rnd(nw, seed + 1, -0.3f, 0.3f);
    float *b = rnd(k, seed + 2, -0.3f, 0.3f), *g = rnd(nout, seed + 3, -1, 1);
    float *w_out = zeros(nout), *w_dx = zeros(nx), *w_dw = zeros(nw), *w_db = zeros(k);
    ref_linear_forward(w_out, x, w, b, k, i, n);
    ref_linear_backward(w_dx, w_dw, w_db, g, x, w, k, i, n);
    dten dx_ = dev_tensor(x, nx), dw_ = dev_tensor(w, nw), db_ = dev_tensor(b, k);
    dten out = dev_tensor(NULL, nout), dout = dev_tensor(g, nout);
    op_linear_forward(ops, out, dx_, dw_, db_, k, i, n);
    // Sums of I <= 37 products of values <= 0.3 plus the bias: 1e-6 absolute.
    check("linear out", out, w_out, nout, 1e-6f, 1e-5f);
    dten dx = dev_tensor(NULL, nx), dw = dev_tensor(NULL, nw), db = dev_tensor(NULL, k);
    op_linear_backward(ops, dx, dw, db, dout, dx_, dw_, k, i, n);
    check("linear dx", dx, w_dx, nx, 1e-6f, 1e-5f);   // sums of K <= 10 products
    check("linear dw", dw, w_dw, nw, 1e-6f, 1e-5f);   // sums of N <= 5 products
    check("linear db", db, w_db, k, 1e-6f, 1e-5f);    // sums of N <= 5 values
    // Skipped outputs: each alone.
    dten sx = dev_tensor(NULL, nx), sw = dev_tensor(NULL, nw), sb = dev_tensor(NULL, k);
    op_linear_backward(ops, DTEN_NONE, sw, DTEN_NONE, dout, dx_, dw_, k, i, n);
    op_linear_backward(ops, sx, DTEN_NONE, DTEN_NONE, dout, dx_, dw_, k, i, n);
    op_linear_backward(ops, DTEN_NONE, DTEN_NONE, sb, dout, DTEN_NONE, DTEN_NONE, k, i, n);
    check("linear dx alone", sx, w_dx, nx, 1e-6f, 1e-5f);
    check("linear dw alone", sw, w_dw, nw, 1e-6f, 1e-5f);
    check("linear db alone", sb, w_db, k, 1e-6f, 1e-5f);
    free(x), free(w), free(b), free(g), free(w_out), free(w_dx), free(w_dw), free(w_db);
}

Test(ops_linear, forward_backward) {
    linear_case(10, 37, 5, 600);   // the fc head, 10 classes
    linear_case(3, 8, 1, 610);     // batch 1
}

// ============================== cross-entropy ==============================

static void xent_case(int k, int n, float scale, uint64_t seed) {
    ops_ctx *ops = test_ops();
    size_t nz = (size_t)k * n;
    float *z = rnd(nz, seed, -scale, scale);
    int32_t *y = malloc((size_t)n * sizeof *y);
    for (int i = 0; i < n; i++) y[i] = (int32_t)((i * 7 + 3) % k);
    float w_mean, *w_losses = zeros(n), *w_dz = zeros(nz);
    ref_xent(&w_mean, w_losses, w_dz, z, y, k, n);
    dten dz_in = dev_tensor(z, nz), labels = dev_tensor(y, n);
    dten mean = dev_tensor(NULL, 1), losses = dev_tensor(NULL, n), dz = dev_tensor(NULL, nz);
    op_xent_forward_backward(ops, mean, losses, dz, dz_in, labels, k, n);
    // log-sum-exp in float over K terms: losses to ~1e-6 relative of the largest logit.
    float atol = 2e-6f * (scale > 1 ? scale : 1);
    check("xent losses", losses, w_losses, n, atol, 1e-5f);
    check("xent loss_mean", mean, &w_mean, 1, atol, 1e-5f);
    check("xent dlogits", dz, w_dz, nz, 1e-7f, 1e-4f);   // softmax / N, relative
    free(z), free(y), free(w_losses), free(w_dz);
}

Test(ops_xent, forward_backward) {
    xent_case(10, 7, 3.0f, 700);      // the 10-class head
    xent_case(1000, 3, 5.0f, 710);    // ImageNet's head
    xent_case(10, 1, 1.0f, 720);      // batch 1
    xent_case(10, 33, 80.0f, 730);    // exp would overflow without the max shift
}

Test(ops_xent, skip_outputs_and_bad_label) {
    ops_ctx *ops = test_ops();
    int k = 4, n = 3;
    float z[12];
    test_fill_uniform(z, 12, 740, -2, 2);
    int32_t y[3] = {1, 3, 0};
    float w_mean, w_losses[3], w_dz[12];
    ref_xent(&w_mean, w_losses, w_dz, z, y, k, n);
    dten dz_in = dev_tensor(z, 12), labels = dev_tensor(y, 3);
    dten mean = dev_tensor(NULL, 1), dz = dev_tensor(NULL, 12), losses = dev_tensor(NULL, 3);
    op_xent_forward_backward(ops, mean, DTEN_NONE, DTEN_NONE, dz_in, labels, k, n);
    check("xent mean alone", mean, &w_mean, 1, 1e-6f, 1e-5f);
    op_xent_forward_backward(ops, DTEN_NONE, DTEN_NONE, dz, dz_in, labels, k, n);
    check("xent dlogits alone", dz, w_dz, 12, 1e-7f, 1e-4f);
    op_xent_forward_backward(ops, DTEN_NONE, losses, DTEN_NONE, dz_in, labels, k, n);
    check("xent losses alone", losses, w_losses, 3, 1e-6f, 1e-5f);
    // A label out of range poisons its sample and the mean with NaN instead of reading
    // outside the logits.
    int32_t bad[3] = {1, 4, 0};
    dten bad_labels = dev_tensor(bad, 3);
    op_xent_forward_backward(ops, mean, losses, dz, dz_in, bad_labels, k, n);
    float *gm = dev_read(mean, 1), *gl = dev_read(losses, 3), *gz = dev_read(dz, 12);
    cr_expect(isnan(gm[0]) && isnan(gl[1]) && isnan(gz[1 * n + 1]), "bad label gives NaN");
    cr_expect(!isnan(gl[0]) && !isnan(gl[2]), "other samples unaffected");
    free(gm), free(gl), free(gz);
}

// CrossEntropyLoss(label_smoothing=eps) in double: loss = (1 - eps) nll + eps / K *
// sum_j -log p_j; dlogits = (p - ((1 - eps) onehot + eps / K)) / N.
static void ref_xent_smooth(float *mean, float *losses, float *dz, const float *z,
                            const int32_t *y, int k, int n, double eps) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0, slp = 0;
        for (int j = 0; j < k; j++) mx = fmax(mx, z[(size_t)j * n + i]);
        for (int j = 0; j < k; j++) sum += exp(z[(size_t)j * n + i] - mx);
        double ls = log(sum);
        for (int j = 0; j < k; j++) slp += z[(size_t)j * n + i] - mx - ls;
        double l = -(1 - eps) * (z[(size_t)y[i] * n + i] - mx - ls) - eps / k * slp;
        losses[i] = (float)l;
        total += l;
        for (int j = 0; j < k; j++) {
            double p = exp(z[(size_t)j * n + i] - mx - ls);
            double t = (1 - eps) * (j == y[i]) + eps / k;
            dz[(size_t)j * n + i] = (float)((p - t) / n);
        }
    }
    *mean = (float)(total / n);
}

Test(ops_xent, label_smoothing) {
    ops_ctx *ops = test_ops();
    const struct { int k, n; float scale, eps; } cases[] = {
        { 10, 7, 3.0f, 0.1f }, { 1000, 3, 5.0f, 0.2f }, { 5, 16, 30.0f, 0.05f }, { 3, 2, 1.0f, 1.0f },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int k = cases[c].k, n = cases[c].n;
        size_t nz = (size_t)k * n;
        float *z = rnd(nz, 750 + c, -cases[c].scale, cases[c].scale);
        int32_t *y = malloc((size_t)n * sizeof *y);
        for (int i = 0; i < n; i++) y[i] = (int32_t)((i * 5 + 1) % k);
        float w_mean, *w_losses = zeros(n), *w_dz = zeros(nz);
        ref_xent_smooth(&w_mean, w_losses, w_dz, z, y, k, n, cases[c].eps);
        dten dz_in = dev_tensor(z, nz), labels = dev_tensor(y, n);
        dten mean = dev_tensor(NULL, 1), losses = dev_tensor(NULL, n), dz = dev_tensor(NULL, nz);
        op_xent_smooth_forward_backward(ops, mean, losses, dz, dz_in, labels, k, n, cases[c].eps);
        // The smoothing term sums K log-probabilities in float: a K-fold larger error bound.
        float atol = 2e-6f * (cases[c].scale > 1 ? cases[c].scale : 1) * (k > 10 ? 50 : 5);
        check("smoothed xent losses", losses, w_losses, n, atol, 1e-5f);
        check("smoothed xent loss_mean", mean, &w_mean, 1, atol, 1e-5f);
        check("smoothed xent dlogits", dz, w_dz, nz, 1e-7f, 1e-4f);
        free(z), free(y), free(w_losses), free(w_dz);
    }
}

// ============================== SGD ==============================

static void sgd_case(float momentum, float weight_decay, int steps) {
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    float *p = rnd(n, 800, -1, 1), *buf = zeros(n);
    dten dp = dev_tensor(p, n), dbuf = momentum != 0.0f ? dev_tensor(NULL, n) : DTEN_NONE;
    for (int t = 0; t < steps; t++) {
        float *g = rnd(n, 810 + t, -1, 1);
        dten dg = dev_tensor(g, n);
        op_sgd_step(ops, dp, dg, dbuf, n, 0.01f, momentum, weight_decay, t == 0);
        ref_sgd_step(p, g, buf, n, 0.01f, momentum, weight_decay, t == 0);
        free(g);
    }
    // The same float operations, but the device may fuse a multiply-add: one rounding less
    // moves a result by up to an ulp of the product. Params stay below ~1.1 (ulp 1.2e-7),
    // buffers below ~4 (ulp 2.4e-7, cancellation can leave the sum far smaller): two ulps.
    check("sgd params", dp, p, n, 2.4e-7f, 1e-6f);
    if (momentum != 0.0f) check("sgd momentum buffers", dbuf, buf, n, 4.8e-7f, 1e-6f);
    free(p), free(buf);
}

Test(ops_sgd, first_step_copies_gradient) {
    ops_ctx *ops = test_ops();
    // First step: buf = g, p -= lr * g; the old buffer content is ignored (here NaN).
    float p[3] = {1, 2, 3}, g[3] = {0.5f, -1, 2}, buf[3] = {NAN, NAN, NAN};
    dten dp = dev_tensor(p, 3), dg = dev_tensor(g, 3), db = dev_tensor(buf, 3);
    op_sgd_step(ops, dp, dg, db, 3, 0.1f, 0.9f, 0.0f, 1);
    float w_p[3] = {1 - 0.1f * 0.5f, 2 + 0.1f, 3 - 0.1f * 2};
    check("sgd first step params", dp, w_p, 3, 0, 1e-7f);
    check("sgd first step buffer", db, g, 3, 0, 0);
    // Second step: buf = 0.9 * buf + g.
    op_sgd_step(ops, dp, dg, db, 3, 0.1f, 0.9f, 0.0f, 0);
    float w_b[3] = {0.9f * 0.5f + 0.5f, 0.9f * -1 - 1, 0.9f * 2 + 2};
    float w_p2[3] = {w_p[0] - 0.1f * w_b[0], w_p[1] - 0.1f * w_b[1], w_p[2] - 0.1f * w_b[2]};
    check("sgd second step buffer", db, w_b, 3, 0, 1e-6f);
    check("sgd second step params", dp, w_p2, 3, 0, 1e-6f);
}

Test(ops_sgd, momentum_steps) { sgd_case(0.9f, 0.0f, 4); }
Test(ops_sgd, weight_decay) { sgd_case(0.9f, 5e-4f, 3); }
Test(ops_sgd, momentum_zero_no_buffer) { sgd_case(0.0f, 1e-2f, 2); }

// The guarded form: with the guard at 1 it writes what op_sgd_step writes, bitwise; with the
// guard at 0 (another value than 1) it writes nothing, not even where the gradient is Inf.
Test(ops_sgd, guarded_skips_unless_the_guard_is_one) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    float *p = rnd(n, 850, -1, 1), *g = rnd(n, 851, -1, 1);
    dten dg = dev_tensor(g, n);
    dten pa = dev_tensor(p, n), ba = dev_tensor(NULL, n);
    dten pb = dev_tensor(p, n), bb = dev_tensor(NULL, n);
    int32_t one = 1, got = -1;
    dten guard = test_upload_i32(rt, &one, 1);
    for (int t = 0; t < 2; t++) {
        op_sgd_step(ops, pa, dg, ba, n, 0.01f, 0.9f, 1e-4f, t == 0);
        op_sgd_step_guarded(ops, pb, dg, bb, n, 0.01f, 0.9f, 1e-4f, t == 0, guard);
    }
    float *wa = dev_read(pa, n), *wb = dev_read(pb, n);
    float *ma = dev_read(ba, n), *mb = dev_read(bb, n);
    cr_expect(memcmp(wa, wb, n * sizeof(float)) == 0, "guarded params equal bitwise");
    cr_expect(memcmp(ma, mb, n * sizeof(float)) == 0, "guarded momentum equal bitwise");
    clrt_read(rt, guard.mem, guard.off * sizeof got, &got, sizeof got);
    cr_expect_eq(got, 1, "the guard is only read");
    float inf = INFINITY;
    clrt_write(rt, dg.mem, (dg.off + 7) * sizeof(float), &inf, sizeof inf);
    int32_t closed[2] = {0, 2};
    for (int c = 0; c < 2; c++) {
        clrt_write(rt, guard.mem, guard.off * sizeof got, &closed[c], sizeof closed[c]);
        op_sgd_step_guarded(ops, pb, dg, bb, n, 0.01f, 0.9f, 1e-4f, 0, guard);
        float *wc = dev_read(pb, n), *mc = dev_read(bb, n);
        cr_expect(memcmp(wb, wc, n * sizeof(float)) == 0, "guard %d leaves params", closed[c]);
        cr_expect(memcmp(mb, mc, n * sizeof(float)) == 0, "guard %d leaves momentum", closed[c]);
        free(wc), free(mc);
    }
    free(p), free(g), free(wa), free(wb), free(ma), free(mb);
}

// ============================== optimizers (cl/optim.cl) ==============================

// A per-float decay selector on the device (uchar, n): every 7th float a "norm" parameter.
static dten sel_tensor(size_t n, unsigned char **host) {
    unsigned char *h = malloc(n);
    cr_assert_not_null(h);
    for (size_t i = 0; i < n; i++) h[i] = i % 7 == 3;
    cl_mem mem = clrt_alloc(test_rt(), n, "test selector");
    clrt_write(test_rt(), mem, 0, h, n);
    *host = h;
    return (dten){ mem, 0 };
}

// sgd_step_ex against the reference over a few steps: Nesterov, the selector, both decays.
static void sgd_ex_case(float momentum, int nesterov, float decay, float norm_decay, int steps) {
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    unsigned char *hsel;
    dten sel = sel_tensor(n, &hsel);
    float *p = rnd(n, 860, -1, 1), *buf = zeros(n);
    dten dp = dev_tensor(p, n), dbuf = dev_tensor(NULL, n);
    for (int t = 0; t < steps; t++) {
        float *g = rnd(n, 870 + t, -1, 1);
        dten dg = dev_tensor(g, n);
        op_sgd_args a = { 0.01f, momentum, decay, norm_decay, nesterov, t == 0 };
        op_sgd_step_ex(ops, dp, dg, momentum != 0.0f ? dbuf : DTEN_NONE, sel, DTEN_NONE, n, &a);
        ref_sgd_step_ex(p, g, buf, hsel, n, 0.01f, momentum, decay, norm_decay, nesterov, t == 0);
        free(g);
    }
    // sgd_case's bound: the same float operations, one multiply-add the device may fuse.
    check("sgd_ex params", dp, p, n, 2.4e-7f, 1e-6f);
    expect_guards("sgd_ex params", dp, n);
    if (momentum != 0.0f) check("sgd_ex momentum buffers", dbuf, buf, n, 4.8e-7f, 1e-6f);
    free(p), free(buf), free(hsel);
}

Test(ops_optim, sgd_nesterov) { sgd_ex_case(0.9f, 1, 1e-3f, 1e-3f, 3); }
Test(ops_optim, sgd_norm_decay) { sgd_ex_case(0.9f, 0, 5e-2f, 0.0f, 3); }
Test(ops_optim, sgd_no_momentum_norm_decay) { sgd_ex_case(0.0f, 0, 0.0f, 1e-2f, 2); }

// Without Nesterov and selector, sgd_step_ex writes sgd_step's bits.
Test(ops_optim, sgd_ex_is_sgd_step) {
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    float *p = rnd(n, 880, -1, 1), *g = rnd(n, 881, -1, 1);
    dten dg = dev_tensor(g, n), pa = dev_tensor(p, n), ba = dev_tensor(NULL, n);
    dten pb = dev_tensor(p, n), bb = dev_tensor(NULL, n);
    for (int t = 0; t < 2; t++) {
        op_sgd_step(ops, pa, dg, ba, n, 0.01f, 0.9f, 1e-4f, t == 0);
        op_sgd_args a = { 0.01f, 0.9f, 1e-4f, 1e-4f, 0, t == 0 };
        op_sgd_step_ex(ops, pb, dg, bb, DTEN_NONE, DTEN_NONE, n, &a);
    }
    expect_same_bits("sgd_ex params", pa, pb, n);
    expect_same_bits("sgd_ex momentum", ba, bb, n);
    free(p), free(g);
}

static void adam_case(int decoupled, double decay, double norm_decay, int steps) {
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    unsigned char *hsel;
    dten sel = sel_tensor(n, &hsel);
    float *p = rnd(n, 890, -1, 1), *m = zeros(n), *v = zeros(n);
    dten dp = dev_tensor(p, n), dm = dev_tensor(m, n), dv = dev_tensor(v, n);
    for (int t = 0; t < steps; t++) {
        float *g = rnd(n, 900 + t, -1, 1);
        g[5] = 0;  // a zero gradient: v stays 0 at step 1 and the update divides by eps
        dten dg = dev_tensor(g, n);
        op_adam_args a = { 1e-3, 0.9, 0.999, 1e-8, decay, norm_decay, decoupled, t + 1 };
        op_adam_step(ops, dp, dg, dm, dv, sel, DTEN_NONE, n, &a);
        ref_adam_step(p, g, m, v, hsel, n, 1e-3, 0.9, 0.999, 1e-8, decay, norm_decay, decoupled,
                      t + 1);
        free(g);
    }
    // The same float operations; the device may fuse the two multiply-adds and round its
    // division and square root within OpenCL's ulps: a few ulps of each moment and of the
    // update (lr 1e-3 on weights below ~1.1).
    check("adam exp_avg", dm, m, n, 2e-7f, 1e-6f);
    check("adam exp_avg_sq", dv, v, n, 1e-9f, 1e-6f);
    check("adam params", dp, p, n, 4e-7f, 1e-6f);
    expect_guards("adam params", dp, n);
    expect_guards("adam exp_avg_sq", dv, n);
    free(p), free(m), free(v), free(hsel);
}

Test(ops_optim, adam_l2) { adam_case(0, 1e-2, 1e-2, 3); }
Test(ops_optim, adam_norm_decay) { adam_case(0, 5e-2, 0.0, 3); }
Test(ops_optim, adamw_decoupled) { adam_case(1, 5e-2, 0.0, 3); }

// Guarded: with the guard at 1, the unguarded launch's bits; at 0 or 2 nothing is written.
Test(ops_optim, guarded_skip_unless_the_guard_is_one) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    float *p = rnd(n, 910, -1, 1), *g = rnd(n, 911, -1, 1);
    dten dg = dev_tensor(g, n);
    int32_t one = 1;
    dten guard = test_upload_i32(rt, &one, 1);
    for (int kind = 0; kind < 2; kind++) {  // 0: sgd_step_ex (Nesterov), 1: adam_step (AdamW)
        float *z = zeros(n);  // torch's zeros_like moments
        dten pa = dev_tensor(p, n), ma = dev_tensor(z, n), va = dev_tensor(z, n);
        dten pb = dev_tensor(p, n), mb = dev_tensor(z, n), vb = dev_tensor(z, n);
        free(z);
        clrt_write(rt, guard.mem, guard.off * 4, &one, sizeof one);
        for (int t = 0; t < 3; t++) {
            int32_t gv = t == 2 ? (kind ? 0 : 2) : 1;  // the third step is closed
            clrt_write(rt, guard.mem, guard.off * 4, &gv, sizeof gv);
            dten ug = t == 2 ? DTEN_NONE : dg;  // the unguarded twin takes only the open steps
            if (kind == 0) {
                op_sgd_args a = { 0.01f, 0.9f, 1e-4f, 0.0f, 1, t == 0 };
                if (ug.mem) op_sgd_step_ex(ops, pa, dg, ma, DTEN_NONE, DTEN_NONE, n, &a);
                op_sgd_step_ex(ops, pb, dg, mb, DTEN_NONE, guard, n, &a);
            } else {
                op_adam_args a = { 1e-3, 0.9, 0.999, 1e-8, 1e-2, 1e-2, 1, t + 1 };
                if (ug.mem) op_adam_step(ops, pa, dg, ma, va, DTEN_NONE, DTEN_NONE, n, &a);
                op_adam_step(ops, pb, dg, mb, vb, DTEN_NONE, guard, n, &a);
            }
        }
        expect_same_bits(kind ? "guarded adam params" : "guarded sgd params", pa, pb, n);
        expect_same_bits(kind ? "guarded adam exp_avg" : "guarded sgd momentum", ma, mb, n);
        if (kind) expect_same_bits("guarded adam exp_avg_sq", va, vb, n);
    }
    free(p), free(g);
}

// clip_grad_norm_: the norm, the clamped coefficient and the scaled gradients, for a norm
// above max_norm (clipped) and below it (coefficient 1: the gradients stay, bitwise).
Test(ops_optim, clip_grad_norm) {
    ops_ctx *ops = test_ops();
    size_t n = 100003;
    for (int c = 0; c < 2; c++) {
        float *g = rnd(n, 920 + c, -1, 1);
        double max_norm = c == 0 ? 10.0 : 1e4, coef;
        dten dg = dev_tensor(g, n), partial = dev_tensor(NULL, OPS_CLIP_GROUPS);
        dten out = dev_tensor(NULL, 2);
        op_clip_grad_norm(ops, dg, n, (float)max_norm, partial, out);
        double norm = ref_clip_grad_norm(g, n, max_norm, &coef);
        float *o = dev_read(out, 2);
        // A float sum of 1e5 squares in a fixed tree: relative error well under 1e-5.
        cr_expect(fabs(o[0] - norm) <= 1e-5 * norm, "clip norm %.9g, want %.9g", (double)o[0],
                  norm);
        cr_expect(fabs(o[1] - coef) <= 1e-5 * coef, "clip coef %.9g, want %.9g", (double)o[1],
                  coef);
        if (c == 1) cr_expect_eq(o[1], 1.0f, "coef clamped to 1");
        check("clipped gradients", dg, g, n, 1e-7f, 2e-5f);
        expect_guards("clipped gradients", dg, n);
        free(o), free(g);
    }
}

// Accumulation: acc = g1, acc += g2, g3 = (acc + g3) * 1/3, as the float sums in order.
Test(ops_optim, grad_accumulate) {
    ops_ctx *ops = test_ops();
    size_t n = 1003;
    float *g[3], *want = zeros(n);
    for (int k = 0; k < 3; k++) g[k] = rnd(n, 930 + k, -1, 1);
    for (size_t i = 0; i < n; i++) want[i] = ((g[0][i] + g[1][i]) + g[2][i]) * (1.0f / 3);
    dten acc = dev_tensor(NULL, n), dg[3];
    for (int k = 0; k < 3; k++) dg[k] = dev_tensor(g[k], n);
    for (int k = 0; k < 3; k++) op_grad_accumulate(ops, acc, dg[k], n, k, k == 2 ? 1.0f / 3 : 1.0f);
    check("accumulated mean", dg[2], want, n, 0, 0);
    expect_same_bits("gradients summed are only read", dg[0], dev_tensor(g[0], n), n);
    expect_guards("accumulator", acc, n);
    expect_guards("accumulated mean", dg[2], n);
    for (int k = 0; k < 3; k++) free(g[k]);
    free(want);
}

// ============================== determinism ==============================

// The reduction-bearing ops, twice on the same inputs: bit-identical results.
Test(ops_determinism, reductions_repeat_bitwise) {
    ops_ctx *ops = test_ops();
    int c = 3, m = 1000;
    size_t n = (size_t)c * m;
    bn_data d = bn_data_make(c, m, 0.2f, 900);
    dten in = dev_tensor(d.in, n), gamma = dev_tensor(d.gamma, c), beta = dev_tensor(d.beta, c);
    dten dout = dev_tensor(d.dout, n);
    dten r[2][6];
    for (int t = 0; t < 2; t++) {
        dten out = dev_tensor(NULL, n), sm = dev_tensor(NULL, c), si = dev_tensor(NULL, c);
        dten din = dev_tensor(NULL, n), dg = dev_tensor(NULL, c), db = dev_tensor(NULL, c);
        op_bn_forward_train(ops, out, sm, si, DTEN_NONE, DTEN_NONE, in, gamma, beta, c, m, 0.1f,
                            1e-5f);
        op_bn_backward_train(ops, din, dg, db, dout, in, gamma, sm, si, c, m);
        r[t][0] = out, r[t][1] = sm, r[t][2] = si, r[t][3] = din, r[t][4] = dg, r[t][5] = db;
    }
    const char *bn_names[6] = {"bn out", "bn mean", "bn invstd", "bn din", "bn dgamma",
                               "bn dbeta"};
    size_t bn_sizes[6] = {n, c, c, n, c, c};
    for (int i = 0; i < 6; i++) expect_same_bits(bn_names[i], r[0][i], r[1][i], bn_sizes[i]);

    conv_shape s;
    conv_shape_init(&s, 3, 4, 9, 7, 5, 3, 2, 1);
    float *x = rnd(conv_in_n(&s), 910, -1, 1), *w = rnd(conv_w_n(&s), 911, -1, 1);
    float *g = rnd(conv_out_n(&s), 912, -1, 1);
    dten cx = dev_tensor(x, conv_in_n(&s)), cw = dev_tensor(w, conv_w_n(&s));
    dten cg = dev_tensor(g, conv_out_n(&s)), work = dev_tensor(NULL, conv_workspace_floats(&s));
    dten cdx[2], cdw[2];
    for (int t = 0; t < 2; t++) {
        cdx[t] = dev_tensor(NULL, conv_in_n(&s)), cdw[t] = dev_tensor(NULL, conv_w_n(&s));
        op_conv2d_backward(ops, cdx[t], cdw[t], cg, cx, cw, &s, work);
    }
    expect_same_bits("conv din", cdx[0], cdx[1], conv_in_n(&s));
    expect_same_bits("conv dw", cdw[0], cdw[1], conv_w_n(&s));

    int k = 10, i = 37, nb = 33;
    float *hx = rnd((size_t)i * nb, 920, -1, 1), *hw = rnd((size_t)k * i, 921, -1, 1);
    float *hg = rnd((size_t)k * nb, 922, -3, 3);
    dten lx = dev_tensor(hx, (size_t)i * nb), lw = dev_tensor(hw, (size_t)k * i);
    dten lg = dev_tensor(hg, (size_t)k * nb);
    int32_t labels[33];
    for (int j = 0; j < nb; j++) labels[j] = j % k;
    dten ly = dev_tensor(labels, nb);
    dten ldx[2], ldw[2], ldb[2], xm[2], xl[2], xd[2];
    for (int t = 0; t < 2; t++) {
        ldx[t] = dev_tensor(NULL, (size_t)i * nb), ldw[t] = dev_tensor(NULL, (size_t)k * i);
        ldb[t] = dev_tensor(NULL, k);
        op_linear_backward(ops, ldx[t], ldw[t], ldb[t], lg, lx, lw, k, i, nb);
        xm[t] = dev_tensor(NULL, 1), xl[t] = dev_tensor(NULL, nb);
        xd[t] = dev_tensor(NULL, (size_t)k * nb);
        op_xent_forward_backward(ops, xm[t], xl[t], xd[t], lg, ly, k, nb);
    }
    expect_same_bits("linear dx", ldx[0], ldx[1], (size_t)i * nb);
    expect_same_bits("linear dw", ldw[0], ldw[1], (size_t)k * i);
    expect_same_bits("linear db", ldb[0], ldb[1], k);
    expect_same_bits("xent mean", xm[0], xm[1], 1);
    expect_same_bits("xent losses", xl[0], xl[1], nb);
    expect_same_bits("xent dlogits", xd[0], xd[1], (size_t)k * nb);
    free(x), free(w), free(g), free(hx), free(hw), free(hg);
    bn_data_free(&d);
}

// ============================== the Oclgrind set ==============================
// What `make check-oclgrind` (tools/check-oclgrind.sh) adds to the small ops_* tests above: the
// paths those reach only on a device of the other type or on shapes too large to simulate.
// Oclgrind reports a GPU; the batch-norm launchers size their groups by the device type
// (8 items on a CPU, up to 256 elsewhere), so these cases set the type the launcher reads.
// On pocl they are a few more small cases of the same references.

// Batch norm with `type`'s group size and the given split of a channel among the items.
static void bn_groups_case(cl_device_type type, int interleave) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    cl_device_type keep = rt->dev.type;
    rt->dev.type = type;
    ops->cfg.bn_interleave = interleave;
    bn_train_case(3, 2 * 5 * 7, 0.0f, 100);    // a partial last vector, idle items
    bn_train_case(2, 15, 2.0f, 150);           // fewer values than one vector
    bn_relu_train_case(4, 9, -0.3f, 180);
    // With 8 items: more than BN_BLOCK (64) vectors per item, and a tail.
    if (type == CL_DEVICE_TYPE_CPU) bn_train_case(1, 8 * 1024 + 3 * 16 + 5, 0.5f, 120);
    ops->cfg.bn_interleave = -1;
    rt->dev.type = keep;
}
Test(oclgrind, bn_cpu_contiguous) { bn_groups_case(CL_DEVICE_TYPE_CPU, 0); }
Test(oclgrind, bn_cpu_interleaved) { bn_groups_case(CL_DEVICE_TYPE_CPU, 1); }
Test(oclgrind, bn_gpu_contiguous) { bn_groups_case(CL_DEVICE_TYPE_GPU, 0); }
Test(oclgrind, bn_gpu_interleaved) { bn_groups_case(CL_DEVICE_TYPE_GPU, 1); }

// Winograd forced on (its default is CPUs only) at the smallest shape it takes (128 input
// channels, 7x7: partial tiles, batch 1); the forward only (off, the same shape runs im2col +
// GEMM, the path of every other 3x3 case here).
Test(oclgrind, winograd_forward) {
    ops_ctx *ops = test_ops();
    conv_shape s;
    conv_shape_init(&s, 1, 128, 7, 7, 2, 3, 1, 1);
    size_t nin = conv_in_n(&s), nw = conv_w_n(&s), nout = conv_out_n(&s);
    float *in = rnd(nin, 160, -1, 1), *wt = rnd(nw, 161, -1, 1), *want = zeros(nout);
    dten d_in = dev_tensor(in, nin), d_w = dev_tensor(wt, nw), d_out = dev_tensor(NULL, nout);
    dten work = dev_tensor(NULL, conv_workspace_floats(&s));
    ops->cfg.winograd = 1;
    op_conv2d_forward(ops, d_out, d_in, d_w, &s, work);
    ops->cfg.winograd = -1;
    ref_conv2d_forward(want, in, wt, &s);
    // Sums of 1152 products through the transforms (as ops_conv/k3_s1_p1_winograd).
    check("winograd forward out", d_out, want, nout, 1e-4f, 1e-5f);
    expect_guards("winograd workspace", work, conv_workspace_floats(&s));
    free(in), free(wt), free(want);
}

// Split-K on a tiny output: two chunks of k and a remainder, then gemm_splitk_reduce with a
// beta that reads C; and the same product unsplit (ops_config.splitk = 0).
Test(oclgrind, gemm_splitk) {
    ops_ctx *ops = test_ops();
    int m = 3, n = 5, k = 2 * 2048 + 77;
    cr_assert_geq(op_gemm_splitk_parts(ops, m, n, k), 3, "chunks and a remainder");
    float *a = rnd((size_t)m * k, 7, -1, 1), *b = rnd((size_t)n * k, 8, -1, 1);
    float *c = rnd((size_t)m * n, 9, -1, 1), *want = malloc((size_t)m * n * sizeof *want);
    cr_assert_not_null(want);
    dten da = dev_tensor(a, (size_t)m * k), db = dev_tensor(b, (size_t)n * k);
    ops->cfg.gemm_packed = 0;   // split-K is CLBlast's (the packed path walks all of k)
    for (int split = 1; split >= 0; split--) {
        ops->cfg.splitk = split ? -1 : 0;
        dten dc = dev_tensor(c, (size_t)m * n);
        op_gemm(ops, 0, 1, m, n, k, 1.0f, da, k, db, k, 0.5f, dc, n);
        memcpy(want, c, (size_t)m * n * sizeof *want);
        ref_gemm(0, 1, m, n, k, 1.0f, a, k, b, k, 0.5f, want, n);
        // Sums of 4173 products of [-1, 1] values in another order: float error ~1e-4.
        check(split ? "gemm split-K" : "gemm unsplit", dc, want, (size_t)m * n, 2e-4f, 1e-5f);
    }
    ops->cfg.splitk = -1;
    ops->cfg.gemm_packed = -1;
    free(a), free(b), free(c), free(want);
}

// The packed path's kernels (pack A, pack B, the tile kernel) on ragged shapes and a batch.
Test(oclgrind, gemm_packed) {
    free(gemm_case(1, 0, 1, 6, 3, 40, 1.0f, 0.0f, 1));    // a conv's three products
    free(gemm_case(1, 0, 0, 6, 40, 3, 1.0f, 0.0f, 1));
    free(gemm_case(1, 1, 0, 3, 40, 6, 1.0f, 0.0f, 1));
    free(gemm_case(1, 0, 1, 13, 45, 37, 1.0f, 0.5f, 1));
    free(gemm_case(1, 1, 0, 9, 33, 17, 1.0f, 0.0f, 2));
    for (int nt = 0; nt < 2; nt++) {   // an operand in the panel layout, read in place
        gemm_panels_case(nt, 6, 40, 27, 1.0f, 0.0f);
        gemm_panels_case(nt, 13, 9, 70, 1.0f, 0.5f);
    }
}

// A conv on the packed path (CPU devices; Oclgrind, which also calls itself a GPU, takes
// CLBlast's): im2col into panels (rows padded: 27 of them), the forward and the weight
// gradient reading them in place, a ragged last run of columns.
Test(oclgrind, conv_packed) {
    ops_ctx *ops = test_ops();
    ops->cfg.gemm_packed = 1;
    conv_case(2, 3, 5, 4, 4, 3, 1, 1, 140);
    ops->cfg.gemm_packed = -1;
}

// ============================== misuse ==============================

// PyTorch refuses to train batch norm on one value per channel; so does the launcher.
Test(ops_misuse, bn_train_one_value_per_channel, .exit_code = 1) {
    ops_ctx *ops = test_ops();
    dten t = dev_tensor(NULL, 4);
    op_bn_forward_train(ops, t, t, t, DTEN_NONE, DTEN_NONE, t, t, t, 4, 1, 0.1f, 1e-5f);
}

Test(ops_misuse, conv_without_workspace, .exit_code = 1) {
    ops_ctx *ops = test_ops();
    conv_shape s;
    conv_shape_init(&s, 1, 2, 5, 5, 2, 3, 1, 1);
    dten t = dev_tensor(NULL, 100);
    op_conv2d_forward(ops, t, t, t, &s, DTEN_NONE);
}

// ======================= gradient checks (C reference, double) =======================

typedef double (*fd_objective)(void *ctx);

// Central differences of J with respect to each of the n values of x (which J reads through
// ctx) against the reference backward's analytic gradient.
static void fd_check(const char *what, fd_objective J, void *ctx, double *x,
                     const double *analytic, size_t n) {
    const double h = 1e-5;
    double worst = 0.0;
    size_t wi = 0;
    double wfd = 0.0;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double jp = J(ctx);
        x[i] = keep - h;
        double jm = J(ctx);
        x[i] = keep;
        double fd = (jp - jm) / (2 * h);
        double err = fabs(fd - analytic[i]) / fmax(1.0, fabs(analytic[i]));
        if (err > worst || isnan(err)) worst = err, wi = i, wfd = fd;
    }
    if (getenv("CLTRAIN_TEST_REPORT"))
        fprintf(stderr, "[fd]  %-28s worst error %.3g over %zu values\n", what, worst, n);
    // Truncation O(h^2) and rounding O(eps / h) are both ~1e-10 here.
    cr_expect(worst < 1e-6, "%s: analytic %.10g vs numeric %.10g at %zu (error %.3g)", what,
              analytic[wi], wfd, wi, worst);
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double *rnd_d(size_t n, uint64_t seed, float lo, float hi) {
    float *f = rnd(n, seed, lo, hi);
    double *d = to_double(f, n);
    free(f);
    return d;
}

typedef struct conv_fd { conv_shape s; double *in, *w, *r, *out; } conv_fd;

static double conv_objective(void *p) {
    conv_fd *c = p;
    ref_conv2d_forward_d(c->out, c->in, c->w, &c->s);
    return dot_d(c->out, c->r, conv_out_n(&c->s));
}

Test(ops_gradcheck, conv) {
    conv_shape shapes[2];
    conv_shape_init(&shapes[0], 2, 3, 5, 6, 2, 3, 2, 1);
    conv_shape_init(&shapes[1], 1, 2, 9, 7, 3, 7, 2, 3);
    for (int t = 0; t < 2; t++) {
        conv_fd c = {.s = shapes[t]};
        c.in = rnd_d(conv_in_n(&c.s), 1000 + t, -1, 1);
        c.w = rnd_d(conv_w_n(&c.s), 1010 + t, -1, 1);
        c.r = rnd_d(conv_out_n(&c.s), 1020 + t, -1, 1);
        c.out = calloc(conv_out_n(&c.s), sizeof(double));
        double *din = calloc(conv_in_n(&c.s), sizeof(double));
        double *dw = calloc(conv_w_n(&c.s), sizeof(double));
        ref_conv2d_backward_d(din, dw, c.r, c.in, c.w, &c.s);
        fd_check("conv din", conv_objective, &c, c.in, din, conv_in_n(&c.s));
        fd_check("conv dw", conv_objective, &c, c.w, dw, conv_w_n(&c.s));
        free(c.in), free(c.w), free(c.r), free(c.out), free(din), free(dw);
    }
}

typedef struct bn_fd { int c, m; double *in, *gamma, *beta, *r, *out; } bn_fd;

static double bn_objective(void *p) {
    bn_fd *b = p;
    ref_bn_forward_train_d(b->out, NULL, NULL, NULL, NULL, b->in, b->gamma, b->beta, b->c,
                           b->m, 0.1, 1e-5);
    return dot_d(b->out, b->r, (size_t)b->c * b->m);
}

// Training mode: the gradient flows through the batch mean and variance too.
Test(ops_gradcheck, bn_train) {
    bn_fd b = {.c = 3, .m = 14};
    size_t n = (size_t)b.c * b.m;
    b.in = rnd_d(n, 1100, -1, 2);
    b.gamma = rnd_d(b.c, 1101, 0.5f, 1.5f);
    b.beta = rnd_d(b.c, 1102, -0.5f, 0.5f);
    b.r = rnd_d(n, 1103, -1, 1);
    b.out = calloc(n, sizeof(double));
    double sm[3], si[3], din[42], dg[3], db[3];
    ref_bn_forward_train_d(b.out, sm, si, NULL, NULL, b.in, b.gamma, b.beta, b.c, b.m, 0.1,
                           1e-5);
    ref_bn_backward_train_d(din, dg, db, b.r, b.in, b.gamma, sm, si, b.c, b.m);
    fd_check("bn din", bn_objective, &b, b.in, din, n);
    fd_check("bn dgamma", bn_objective, &b, b.gamma, dg, b.c);
    fd_check("bn dbeta", bn_objective, &b, b.beta, db, b.c);
    free(b.in), free(b.gamma), free(b.beta), free(b.r), free(b.out);
}

typedef struct pool_fd { pool_shape s; double *in, *r, *out; int32_t *arg; } pool_fd;

static double maxpool_objective(void *p) {
    pool_fd *q = p;
    ref_maxpool_forward_d(q->out, q->arg, q->in, &q->s);
    return dot_d(q->out, q->r, (size_t)q->s.c * q->s.n * q->s.oh * q->s.ow);
}

Test(ops_gradcheck, maxpool) {
    pool_fd q;
    pool_shape_init(&q.s, 2, 2, 7, 5, 3, 2, 1);
    size_t nin = 2 * 2 * 7 * 5, nout = (size_t)2 * 2 * q.s.oh * q.s.ow;
    // Distinct values 0.01 apart (a shuffled ramp): no tie within the step h.
    q.in = malloc(nin * sizeof(double));
    for (size_t i = 0; i < nin; i++) q.in[i] = 0.01 * (double)((i * 37) % nin);
    q.r = rnd_d(nout, 1200, -1, 1);
    q.out = calloc(nout, sizeof(double));
    q.arg = calloc(nout, sizeof(int32_t));
    double *din = calloc(nin, sizeof(double));
    ref_maxpool_forward_d(q.out, q.arg, q.in, &q.s);
    ref_maxpool_backward_d(din, q.r, q.arg, &q.s);
    fd_check("maxpool din", maxpool_objective, &q, q.in, din, nin);
    free(q.in), free(q.r), free(q.out), free(q.arg), free(din);
}

typedef struct avg_fd { int c, n, hw; double *in, *r, *out; } avg_fd;

static double avgpool_objective(void *p) {
    avg_fd *a = p;
    ref_avgpool_forward_d(a->out, a->in, a->c, a->n, a->hw);
    return dot_d(a->out, a->r, (size_t)a->c * a->n);
}

Test(ops_gradcheck, avgpool) {
    avg_fd a = {.c = 3, .n = 2, .hw = 5};
    size_t nin = 30;
    a.in = rnd_d(nin, 1300, -1, 1);
    a.r = rnd_d(6, 1301, -1, 1);
    a.out = calloc(6, sizeof(double));
    double din[30];
    ref_avgpool_backward_d(din, a.r, a.c, a.n, a.hw);
    fd_check("avgpool din", avgpool_objective, &a, a.in, din, nin);
    free(a.in), free(a.r), free(a.out);
}

typedef struct linear_fd { int k, i, n; double *x, *w, *b, *r, *out; } linear_fd;

static double linear_objective(void *p) {
    linear_fd *l = p;
    ref_linear_forward_d(l->out, l->x, l->w, l->b, l->k, l->i, l->n);
    return dot_d(l->out, l->r, (size_t)l->k * l->n);
}

Test(ops_gradcheck, linear) {
    linear_fd l = {.k = 4, .i = 6, .n = 3};
    l.x = rnd_d(18, 1400, -1, 1);
    l.w = rnd_d(24, 1401, -1, 1);
    l.b = rnd_d(4, 1402, -1, 1);
    l.r = rnd_d(12, 1403, -1, 1);
    l.out = calloc(12, sizeof(double));
    double dx[18], dw[24], db[4];
    ref_linear_backward_d(dx, dw, db, l.r, l.x, l.w, l.k, l.i, l.n);
    fd_check("linear dx", linear_objective, &l, l.x, dx, 18);
    fd_check("linear dw", linear_objective, &l, l.w, dw, 24);
    fd_check("linear db", linear_objective, &l, l.b, db, 4);
    free(l.x), free(l.w), free(l.b), free(l.r), free(l.out);
}

typedef struct xent_fd { int k, n; double *z; int32_t *y; } xent_fd;

static double xent_objective(void *p) {
    xent_fd *x = p;
    double mean;
    ref_xent_d(&mean, NULL, NULL, x->z, x->y, x->k, x->n);
    return mean;
}

Test(ops_gradcheck, xent) {
    int32_t y[4] = {2, 0, 4, 2};
    xent_fd x = {.k = 5, .n = 4, .y = y};
    x.z = rnd_d(20, 1500, -3, 3);
    double dz[20], mean;
    ref_xent_d(&mean, NULL, dz, x.z, x.y, x.k, x.n);
    fd_check("xent dlogits", xent_objective, &x, x.z, dz, 20);
    free(x.z);
}
