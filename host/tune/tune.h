// tune: how op_gemm runs its GEMMs on a device — CLBlast kernel parameters (applied with
// CLBlastOverrideParameters) and op_gemm's own routing rules (direct or indirect kernel, which
// of the two equivalent layouts CLBlast is handed) — kept in a small versioned text file per
// device. This header covers the file (parse, write, which device it is for, which file
// applies), op_gemm's configuration entry points (host/ops/ops_gemm.c) and the search behind
// `cltrain tune` (host/tune/tune_search.c).
//
// Which file applies to a device, first match wins (tune_find):
//   1. $CLTRAIN_TUNE_FILE, when it names this device (else a warning, and on to 2);
//   2. the cache file written by `cltrain tune`: clrt_cache_dir()/gemm-<key>.tune, key =
//      hash of device name, vendor, driver and platform;
//   3. a file shipped in the repository's tune/ folder (embedded at build time) whose
//      match- lines fit the device;
//   4. none: CLBlast's own parameters, every GEMM handed over row-major as called.
// CLTRAIN_NO_TUNE=1 skips all of them. A damaged or foreign file is ignored with a warning.
#ifndef CLTRAIN_TUNE_H
#define CLTRAIN_TUNE_H

#include "host/runtime/clrt.h"

#include <stdint.h>
#include <stdio.h>

// The CLBlast kernel families behind CLBlastSgemm whose parameters a file may set.
typedef enum {
    TK_XGEMM,          // the indirect GEMM kernel
    TK_XGEMM_DIRECT,   // the direct GEMM kernel (any offset, transpose, size)
    TK_COPY,           // helpers of the indirect path: copy, pad, transpose, both
    TK_PAD,
    TK_TRANSPOSE,
    TK_PADTRANSPOSE,
    TK_COUNT
} tune_kernel_id;
enum { TUNE_MAX_PARAMS = 16 };

// GEMM cases by transposes of the row-major call: NN forward, NT weight gradient, TN data
// gradient, TT unused by ResNet18.
typedef enum { TUNE_NN, TUNE_NT, TUNE_TN, TUNE_TT, TUNE_CASES } tune_case;

typedef struct tune_route {
    uint64_t indirect_mnk;   // m*n*k at or above which the indirect kernel (Xgemm) runs
    int direct_colmajor;     // 1: hand CLBlast the column-major mirror C^T = B^T A^T
    int indirect_colmajor;   //    (same numbers, other kernel variant and copies)
} tune_route;

typedef struct tune_config {
    // For whom: exact identity (what `cltrain tune` writes) and/or fnmatch(3) patterns with
    // '|' between alternatives (shipped files). Every field given must match; "" = not given.
    char device[256], vendor[256], driver[128], platform[256];
    char match_device[256], match_vendor[256], match_driver[128], match_platform[256];
    char note[256];          // free text: where and how it was tuned
    int has_kernel[TK_COUNT];                 // 0: CLBlast's own database values
    size_t kernel[TK_COUNT][TUNE_MAX_PARAMS]; // in the order of tune_param_name()
    int has_routes;          // 0: every GEMM row-major, CLBlast picks direct or indirect
    tune_route route[TUNE_CASES];
} tune_config;

const char *tune_kernel_name(int k);            // "Xgemm", ...
int tune_kernel_nparams(int k);
const char *tune_param_name(int k, int i);      // CLBlast's names, e.g. "MWG"
int tune_kernel_by_name(const char *name);      // -1 when unknown
const char *tune_case_name(int c);              // "NN", ...

void tune_config_init(tune_config *c);          // nothing set: CLBlast as it comes
// CLBlast 1.5.3's generic defaults for kernel k (valid on any device; a fallback).
void tune_default_params(int k, size_t *v);
// Checks the kernel's own constraints (tile multiples, local memory, work-group size) for
// device d (NULL: only the device-independent ones). 0 when valid, else a reason in err.
int tune_kernel_check(int k, const size_t *v, const clrt_devinfo *d, char *err, size_t errlen);

// Text form. tune_parse accepts exactly what tune_write writes (plus comments and blank
// lines); any unknown line, bad value, invalid kernel parameters or a missing "end" make it
// fail with a message naming the line.
int tune_parse(tune_config *c, const char *text, char *err, size_t errlen);
void tune_write(FILE *f, const tune_config *c);
int tune_read_file(const char *path, tune_config *c, char *err, size_t errlen);
// Atomic (temp file + rename); creates the folder.
int tune_write_file(const char *path, const tune_config *c, char *err, size_t errlen);

