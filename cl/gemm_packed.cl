// GEMM for CPU devices (host/ops/ops_gemm.c, "packed path"): C = alpha * op(A) op(B) + beta * C,
// row-major, as the BLIS papers lay a product out for a CPU core. Both operands are first
// copied into panels in the order the inner loop reads them, then one work item per
// GEMM_MR x GEMM_NR tile of C walks all of k with the tile's accumulators in vector registers
// (GEMM_MR rows x two float16: 16 of the 32 AVX-512 registers), one broadcast of A and two
// loads of B per step, all sequential. pocl runs one work-group per core at a time, so the
// work item is the core's micro-kernel; a GPU never takes this path.
//
// Panels (a batch of `count` products is a third range dimension):
// - A: (m rounded up to GEMM_MR) / GEMM_MR panels of k x GEMM_MR floats, k-major: panel p
//   holds rows p*MR .. p*MR + MR, value (kk, r) at p*k*MR + kk*MR + r; rows past m are 0.
// - B: (n rounded up to GEMM_NR) / GEMM_NR panels of k x GEMM_NR floats, k-major; columns
//   past n are 0.
// Every output element is one sum over kk = 0, 1, ..., k-1 in order: deterministic, and the
// same whatever the tile it falls in.

#define GEMM_MR 8
#define GEMM_NR 32

#define GEMM_KB 16   // steps of k per packing work item

// op(A) (m, k) into A panels. Item (kb, p, batch) writes steps kb*GEMM_KB .. of panel p; a
// step past the last whole block of k (the k % GEMM_KB tail) goes value by value. `kb_fast`:
// the block index runs along range dimension 0, so consecutive items read on along the same
// rows (the host sets it when the source's rows run along k; else the panel index runs
// fastest and consecutive items read on along rows of m or n).
__kernel void gemm_pack_a(__global float *dst, ulong dsto, __global const float *a, ulong ao,
                          int lda, int ta, int m, int k, ulong stride_a, int kb_fast) {
    int kb = get_global_id(kb_fast ? 0 : 1), p = get_global_id(kb_fast ? 1 : 0);
    int bt = get_global_id(2);
    int kk0 = kb * GEMM_KB;
    if (kk0 >= k) return;
    int np = (m + GEMM_MR - 1) / GEMM_MR, i0 = p * GEMM_MR, rows = min(GEMM_MR, m - i0);
    __global const float *src = a + ao + (size_t)bt * stride_a;
    __global float *d = dst + dsto + ((size_t)bt * np + p) * k * GEMM_MR;
    if (!ta && kk0 + GEMM_KB <= k) {   // A's rows run along k: transpose a block
        float t[GEMM_KB * GEMM_MR];
        for (int r = 0; r < GEMM_MR; r++) {
            float16 v = 0.0f;
            if (r < rows) v = vload16(0, src + (size_t)(i0 + r) * lda + kk0);
            t[0 * GEMM_MR + r] = v.s0; t[1 * GEMM_MR + r] = v.s1;
            t[2 * GEMM_MR + r] = v.s2; t[3 * GEMM_MR + r] = v.s3;
            t[4 * GEMM_MR + r] = v.s4; t[5 * GEMM_MR + r] = v.s5;
            t[6 * GEMM_MR + r] = v.s6; t[7 * GEMM_MR + r] = v.s7;
            t[8 * GEMM_MR + r] = v.s8; t[9 * GEMM_MR + r] = v.s9;
            t[10 * GEMM_MR + r] = v.sa; t[11 * GEMM_MR + r] = v.sb;
            t[12 * GEMM_MR + r] = v.sc; t[13 * GEMM_MR + r] = v.sd;
            t[14 * GEMM_MR + r] = v.se; t[15 * GEMM_MR + r] = v.sf;
        }
        for (int q = 0; q < GEMM_KB * GEMM_MR; q += 16)
            vstore16(vload16(0, t + q), 0, d + (size_t)kk0 * GEMM_MR + q);
        return;
    }
    for (int kk = kk0; kk < min(kk0 + GEMM_KB, k); kk++)
        for (int r = 0; r < GEMM_MR; r++) {
            float v = 0.0f;   // (branches, not ?: around the loads: see gemm_pack_b)
            if (r < rows)
                v = ta ? src[(size_t)kk * lda + i0 + r] : src[(size_t)(i0 + r) * lda + kk];
            d[(size_t)kk * GEMM_MR + r] = v;
        }
}

