// Channel scale (squeeze-and-excitation's gate) against a plain C reference: forward, both
// gradients, in place, and planes of one value.
#include "tests/testutil.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void ref_forward(float *out, const float *x, const float *s, int cn, int hw) {
    for (int j = 0; j < cn; j++)
        for (int k = 0; k < hw; k++) out[(size_t)j * hw + k] = x[(size_t)j * hw + k] * s[j];
}

static void ref_grad_s(float *ds, const float *dout, const float *x, int cn, int hw) {
    for (int j = 0; j < cn; j++) {
        float acc = 0.0f;  // in order, as the kernel
        for (int k = 0; k < hw; k++) acc += dout[(size_t)j * hw + k] * x[(size_t)j * hw + k];
        ds[j] = acc;
    }
}

static void scale_case(int cn, int hw, uint64_t seed) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    size_t n = (size_t)cn * hw;
    float *x = malloc(n * sizeof(float)), *dout = malloc(n * sizeof(float));
    float *s = malloc((size_t)cn * sizeof(float)), *want = malloc(n * sizeof(float));
    float *want_s = malloc((size_t)cn * sizeof(float));
    test_fill_uniform(x, n, seed, -2, 2);
    test_fill_uniform(dout, n, seed + 1, -1, 1);
    test_fill_uniform(s, (size_t)cn, seed + 2, 0, 1);
    dten dx_in = test_upload(rt, x, n), dd = test_upload(rt, dout, n);
    dten ds_in = test_upload(rt, s, (size_t)cn), out = test_upload(rt, x, n);
    dten dx = test_upload(rt, x, n), dsd = test_upload(rt, s, (size_t)cn);
    op_channel_scale_forward(ops, out, dx_in, ds_in, cn, hw);
    ref_forward(want, x, s, cn, hw);
    float *got = test_download(rt, out, n);
    cr_expect_eq(memcmp(got, want, n * sizeof(float)), 0, "forward %dx%d: bitwise", cn, hw);
    free(got);
    op_channel_scale_backward(ops, dx, dsd, dd, dx_in, ds_in, cn, hw);
    ref_forward(want, dout, s, cn, hw);
    ref_grad_s(want_s, dout, x, cn, hw);
    got = test_download(rt, dx, n);
    cr_expect_eq(memcmp(got, want, n * sizeof(float)), 0, "dx %dx%d: bitwise", cn, hw);
    free(got);
    // ds: the same order of sums; the device may contract a product and a sum into an fma
    // (OpenCL allows it), so within a few roundings of the plane's sum of |dout * x| (<= 2 hw).
    float tol = 4e-7f * 2.0f * (float)hw;
    got = test_download(rt, dsd, (size_t)cn);
    test_expect_close("ds", got, want_s, (size_t)cn, tol, 0.0f);
    free(got);
    // In place: dx over dout, with ds first (it reads dout).
    op_channel_scale_backward(ops, dd, dsd, dd, dx_in, ds_in, cn, hw);
    got = test_download(rt, dd, n);
    cr_expect_eq(memcmp(got, want, n * sizeof(float)), 0, "dx in place over dout");
    free(got);
    got = test_download(rt, dsd, (size_t)cn);
    test_expect_close("ds before dx overwrote dout", got, want_s, (size_t)cn, tol, 0.0f);
    free(got);
    dten none = DTEN_NONE;
    op_channel_scale_backward(ops, none, none, dd, dx_in, ds_in, cn, hw);  // nothing asked
    dten all[] = { dx_in, dd, ds_in, out, dx, dsd };
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) clReleaseMemObject(all[k].mem);
    free(x); free(dout); free(s); free(want); free(want_s);
}

Test(ops_scale, planes) { scale_case(24, 49, 11); }
Test(ops_scale, one_value_per_plane) { scale_case(7, 1, 12); }
Test(ops_scale, many_small_planes) { scale_case(301, 9, 13); }
