// GEMM tuning: the file format (round trip, damaged files), which file applies to a device
// (foreign and damaged ones ignored with a warning), op_gemm under every route and layout
// against the plain-C reference, and `cltrain tune` end to end with a tiny budget.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/startup.h"
#include "host/tune/tune.h"
#include "tests/cli_run.h"
#include "tests/ref_ops.h"
#include "tests/testutil.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static clrt_devinfo fake_device(const char *name, const char *vendor, const char *driver,
                                const char *platform) {
    clrt_devinfo d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.vendor, sizeof d.vendor, "%s", vendor);
    snprintf(d.driver, sizeof d.driver, "%s", driver);
    snprintf(d.platform_name, sizeof d.platform_name, "%s", platform);
    d.max_work_group = 1024;
    d.local_mem = 65536;
    return d;
}

// A complete configuration: every kernel family at CLBlast's generic defaults, mixed routes.
static tune_config full_config(const clrt_devinfo *d) {
    tune_config c;
    tune_config_init(&c);
    tune_set_identity(&c, d);
    snprintf(c.note, sizeof c.note, "made by test_tune");
    for (int k = 0; k < TK_COUNT; k++) {
        c.has_kernel[k] = 1;
        tune_default_params(k, c.kernel[k]);
    }
    c.has_routes = 1;
    for (int i = 0; i < TUNE_CASES; i++)
        c.route[i] = (tune_route){ (uint64_t)1000 * (i + 1), i & 1, !(i & 1) };
    c.route[TUNE_TT].indirect_mnk = UINT64_MAX;
    return c;
}

static char *to_text(const tune_config *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    tune_write(f, c);
    fclose(f);
    return buf;
}

static char *make_tmpdir(void) {
    char tmpl[] = "/tmp/cltrain-tune-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d);
    return strdup(d);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// ============================== the file ==============================

Test(tune, file_round_trip) {
    clrt_devinfo d = fake_device("NVIDIA H200", "NVIDIA Corporation", "550.54.15", "NVIDIA CUDA");
    tune_config c = full_config(&d), back;
    c.kernel[TK_XGEMM][6] = 64;   // MWG 64 still satisfies every constraint with the defaults
    c.kernel[TK_XGEMM][9] = 64;   // NWG
    char *text = to_text(&c);
    char err[512] = "";
    cr_assert_eq(tune_parse(&back, text, err, sizeof err), 0, "parse: %s\n%s", err, text);
    cr_expect_str_eq(back.device, "NVIDIA H200");
    cr_expect_str_eq(back.vendor, "NVIDIA Corporation");
    cr_expect_str_eq(back.driver, "550.54.15");
    cr_expect_str_eq(back.platform, "NVIDIA CUDA");
    cr_expect_str_eq(back.note, "made by test_tune");
    for (int k = 0; k < TK_COUNT; k++) {
        cr_expect(back.has_kernel[k], "%s kept", tune_kernel_name(k));
        for (int i = 0; i < tune_kernel_nparams(k); i++)
            cr_expect_eq(back.kernel[k][i], c.kernel[k][i], "%s %s", tune_kernel_name(k),
                         tune_param_name(k, i));
    }
    cr_expect(back.has_routes);
    for (int i = 0; i < TUNE_CASES; i++) {
        cr_expect_eq(back.route[i].indirect_mnk, c.route[i].indirect_mnk, "%s", tune_case_name(i));
        cr_expect_eq(back.route[i].direct_colmajor, c.route[i].direct_colmajor);
        cr_expect_eq(back.route[i].indirect_colmajor, c.route[i].indirect_colmajor);
    }
    // The text of the parsed copy is the same text: nothing lost, nothing added.
    char *again = to_text(&back);
    cr_expect_str_eq(again, text);
    free(again);
    free(text);

    // A file of identity only is valid: CLBlast as it comes on that device.
    tune_config bare;
    tune_config_init(&bare);
    tune_set_identity(&bare, &d);
    text = to_text(&bare);
    cr_expect_eq(tune_parse(&back, text, err, sizeof err), 0, "%s", err);
    cr_expect(!back.has_routes && !back.has_kernel[TK_XGEMM]);
    free(text);
}

// Each damaged variant of a good file must fail with a message naming the problem.
Test(tune, damaged_files_rejected) {
    clrt_devinfo d = fake_device("dev", "vendor", "1.0", "plat");
    tune_config c = full_config(&d), back;
    char *good = to_text(&c);
    char err[512];
    cr_assert_eq(tune_parse(&back, good, err, sizeof err), 0, "%s", err);
    struct { const char *from, *to, *why; } cases[] = {
        { "end\n", "", "truncated" },
        { "cltrain-gemm-tune 1", "cltrain-gemm-tune 9", "version" },
        { "cltrain-gemm-tune 1", "something-else 1", "not a cltrain" },
        { " MWG=32", "", "misses MWG" },
        { " MWG=32", " MWG=48", "MWG must be a multiple" },
        { " MWG=32", " MWG=32 MWG=32", "twice" },
        { " MWG=32", " MWG=x", "bad value" },
        { " MWG=32", " FOO=3", "no parameter FOO" },
        { "kernel Xgemm ", "kernel Xgemmm ", "unknown kernel" },
        { "route NN", "# route NN", "routes must cover" },
        { "direct=row", "direct=diagonal", "row or col" },
        { "device dev", "colour blue", "unknown setting" },
        { "device dev\n", "", "no device" },
        { " WGD=16", " WGD=8192", "out of range" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *at = strstr(good, cases[i].from);
        cr_assert_not_null(at, "case %zu: '%s' not in the good file", i, cases[i].from);
        size_t pre = (size_t)(at - good);
        char bad[8192];
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)pre, good, cases[i].to,
                 at + strlen(cases[i].from));
        err[0] = 0;
        cr_expect_neq(tune_parse(&back, bad, err, sizeof err), 0, "case %zu accepted:\n%s", i,
                      bad);
        cr_expect(strstr(err, cases[i].why) != NULL, "case %zu: message '%s' lacks '%s'", i,
                  err, cases[i].why);
    }
    cr_expect_neq(tune_parse(&back, "", err, sizeof err), 0);
    free(good);
}

