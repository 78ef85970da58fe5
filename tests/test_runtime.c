// Foundation tests: device SPEC rule, error names, the kernel round trip, the binary cache,
// CLTRAIN_KERNEL_DIR, and the command line's exits.
#define _POSIX_C_SOURCE 200809L
#include "tests/testutil.h"
#include "host/cli/startup.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern const char *const cl_source_names[];
extern const char *const cl_source_texts[];
extern const size_t cl_source_count;

static clrt_devinfo fake(int p, int d, const char *name, const char *plat, cl_device_type t) {
    clrt_devinfo x;
    memset(&x, 0, sizeof x);
    x.platform = p;
    x.device = d;
    snprintf(x.name, sizeof x.name, "%s", name);
    snprintf(x.platform_name, sizeof x.platform_name, "%s", plat);
    x.type = t;
    return x;
}

Test(runtime, device_spec_rule) {
    clrt_devinfo l[4] = {
        fake(0, 0, "pthread-skylake", "Portable Computing Language", CL_DEVICE_TYPE_CPU),
        fake(1, 0, "NVIDIA H200", "NVIDIA CUDA", CL_DEVICE_TYPE_GPU),
        fake(1, 1, "NVIDIA A100", "NVIDIA CUDA", CL_DEVICE_TYPE_GPU),
        fake(2, 0, "gfx1100", "AMD Accelerated Parallel Processing", CL_DEVICE_TYPE_GPU),
    };
    cr_expect_eq(clrt_select_device(l, 4, NULL), 1, "default = first GPU");
    cr_expect_eq(clrt_select_device(l, 4, ""), 1);
    cr_expect_eq(clrt_select_device(l, 1, NULL), 0, "no GPU: first device");
    cr_expect_eq(clrt_select_device(l, 4, "cpu"), 0);
    cr_expect_eq(clrt_select_device(l, 4, "GPU"), 1);
    cr_expect_eq(clrt_select_device(l, 4, "1:1"), 2);
    cr_expect_eq(clrt_select_device(l, 4, "2:0"), 3);
    cr_expect_eq(clrt_select_device(l, 4, "2:1"), -1);
    cr_expect_eq(clrt_select_device(l, 4, "3"), 3, "plain index into the list");
    cr_expect_eq(clrt_select_device(l, 4, "4"), -1);
    cr_expect_eq(clrt_select_device(l, 4, "a100"), 2, "name substring, any case");
    cr_expect_eq(clrt_select_device(l, 4, "advanced micro"), -1);
    cr_expect_eq(clrt_select_device(l, 4, "accelerated"), 3, "platform substring");
    cr_expect_eq(clrt_select_device(l, 4, "portable"), 0);
    cr_expect_eq(clrt_select_device(l, 4, "intel"), -1);
    cr_expect_eq(clrt_select_device(l, 4, ":"), -1);
    cr_expect_eq(clrt_select_device(l, 4, "-1"), -1);
    cr_expect_eq(clrt_select_device(l, 0, NULL), -1);
    // --devices all-gpus / all: every (GPU) device of every platform, in list order.
    int idx[4] = { -1, -1, -1, -1 };
    cr_expect_eq(clrt_device_group(l, 4, "all-gpus", idx, 4), 3);
    cr_expect(idx[0] == 1 && idx[1] == 2 && idx[2] == 3 && idx[3] == -1);
    cr_expect_eq(clrt_device_group(l, 4, "all", idx, 4), 4);
    cr_expect(idx[0] == 0 && idx[1] == 1 && idx[2] == 2 && idx[3] == 3);
    cr_expect_eq(clrt_device_group(l, 1, "all-gpus", idx, 4), 0, "a CPU alone: no GPU");
    cr_expect_eq(clrt_device_group(l, 4, "ALL-GPUS", idx, 1), 3, "counts past cap");
    cr_expect_eq(clrt_device_group(l, 4, "gpu", idx, 4), -1, "one device, no group");
    cr_expect_eq(clrt_device_group(l, 4, "all-gpus,0:0", idx, 4), -1);
}

