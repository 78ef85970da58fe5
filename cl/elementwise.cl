// Element-wise kernels: relu, residual add, global average pool, the finiteness check.

// PyTorch's relu (clamp_min(x, 0)): negatives become 0, NaN passes through.
static float ew_relu(float x) { return x < 0.0f ? 0.0f : x; }

__kernel void relu_forward(__global float *out, ulong outo, __global const float *in,
                           ulong ino, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[outo + i] = ew_relu(in[ino + i]);
}

// PyTorch's threshold_backward(dout, out, 0): din = out <= 0 ? 0 : dout, on the forward OUTPUT.
// Each item reads its element before writing it, so din may alias dout.
__kernel void relu_backward(__global float *din, ulong dio, __global const float *dout,
                            ulong doo, __global const float *out, ulong outo, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = dout[doo + i];
    din[dio + i] = out[outo + i] <= 0.0f ? 0.0f : g;
}

__kernel void add(__global float *out, ulong outo, __global const float *a, ulong ao,
                  __global const float *b, ulong bo, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[outo + i] = a[ao + i] + b[bo + i];
}

// relu(a + b): the end of a ResNet BasicBlock.
__kernel void add_relu(__global float *out, ulong outo, __global const float *a, ulong ao,
                       __global const float *b, ulong bo, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[outo + i] = ew_relu(a[ao + i] + b[bo + i]);
}

// Adaptive average pool to 1x1, (C, N, HW) -> (C, N): PyTorch takes the mean over H and W
// (sum, then divide by H*W). One work item per (c, n) sums its plane in order.
__kernel void avgpool_forward(__global float *out, ulong outo, __global const float *in,
                              ulong ino, int cn, int hw) {
    int i = get_global_id(0);
    if (i >= cn) return;
    __global const float *x = in + ino + (size_t)i * hw;
    float s = 0.0f;
    for (int j = 0; j < hw; j++) s += x[j];
    out[outo + i] = s / hw;
}

// din (C, N, HW) = dout (C, N) / HW broadcast over the plane.
__kernel void avgpool_backward(__global float *din, ulong dio, __global const float *dout,
                               ulong doo, int cn, int hw) {
    int i = get_global_id(0);
    if (i >= cn * hw) return;
    din[dio + i] = dout[doo + i / hw] / hw;
}

// flag[fo] is cleared (set to 0) when any of the n floats is not finite; otherwise it is left
// as it is (the launcher pre-sets it, or a sticky flag keeps a step's earlier result). Many
// groups, no barriers: with `interleave` the items stride over x (coalesced on a GPU), else
// each item scans one contiguous run (a core's cache lines on a CPU). The maximum of the
// exponent fields is 0x7f800000 only for an Inf or a NaN, under any math flags; a clear is
// the same value whichever item writes it, so the result is deterministic.
__kernel void all_finite(__global int *flag, ulong fo, __global const float *x, ulong xo,
                         int n, int interleave) {
    int gid = get_global_id(0), items = get_global_size(0);
    __global const uint *u = (__global const uint *)(x + xo);
    uint e = 0;
    if (interleave) {
        for (int i = gid; i < n; i += items) e = max(e, u[i] & 0x7f800000u);
    } else {
        // A division without its remainder (Oclgrind's --uninitialized cannot follow the
        // pair LLVM makes of the two).
        long run = ((long)n + items - 1) / items, lo = min(gid * run, (long)n);
        long hi = min(lo + run, (long)n);
        for (long i = lo; i < hi; i++) e = max(e, u[i] & 0x7f800000u);
    }
    if (e == 0x7f800000u) atomic_and(flag + fo, 0);
}

// Linear bias: out (K, N) = b (K) broadcast along each row, before the GEMM adds w x.
__kernel void linear_bias_fill(__global float *out, ulong outo, __global const float *b,
                               ulong bo, int k, int n) {
    int i = get_global_id(0);
    if (i >= k * n) return;
    out[outo + i] = b[bo + i / n];
}

// Linear bias gradient: db (K) = row sums of dout (K, N), one work item per row, summed in
// column order.
__kernel void linear_bias_grad(__global float *db, ulong dbo, __global const float *dout,
                               ulong doo, int k, int n) {
    int r = get_global_id(0);
    if (r >= k) return;
    __global const float *row = dout + doo + (size_t)r * n;
    float s = 0.0f;
    for (int j = 0; j < n; j++) s += row[j];
    db[dbo + r] = s;
}

// Split-K GEMM, the reduction: c (M, N; row stride ldc) = sum over s = 0..S-1, in that order,
// of part[s] (M, N contiguous), plus beta * c (c is not read when beta is 0, as in BLAS).
__kernel void gemm_splitk_reduce(__global float *c, ulong co, __global const float *part,
                                 ulong po, int m, int n, int ldc, int s, float beta) {
    int i = get_global_id(0);
    if (i >= m * n) return;
    ulong mn = (ulong)m * (ulong)n;
    float acc = 0.0f;
    for (int j = 0; j < s; j++) acc += part[po + (ulong)j * mn + (ulong)i];
    ulong at = co + (ulong)(i / n) * (ulong)ldc + (ulong)(i % n);
    c[at] = beta == 0.0f ? acc : acc + beta * c[at];
}