// op(B) (k, n) into B panels. Item (kb, p, batch) writes steps kb*GEMM_KB .. of panel p.
__kernel void gemm_pack_b(__global float *dst, ulong dsto, __global const float *b, ulong bo,
                          int ldb, int tb, int k, int n, ulong stride_b, int kb_fast) {
    int kb = get_global_id(kb_fast ? 0 : 1), p = get_global_id(kb_fast ? 1 : 0);
    int bt = get_global_id(2);
    int kk0 = kb * GEMM_KB;
    if (kk0 >= k) return;
    int np = (n + GEMM_NR - 1) / GEMM_NR, j0 = p * GEMM_NR, cols = min(GEMM_NR, n - j0);
    __global const float *src = b + bo + (size_t)bt * stride_b;
    __global float *d = dst + dsto + ((size_t)bt * np + p) * k * GEMM_NR;
    int kk1 = min(kk0 + GEMM_KB, k);
    if (!tb && cols == GEMM_NR) {      // B's rows run along n: copy
        for (int kk = kk0; kk < kk1; kk++) {
            __global const float *row = src + (size_t)kk * ldb + j0;
            vstore16(vload16(0, row), 0, d + (size_t)kk * GEMM_NR);
            vstore16(vload16(1, row), 1, d + (size_t)kk * GEMM_NR);
        }
        return;
    }
    if (tb && kk1 - kk0 == GEMM_KB) {  // B's columns run along k: transpose a block
        float t[GEMM_KB * GEMM_NR];
        for (int c = 0; c < GEMM_NR; c++) {
            float16 v = 0.0f;
            if (c < cols) v = vload16(0, src + (size_t)(j0 + c) * ldb + kk0);
            t[0 * GEMM_NR + c] = v.s0; t[1 * GEMM_NR + c] = v.s1;
            t[2 * GEMM_NR + c] = v.s2; t[3 * GEMM_NR + c] = v.s3;
            t[4 * GEMM_NR + c] = v.s4; t[5 * GEMM_NR + c] = v.s5;
            t[6 * GEMM_NR + c] = v.s6; t[7 * GEMM_NR + c] = v.s7;
            t[8 * GEMM_NR + c] = v.s8; t[9 * GEMM_NR + c] = v.s9;
            t[10 * GEMM_NR + c] = v.sa; t[11 * GEMM_NR + c] = v.sb;
            t[12 * GEMM_NR + c] = v.sc; t[13 * GEMM_NR + c] = v.sd;
            t[14 * GEMM_NR + c] = v.se; t[15 * GEMM_NR + c] = v.sf;
        }
        for (int q = 0; q < GEMM_KB * GEMM_NR; q += 16)
            vstore16(vload16(0, t + q), 0, d + (size_t)kk0 * GEMM_NR + q);
        return;
    }
    // The padding is written from branches, not from a ?: around the load: Oclgrind's
    // uninitialised-value pass takes the lanes of such a select as read.
    for (int kk = kk0; kk < kk1; kk++)
        for (int c = 0; c < GEMM_NR; c++) {
            float v = 0.0f;
            if (c < cols)
                v = tb ? src[(size_t)(j0 + c) * ldb + kk] : src[(size_t)kk * ldb + j0 + c];
            d[(size_t)kk * GEMM_NR + c] = v;
        }
}