Test(tune, kernel_constraints) {
    size_t v[TUNE_MAX_PARAMS];
    char err[256];
    clrt_devinfo d = fake_device("d", "v", "1", "p");
    for (int k = 0; k < TK_COUNT; k++) {
        tune_default_params(k, v);
        cr_expect_eq(tune_kernel_check(k, v, &d, err, sizeof err), 0, "%s defaults: %s",
                     tune_kernel_name(k), err);
    }
    // GEMMK 1 with its ties (an Intel CPU entry of CLBlast's database).
    size_t k1[16] = { 1, 16, 1, 1, 2, 2, 64, 2, 2, 128, 0, 0, 0, 0, 8, 2 };
    cr_expect_eq(tune_kernel_check(TK_XGEMM, k1, &d, err, sizeof err), 0, "%s", err);
    k1[4] = 4;   // MDIMA != MDIMC
    cr_expect_neq(tune_kernel_check(TK_XGEMM, k1, &d, err, sizeof err), 0);
    // The device's limits: a 32x32 work-group on a device allowing 256.
    tune_default_params(TK_XGEMM, v);
    v[5] = v[8] = v[4] = v[7] = 32;          // MDIMC NDIMC MDIMA NDIMB
    v[6] = v[9] = 128;                       // MWG NWG
    v[14] = v[15] = 4;
    d.max_work_group = 256;
    cr_expect_neq(tune_kernel_check(TK_XGEMM, v, &d, err, sizeof err), 0);
    cr_expect(strstr(err, "work-group") != NULL, "%s", err);
    // Local memory: WGD 128 with padding needs 132 KB.
    size_t dv[10] = { 8, 8, 8, 8, 8, 1, 1, 1, 1, 128 };
    cr_expect_neq(tune_kernel_check(TK_XGEMM_DIRECT, dv, &d, err, sizeof err), 0);
    cr_expect(strstr(err, "local memory") != NULL, "%s", err);
}

