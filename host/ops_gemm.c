// GEMM through CLBlast: the one place every matrix product of the model goes through, and the
// tuned configuration it runs with (host/tune.h).
//
// How a call reaches CLBlast, when a configuration with routes is in force:
// - Route: CLBlast has a direct kernel (one launch, any offset/transpose/size) and an indirect
//   one (faster inner kernel, but copy/pad/transpose helpers around it). It picks by
//   m*n*k >= XGEMM_MIN_INDIRECT_SIZE^3, one threshold per device; op_gemm picks per transpose
//   case (route[].indirect_mnk) and sets that threshold to 0 or "never" before the call. Each
//   setting is its own CLBlast program, compiled once per process (pocl caches it on disk).
// - Layout: C = op(A) op(B) row-major is the same memory as C^T = op(B)^T op(A)^T column-major.
//   CLBlast's indirect kernel (GEMMK 0) wants C column-major, so the mirror saves it a
//   transposed copy of C, and of A or B in the forward and data-gradient GEMMs.
// - Copies: the indirect path also copies (and pads) every operand that does not start its
//   buffer or whose sizes are not multiples of the kernel's tiles; activations start their
//   buffers today, weights and their gradients sit inside arenas (small copies). The scratch
//   for those copies is kept from call to call (temp_for).
// Without routes (no tuning file) op_gemm hands every call over row-major, as called.
#define _POSIX_C_SOURCE 200809L
#include "host/ops_internal.h"
#include "host/tune.h"

#include <clblast_c.h>
#include <string.h>

// ---- the per-device configuration ----

typedef struct gemm_state {
    cl_device_id dev;
    int ready;                     // configuration chosen and applied
    tune_config cfg;
    char source[1100];             // where cfg came from
    int routine;                   // GemmRoutine override in force (set_routine), -1 none
    int tuned;                     // cfg came from a file or the search (not "none")
    int fell_back;                 // a tuned call failed once; running on CLBlast's defaults
    tune_shapes *rec;              // recording the calls (cltrain tune)
    cl_mem temp;                   // CLBlast's scratch for the indirect path, kept (see temp_for)
    cl_context temp_ctx;
    size_t temp_bytes;
} gemm_state;

// CLBlast's overrides are per device and process-wide; this table mirrors that scope (see
// tune.h). cltrain is single-threaded on the host.
enum { GEMM_MAX_DEVICES = 16 };
static gemm_state gemm_states[GEMM_MAX_DEVICES];
static int gemm_nstates;

static gemm_state *gemm_state_of(clrt *rt) {
    for (int i = 0; i < gemm_nstates; i++)
        if (gemm_states[i].dev == rt->dev.device_id) return &gemm_states[i];
    OPS_REQUIRE(gemm_nstates < GEMM_MAX_DEVICES, "op_gemm", "more than %d devices",
                GEMM_MAX_DEVICES);
    gemm_state *g = &gemm_states[gemm_nstates++];
    memset(g, 0, sizeof *g);
    g->dev = rt->dev.device_id;
    g->routine = -1;
    snprintf(g->source, sizeof g->source, "none");
    return g;
}

// CLBlast's own direct/indirect threshold: 0 = always indirect, 1 = always direct (both
// ours, per call), 2 = CLBlast 1.5.3's generic 896 (what runs without routes once ours were
// set; the device's own default cannot be read back).
static void set_routine(gemm_state *g, int mode) {
    if (g->routine == mode) return;
    const char *name[] = { "XGEMM_MIN_INDIRECT_SIZE" };
    size_t v[] = { mode == 0 ? 0 : mode == 1 ? (size_t)1 << 20 : 896 };  // m*n*k >= v^3
    CLBLAST_CHECK(CLBlastOverrideParameters(g->dev, "GemmRoutine", CLBlastPrecisionSingle, 1,
                                            name, v));
    g->routine = mode;
}

static int configure(gemm_state *g, const tune_config *c, const char *source, char *err,
                     size_t errlen) {
    g->ready = 1;
    g->tuned = c != NULL;
    if ((!c || !c->has_routes) && g->routine >= 0) set_routine(g, 2);
    if (!c) {
        tune_config_init(&g->cfg);
        snprintf(g->source, sizeof g->source, "%s", source ? source : "none");
        return 0;
    }
    if (tune_apply_kernels(c, g->dev, err, errlen) != 0) return 1;
    g->cfg = *c;
    snprintf(g->source, sizeof g->source, "%s", source ? source : "given");
    return 0;
}

