// Convolution layout kernels over channel-major activations (C, N, H, W). The convolution
// itself is one GEMM on the im2col matrix (host/ops_conv.c).
//
// col (C*KH*KW, N*OH*OW): row r = (c, ky, kx), column p = (n, oy, ox); the value is the input
// pixel (c, n, oy*stride - pad + ky, ox*stride - pad + kx), or 0 in the padding.

// One work item per col element; consecutive items walk a row, so the writes are contiguous.
__kernel void im2col(__global float *col, ulong colo, __global const float *in, ulong ino,
                     int n, int c, int h, int w, int kh, int kw, int stride, int pad,
                     int oh, int ow) {
    int np = n * oh * ow;
    int gid = get_global_id(0);
    if (gid >= c * kh * kw * np) return;
    int p = gid % np, r = gid / np;
    int ox = p % ow, oy = (p / ow) % oh, ni = p / (ow * oh);
    int kx = r % kw, ky = (r / kw) % kh, ci = r / (kw * kh);
    int y = oy * stride - pad + ky, x = ox * stride - pad + kx;
    float v = 0.0f;
    if (y >= 0 && y < h && x >= 0 && x < w)
        v = in[ino + ((size_t)(ci * n + ni) * h + y) * w + x];
    col[colo + gid] = v;
}

// The adjoint of im2col as a gather (no atomics): one work item per input pixel sums every
// col entry that copied it, in (ky, kx) ascending order, the order in which PyTorch's col2im
// scatter adds them. Overwrites `in`.
__kernel void col2im(__global float *in, ulong ino, __global const float *col, ulong colo,
                     int n, int c, int h, int w, int kh, int kw, int stride, int pad,
                     int oh, int ow) {
    int gid = get_global_id(0);
    if (gid >= c * n * h * w) return;
    int x = gid % w, y = (gid / w) % h, ni = (gid / (w * h)) % n, ci = gid / (w * h * n);
    int np = n * oh * ow;
    __global const float *cc = col + colo;
    float s = 0.0f;
    for (int ky = 0; ky < kh; ky++) {
        int ty = y + pad - ky;
        if (ty < 0 || ty % stride != 0 || ty / stride >= oh) continue;
        int oy = ty / stride;
        for (int kx = 0; kx < kw; kx++) {
            int tx = x + pad - kx;
            if (tx < 0 || tx % stride != 0 || tx / stride >= ow) continue;
            int ox = tx / stride;
            size_t r = (size_t)(ci * kh + ky) * kw + kx;
            s += cc[r * np + (size_t)(ni * oh + oy) * ow + ox];
        }
    }
    in[ino + gid] = s;
}