// ============================== which file applies ==============================

Test(tune, identity_and_patterns) {
    clrt_devinfo pocl = fake_device("pthread-skylake-avx512-AMD EPYC 7B13", "AuthenticAMD",
                                    "3.1+debian", "Portable Computing Language");
    clrt_devinfo gpu = fake_device("NVIDIA H200", "NVIDIA Corporation", "550.54.15",
                                   "NVIDIA CUDA");
    tune_config c = full_config(&pocl);
    cr_expect(tune_matches(&c, &pocl));
    cr_expect(!tune_matches(&c, &gpu), "a file for one vendor never applies to another");
    clrt_devinfo newer = pocl;
    snprintf(newer.driver, sizeof newer.driver, "5.0");
    cr_expect(!tune_matches(&c, &newer), "exact identity includes the driver");
    // Shipped-style patterns.
    tune_config_init(&c);
    snprintf(c.match_device, sizeof c.match_device, "pthread-*|cpu-*");
    snprintf(c.match_platform, sizeof c.match_platform, "Portable Computing Language");
    cr_expect(tune_matches(&c, &pocl));
    cr_expect(tune_matches(&c, &newer), "any pocl driver");
    clrt_devinfo pocl5 = fake_device("cpu-haswell-Intel(R) Xeon(R)", "GenuineIntel", "5.0",
                                     "Portable Computing Language");
    cr_expect(tune_matches(&c, &pocl5), "second alternative");
    cr_expect(!tune_matches(&c, &gpu));
    clrt_devinfo pocl_cuda = fake_device("NVIDIA H200", "NVIDIA Corporation", "5.0",
                                         "Portable Computing Language");
    cr_expect(!tune_matches(&c, &pocl_cuda), "pocl's CUDA device is not a CPU");
    tune_config_init(&c);
    cr_expect(!tune_matches(&c, &pocl), "a file naming no device matches none");
}