void op_gemm_init(clrt *rt) {
    gemm_state *g = gemm_state_of(rt);
    if (g->ready) return;
    tune_config c;
    char source[1100], err[512];
    if (!tune_find(&rt->dev, &c, source, sizeof source)) {
        configure(g, NULL, "none", err, sizeof err);
        return;
    }
    // A file that names this device may still be wrong for it (edited by hand, or a driver
    // that rejects a value): warn and run on CLBlast's own parameters.
    for (int k = 0; k < TK_COUNT; k++)
        if (c.has_kernel[k] && tune_kernel_check(k, c.kernel[k], &rt->dev, err, sizeof err)) {
            fprintf(stderr, "cltrain: warning: ignoring GEMM tuning (%s): %s\n", source, err);
            configure(g, NULL, "none", err, sizeof err);
            return;
        }
    if (configure(g, &c, source, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: warning: ignoring GEMM tuning (%s): %s\n", source, err);
        configure(g, NULL, "none", err, sizeof err);
    }
}

int op_gemm_configure(clrt *rt, const tune_config *c, const char *source, char *err,
                      size_t errlen) {
    gemm_state *g = gemm_state_of(rt);
    g->fell_back = 0;
    return configure(g, c, source, err, errlen);
}

const char *op_gemm_source(clrt *rt) {
    op_gemm_init(rt);
    return gemm_state_of(rt)->source;
}

const tune_config *op_gemm_config(clrt *rt) {
    op_gemm_init(rt);
    return &gemm_state_of(rt)->cfg;
}

size_t op_gemm_scratch_bytes(clrt *rt) { return gemm_state_of(rt)->temp_bytes; }

void op_gemm_record(clrt *rt, tune_shapes *rec) { gemm_state_of(rt)->rec = rec; }

void tune_shapes_free(tune_shapes *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

static void record(tune_shapes *r, const tune_shape *s) {
    for (int i = 0; i < r->n; i++) {
        tune_shape *x = &r->v[i];
        if (x->ta == s->ta && x->tb == s->tb && x->m == s->m && x->n == s->n && x->k == s->k &&
            x->lda == s->lda && x->ldb == s->ldb && x->ldc == s->ldc && x->alpha == s->alpha &&
            x->beta == s->beta && x->a_at0 == s->a_at0 && x->b_at0 == s->b_at0 &&
            x->c_at0 == s->c_at0) {
            x->calls++;
            return;
        }
    }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        tune_shape *v = realloc(r->v, (size_t)cap * sizeof *v);
        OPS_REQUIRE(v, "op_gemm", "out of host memory");
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n] = *s;
    r->v[r->n++].calls = 1;
}

// ---- the call ----

// The scratch CLBlast's indirect path copies operands into. Left to itself CLBlast allocates
// a fresh buffer on every call (at 224x224 up to ~100 MB, whose pages are then faulted in
// anew each time); kept and grown here instead, per device, released when a runtime with
// another context needs it (a buffer lives until the commands using it are done). NULL when
// the allocation fails: CLBlast then allocates as it would.
static cl_mem temp_for(clrt *rt, gemm_state *g, size_t bytes) {
    if (g->temp && (g->temp_ctx != rt->ctx || g->temp_bytes < bytes)) {
        clReleaseMemObject(g->temp);
        g->temp = NULL;
    }
    if (!g->temp) {   // grows only in the first step: the same GEMMs come every step
        cl_int e;
        g->temp = clCreateBuffer(rt->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
        if (e != CL_SUCCESS) g->temp = NULL;
        g->temp_ctx = rt->ctx;
        g->temp_bytes = g->temp ? bytes : 0;
    }
    return g->temp;
}

// One CLBlast call; operands as op_gemm's row-major view (the mirror swaps them here).
static CLBlastStatusCode sgemm(clrt *rt, gemm_state *g, int colmajor, int ta, int tb, int m,
                               int n, int k, float alpha, dten a, int lda, dten b, int ldb,
                               float beta, dten c, int ldc) {
    CLBlastLayout layout = CLBlastLayoutRowMajor;
    if (colmajor) {   // C^T (n, m) = op(B)^T (n, k) x op(A)^T (k, m), column-major: same memory
        layout = CLBlastLayoutColMajor;
        dten t = a; a = b; b = t;
        int x = lda; lda = ldb; ldb = x;
        x = ta; ta = tb; tb = x;
        x = m; m = n; n = x;
    }
    CLBlastTranspose tra = ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose trb = tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    size_t bytes = 0;
    CLBlastStatusCode s = CLBlastSGemmTempBufferSize(layout, tra, trb, (size_t)m, (size_t)n,
                                                     (size_t)k, a.off, (size_t)lda, b.off,
                                                     (size_t)ldb, c.off, (size_t)ldc,
                                                     &rt->queue, &bytes);
    if (s != CLBlastSuccess) return s;
    cl_mem temp = bytes ? temp_for(rt, g, bytes) : NULL;
    return CLBlastSgemmWithTempBuffer(layout, tra, trb, (size_t)m, (size_t)n, (size_t)k, alpha,
                                      a.mem, a.off, (size_t)lda, b.mem, b.off, (size_t)ldb,
                                      beta, c.mem, c.off, (size_t)ldc, &rt->queue,
                                      clrt_profile_event(rt, "gemm"), temp);
}

// Failures a parameter set can cause (a kernel that does not build or launch); others are the
// caller's (sizes, buffers) or the device's (memory), and parameters would not fix them.
static int parameter_failure(CLBlastStatusCode s) {
    switch (s) {
    case CLBlastOpenCLBuildProgramFailure: case CLBlastOpenCLOutOfResources:
    case CLBlastInvalidLocalNumDimensions: case CLBlastInvalidLocalThreadsTotal:
    case CLBlastInvalidLocalThreadsDim: case CLBlastInvalidLocalMemUsage:
    case CLBlastInvalidKernel: case CLBlastInvalidKernelArgs: case CLBlastInvalidArgSize:
    case CLBlastInvalidGlobalWorkSize: case CLBlastUnknownError: case CLBlastUnexpectedError:
        return 1;
    default:
        return 0;
    }
}

// A tuned configuration that CLBlast rejects on this device (a driver refusing a value the
// checks allowed): say so once, then continue on CLBlast 1.5.3's generic parameters.
static void fall_back(gemm_state *g, CLBlastStatusCode s) {
    fprintf(stderr, "cltrain: warning: GEMM with the tuned configuration (%s) failed: %s; "
                    "continuing with CLBlast's generic parameters\n", g->source,
            clrt_clblast_error_name(s));
    tune_config c;
    tune_config_init(&c);
    for (int k = 0; k < TK_COUNT; k++) {
        c.has_kernel[k] = 1;
        tune_default_params(k, c.kernel[k]);
    }
    char err[256];
    if (tune_apply_kernels(&c, g->dev, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        exit(1);
    }
    tune_config_init(&g->cfg);
    if (g->routine >= 0) set_routine(g, 2);
    snprintf(g->source, sizeof g->source, "CLBlast generic defaults (fallback)");
    g->fell_back = 1;
}

// One attempt with the configuration in force.
static CLBlastStatusCode gemm_run(clrt *rt, gemm_state *g, int ta, int tb, int m, int n, int k,
                                  float alpha, dten a, int lda, dten b, int ldb, float beta,
                                  dten c, int ldc) {
    int colmajor = 0;
    if (g->cfg.has_routes) {
        const tune_route *r = &g->cfg.route[(ta != 0) * 2 + (tb != 0)];
        int indirect = (uint64_t)m * (uint64_t)n * (uint64_t)k >= r->indirect_mnk;
        set_routine(g, indirect ? 0 : 1);
        colmajor = indirect ? r->indirect_colmajor : r->direct_colmajor;
    }
    return sgemm(rt, g, colmajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void gemm_check(int ta, int tb, int m, int n, int k, dten a, int lda, dten b, int ldb,
                       dten c, int ldc) {
    const char *op = "op_gemm";
    OPS_REQUIRE(m > 0 && n > 0 && k > 0, op, "bad sizes m=%d n=%d k=%d", m, n, k);
    // Row-major: op(A) is (m, k), op(B) is (k, n); ld is the stored row length.
    OPS_REQUIRE(lda >= (ta ? m : k), op, "lda=%d too small (m=%d k=%d trans_a=%d)", lda, m, k,
                ta);
    OPS_REQUIRE(ldb >= (tb ? k : n), op, "ldb=%d too small (k=%d n=%d trans_b=%d)", ldb, k, n,
                tb);
    OPS_REQUIRE(ldc >= n, op, "ldc=%d < n=%d", ldc, n);
    OPS_REQUIRE(ops_has(a) && ops_has(b) && ops_has(c), op, "missing buffer");
}

void op_gemm(clrt *rt, int trans_a, int trans_b, int m, int n, int k, float alpha,
             dten a, int lda, dten b, int ldb, float beta, dten c, int ldc) {
    gemm_check(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    op_gemm_init(rt);
    gemm_state *g = gemm_state_of(rt);
    if (g->rec) {
        tune_shape s = { trans_a != 0, trans_b != 0, m, n, k, lda, ldb, ldc, alpha, beta, 1,
                         a.off == 0, b.off == 0, c.off == 0 };
        record(g->rec, &s);
    }
    CLBlastStatusCode s = gemm_run(rt, g, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                                   beta, c, ldc);
    if (s != CLBlastSuccess && g->tuned && !g->fell_back && parameter_failure(s)) {
        fall_back(g, s);
        s = gemm_run(rt, g, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    if (s != CLBlastSuccess) clrt_die_clblast(s, "CLBlastSgemm", __FILE__, __LINE__);
}

int op_gemm_try(clrt *rt, int trans_a, int trans_b, int m, int n, int k, float alpha,
                cl_mem a, size_t a_off, int lda, cl_mem b, size_t b_off, int ldb, float beta,
                cl_mem c, size_t c_off, int ldc) {
    dten ta = { a, a_off }, tb = { b, b_off }, tc = { c, c_off };
    gemm_check(trans_a, trans_b, m, n, k, ta, lda, tb, ldb, tc, ldc);
    op_gemm_init(rt);
    return (int)gemm_run(rt, gemm_state_of(rt), trans_a, trans_b, m, n, k, alpha, ta, lda, tb,
                         ldb, beta, tc, ldc);
}