// Tiles of C, GEMM_MR x GEMM_NR each, over the steps k0 .. k0 + kc of the panels (k long):
// work item (f, jb, batch) takes the A panels f*per .. f*per + per against B panel jb
// (work-groups of one item). Consecutive tiles of an item, and consecutive items, share the B
// panel, which stays in cache while the A panels stream; `per` > 1 gives short products
// enough work per work-group to hide pocl's cost of starting one. C = alpha * sum + beta * C
// (beta 0: C is not read, as in BLAS); the host runs a deep product as chunks of k, the later
// ones with beta 1. B panel j starts at bp + bpo + j * bps: k * GEMM_NR floats after the
// previous one as gemm_pack_b writes them, more in im2col's panel layout (cl/conv.cl), whose
// panels hold the rows rounded up to 8.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_packed(__global float *c, ulong co, __global const float *ap, ulong apo,
                 __global const float *bp, ulong bpo, int m, int n, int k, int k0, int kc,
                 int ldc, float alpha, float beta, ulong stride_c, int per, ulong bps) {
    int jb = get_global_id(1), bt = get_global_id(2);
    int npa = (m + GEMM_MR - 1) / GEMM_MR, npb = (n + GEMM_NR - 1) / GEMM_NR;
    if (jb >= npb) return;
    __global const float *b = bp + bpo + ((size_t)bt * npb + jb) * bps + (size_t)k0 * GEMM_NR;
    for (int ib = get_global_id(0) * per; ib < min((int)get_global_id(0) * per + per, npa);
         ib++) {
        __global const float *a = ap + apo + (((size_t)bt * npa + ib) * k + k0) * GEMM_MR;
        float16 c0[GEMM_MR], c1[GEMM_MR];
#pragma unroll
        for (int r = 0; r < GEMM_MR; r++) {
            c0[r] = 0.0f;
            c1[r] = 0.0f;
        }
        for (int kk = 0; kk < kc; kk++) {
            float16 b0 = vload16(0, b + (size_t)kk * GEMM_NR);
            float16 b1 = vload16(1, b + (size_t)kk * GEMM_NR);
#pragma unroll
            for (int r = 0; r < GEMM_MR; r++) {
                float16 av = (float16)a[(size_t)kk * GEMM_MR + r];
                c0[r] = fma(av, b0, c0[r]);
                c1[r] = fma(av, b1, c1[r]);
            }
        }
        int i0 = ib * GEMM_MR, j0 = jb * GEMM_NR;
        int rows = min(GEMM_MR, m - i0), cols = min(GEMM_NR, n - j0);
        __global float *ct = c + co + (size_t)bt * stride_c + (size_t)i0 * ldc + j0;
        // No `#pragma unroll` here: the early exit keeps the loop from being unrolled, and
        // pocl's compiler said so in a warning on every build (the code is the same without).
        for (int r = 0; r < GEMM_MR; r++) {
            if (r >= rows) break;
            __global float *cr = ct + (size_t)r * ldc;
            float16 v0 = alpha * c0[r], v1 = alpha * c1[r];
            if (cols == GEMM_NR) {
                if (beta != 0.0f) {
                    v0 += beta * vload16(0, cr);
                    v1 += beta * vload16(1, cr);
                }
                vstore16(v0, 0, cr);
                vstore16(v1, 1, cr);
            } else {
                float t[GEMM_NR];
                vstore16(v0, 0, t);
                vstore16(v1, 1, t);
                for (int j = 0; j < cols; j++) cr[j] = beta != 0.0f ? t[j] + beta * cr[j] : t[j];
            }
        }
    }
}

