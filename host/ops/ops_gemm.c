// GEMM through CLBlast: the one place every matrix product of the model goes through, and the
// tuned configuration it runs with (gemm_tuning.h; handed down in ops_config, made by
// host/tune/).
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
//   for those copies is kept from call to call (scratch_for).
// - Split-K: a product with a small output and a long k runs as chunks of k in one batched
//   call plus a fixed-order sum (splitk_plan); on and off per shape and device, never by timing.
// Without routes (no tuning file) op_gemm hands every call over row-major, as called.
#define _POSIX_C_SOURCE 200809L
#include "host/ops/ops_internal.h"

#include <clblast_c.h>
#include <stdlib.h>
#include <string.h>

// ---- the per-device configuration ----

// A device buffer kept from call to call and grown as needed (the same GEMMs come every step,
// so it grows in the first step only); released when a runtime with another context needs it
// (a buffer lives on until the commands using it are done).
typedef struct gemm_scratch {
    cl_mem mem;
    cl_context ctx;
    size_t bytes;
} gemm_scratch;

typedef struct gemm_state {
    cl_device_id dev;
    int ready;                     // configuration chosen and applied
    tune_config cfg;
    char source[1100];             // where cfg came from
    int routine;                   // GemmRoutine override in force (set_routine), -1 none
    int tuned;                     // cfg came from a file or the search (not "none")
    int fell_back;                 // a tuned call failed once; running on CLBlast's defaults
    tune_shapes *rec;              // recording the calls (cltrain tune)
    gemm_scratch temp;             // CLBlast's scratch for the indirect path (see sgemm)
    gemm_scratch part;             // split-K's partial products (see splitk)
    gemm_scratch pack;             // the packed path's operand panels (see packed_run)
} gemm_state;

// CLBlast's overrides are per device and process-wide, so this state is too: one per device
// in the ops_shared registry handed to ops_ctx_init, shared by every context on that device
// (ops.h). cltrain is single-threaded on the host.
static gemm_state *gemm_state_new(cl_device_id dev) {
    gemm_state *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->dev = dev;
    g->routine = -1;
    snprintf(g->source, sizeof g->source, "none");
    return g;
}

int ops_ctx_init(ops_ctx *o, clrt *rt, const ops_config *cfg, ops_shared *s, char *err,
                 size_t errlen) {
    memset(o, 0, sizeof *o);
    o->rt = rt;
    if (cfg) o->cfg = *cfg;
    else ops_config_init(&o->cfg);
    for (int i = 0; i < s->n; i++)
        if (s->gemm[i]->dev == rt->dev.device_id) {
            o->gemm = s->gemm[i];
            return 0;
        }
    gemm_state **v = realloc(s->gemm, (size_t)(s->n + 1) * sizeof *v);
    if (v) s->gemm = v;
    gemm_state *g = v ? gemm_state_new(rt->dev.device_id) : NULL;
    if (!g) {
        snprintf(err, errlen, "out of host memory");
        return 1;
    }
    s->gemm[s->n++] = g;
    o->gemm = g;
    return 0;
}

static void scratch_free(gemm_scratch *sc) {
    if (sc->mem) clReleaseMemObject(sc->mem);
}