void tune_set_identity(tune_config *c, const clrt_devinfo *d);
// 1 when every identity field of c given matches d, and at least one was given.
int tune_matches(const tune_config *c, const clrt_devinfo *d);
// The cache file for d ("" when the cache is disabled).
void tune_cache_path(const clrt_devinfo *d, char *out, size_t outlen);
// The configuration for d (order above). Returns 1 and fills c and a description of where it
// came from ("cache /path", "shipped tune/x.tune", ...), 0 when none applies.
int tune_find(const clrt_devinfo *d, tune_config *c, char *source, size_t sourcelen);
// Apply c's kernel parameters to CLBlast for device dev (those c sets). 0 or a message.
int tune_apply_kernels(const tune_config *c, cl_device_id dev, char *err, size_t errlen);

// ---- op_gemm's configuration (host/ops/ops_gemm.c) ----
// CLBlast keeps overridden parameters per device for the whole process, so op_gemm's
// configuration lives at that scope too (one record per device, not per clrt).
// op_gemm_init: choose (tune_find) and apply the configuration for rt's device, once; op_gemm
// calls it on first use. op_gemm_configure: apply c instead (NULL: routes as they come;
// parameters already given to CLBlast in this process stay, CLBlast cannot take them back).
void op_gemm_init(clrt *rt);
int op_gemm_configure(clrt *rt, const tune_config *c, const char *source, char *err,
                      size_t errlen);
// op_gemm without its safety net: returns CLBlast's status (0 success) instead of exiting or
// falling back to CLBlast's generic parameters, so the search can skip a bad candidate.
int op_gemm_try(clrt *rt, int trans_a, int trans_b, int m, int n, int k, float alpha,
                cl_mem a, size_t a_off, int lda, cl_mem b, size_t b_off, int ldb, float beta,
                cl_mem c, size_t c_off, int ldc);
// Where the configuration in force came from ("none" when CLBlast runs as it comes), and it.
const char *op_gemm_source(clrt *rt);
const tune_config *op_gemm_config(clrt *rt);
// Bytes of the scratch buffer op_gemm keeps for CLBlast's copies on rt's device (0 before the
// first indirect GEMM); not part of the model's own arenas.
size_t op_gemm_scratch_bytes(clrt *rt);
// Partial products op_gemm computes an m x n x k product as on rt's device (split-K: chunks
// of k, summed in a fixed order); 0 when it runs in one piece. CLTRAIN_SPLITK=0: always 0.
int op_gemm_splitk_parts(clrt *rt, int m, int n, int k);

// One distinct GEMM of a workload and how often it runs per step.
typedef struct tune_shape {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    int calls;
    int a_at0, b_at0, c_at0;   // the operand starts its buffer (CLBlast copies the others)
} tune_shape;
typedef struct tune_shapes {
    tune_shape *v;
    int n, cap;
} tune_shapes;
// Record every op_gemm call on rt's device into rec (NULL: stop). Calls still run.
void op_gemm_record(clrt *rt, tune_shapes *rec);
void tune_shapes_free(tune_shapes *s);

// ---- the search (host/tune/tune_search.c; candidates run in workers, host/tune/tune_job.c) ----
typedef struct tune_search_opts {
    const char *exe;         // this binary, started as `cltrain tune --worker` per candidate
    const char *device;      // the device for the workers, "P:D"
    double budget_s;         // wall-clock seconds for the search (compiles included)
    int reps;                // timed runs per shape and candidate (the fastest counts)
    uint64_t seed;
    int cpu_clock;           // score by process CPU time, not wall-clock time: steadier on a
                             // machine others load, blind to how well work spreads on cores
    FILE *log;               // progress lines (NULL: quiet)
} tune_search_opts;

// Per shape: milliseconds per call before (as op_gemm ran when the search started) and with
// the result.
typedef struct tune_result {
    double *before_ms, *after_ms;
    double before_total_ms, after_total_ms;   // per step: sum of calls x ms
    int candidates;                           // configurations measured
} tune_result;

// Search for the fastest configuration of rt's device on the shapes, starting from what op_gemm
// uses now. Every configuration is checked against a host reference on every shape before it
// counts. Returns 0 with *best (identity set) and *res (caller frees with tune_result_free).
int tune_search(clrt *rt, const tune_shapes *shapes, const tune_search_opts *o,
                tune_config *best, tune_result *res, char *err, size_t errlen);
void tune_result_free(tune_result *r);
// Measure what op_gemm runs now on the shapes (in a worker; the fastest of three runs per
// shape): ms per shape, the step total.
int tune_measure(clrt *rt, const tune_shapes *shapes, const tune_search_opts *o, double *ms,
                 double *total, char *err, size_t errlen);

// The worker (`cltrain tune --worker JOB [--config FILE] [--cap MS]`): measures one
// configuration (none: CLBlast as it comes) on rt's device and prints the result on out for
// the searching process. 0 when a result (timings, "slow" or "rejected") was printed.
int tune_worker_main(clrt *rt, const char *job_path, const char *config_path, double cap_ms,
                     FILE *out);

#endif