Test(runtime, error_names) {
    cr_expect_str_eq(clrt_error_name(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    cr_expect_str_eq(clrt_error_name(-5), "CL_OUT_OF_RESOURCES");
    cr_expect_str_eq(clrt_error_name(CL_INVALID_KERNEL_NAME), "CL_INVALID_KERNEL_NAME");
    cr_expect_str_eq(clrt_error_name(CL_MEM_OBJECT_ALLOCATION_FAILURE),
                     "CL_MEM_OBJECT_ALLOCATION_FAILURE");
    cr_expect_str_eq(clrt_error_name(-9999), "unknown OpenCL error");
    cr_expect_str_eq(clrt_clblast_error_name(-1017), "CLBlastInvalidDimension");
    cr_expect_str_eq(clrt_clblast_error_name(-2046), "CLBlastInvalidLocalMemUsage");
    cr_expect_str_eq(clrt_clblast_error_name(-4), "CL_MEM_OBJECT_ALLOCATION_FAILURE");
}

// y = a*x + b on the device, against the same formula on the host.
static void axpb_round_trip(clrt *rt, float a, float expect_b) {
    enum { N = 1000 };
    float x[N], want[N];
    test_fill_uniform(x, N, 7, -3.0f, 3.0f);
    for (int i = 0; i < N; i++) want[i] = a * x[i] + expect_b;
    dten dx = test_upload(rt, x, N), dy = test_upload(rt, NULL, N + 5);
    cl_kernel k = clrt_kernel(rt, "selftest_axpb");
    cl_ulong yo = 5, xo = 0;
    int n = N;
    CLRT_ARG(k, 0, dy.mem); CLRT_ARG(k, 1, yo); CLRT_ARG(k, 2, dx.mem); CLRT_ARG(k, 3, xo);
    CLRT_ARG(k, 4, a); CLRT_ARG(k, 5, n);
    clrt_launch1d(rt, k, N);
    float *got = test_download(rt, dy, N + 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(got[i], 0.0f, "offset respected");
    test_expect_close("axpb", got + 5, want, N, 0.0f, 1e-6f);
    free(got);
    clReleaseMemObject(dx.mem);
    clReleaseMemObject(dy.mem);
}

Test(runtime, kernel_round_trip) { axpb_round_trip(test_rt(), 1.5f, 0.0f); }

static char *make_tmpdir(void) {
    char tmpl[] = "/tmp/cltrain-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d);
    return strdup(d);
}

static int init_quiet(clrt *rt) {
    clrt_options o = { .device_spec = getenv("CLTRAIN_DEVICE") ? NULL : "cpu", .quiet = 1 };
    char err[1024], cache[1024];
    cli_runtime_options(&o, cache, sizeof cache);   // the environment, as the command layer
    int rc = clrt_init(rt, &o, err, sizeof err);
    cr_assert_eq(rc, 0, "clrt_init: %s", err);
    return rc;
}

Test(runtime, kernel_cache_hit_and_corruption) {
    char *dir = make_tmpdir();
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("CLTRAIN_NO_CACHE");
    unsetenv("CLTRAIN_KERNEL_DIR");
    clrt rt;
    init_quiet(&rt);
    cr_expect_eq(rt.cache_hit, 0, "first start builds from source");
    cr_expect(strstr(rt.cache_path, dir) == rt.cache_path, "cache under XDG_CACHE_HOME");
    char path[1024];
    snprintf(path, sizeof path, "%s", rt.cache_path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "cache file written: %s", path);
    clrt_free(&rt);

    init_quiet(&rt);
    cr_expect_eq(rt.cache_hit, 1, "second start loads from the cache");
    axpb_round_trip(&rt, 2.0f, 0.0f);
    clrt_free(&rt);

    // Truncate the cache file: ignored and rebuilt, never a crash.
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    init_quiet(&rt);
    cr_expect_eq(rt.cache_hit, 0, "a truncated cache file is rebuilt");
    axpb_round_trip(&rt, 2.0f, 0.0f);
    clrt_free(&rt);
    cr_assert_eq(stat(path, &st), 0);

    // Flip bytes in the middle of the binary: the checksum catches it.
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, st.st_size / 2, SEEK_SET);
    unsigned char junk[64];
    memset(junk, 0xA5, sizeof junk);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    init_quiet(&rt);
    cr_expect_eq(rt.cache_hit, 0, "a corrupted cache file is rebuilt");
    clrt_free(&rt);
    init_quiet(&rt);
    cr_expect_eq(rt.cache_hit, 1, "and the rebuilt file is used again");
    clrt_free(&rt);
    free(dir);
}

Test(runtime, kernel_cache_disabled) {
    char *dir = make_tmpdir();
    setenv("XDG_CACHE_HOME", dir, 1);
    setenv("CLTRAIN_NO_CACHE", "1", 1);
    clrt rt;
    init_quiet(&rt);
    cr_expect_eq(rt.cache_hit, 0);
    cr_expect_str_eq(rt.cache_path, "");
    clrt_free(&rt);
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/cltrain", dir);
    struct stat st;
    cr_expect_neq(stat(sub, &st), 0, "nothing written with CLTRAIN_NO_CACHE=1");
    free(dir);
}

Test(runtime, cache_key_changes_with_inputs) {
    clrt_devinfo d = fake(0, 0, "dev", "plat", CL_DEVICE_TYPE_CPU);
    char *src[1] = { "kernel void f() {}" };
    char a[33], b[33], c[33], e[33];
    clrt_cache_key(&d, src, 1, "-DX=1", a);
    clrt_cache_key(&d, src, 1, "-DX=2", b);
    snprintf(d.driver, sizeof d.driver, "2.0");
    clrt_cache_key(&d, src, 1, "-DX=1", c);
    char *src2[1] = { "kernel void g() {}" };
    memset(d.driver, 0, sizeof d.driver);
    clrt_cache_key(&d, src2, 1, "-DX=1", e);
    cr_expect_str_neq(a, b, "options change the key");
    cr_expect_str_neq(a, c, "the driver changes the key");
    cr_expect_str_neq(a, e, "the sources change the key");
    cr_expect_eq(strlen(a), 32u);
}

// A new folder holding the embedded kernel sources, selftest.cl with `before` and `after`
// around its text: a CLTRAIN_KERNEL_DIR for the tests.
static char *kernel_dir_copy(const char *before, const char *after) {
    char *dir = make_tmpdir();
    for (size_t i = 0; i < cl_source_count; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, cl_source_names[i]);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        int self = !strcmp(cl_source_names[i], "selftest.cl");
        if (self) fputs(before, f);
        fputs(cl_source_texts[i], f);
        if (self) fputs(after, f);
        fclose(f);
    }
    return dir;
}

Test(runtime, kernel_dir_override) {
    char *dir = kernel_dir_copy("#define SELFTEST_B 1.0f\n", "");
    setenv("CLTRAIN_KERNEL_DIR", dir, 1);
    setenv("CLTRAIN_NO_CACHE", "1", 1);
    clrt rt;
    init_quiet(&rt);
    axpb_round_trip(&rt, 1.0f, 1.0f);  // the folder's selftest.cl adds 1
    clrt_free(&rt);

    // A missing file is an error naming it, not a crash.
    char path[1024];
    snprintf(path, sizeof path, "%s/selftest.cl", dir);
    unlink(path);
    clrt_options o = { .device_spec = "cpu", .quiet = 1, .kernel_dir = dir };
    char err[1024] = "";
    cr_expect_neq(clrt_init(&rt, &o, err, sizeof err), 0);
    cr_expect(strstr(err, "selftest.cl") != NULL, "message names the file: %s", err);
    free(dir);
}

// Run the cltrain binary; returns its exit status, output in out (stdout+stderr).
static int run_cltrain(const char *args, char *out, size_t outlen) {
    char cmd[2048];
    const char *bin = getenv("CLTRAIN_BIN");  // make test-asan: the sanitized binary
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin && *bin ? bin : "./cltrain", args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// pocl compiles the kernels with clang's optimiser, which warns where the front end alone
// (tools/check-cl.sh's first part) cannot, e.g. a `#pragma unroll` it cannot honour; the
// shipped kernels build without a word on it. (Other drivers may log on success: pocl only.)
Test(runtime, build_log_empty_on_pocl) {
    setenv("CLTRAIN_NO_CACHE", "1", 1);
    clrt rt;
    init_quiet(&rt);
    if (!strstr(rt.dev.platform_name, "Portable Computing Language")) {
        clrt_free(&rt);
        cr_skip_test("not pocl: %s", rt.dev.platform_name);
    }
    cr_expect_eq(rt.cache_hit, 0);
    cr_expect_null(rt.build_log, "the kernels' build log on pocl:\n%s", rt.build_log);
    clrt_free(&rt);
}

// A build that succeeds with a warning hands its log up (rt->build_log) and prints it,
// naming the .cl file; `selftest --strict` fails on it. The warning is in the code, not a
// #warning: pocl's cache is keyed on the preprocessed source, so a #warning could meet the
// clean program's cached build and its empty log.
Test(runtime, build_log_warning_surfaced) {
    char *dir = kernel_dir_copy("", "\n__kernel void cltrain_test_warning(__global int *o) "
                                    "{ o[0] = 1e10f; }\n");   // float to int out of range
    clrt_options o = { .device_spec = getenv("CLTRAIN_DEVICE") ? NULL : "cpu", .quiet = 1,
                       .kernel_dir = dir };
    char err[1024], cache[1024];
    cli_runtime_options(&o, cache, sizeof cache);
    o.kernel_dir = dir;
    o.cache_dir = NULL;
    clrt rt;
    cr_assert_eq(clrt_init(&rt, &o, err, sizeof err), 0, "clrt_init: %s", err);
    int pocl = strstr(rt.dev.platform_name, "Portable Computing Language") != NULL;
    if (pocl || rt.build_log) {   // a driver may keep warnings to itself; pocl does not
        cr_assert_not_null(rt.build_log, "no build log for a source with a warning");
        cr_expect(strstr(rt.build_log, "warning") != NULL, "%s", rt.build_log);
        cr_expect(strstr(rt.build_log, "selftest.cl:") != NULL, "log names the file: %s",
                  rt.build_log);
    }
    clrt_free(&rt);
    if (!pocl) { free(dir); return; }

    static char out[65536];
    char args[1400];
    snprintf(args, sizeof args, "selftest --device cpu -n 16 --strict");
    setenv("CLTRAIN_KERNEL_DIR", dir, 1);
    cr_expect_eq(run_cltrain(args, out, sizeof out), 1, "--strict fails on a warning: %s", out);
    cr_expect(strstr(out, "cltrain: warning: the OpenCL compiler reported on selftest.cl") != NULL,
              "the warning names the file: %s", out);
    cr_expect(strstr(out, "selftest.cl:") != NULL, "the log is printed: %s", out);
    snprintf(args, sizeof args, "selftest --device cpu -n 16");
    cr_expect_eq(run_cltrain(args, out, sizeof out), 0, "a warning alone is no failure: %s", out);
    unsetenv("CLTRAIN_KERNEL_DIR");
    free(dir);
}

Test(runtime, cli_exits) {
    static char out[65536];
    cr_expect_eq(run_cltrain("--help", out, sizeof out), 0);
    cr_expect(strstr(out, "devices") != NULL);
    cr_expect_eq(run_cltrain("devices", out, sizeof out), 0);
    cr_expect(strstr(out, "0:0") != NULL, "devices lists P:D: %s", out);
    cr_expect_eq(run_cltrain("devices --device no-such-device-xyz", out, sizeof out), 2);
    cr_expect_eq(run_cltrain("selftest --device no-such-device-xyz", out, sizeof out), 2);
    cr_expect(strstr(out, "no OpenCL device matches 'no-such-device-xyz'") != NULL, "%s", out);
    cr_expect(strstr(out, "0:0") != NULL, "the device list is printed: %s", out);
    cr_expect_eq(run_cltrain("frobnicate", out, sizeof out), 2);
    cr_expect_eq(run_cltrain("selftest --bogus", out, sizeof out), 2);
    cr_expect_eq(run_cltrain("selftest -n abc", out, sizeof out), 2);
    cr_expect(strstr(out, "-n expects an integer, got 'abc'") != NULL, "%s", out);
    cr_expect_eq(run_cltrain("selftest -n 0", out, sizeof out), 2);
    cr_expect_eq(run_cltrain("selftest --device cpu -n 1000", out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "0 mismatches") != NULL, "%s", out);
}

Test(runtime, pinned_host_buffer_round_trip) {
    clrt *rt = test_rt();
    clrt_host_buf hb;
    float *h = clrt_host_alloc(rt, &hb, 4096 * sizeof(float));
    for (int i = 0; i < 4096; i++) h[i] = (float)i * 0.5f;
    dten d = test_upload(rt, NULL, 4096);
    clrt_write(rt, d.mem, 0, h, 4096 * sizeof(float));
    memset(h, 0, 4096 * sizeof(float));
    clrt_read(rt, d.mem, 0, h, 4096 * sizeof(float));
    for (int i = 0; i < 4096; i++) cr_assert_eq(h[i], (float)i * 0.5f, "index %d", i);
    clrt_host_free(rt, &hb);
    cr_expect_null(hb.ptr);
    clrt_host_free(rt, &hb);  // twice is harmless
    clReleaseMemObject(d.mem);
}