// T (m, n) = P (m, k) x B (k, n), stored transposed: C (n, m) = alpha * T^T + beta * C. P is
// in im2col's panel layout (cl/conv.cl): its columns (steps of k) in runs of GEMM_NR, each
// run holding P's rows rounded up to GEMM_MR (`mp`), GEMM_NR floats per row; B as
// gemm_pack_b writes it. This is the weight gradient of a conv, dW (O, CKK) = dout (O, NP) x
// col^T computed as (col x dout^T)^T: col's own layout serves as the A operand (the eight
// rows of a tile lie side by side in each run, broadcast one value at a time), so the col
// matrix needs no transposing copy. Work item (jb, f) takes A tiles f*per .. against B
// panel jb: consecutive items share the A tile (col's rows, the large operand, then read from
// DRAM once) and cycle through the small B panels. k0 a multiple of GEMM_NR.
#define PT_AHEAD 2
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_packed_pt(__global float *c, ulong co, __global const float *p, ulong po, int mp,
                    __global const float *bp, ulong bpo, int m, int n, int k, int k0, int kc,
                    int ldc, float alpha, float beta, int per) {
    int jb = get_global_id(0);
    int npa = (m + GEMM_MR - 1) / GEMM_MR, npb = (n + GEMM_NR - 1) / GEMM_NR;
    if (jb >= npb) return;
    __global const float *b = bp + bpo + ((size_t)jb * k + k0) * GEMM_NR;
    for (int ib = get_global_id(1) * per; ib < min((int)get_global_id(1) * per + per, npa);
         ib++) {
        float16 c0[GEMM_MR], c1[GEMM_MR];
#pragma unroll
        for (int r = 0; r < GEMM_MR; r++) {
            c0[r] = 0.0f;
            c1[r] = 0.0f;
        }
        for (int s0 = 0; s0 < kc; s0 += GEMM_NR) {
            // The run of columns k0 + s0 .., this tile's rows in it.
            __global const float *a =
                p + po + ((size_t)((k0 + s0) / GEMM_NR) * mp + (size_t)ib * GEMM_MR) * GEMM_NR;
            __global const float *bs = b + (size_t)s0 * GEMM_NR;
            int len = min(GEMM_NR, kc - s0);
            if (s0 + PT_AHEAD * GEMM_NR < kc) {
                // Touch the tile's rows PT_AHEAD runs ahead (16 cache lines, mp * GEMM_NR
                // floats apart from run to run, a pattern the hardware prefetchers miss):
                // their loads are then in flight while this run computes. Volatile, so that
                // the compiler keeps loads whose values are not used.
                volatile __global const float *ahead =
                    a + (size_t)PT_AHEAD * mp * GEMM_NR;
#pragma unroll
                for (int r = 0; r < GEMM_MR; r++) {
                    (void)ahead[r * GEMM_NR];
                    (void)ahead[r * GEMM_NR + 16];
                }
            }
            for (int q = 0; q < len; q++) {
                float16 b0 = vload16(0, bs + q * GEMM_NR);
                float16 b1 = vload16(1, bs + q * GEMM_NR);
#pragma unroll
                for (int r = 0; r < GEMM_MR; r++) {
                    float16 av = (float16)a[r * GEMM_NR + q];
                    c0[r] = fma(av, b0, c0[r]);
                    c1[r] = fma(av, b1, c1[r]);
                }
            }
        }
        // Row i0 + r of T is column i0 + r of C: each column j of the tile is GEMM_MR
        // consecutive floats of C's row j0 + j.
        int i0 = ib * GEMM_MR, j0 = jb * GEMM_NR;
        int rows = min(GEMM_MR, m - i0), cols = min(GEMM_NR, n - j0);
        float t[GEMM_MR * GEMM_NR];
#pragma unroll
        for (int r = 0; r < GEMM_MR; r++) {
            vstore16(alpha * c0[r], 0, t + r * GEMM_NR);
            vstore16(alpha * c1[r], 1, t + r * GEMM_NR);
        }
        __global float *ct = c + co + (size_t)j0 * ldc + i0;
        for (int j = 0; j < cols; j++)
            for (int r = 0; r < rows; r++) {
                float v = t[r * GEMM_NR + j];
                ct[(size_t)j * ldc + r] = beta != 0.0f ? v + beta * ct[(size_t)j * ldc + r] : v;
            }
    }
}