// The order: CLTRAIN_TUNE_FILE, the cache file, a shipped file. Foreign and damaged files are
// skipped with a warning on stderr.
Test(tune, find_skips_foreign_and_damaged, .init = cr_redirect_stderr) {
    char *dir = make_tmpdir();
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("CLTRAIN_NO_CACHE");
    unsetenv("CLTRAIN_NO_TUNE");
    unsetenv("CLTRAIN_TUNE_FILE");
    const char *tune_file = NULL;   // $CLTRAIN_TUNE_FILE, as the command layer hands it down
    char cache_dir[1024];
    cli_cache_dir(cache_dir, sizeof cache_dir);
    clrt_devinfo me = fake_device("pthread-testcpu", "AuthenticAMD", "3.1+debian",
                                  "Portable Computing Language");
    clrt_devinfo gpu = fake_device("NVIDIA H200", "NVIDIA Corporation", "550.54.15",
                                   "NVIDIA CUDA");
    tune_config c;
    char src[1200], err[512];
    cr_expect_eq(tune_find(&me, tune_file, cache_dir, &c, src, sizeof src), 1,
                 "the shipped pocl file");
    cr_expect(strstr(src, "shipped tune/") == src, "%s", src);
    cr_expect_eq(tune_find(&gpu, tune_file, cache_dir, &c, src, sizeof src), 0,
                 "nothing ships for this GPU");

    // A file made for the GPU, offered to the CPU through CLTRAIN_TUNE_FILE and the cache.
    char foreign[1200], cache[1200];
    snprintf(foreign, sizeof foreign, "%s/gpu.tune", dir);
    tune_config g = full_config(&gpu);
    cr_assert_eq(tune_write_file(foreign, &g, err, sizeof err), 0, "%s", err);
    tune_file = foreign;
    cr_expect_eq(tune_find(&me, tune_file, cache_dir, &c, src, sizeof src), 1);
    cr_expect(strstr(src, "shipped tune/") == src, "foreign file skipped: %s", src);
    tune_cache_path(cache_dir, &me, cache, sizeof cache);
    cr_assert(strstr(cache, dir) == cache, "cache under XDG_CACHE_HOME: %s", cache);
    cr_assert_eq(tune_write_file(cache, &g, err, sizeof err), 0, "%s", err);  // copied in
    cr_expect_eq(tune_find(&me, tune_file, cache_dir, &c, src, sizeof src), 1);
    cr_expect(strstr(src, "shipped tune/") == src, "foreign cache file skipped: %s", src);

    // The GPU's own file applies to the GPU, through either route.
    cr_expect_eq(tune_find(&gpu, tune_file, cache_dir, &c, src, sizeof src), 1);
    cr_expect(strstr(src, "CLTRAIN_TUNE_FILE") == src, "%s", src);
    cr_expect_str_eq(c.device, "NVIDIA H200");

    // The CPU's own cache file wins over the shipped one; damaged, it is skipped.
    tune_file = NULL;
    tune_config mine = full_config(&me);
    cr_assert_eq(tune_write_file(cache, &mine, err, sizeof err), 0, "%s", err);
    cr_expect_eq(tune_find(&me, tune_file, cache_dir, &c, src, sizeof src), 1);
    cr_expect(strstr(src, "cache ") == src, "%s", src);
    cr_assert_eq(truncate(cache, 100), 0);
    cr_expect_eq(tune_find(&me, tune_file, cache_dir, &c, src, sizeof src), 1);
    cr_expect(strstr(src, "shipped tune/") == src, "damaged cache file skipped: %s", src);
    write_text(cache, "\x7f" "ELF\x01\x01 garbage");
    cr_expect_eq(tune_find(&me, tune_file, cache_dir, &c, src, sizeof src), 1);
    cr_expect(strstr(src, "shipped tune/") == src, "%s", src);

    // The start-up reader (host/cli/startup.c): CLTRAIN_NO_TUNE=1 loads none.
    ops_config oc;
    cli_ops_config(&oc, &me);
    cr_expect(oc.has_gemm && strstr(oc.gemm_source, "shipped tune/") == oc.gemm_source, "%s",
              oc.gemm_source);
    setenv("CLTRAIN_NO_TUNE", "1", 1);
    cli_ops_config(&oc, &me);
    cr_expect(!oc.has_gemm, "CLTRAIN_NO_TUNE=1: none (%s)", oc.gemm_source);
    unsetenv("CLTRAIN_NO_TUNE");

    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char log[8192];
    size_t n = fread(log, 1, sizeof log - 1, f);
    log[n] = 0;
    cr_expect(strstr(log, "made for 'NVIDIA H200'") != NULL, "warning names the device: %s", log);
    cr_expect(strstr(log, "truncated") != NULL, "warning says what is wrong: %s", log);
    free(dir);
}

// ============================== op_gemm under every route ==============================

static float *rnd(size_t n, uint64_t seed) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    cr_assert_not_null(x);
    test_fill_uniform(x, n, seed, -1.0f, 1.0f);
    return x;
}

