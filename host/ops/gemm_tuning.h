// gemm_tuning: what a GEMM configuration holds (CLBlast kernel parameters and op_gemm's routing
// rules), their constraints, applying them to CLBlast, and op_gemm's entry points for it
// (host/ops/ops_gemm.c). The ops layer's half of tuning: the files and the search that make a
// configuration are host/tune/'s (tune.h), which uses this header, never the reverse.
#ifndef CLTRAIN_GEMM_TUNING_H
#define CLTRAIN_GEMM_TUNING_H

#include "host/runtime/clrt.h"

#include <stddef.h>
#include <stdint.h>

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

// Apply c's kernel parameters to CLBlast for device dev (those c sets). 0 or a message.
int tune_apply_kernels(const tune_config *c, cl_device_id dev, char *err, size_t errlen);

// ---- op_gemm's configuration (host/ops/ops_gemm.c) ----
// CLBlast keeps overridden parameters per device for the whole process, so op_gemm's
// configuration lives at that scope too (one GEMM state per device in the ops_shared registry,
// shared by every ops_ctx on the device; ops.h).
typedef struct ops_ctx ops_ctx;
// op_gemm_init: apply the configuration in the context (ops_config.gemm) for its device,
// once; op_gemm calls it on first use. op_gemm_configure: apply c instead (NULL: routes as they come;
// parameters already given to CLBlast in this process stay, CLBlast cannot take them back).
void op_gemm_init(ops_ctx *ops);
int op_gemm_configure(ops_ctx *ops, const tune_config *c, const char *source, char *err,
                      size_t errlen);
// op_gemm without its safety net: returns CLBlast's status (0 success) instead of exiting or
// falling back to CLBlast's generic parameters, so the search can skip a bad candidate.
int op_gemm_try(ops_ctx *ops, int trans_a, int trans_b, int m, int n, int k, float alpha,
                cl_mem a, size_t a_off, int lda, cl_mem b, size_t b_off, int ldb, float beta,
                cl_mem c, size_t c_off, int ldc);
// Where the configuration in force came from ("none" when CLBlast runs as it comes), and it.
const char *op_gemm_source(ops_ctx *ops);
// 1 when op_gemm runs its packed kernels on this device (CPU devices, or
// ops_config.gemm_packed): the CLBlast configuration then serves CLBlast's path only.
int op_gemm_packed(const ops_ctx *ops);
const tune_config *op_gemm_config(ops_ctx *ops);
// Bytes of the scratch buffer op_gemm keeps for CLBlast's copies on the context's device (0
// before the first indirect GEMM); not part of the model's own arenas.
size_t op_gemm_scratch_bytes(ops_ctx *ops);
// Partial products op_gemm computes an m x n x k product as on the context's device (split-K:
// chunks of k, summed in a fixed order); 0 when it runs in one piece. ops_config.splitk = 0:
// always 0.
int op_gemm_splitk_parts(ops_ctx *ops, int m, int n, int k);

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
// Record every op_gemm call on the context's device into rec (NULL: stop). Calls still run.
void op_gemm_record(ops_ctx *ops, tune_shapes *rec);
void tune_shapes_free(tune_shapes *s);

#endif
