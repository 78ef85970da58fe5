// Winograd F(2x2, 3x3) for 3x3 stride-1 pad-1 convolutions over channel-major activations
// (C, N, H, W) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
// Each 2x2 output tile t = (n, ty, tx) comes from the 4x4 input patch at rows 2ty-1..2ty+2,
// columns 2tx-1..2tx+2 (zero outside the image):
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A
// with the 16 element-wise products summed over input channels as 16 GEMMs (host/ops_conv.c):
//   M[xi] (O, T) = U[xi] (O, C) x V[xi] (C, T),   xi = 4 * row + column of the 4x4 tile.
// The transforms' constants are 0, +-1 and 0.5: exact in float.

// U[xi][o][c] (16, O, C) = G g G^T for the weights g = w[o][c] (3x3). One item per (o, c).
__kernel void winograd_weights(__global float *u, ulong uo, __global const float *w, ulong wo,
                               int o, int c) {
    int p = get_global_id(0);
    if (p >= o * c) return;
    __global const float *g = w + wo + (size_t)p * 9;
    float k[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) k[i][j] = g[i * 3 + j];
    // t = G k (4x3): rows k0, (k0+k1+k2)/2, (k0-k1+k2)/2, k2.
    float t[4][3];
    for (int j = 0; j < 3; j++) {
        t[0][j] = k[0][j];
        t[1][j] = 0.5f * (k[0][j] + k[1][j] + k[2][j]);
        t[2][j] = 0.5f * (k[0][j] - k[1][j] + k[2][j]);
        t[3][j] = k[2][j];
    }
    size_t plane = (size_t)o * c, at = (size_t)p;
    for (int i = 0; i < 4; i++) {   // (t G^T) row i
        float r0 = t[i][0];
        float r1 = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        float r2 = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        float r3 = t[i][2];
        u[uo + (size_t)(i * 4 + 0) * plane + at] = r0;
        u[uo + (size_t)(i * 4 + 1) * plane + at] = r1;
        u[uo + (size_t)(i * 4 + 2) * plane + at] = r2;
        u[uo + (size_t)(i * 4 + 3) * plane + at] = r3;
    }
}

// V[xi][c][t] (16, C, T) = B^T d B for the 4x4 patch d of channel c at tile t. Range (T, C):
// item (t, c), tiles of an image row next to each other (the CPU device vectorises across
// them). th x tw tiles per image, T = N * th * tw.
__kernel void winograd_input(__global float *v, ulong vo, __global const float *in, ulong ino,
                             int n, int c, int h, int w, int th, int tw) {
    int t = get_global_id(0), ci = get_global_id(1);
    int nt = n * th * tw;
    if (t >= nt || ci >= c) return;
    int tx = t % tw, ty = (t / tw) % th, ni = t / (tw * th);
    __global const float *x = in + ino + ((size_t)ci * n + ni) * h * w;
    int y0 = 2 * ty - 1, x0 = 2 * tx - 1;
    float d[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            int yy = y0 + i, xx = x0 + j;
            int ok = yy >= 0 && yy < h && xx >= 0 && xx < w;
            d[i][j] = ok ? x[yy * w + xx] : 0.0f;
        }
    // s = B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3.
    float s[4][4];
    for (int j = 0; j < 4; j++) {
        s[0][j] = d[0][j] - d[2][j];
        s[1][j] = d[1][j] + d[2][j];
        s[2][j] = d[2][j] - d[1][j];
        s[3][j] = d[1][j] - d[3][j];
    }
    size_t plane = (size_t)c * nt, at = (size_t)ci * nt + t;
    for (int i = 0; i < 4; i++) {   // (s B) row i
        v[vo + (size_t)(i * 4 + 0) * plane + at] = s[i][0] - s[i][2];
        v[vo + (size_t)(i * 4 + 1) * plane + at] = s[i][1] + s[i][2];
        v[vo + (size_t)(i * 4 + 2) * plane + at] = s[i][2] - s[i][1];
        v[vo + (size_t)(i * 4 + 3) * plane + at] = s[i][1] - s[i][3];
    }
}

// out (O, N, OH, OW) = A^T M A for each tile: the 2x2 outputs inside the image. Range (T, O).
__kernel void winograd_output(__global float *out, ulong outo, __global const float *m,
                              ulong mo, int n, int o, int oh, int ow, int th, int tw) {
    int t = get_global_id(0), oi = get_global_id(1);
    int nt = n * th * tw;
    if (t >= nt || oi >= o) return;
    int tx = t % tw, ty = (t / tw) % th, ni = t / (tw * th);
    size_t plane = (size_t)o * nt, at = (size_t)oi * nt + t;
    float q[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) q[i][j] = m[mo + (size_t)(i * 4 + j) * plane + at];
    // r = A^T q (2x4): rows q0 + q1 + q2, q1 - q2 - q3; then r A (2x2).
    float r[2][4];
    for (int j = 0; j < 4; j++) {
        r[0][j] = q[0][j] + q[1][j] + q[2][j];
        r[1][j] = q[1][j] - q[2][j] - q[3][j];
    }
    __global float *y = out + outo + ((size_t)oi * n + ni) * oh * ow;
    int y0 = 2 * ty, x0 = 2 * tx;
    for (int i = 0; i < 2; i++) {
        if (y0 + i >= oh) break;
        float a = r[i][0] + r[i][1] + r[i][2], b = r[i][1] - r[i][2] - r[i][3];
        y[(y0 + i) * ow + x0] = a;
        if (x0 + 1 < ow) y[(y0 + i) * ow + x0 + 1] = b;
    }
}