// One GEMM per transpose case and shape with operands at offset `off` (64: sub-buffer views;
// 3: plain offsets) against ref_gemm, beta 0 (C starts as NaN) and beta 1.5.
static void gemm_vs_reference(const char *what, int m, int n, int k, size_t off) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int bi = 0; bi < 2; bi++) {
                float beta = bi ? 1.5f : 0.0f;
                int lda = (ta ? m : k) + (bi ? 3 : 0), ldb = (tb ? k : n) + (bi ? 1 : 0);
                int ldc = n + (bi ? 2 : 0);
                size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
                size_t nc = (size_t)m * ldc;
                float *a = rnd(off + na, 1), *b = rnd(off + nb, 2), *c = rnd(off + nc, 3);
                if (!bi)
                    for (size_t i = 0; i < nc; i++) c[off + i] = NAN;
                float *want = malloc(nc * sizeof *want);
                memcpy(want, c + off, nc * sizeof *want);
                ref_gemm(ta, tb, m, n, k, 0.75f, a + off, lda, b + off, ldb, beta, want, ldc);
                dten da = dten_at(test_upload(rt, a, off + na), off);
                dten db = dten_at(test_upload(rt, b, off + nb), off);
                dten dc = dten_at(test_upload(rt, c, off + nc), off);
                op_gemm(ops, ta, tb, m, n, k, 0.75f, da, lda, db, ldb, beta, dc, ldc);
                float *got = test_download(rt, dc, nc);
                char name[160];
                snprintf(name, sizeof name, "%s %s%s %dx%dx%d off %zu beta %g", what,
                         ta ? "T" : "N", tb ? "T" : "N", m, n, k, off, beta);
                // k products of [-1, 1] values summed in another order: k float ulps.
                test_expect_close(name, got, want, nc, 2e-6f * k, 1e-5f);
                free(got), free(a), free(b), free(c), free(want);
                clReleaseMemObject(da.mem);
                clReleaseMemObject(db.mem);
                clReleaseMemObject(dc.mem);
            }
}

// op_gemm_batched: `count` products of operands at offset `off` of their buffers (the
// j-th at j * stride), NN, beta 0 (C starts as NaN), against ref_gemm; nothing written
// past the last product.
static void batched_vs_reference(const char *what, int m, int n, int k, int count,
                                 size_t off) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    size_t sa = (size_t)m * k, sb = (size_t)k * n, sc = (size_t)m * n, guard = 64;
    float *a = rnd(off + sa * count, 11), *b = rnd(off + sb * count, 12);
    float *c = malloc((off + sc * count + guard) * sizeof *c);
    for (size_t i = 0; i < off + sc * count + guard; i++) c[i] = NAN;
    dten da = dten_at(test_upload(rt, a, off + sa * count), off);
    dten db = dten_at(test_upload(rt, b, off + sb * count), off);
    dten dc = dten_at(test_upload(rt, c, off + sc * count + guard), off);
    op_gemm_batched(ops, 0, 0, m, n, k, 0.75f, da, k, sa, db, n, sb, 0.0f, dc, n, sc, count);
    float *got = test_download(rt, dc, sc * count + guard);
    for (int j = 0; j < count; j++) {
        float *want = malloc(sc * sizeof *want);
        ref_gemm(0, 0, m, n, k, 0.75f, a + off + j * sa, k, b + off + j * sb, n, 0.0f, want, n);
        char name[160];
        snprintf(name, sizeof name, "%s batched %dx%dx%d #%d off %zu", what, m, n, k, j, off);
        test_expect_close(name, got + j * sc, want, sc, 2e-6f * k, 1e-5f);
        free(want);
    }
    for (size_t i = 0; i < guard; i++)
        cr_expect(isnan(got[sc * count + i]), "%s batched: wrote past the last product", what);
    free(got), free(a), free(b), free(c);
    clReleaseMemObject(da.mem);
    clReleaseMemObject(db.mem);
    clReleaseMemObject(dc.mem);
}

static void every_shape(const char *what) {
    batched_vs_reference(what, 64, 64, 64, 16, 64);  // tile multiples at offsets (Winograd)
    batched_vs_reference(what, 37, 53, 29, 3, 3);
    batched_vs_reference(what, 64, 64, 64, 4, 0);
    gemm_vs_reference(what, 64, 128, 96, 64);     // tile multiples, aligned views
    gemm_vs_reference(what, 37, 53, 29, 64);      // odd sizes: padding
    gemm_vs_reference(what, 64, 128, 96, 3);      // unaligned offset: CLBlast copies
    gemm_vs_reference(what, 10, 64, 512, 0);      // the fc layer's forward GEMM
    gemm_vs_reference(what, 24, 40, 5000, 3);     // split-K (chunks and a remainder)
}

