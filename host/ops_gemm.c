// GEMM through CLBlast: the one place every matrix product of the model goes through.
#include "host/ops_internal.h"

#include <clblast_c.h>

// ---- GEMM ----

void op_gemm(clrt *rt, int trans_a, int trans_b, int m, int n, int k, float alpha,
             dten a, int lda, dten b, int ldb, float beta, dten c, int ldc) {
    const char *op = "op_gemm";
    OPS_REQUIRE(m > 0 && n > 0 && k > 0, op, "bad sizes m=%d n=%d k=%d", m, n, k);
    // Row-major: op(A) is (m, k), op(B) is (k, n); ld is the stored row length.
    OPS_REQUIRE(lda >= (trans_a ? m : k), op, "lda=%d too small (m=%d k=%d trans_a=%d)", lda,
                m, k, trans_a);
    OPS_REQUIRE(ldb >= (trans_b ? k : n), op, "ldb=%d too small (k=%d n=%d trans_b=%d)", ldb,
                k, n, trans_b);
    OPS_REQUIRE(ldc >= n, op, "ldc=%d < n=%d", ldc, n);
    OPS_REQUIRE(ops_has(a) && ops_has(b) && ops_has(c), op, "missing buffer");
    CLBLAST_CHECK(CLBlastSgemm(CLBlastLayoutRowMajor,
                               trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                               trans_b ? CLBlastTransposeYes : CLBlastTransposeNo,
                               (size_t)m, (size_t)n, (size_t)k, alpha, a.mem, a.off,
                               (size_t)lda, b.mem, b.off, (size_t)ldb, beta, c.mem, c.off,
                               (size_t)ldc, &rt->queue,
                               clrt_profile_event(rt, "gemm")));
}
