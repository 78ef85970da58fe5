// Shared test helpers (see testutil.h).
#include "tests/testutil.h"
#include "host/cli/startup.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

static clrt g_rt;
static ops_ctx g_ops;        // the configuration as the command layer fills it at start-up
static ops_shared g_shared;  // the process's GEMM registry (ops.h): every context shares it
static int g_rt_ready;

ops_shared *test_ops_shared(void) { return &g_shared; }

clrt *test_rt(void) {
    if (!g_rt_ready) {
        clrt_options o = { .device_spec = NULL, .profiling = 0, .quiet = 1 };
        char cache[1024];
        cli_runtime_options(&o, cache, sizeof cache);   // as the command layer does
        if (!o.device_spec || !*o.device_spec) o.device_spec = "cpu";
        char err[1024];
        int rc = clrt_init(&g_rt, &o, err, sizeof err);
        cr_assert_eq(rc, 0, "no OpenCL test device: %s", err);
        ops_config c;
        cli_ops_config(&c, &g_rt.dev);
        rc = ops_ctx_init(&g_ops, &g_rt, &c, &g_shared, err, sizeof err);
        cr_assert_eq(rc, 0, "%s", err);
        g_rt_ready = 1;
    }
    return &g_rt;
}

ops_ctx *test_ops(void) {
    test_rt();
    return &g_ops;
}

dten test_upload(clrt *rt, const float *host, size_t n) {
    dten t = DTEN_NONE;
    char err[512];
    cr_assert_eq(clrt_alloc_buf(rt, &t.mem, (n ? n : 1) * sizeof(float), "test tensor", err,
                                sizeof err), 0, "%s", err);
    if (host) clrt_write(rt, t.mem, 0, host, n * sizeof(float));
    else clrt_fill_zero(rt, t.mem, 0, (n ? n : 1) * sizeof(float));
    return t;
}

dten test_upload_i32(clrt *rt, const int32_t *host, size_t n) {
    dten t = DTEN_NONE;
    char err[512];
    cr_assert_eq(clrt_alloc_buf(rt, &t.mem, (n ? n : 1) * sizeof(int32_t), "test int tensor",
                                err, sizeof err), 0, "%s", err);
    if (host) clrt_write(rt, t.mem, 0, host, n * sizeof(int32_t));
    else clrt_fill_zero(rt, t.mem, 0, (n ? n : 1) * sizeof(int32_t));
    return t;
}

float *test_download(clrt *rt, dten t, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    cr_assert_not_null(h);
    clrt_read(rt, t.mem, t.off * sizeof(float), h, n * sizeof(float));
    return h;
}

void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;  // xorshift64
        double u = (double)(s >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

void test_expect_close(const char *what, const float *got, const float *want, size_t n,
                       float atol, float rtol) {
    size_t worst = 0;
    double worst_excess = -1.0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        int fail = !(d <= lim) || (isnan(got[i]) != isnan(want[i]));
        if (isnan(got[i]) && isnan(want[i])) fail = 0;
        if (isinf(want[i]) && got[i] == want[i]) fail = 0;  // inf - inf is NaN
        double excess = fail ? (isnan(d) ? INFINITY : d - lim) : -1.0;
        if (fail) bad++;
        if (excess > worst_excess) { worst_excess = excess; worst = i; }
    }
    cr_expect_eq(bad, 0,
                 "%s: %d of %zu values outside atol %g + rtol %g; worst at index %zu: got %.9g, "
                 "want %.9g",
                 what, bad, n, atol, rtol, worst, n ? got[worst] : 0.0f, n ? want[worst] : 0.0f);
}

double test_max_rel_err(const float *got, const float *want, size_t n, double floor) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double den = fabs((double)want[i]);
        if (den < floor) den = floor;
        double r = fabs((double)got[i] - (double)want[i]) / den;
        if (r > m || isnan(r)) m = isnan(r) ? INFINITY : r;
    }
    return m;
}

optim_config test_adamw_clipped(void) {
    optim_config c;
    optim_config_defaults(&c);
    c.kind = OPTIM_ADAMW;
    c.lr = 1e-3;
    c.momentum = 0;
    c.weight_decay = 0.05;
    c.norm_decay_set = 1;
    c.norm_weight_decay = 0;
    c.clip_grad_norm = 0.01;
    return c;
}