// A small output and a long k splits (on any device: 1 output tile), into chunks and a
// remainder; the result is bitwise the same every time, and matches the reference (above).
Test(tune_gemm, splitk_deterministic) {
    clrt *rt = test_rt();
    ops_ctx *ops = test_ops();
    int m = 24, n = 40, k = 5000;
    cr_assert_geq(op_gemm_splitk_parts(ops, m, n, k), 2, "5000 deep, 1 tile: split");
    cr_expect_eq(op_gemm_splitk_parts(ops, m, n, 2047), 0, "too short to split");
    cr_expect_eq(op_gemm_splitk_parts(ops, 4096, 4096, 1 << 20), 0, "enough tiles already");
    float *a = rnd((size_t)m * k, 4), *b = rnd((size_t)k * n, 5);
    dten da = test_upload(rt, a, (size_t)m * k), db = test_upload(rt, b, (size_t)k * n);
    dten dc = test_upload(rt, a, (size_t)m * n);
    float *first = NULL;
    for (int r = 0; r < 3; r++) {
        op_gemm(ops, 0, 1, m, n, k, 1.0f, da, k, db, k, 0.0f, dc, n);
        float *got = test_download(rt, dc, (size_t)m * n);
        if (!first) first = got;
        else {
            cr_expect(!memcmp(first, got, (size_t)m * n * sizeof *got), "run %d differs", r);
            free(got);
        }
    }
    free(first), free(a), free(b);
    clReleaseMemObject(da.mem);
    clReleaseMemObject(db.mem);
    clReleaseMemObject(dc.mem);
}

// The configuration the pocl device runs (the shipped file's kernels) with forced routes.
static tune_config config_with_routes(uint64_t indirect_mnk, int direct_col, int indirect_col) {
    tune_config c = *op_gemm_config(test_ops());
    for (int k = 0; k < TK_COUNT; k++)
        if (!c.has_kernel[k]) {
            c.has_kernel[k] = 1;
            tune_default_params(k, c.kernel[k]);
        }
    c.has_routes = 1;
    for (int i = 0; i < TUNE_CASES; i++)
        c.route[i] = (tune_route){ indirect_mnk, direct_col, indirect_col };
    return c;
}

static void run_config(const tune_config *c, const char *what) {
    char err[512];
    cr_assert_eq(op_gemm_configure(test_ops(), c, what, err, sizeof err), 0, "%s", err);
    every_shape(what);
}

Test(tune_gemm, indirect_both_layouts) {
    tune_config c = config_with_routes(0, 0, 1);
    run_config(&c, "indirect col");
    c = config_with_routes(0, 0, 0);
    run_config(&c, "indirect row");
}

Test(tune_gemm, direct_both_layouts) {
    tune_config c = config_with_routes(UINT64_MAX, 0, 0);
    run_config(&c, "direct row");
    c = config_with_routes(UINT64_MAX, 1, 0);
    run_config(&c, "direct col");
}

Test(tune_gemm, mixed_routes) {
    // Below 64*128*96 direct, from there indirect: both kernels in one run, switching.
    tune_config c = config_with_routes((uint64_t)64 * 128 * 96, 1, 1);
    c.route[TUNE_NT].indirect_colmajor = 0;
    run_config(&c, "mixed");
}

// ============================== `cltrain tune` ==============================

