// Helpers shared by the Criterion tests: a runtime on the test device, uploads, comparisons.
#ifndef CLTRAIN_TESTUTIL_H
#define CLTRAIN_TESTUTIL_H

#include "host/ops/ops.h"
#include "host/train/optim.h"
#include <stddef.h>
#include <stdint.h>

// The runtime every device test uses: $CLTRAIN_DEVICE, else "cpu" (pocl). Created on first
// use in this process (Criterion runs each test in its own process), aborts the test if none.
clrt *test_rt(void);
// The ops' context on test_rt(), made with it: its cfg as the command layer fills it at
// start-up; a test sets a field (and puts it back) instead of calling setenv.
ops_ctx *test_ops(void);
// The test process's one GEMM registry (ops_shared), for contexts a test makes itself.
ops_shared *test_ops_shared(void);
// A fresh device buffer holding n floats copied from host (or zeros when host is NULL).
dten test_upload(clrt *rt, const float *host, size_t n);
dten test_upload_i32(clrt *rt, const int32_t *host, size_t n);
// Read n floats back (malloc'd; caller frees).
float *test_download(clrt *rt, dten t, size_t n);
// AdamW (lr 1e-3, weight decay 0.05, none on batch-norm parameters) clipped at a gradient norm
// of 0.01, far below a fresh model's: the optimizer tests' hardest case.
optim_config test_adamw_clipped(void);
// Deterministic pseudo-random floats uniform in [lo, hi).
void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);
// Compare got vs want: passes when for every i |got-want| <= atol + rtol*|want|. On failure
// the Criterion assertion names the tensor, the worst index and both values.
void test_expect_close(const char *what, const float *got, const float *want, size_t n,
                       float atol, float rtol);
// Largest |got-want| / max(|want|, floor) over the tensor.
double test_max_rel_err(const float *got, const float *want, size_t n, double floor);

#endif