void ops_shared_free(ops_shared *s) {
    for (int i = 0; i < s->n; i++) {
        scratch_free(&s->gemm[i]->temp);
        scratch_free(&s->gemm[i]->part);
        scratch_free(&s->gemm[i]->pack);
        free(s->gemm[i]);
    }
    free(s->gemm);
    memset(s, 0, sizeof *s);
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

void op_gemm_init(ops_ctx *ops) {
    gemm_state *g = ops->gemm;
    if (g->ready) return;
    char err[512];
    if (!ops->cfg.has_gemm) {
        configure(g, NULL, "none", err, sizeof err);
        return;
    }
    const tune_config c = ops->cfg.gemm;
    const char *source = ops->cfg.gemm_source;
    // A file that names this device may still be wrong for it (edited by hand, or a driver
    // that rejects a value): warn and run on CLBlast's own parameters.
    for (int k = 0; k < TK_COUNT; k++)
        if (c.has_kernel[k] && tune_kernel_check(k, c.kernel[k], &ops->rt->dev, err, sizeof err)) {
            fprintf(stderr, "cltrain: warning: ignoring GEMM tuning (%s): %s\n", source, err);
            configure(g, NULL, "none", err, sizeof err);
            return;
        }
    if (configure(g, &c, source, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: warning: ignoring GEMM tuning (%s): %s\n", source, err);
        configure(g, NULL, "none", err, sizeof err);
    }
}

int op_gemm_configure(ops_ctx *ops, const tune_config *c, const char *source, char *err,
                      size_t errlen) {
    gemm_state *g = ops->gemm;
    g->fell_back = 0;
    return configure(g, c, source, err, errlen);
}

const char *op_gemm_source(ops_ctx *ops) {
    op_gemm_init(ops);
    return ops->gemm->source;
}

const tune_config *op_gemm_config(ops_ctx *ops) {
    op_gemm_init(ops);
    return &ops->gemm->cfg;
}

size_t op_gemm_scratch_bytes(ops_ctx *ops) {
    gemm_state *g = ops->gemm;
    return g->temp.bytes + g->part.bytes;
}

void op_gemm_record(ops_ctx *ops, tune_shapes *rec) { ops->gemm->rec = rec; }

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

// The scratch buffer for `bytes`, or NULL when it cannot be allocated.
static cl_mem scratch_for(clrt *rt, gemm_scratch *sc, size_t bytes) {
    if (sc->mem && (sc->ctx != rt->ctx || sc->bytes < bytes)) {
        // Commands already queued may still read it. OpenCL lets a buffer be released then
        // (it lives on until they are done), but Oclgrind frees it at once; finishing the
        // queue first costs nothing here (the scratch grows in the first step only).
        if (sc->ctx == rt->ctx) clFinish(rt->queue);
        clReleaseMemObject(sc->mem);
        sc->mem = NULL;
        sc->bytes = 0;
    }
    if (!sc->mem) {
        cl_int e;
        sc->mem = clCreateBuffer(rt->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
        if (e != CL_SUCCESS) sc->mem = NULL;
        sc->ctx = rt->ctx;
        sc->bytes = sc->mem ? bytes : 0;
    }
    return sc->mem;
}

// The layout to hand a row-major call to CLBlast in: as it is, or as the column-major mirror
// C^T (n, m) = op(B)^T (n, k) x op(A)^T (k, m) of the same memory (A and B swap roles, with
// their leading dimensions, transposes and batch strides; m and n swap).
static CLBlastLayout mirror(int colmajor, int *ta, int *tb, int *m, int *n, dten *a, int *lda,
                            size_t *sa, dten *b, int *ldb, size_t *sb) {
    if (!colmajor) return CLBlastLayoutRowMajor;
    dten t = *a; *a = *b; *b = t;
    size_t z = *sa; *sa = *sb; *sb = z;
    int x = *lda; *lda = *ldb; *ldb = x;
    x = *ta; *ta = *tb; *tb = x;
    x = *m; *m = *n; *n = x;
    return CLBlastLayoutColMajor;
}

// One CLBlast call; operands as op_gemm's row-major view (the mirror swaps them here).
static CLBlastStatusCode sgemm(clrt *rt, gemm_state *g, int colmajor, int ta, int tb, int m,
                               int n, int k, float alpha, dten a, int lda, dten b, int ldb,
                               float beta, dten c, int ldc) {
    size_t sa = 0, sb = 0;
    CLBlastLayout layout = mirror(colmajor, &ta, &tb, &m, &n, &a, &lda, &sa, &b, &ldb, &sb);
    CLBlastTranspose tra = ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose trb = tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    size_t bytes = 0;
    CLBlastStatusCode s = CLBlastSGemmTempBufferSize(layout, tra, trb, (size_t)m, (size_t)n,
                                                     (size_t)k, a.off, (size_t)lda, b.off,
                                                     (size_t)ldb, c.off, (size_t)ldc,
                                                     &rt->queue, &bytes);
    if (s != CLBlastSuccess) return s;
    // Left to itself CLBlast allocates this scratch afresh on every call (at 224x224 up to
    // ~100 MB, whose pages are then faulted in anew each time); NULL: it allocates as before.
    cl_mem temp = bytes ? scratch_for(rt, &g->temp, bytes) : NULL;
    return CLBlastSgemmWithTempBuffer(layout, tra, trb, (size_t)m, (size_t)n, (size_t)k, alpha,
                                      a.mem, a.off, (size_t)lda, b.mem, b.off, (size_t)ldb,
                                      beta, c.mem, c.off, (size_t)ldc, &rt->queue,
                                      clrt_profile_span(rt, "gemm"), temp);
}

// ---- split-K ----
// A GEMM whose output is small next to its depth (a weight gradient: m*n of a few thousand, k
// = N*H*W up to ~800k) gives CLBlast a few output tiles, each computed by one work-group
// walking all of k: most of a GPU idles. Split-K cuts k into chunks of `len`, computes their
// products with one strided-batched CLBlast call into a scratch buffer (the remainder, if
// any, by one more call), then sums the partial products in a fixed order
// (gemm_splitk_reduce): deterministic, the same arithmetic on every run of a device.
enum {
    SPLITK_TILE = 64,              // output tile assumed per work-group when counting them
    SPLITK_GROUPS_PER_CU = 4,      // work-groups wanted per compute unit
    SPLITK_MIN_CHUNK = 2048,       // shortest chunk of k worth a call
    SPLITK_MAX_PARTS = 256,
};
#define SPLITK_MAX_BYTES ((size_t)64 << 20)

// Chunks of k for this GEMM on this device: 0 = do not split, else the number of partial
// products; *len the chunk length (the last partial, k % len, when not 0, comes on top).
static int splitk_plan(const ops_ctx *ops, int m, int n, int k, int *len) {
    if (OPS_SWITCH(ops, splitk) == 0) return 0;   // never (to compare)
    const clrt *rt = ops->rt;
    size_t tiles = (size_t)((m + SPLITK_TILE - 1) / SPLITK_TILE) *
                   (size_t)((n + SPLITK_TILE - 1) / SPLITK_TILE);
    size_t want = (size_t)SPLITK_GROUPS_PER_CU * (rt->dev.compute_units ? rt->dev.compute_units : 1);
    if (tiles >= want) return 0;
    size_t parts = (want + tiles - 1) / tiles;
    size_t by_k = (size_t)k / SPLITK_MIN_CHUNK;
    size_t by_mem = SPLITK_MAX_BYTES / ((size_t)m * (size_t)n * sizeof(float));
    if (parts > by_k) parts = by_k;
    if (parts > by_mem) parts = by_mem;
    if (parts > SPLITK_MAX_PARTS) parts = SPLITK_MAX_PARTS;
    if (parts < 2) return 0;
    int l = (int)((size_t)k / parts) / 128 * 128;   // whole tiles of k for the kernels
    *len = l;
    return k / l + (k % l != 0);
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

// The route for one product of these sizes: CLBlast's kernel (set_routine) and whether to
// hand it over as the column-major mirror.
static int route(gemm_state *g, int ta, int tb, int m, int n, int k) {
    if (!g->cfg.has_routes) return 0;
    const tune_route *r = &g->cfg.route[(ta != 0) * 2 + (tb != 0)];
    int indirect = (uint64_t)m * (uint64_t)n * (uint64_t)k >= r->indirect_mnk;
    set_routine(g, indirect ? 0 : 1);
    return indirect ? r->indirect_colmajor : r->direct_colmajor;
}

// CLBlast's strided-batched call: `count` products, the j-th on a + j*sa, b + j*sb into
// c + j*sc; operands as op_gemm's row-major view (the mirror swaps them here).
static CLBlastStatusCode sgemm_batched(clrt *rt, int colmajor, int ta, int tb, int m, int n,
                                       int k, float alpha, dten a, int lda, size_t sa, dten b,
                                       int ldb, size_t sb, float beta, dten c, int ldc,
                                       size_t sc, int count) {
    CLBlastLayout layout = mirror(colmajor, &ta, &tb, &m, &n, &a, &lda, &sa, &b, &ldb, &sb);
    return CLBlastSgemmStridedBatched(layout, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                                      tb ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)m,
                                      (size_t)n, (size_t)k, alpha, a.mem, a.off, (size_t)lda, sa,
                                      b.mem, b.off, (size_t)ldb, sb, beta, c.mem, c.off,
                                      (size_t)ldc, sc, (size_t)count, &rt->queue,
                                      clrt_profile_span(rt, "gemm"));
}

int op_gemm_splitk_parts(ops_ctx *ops, int m, int n, int k) {
    int len;
    return m > 0 && n > 0 && k > 0 ? splitk_plan(ops, m, n, k, &len) : 0;
}

static CLBlastStatusCode splitk(clrt *rt, gemm_state *g, cl_mem part, int parts, int len,
                                int ta, int tb, int m, int n, int k, float alpha, dten a,
                                int lda, dten b, int ldb, float beta, dten c, int ldc) {
    int full = k / len, rem = k % len;
    size_t mn = (size_t)m * (size_t)n;
    size_t sa = ta ? (size_t)len * (size_t)lda : (size_t)len;   // where chunk j of k starts
    size_t sb = tb ? (size_t)len : (size_t)len * (size_t)ldb;
    dten p = { part, 0 };
    // The batched call is safe from CLBlast's ignored offsets (op_gemm_batched): each chunk of
    // A and B is a slice of longer rows (ld > len), which CLBlast always copies; C starts at 0.
    CLBlastStatusCode s = sgemm_batched(rt, route(g, ta, tb, m, n, len), ta, tb, m, n, len,
                                        alpha, a, lda, sa, b, ldb, sb, 0.0f, p, n, mn, full);
    if (s == CLBlastSuccess && rem)
        s = sgemm(rt, g, route(g, ta, tb, m, n, rem), ta, tb, m, n, rem, alpha,
                  dten_at(a, (size_t)full * sa), lda, dten_at(b, (size_t)full * sb), ldb, 0.0f,
                  dten_at(p, (size_t)full * mn), n);
    if (s != CLBlastSuccess) return s;
    cl_kernel kr = ops_kernel_ten(rt, "gemm_splitk_reduce", (dten[]){c, p}, 2);
    CLRT_ARG(kr, 4, m);
    CLRT_ARG(kr, 5, n);
    CLRT_ARG(kr, 6, ldc);
    CLRT_ARG(kr, 7, parts);
    CLRT_ARG(kr, 8, beta);
    clrt_launch1d(rt, kr, mn);
    return CLBlastSuccess;
}

// ---- the packed path (CPU devices) ----
// CLBlast's kernels reach a quarter of a CPU's SGEMM rate under pocl (BENCHMARKS.md): its
// work-groups are loops over work items with hundreds of accumulators each, which spill. On a
// CPU device op_gemm instead copies both operands into panels and runs one register-blocked
// tile per work item (cl/gemm_packed.cl), the layout of BLIS's micro-kernel: ~4x faster on
// ResNet's products. ops_config.gemm_packed (CLTRAIN_GEMM_PACKED, 0 or 1) overrides the
// device-type rule; `cltrain tune` searches CLBlast's parameters, for the devices that run it.
enum { PACK_MR = 8, PACK_NR = 32, PACK_KB = 16 };   // cl/gemm_packed.cl's GEMM_MR, _NR, _KB
enum {
    PACK_KC_MAX = 4096,            // steps of k per tile-kernel launch: a B panel of 512 KiB
    PACK_ITEM_FMAS = 1 << 17,      // multiply-adds per work item wanted, at least
};

static int packed_on(const ops_ctx *ops) {
    int sw = OPS_SWITCH(ops, gemm_packed);
    // (Oclgrind calls itself a CPU and a GPU: CLBlast's path there, as on GPUs.)
    cl_device_type t = ops->rt->dev.type;
    return sw >= 0 ? sw : (t & CL_DEVICE_TYPE_CPU) && !(t & CL_DEVICE_TYPE_GPU);
}

int op_gemm_packed(const ops_ctx *ops) { return packed_on(ops); }

static size_t panels_of(int n, int w) { return ((size_t)n + w - 1) / w; }

// op(A) (m, k) of each of `count` products (the j-th at a + j*sa) into A panels at pa.
static void pack_a(clrt *rt, dten pa, int ta, int m, int k, dten a, int lda, size_t sa,
                   int count) {
    cl_kernel ka = ops_kernel_ten(rt, "gemm_pack_a", (dten[]){pa, a}, 2);
    cl_ulong stride_a = sa;
    int ita = ta != 0, kb_fast = !ita;   // each pack walks its source along the rows as stored
    CLRT_ARG(ka, 4, lda);
    CLRT_ARG(ka, 5, ita);
    CLRT_ARG(ka, 6, m);
    CLRT_ARG(ka, 7, k);
    CLRT_ARG(ka, 8, stride_a);
    CLRT_ARG(ka, 9, kb_fast);
    size_t kbs = panels_of(k, PACK_KB), np = panels_of(m, PACK_MR);
    clrt_launch(rt, ka, 3, (size_t[]){ kb_fast ? kbs : np, kb_fast ? np : kbs, (size_t)count },
                NULL);
}

// op(B) (k, n) of each of `count` products (the j-th at b + j*sb) into B panels at pb.
static void pack_b(clrt *rt, dten pb, int tb, int k, int n, dten b, int ldb, size_t sb,
                   int count) {
    cl_kernel kb = ops_kernel_ten(rt, "gemm_pack_b", (dten[]){pb, b}, 2);
    cl_ulong stride_b = sb;
    int itb = tb != 0, kb_fast = itb;
    CLRT_ARG(kb, 4, ldb);
    CLRT_ARG(kb, 5, itb);
    CLRT_ARG(kb, 6, k);
    CLRT_ARG(kb, 7, n);
    CLRT_ARG(kb, 8, stride_b);
    CLRT_ARG(kb, 9, kb_fast);
    size_t kbs = panels_of(k, PACK_KB), np = panels_of(n, PACK_NR);
    clrt_launch(rt, kb, 3, (size_t[]){ kb_fast ? kbs : np, kb_fast ? np : kbs, (size_t)count },
                NULL);
}

// How the tile kernels walk k: chunks of at most PACK_KC_MAX steps whose B panels stay in L2
// (the chunks' sums added in order, beta 1 after the first), each a multiple of `align`
// steps but the last; and how many A panels one work item takes (*per: short products
// several, to give each work-group enough work).
static int tile_chunk(int k, int align, size_t npa, size_t *per) {
    int chunks = (k + PACK_KC_MAX - 1) / PACK_KC_MAX;
    int kc = (k + chunks - 1) / chunks;
    kc = (kc + align - 1) / align * align;
    size_t p = PACK_ITEM_FMAS / ((size_t)PACK_MR * PACK_NR * (size_t)kc);
    *per = p < 1 ? 1 : p > npa ? npa : p;
    return kc;
}

// A tile kernel's launches over the chunks of k (tile_chunk): the chunk's start and length at
// arguments i_k0 and i_k0 + 1, its beta (the caller's, then 1) at i_beta.
static void tile_launches(clrt *rt, cl_kernel kg, cl_uint i_k0, cl_uint i_beta, int k, int kc,
                          float beta, const size_t global[3]) {
    for (int k0 = 0; k0 < k; k0 += kc) {
        int len = k - k0 < kc ? k - k0 : kc;
        float bt = k0 == 0 ? beta : 1.0f;
        CLRT_ARG(kg, i_k0, k0);
        CLRT_ARG(kg, i_k0 + 1, len);
        CLRT_ARG(kg, i_beta, bt);
        clrt_launch(rt, kg, 3, global, (size_t[]){ 1, 1, 1 });
    }
}

// C = alpha * A B + beta * C from A panels pa and B panels pb (panel j at pb + j * bps).
static void tiles(clrt *rt, dten c, int ldc, size_t sc, float alpha, float beta, dten pa,
                  dten pb, size_t bps, int m, int n, int k, int count) {
    size_t npa = panels_of(m, PACK_MR), per;
    int kc = tile_chunk(k, 1, npa, &per);
    size_t global[3] = { (npa + per - 1) / per, panels_of(n, PACK_NR), (size_t)count };
    cl_kernel kg = ops_kernel_ten(rt, "gemm_packed", (dten[]){c, pa, pb}, 3);
    cl_ulong stride_c = sc, panel_stride = bps;
    int iper = (int)per;
    CLRT_ARG(kg, 6, m);
    CLRT_ARG(kg, 7, n);
    CLRT_ARG(kg, 8, k);
    CLRT_ARG(kg, 11, ldc);
    CLRT_ARG(kg, 12, alpha);
    CLRT_ARG(kg, 14, stride_c);
    CLRT_ARG(kg, 15, iper);
    CLRT_ARG(kg, 16, panel_stride);
    tile_launches(rt, kg, 9, 13, k, kc, beta, global);
}

// `count` products (the j-th on a + j*sa, b + j*sb into c + j*sc) through the panels; 0 when
// the scratch for them cannot be allocated (the caller then takes CLBlast's path).
static int packed_run(clrt *rt, gemm_state *g, int ta, int tb, int m, int n, int k,
                      float alpha, dten a, int lda, size_t sa, dten b, int ldb, size_t sb,
                      float beta, dten c, int ldc, size_t sc, int count) {
    size_t fa = panels_of(m, PACK_MR) * PACK_MR * (size_t)k;   // per product
    size_t fb = panels_of(n, PACK_NR) * PACK_NR * (size_t)k;
    cl_mem mem = scratch_for(rt, &g->pack, (fa + fb) * (size_t)count * sizeof(float));
    if (!mem) return 0;
    dten pa = { mem, 0 }, pb = { mem, fa * (size_t)count };
    pack_a(rt, pa, ta, m, k, a, lda, sa, count);
    pack_b(rt, pb, tb, k, n, b, ldb, sb, count);
    tiles(rt, c, ldc, sc, alpha, beta, pa, pb, (size_t)PACK_NR * k, m, n, k, count);
    return 1;
}

// ---- products with an operand in im2col's panel layout (cl/conv.cl) ----

int op_gemm_panel_rows(int rows) { return (rows + PACK_MR - 1) / PACK_MR * PACK_MR; }

size_t op_gemm_panel_floats(int rows, int cols) {
    return panels_of(cols, PACK_NR) * PACK_NR * (size_t)op_gemm_panel_rows(rows);
}

// The scratch for the one operand these products pack (packed_run's kept buffer); no
// fallback to CLBlast's path here, which cannot read the panel layout.
static dten pack_scratch(clrt *rt, gemm_state *g, size_t floats, const char *op) {
    cl_mem mem = scratch_for(rt, &g->pack, floats * sizeof(float));
    OPS_REQUIRE(mem, op, "cannot allocate %zu bytes of GEMM scratch", floats * sizeof(float));
    return (dten){ mem, 0 };
}

// What both products below check before they start; their state.
static gemm_state *panels_begin(ops_ctx *ops, int m, int n, int k, dten a, int lda, dten p,
                                dten c, int ldc, const char *op) {
    OPS_REQUIRE(packed_on(ops), op, "the panel layout is the packed path's (CPU devices)");
    OPS_REQUIRE(m > 0 && n > 0 && k > 0, op, "bad sizes m=%d n=%d k=%d", m, n, k);
    OPS_REQUIRE(lda >= k && ldc >= n, op, "lda=%d or ldc=%d too small", lda, ldc);
    OPS_REQUIRE(ops_has(a) && ops_has(p) && ops_has(c), op, "missing buffer");
    op_gemm_init(ops);
    return ops->gemm;
}

void op_gemm_bpanels(ops_ctx *ops, int m, int n, int k, float alpha, dten a, int lda, dten bp,
                     float beta, dten c, int ldc) {
    const char *op = "op_gemm_bpanels";
    clrt *rt = ops->rt;
    gemm_state *g = panels_begin(ops, m, n, k, a, lda, bp, c, ldc, op);
    dten pa = pack_scratch(rt, g, panels_of(m, PACK_MR) * PACK_MR * (size_t)k, op);
    pack_a(rt, pa, 0, m, k, a, lda, 0, 1);
    tiles(rt, c, ldc, 0, alpha, beta, pa, bp, (size_t)PACK_NR * op_gemm_panel_rows(k), m, n,
          k, 1);
}

void op_gemm_nt_panels(ops_ctx *ops, int m, int n, int k, float alpha, dten a, int lda, dten p,
                       float beta, dten c, int ldc) {
    const char *op = "op_gemm_nt_panels";
    clrt *rt = ops->rt;
    gemm_state *g = panels_begin(ops, m, n, k, a, lda, p, c, ldc, op);
    // T (n, m) = P (n, k) x A^T (k, m): A^T as B panels, P's own layout as the A operand.
    dten pb = pack_scratch(rt, g, panels_of(m, PACK_NR) * PACK_NR * (size_t)k, op);
    pack_b(rt, pb, 1, k, m, a, lda, 0, 1);
    size_t npa = panels_of(n, PACK_MR), per;
    int kc = tile_chunk(k, PACK_NR, npa, &per);
    size_t global[3] = { panels_of(m, PACK_NR), (npa + per - 1) / per, 1 };
    cl_kernel kg = ops_kernel_ten(rt, "gemm_packed_pt", (dten[]){c, p}, 2);
    int mp = op_gemm_panel_rows(n), iper = (int)per;
    CLRT_ARG(kg, 4, mp);
    ops_arg_ten(kg, 5, pb);
    CLRT_ARG(kg, 7, n);
    CLRT_ARG(kg, 8, m);
    CLRT_ARG(kg, 9, k);
    CLRT_ARG(kg, 12, ldc);
    CLRT_ARG(kg, 13, alpha);
    CLRT_ARG(kg, 15, iper);
    tile_launches(rt, kg, 10, 14, k, kc, beta, global);
}

// One attempt with the configuration in force.
static CLBlastStatusCode gemm_run(ops_ctx *ops, int ta, int tb, int m, int n, int k,
                                  float alpha, dten a, int lda, dten b, int ldb, float beta,
                                  dten c, int ldc) {
    clrt *rt = ops->rt;
    gemm_state *g = ops->gemm;
    int len = 0, parts = splitk_plan(ops, m, n, k, &len);
    cl_mem part = parts ? scratch_for(rt, &g->part, (size_t)parts * m * n * sizeof(float))
                        : NULL;
    if (part)   // else (no memory for the partial products): in one piece
        return splitk(rt, g, part, parts, len, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
                      ldc);
    return sgemm(rt, g, route(g, ta, tb, m, n, k), ta, tb, m, n, k, alpha, a, lda, b, ldb,
                 beta, c, ldc);
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

void op_gemm(ops_ctx *ops, int trans_a, int trans_b, int m, int n, int k, float alpha,
             dten a, int lda, dten b, int ldb, float beta, dten c, int ldc) {
    gemm_check(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    op_gemm_init(ops);
    clrt *rt = ops->rt;
    gemm_state *g = ops->gemm;
    if (g->rec) {
        tune_shape s = { trans_a != 0, trans_b != 0, m, n, k, lda, ldb, ldc, alpha, beta, 1,
                         a.off == 0, b.off == 0, c.off == 0 };
        record(g->rec, &s);
    }
    if (packed_on(ops) && packed_run(rt, g, trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb,
                                    0, beta, c, ldc, 0, 1))
        return;
    CLBlastStatusCode s = gemm_run(ops, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                                   beta, c, ldc);
    if (s != CLBlastSuccess && g->tuned && !g->fell_back && parameter_failure(s)) {
        fall_back(g, s);
        s = gemm_run(ops, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    if (s != CLBlastSuccess) clrt_die_clblast(s, "CLBlastSgemm", __FILE__, __LINE__);
}

int op_gemm_try(ops_ctx *ops, int trans_a, int trans_b, int m, int n, int k, float alpha,
                cl_mem a, size_t a_off, int lda, cl_mem b, size_t b_off, int ldb, float beta,
                cl_mem c, size_t c_off, int ldc) {
    dten ta = { a, a_off }, tb = { b, b_off }, tc = { c, c_off };
    gemm_check(trans_a, trans_b, m, n, k, ta, lda, tb, ldb, tc, ldc);
    op_gemm_init(ops);
    return (int)gemm_run(ops, trans_a, trans_b, m, n, k, alpha, ta, lda, tb,
                         ldb, beta, tc, ldc);
}

void op_gemm_batched(ops_ctx *ops, int trans_a, int trans_b, int m, int n, int k, float alpha,
                     dten a, int lda, size_t stride_a, dten b, int ldb, size_t stride_b,
                     float beta, dten c, int ldc, size_t stride_c, int count) {
    gemm_check(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    OPS_REQUIRE(count > 0, "op_gemm_batched", "bad count %d", count);
    op_gemm_init(ops);
    clrt *rt = ops->rt;
    gemm_state *g = ops->gemm;
    if (packed_on(ops) && packed_run(rt, g, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a,
                                    b, ldb, stride_b, beta, c, ldc, stride_c, count))
        return;
    CLBlastStatusCode s = CLBlastSuccess;
    for (int attempt = 0; attempt < 2; attempt++) {
        int colmajor = route(g, trans_a, trans_b, m, n, k);
        // CLBlast 1.5.3's batched indirect kernel ignores the offset of an operand it does not
        // copy (one already in the kernel's layout): with an offset, the direct kernel.
        int offsets = a.off || b.off || c.off;
        if (offsets) {
            set_routine(g, 1);
            if (g->cfg.has_routes) colmajor = g->cfg.route[(trans_a != 0) * 2 + (trans_b != 0)]
                                                  .direct_colmajor;
        }
        s = sgemm_batched(rt, colmajor, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b,
                          ldb, stride_b, beta, c, ldc, stride_c, count);
        if (offsets && !g->cfg.has_routes) set_routine(g, 2);   // back to CLBlast's own rule
        if (s == CLBlastSuccess || !g->tuned || g->fell_back || !parameter_failure(s)) break;
        fall_back(g, s);
    }
    if (s != CLBlastSuccess)
        clrt_die_clblast(s, "CLBlastSgemmStridedBatched", __FILE__, __LINE__);
}