// CLBlast's overrides are per device and process-wide: every context on one device (a second
// runtime there, as a data-parallel replica gets) shares the GEMM state of the registry it
// was made with, so a configuration given through one is the one the other runs.
Test(tune_gemm, contexts_on_one_device_share_the_gemm_state) {
    char err[1024], spec[32];
    snprintf(spec, sizeof spec, "%d:%d", test_rt()->dev.platform, test_rt()->dev.device);
    clrt_options o = { .device_spec = spec, .quiet = 1 };
    clrt rt2;
    ops_ctx ops2;
    cr_assert_eq(cli_runtime_init(&rt2, &ops2, test_ops_shared(), &o, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(ops2.gemm, test_ops()->gemm, "a second context on the device: another state");
    tune_config c = config_with_routes(0, 0, 1);
    cr_assert_eq(op_gemm_configure(&ops2, &c, "given to the second", err, sizeof err), 0, "%s",
                 err);
    cr_expect_str_eq(op_gemm_source(test_ops()), "given to the second");
    ops_shared other = { 0 };
    ops_ctx ops3;
    cr_assert_eq(ops_ctx_init(&ops3, &rt2, NULL, &other, err, sizeof err), 0, "%s", err);
    cr_expect_neq(ops3.gemm, ops2.gemm, "another registry: another state");
    cr_expect_eq(ops3.cfg.winograd, -1, "no configuration given: every switch -1");
    ops_shared_free(&other);
    clrt_free(&rt2);
}

Test(tune_cli, tiny_budget_writes_the_file, .timeout = 900) {
    char *dir = cli_tmpdir();
    char env[1200];
    snprintf(env, sizeof env, "XDG_CACHE_HOME=%s CLTRAIN_TUNE_FILE= CLTRAIN_NO_TUNE= "
             "CLTRAIN_NO_CACHE=", dir);
    const char *dev = getenv("CLTRAIN_DEVICE") ? getenv("CLTRAIN_DEVICE") : "cpu";
    cli_result r = cli_run(600, env, "tune --device '%s' --image-size 32 --batch-size 2 "
                           "--budget 1 --reps 1", dev);
    cr_assert_eq(r.status, 0, "cltrain tune failed:\n%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "per step:") != NULL, "prints the summary:\n%s", r.out);
    const char *w = strstr(r.out, "written: ");
    cr_assert_not_null(w, "%s", r.out);
    char path[1024];
    cr_assert_eq(sscanf(w, "written: %1023s", path), 1);
    cr_expect(strstr(path, dir) == path, "into the cache folder: %s", path);
    tune_config c;
    char err[512], want[1200];
    cr_assert_eq(tune_read_file(path, &c, err, sizeof err), 0, "%s", err);
    cr_expect(tune_matches(&c, &test_rt()->dev), "keyed to this device");
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("CLTRAIN_NO_CACHE");
    char cache_dir[1024];
    cli_cache_dir(cache_dir, sizeof cache_dir);
    tune_cache_path(cache_dir, &test_rt()->dev, want, sizeof want);
    cr_expect_str_eq(path, want);
    cli_result_free(&r);

    // The next run applies it.
    r = cli_run(120, env, "tune --device '%s' --show", dev);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "# in force: cache ") != NULL, "%s", r.out);
    // Which path op_gemm takes on the device is said (packed on CPU devices by default).
    cl_device_type ty = test_rt()->dev.type;
    int cpu = (ty & CL_DEVICE_TYPE_CPU) && !(ty & CL_DEVICE_TYPE_GPU);
    cr_expect((strstr(r.out, "# note: op_gemm runs its packed kernels") != NULL) == cpu, "%s",
              r.out);
    cli_result_free(&r);
    char env0[1300];
    snprintf(env0, sizeof env0, "%s CLTRAIN_GEMM_PACKED=0", env);
    r = cli_run(120, env0, "tune --device '%s' --show", dev);
    cr_expect(strstr(r.out, "packed kernels") == NULL, "%s", r.out);
    cli_result_free(&r);

    // Timing only: the table, nothing written.
    r = cli_run(600, env, "tune --device '%s' --image-size 32 --batch-size 2 --measure", dev);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "per step:") != NULL && strstr(r.out, "written:") == NULL, "%s",
              r.out);
    cli_result_free(&r);
    cli_rmtree(dir);
}

Test(tune_cli, bad_flags) {
    cli_result r = cli_run(60, "", "tune --budget -1");
    cli_expect_error(&r, 2, "--budget", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "tune --clock sundial");
    cli_expect_error(&r, 2, "--clock", "sundial", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "tune extra");
    cli_expect_error(&r, 2, "extra", NULL);
    cli_result_free(&r);
    r = cli_run(60, "CLTRAIN_NO_CACHE=1", "tune --budget 1");
    cli_expect_error(&r, 2, "CLTRAIN_NO_CACHE", "--out", NULL);
    cli_result_free(&r);
}
