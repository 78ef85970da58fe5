// Max pooling over channel-major activations (C, N, H, W) -> (C, N, OH, OW), PyTorch's
// MaxPool2d (dilation 1, floor mode).

static int pool_is_nan(float v) { return (as_uint(v) & 0x7fffffffu) > 0x7f800000u; }

// a / b for 0 <= a < 2^30 without an integer division (one lane at a time on CPUs when the
// work-item loop is vectorised): conv_div of conv.cl (each .cl file compiles on its own).
static inline int pool_div(int a, int b, float inv_b) {
    int q = convert_int_rtz((float)a * inv_b);
    q += convert_int_rtz((float)(a - q * b) * inv_b);
    int r = a - q * b;
    return q + (r >= b) - (r < 0);
}

// One work item per output. PyTorch's cpu_max_pool: padding never wins (only in-image pixels
// are scanned, starting from -inf at the first of them), the scan is row-major over the
// window, a strict `>` keeps the FIRST maximum, and a NaN always takes over (`val > max ||
// isnan(val)`). argmax is the index into the H*W plane.
__kernel void maxpool_forward(__global float *out, ulong outo, __global int *argmax, ulong ao,
                              __global const float *in, ulong ino, int n, int c, int h, int w,
                              int k, int stride, int pad, int oh, int ow) {
    int gid = get_global_id(0);
    if (gid >= c * n * oh * ow) return;
    int ox = gid % ow, oy = (gid / ow) % oh, plane = gid / (ow * oh);
    int y0 = oy * stride - pad, x0 = ox * stride - pad;
    int y1 = min(y0 + k, h), x1 = min(x0 + k, w);
    y0 = max(y0, 0);
    x0 = max(x0, 0);
    __global const float *x = in + ino + (size_t)plane * h * w;
    float best = -INFINITY;
    int best_i = y0 * w + x0;
    for (int y = y0; y < y1; y++) {
        for (int xx = x0; xx < x1; xx++) {
            float v = x[y * w + xx];
            if (v > best || pool_is_nan(v)) {
                best = v;
                best_i = y * w + xx;
            }
        }
    }
    out[outo + gid] = best;
    argmax[ao + gid] = best_i;
}

// din as a gather (no atomics): each input pixel sums dout over the outputs whose argmax is
// that pixel, visiting the outputs in row-major order, the order of PyTorch's scatter-add.
__kernel void maxpool_backward(__global float *din, ulong dio, __global const float *dout,
                               ulong doo, __global const int *argmax, ulong ao, int n, int c,
                               int h, int w, int k, int stride, int pad, int oh, int ow) {
    int gid = get_global_id(0);
    if (gid >= c * n * h * w) return;
    int x = gid % w, y = (gid / w) % h, plane = gid / (w * h);
    int self = y * w + x;
    // Outputs whose window [o*stride - pad, o*stride - pad + k) holds this pixel.
    int oy0 = max(0, (y + pad - k + stride) / stride), oy1 = min(oh - 1, (y + pad) / stride);
    int ox0 = max(0, (x + pad - k + stride) / stride), ox1 = min(ow - 1, (x + pad) / stride);
    size_t base = (size_t)plane * oh * ow;
    float s = 0.0f;
    for (int oy = oy0; oy <= oy1; oy++) {
        for (int ox = ox0; ox <= ox1; ox++) {
            size_t o = base + oy * ow + ox;
            if (argmax[ao + o] == self) s += dout[doo + o];
        }
    }
    din[dio + gid] = s;
}

// ---- ResNet's 3x3 stride-2 pool backward, for CPU devices too ----
// The same results as maxpool_backward, as straight-line code over a 2-D range (position in
// the input plane, plane) so that pocl vectorises the work-item loop (2.5x faster on the CPU
// device). The forward has no such variant: with the scan's compare chain (or a max-then-
// first-match rewrite) its vectorised form was no faster than maxpool_forward.

// Whether output row (or column) o of a 3-wide stride-2 window covers pixel t.
static inline int pool_covers(int o, int t, int pad, int n) {
    int lo = o * 2 - pad;
    return o >= 0 && o < n && lo <= t && t < lo + 3;
}

// One candidate output of the backward gather: dout[o] when its argmax is this pixel.
static inline float pool_grad(__global const float *dout, __global const int *argmax, int ok,
                              int o, int self) {
    int j = ok ? o : 0;
    float g = dout[j];
    return ok && argmax[j] == self ? g : 0.0f;
}

// Range (H*W, C*N). At most 2x2 outputs hold a pixel: rows (y + pad) / 2 - 1 and (y + pad) / 2,
// the same for columns; visited in row-major order, the order of PyTorch's scatter-add (a
// skipped candidate adds +0.0f, which leaves a sum that starts at +0 unchanged).
__kernel void maxpool_backward_k3s2(__global float *din, ulong dio, __global const float *dout,
                                    ulong doo, __global const int *argmax, ulong ao, int n,
                                    int c, int h, int w, int k, int stride, int pad, int oh,
                                    int ow) {
    int p = get_global_id(0), plane = get_global_id(1);
    if (p >= h * w || plane >= c * n) return;
    int y = pool_div(p, w, 1.0f / w), x = p - y * w;
    int oy1 = (y + pad) / 2, oy0 = oy1 - 1, ox1 = (x + pad) / 2, ox0 = ox1 - 1;
    int ry0 = pool_covers(oy0, y, pad, oh), ry1 = pool_covers(oy1, y, pad, oh);
    int rx0 = pool_covers(ox0, x, pad, ow), rx1 = pool_covers(ox1, x, pad, ow);
    size_t base = (size_t)plane * oh * ow;
    __global const float *g = dout + doo + base;
    __global const int *a = argmax + ao + base;
    float s = 0.0f;
    s += pool_grad(g, a, ry0 && rx0, oy0 * ow + ox0, p);
    s += pool_grad(g, a, ry0 && rx1, oy0 * ow + ox1, p);
    s += pool_grad(g, a, ry1 && rx0, oy1 * ow + ox0, p);
    s += pool_grad(g, a, ry1 && rx1, oy1 * ow + ox1, p);
    din[dio + (size_t)plane * h * w + p] = s;
}

// ---- ResNet's 3x3 stride-2 pool forward ----
// maxpool_forward's scan as straight-line code over a 2-D range (position in the output
// plane, plane): no division per item but one by ow, and every candidate read unconditionally
// (clamped to the plane) then kept or not with selects, so the CPU device vectorises across
// items. Same rules: padding never wins, row-major scan, strict `>` (first maximum), NaN takes
// over; argmax starts at the window's first in-image pixel.
static inline void pool_take(__global const float *x, int y, int xx, int h, int w,
                             float *best, int *best_i) {
    int ok = y >= 0 && y < h && xx >= 0 && xx < w;
    int i = ok ? y * w + xx : 0;
    float v = x[i];
    int take = ok && (v > *best || pool_is_nan(v));
    *best = take ? v : *best;
    *best_i = take ? i : *best_i;
}

__kernel void maxpool_forward_k3s2(__global float *out, ulong outo, __global int *argmax,
                                   ulong ao, __global const float *in, ulong ino, int n, int c,
                                   int h, int w, int k, int stride, int pad, int oh, int ow) {
    int p = get_global_id(0), plane = get_global_id(1);
    if (p >= oh * ow || plane >= c * n) return;
    int oy = pool_div(p, ow, 1.0f / ow), ox = p - oy * ow;
    int y0 = oy * 2 - pad, x0 = ox * 2 - pad;
    __global const float *x = in + ino + (size_t)plane * h * w;
    float best = -INFINITY;
    int best_i = max(y0, 0) * w + max(x0, 0);
    pool_take(x, y0, x0, h, w, &best, &best_i);
    pool_take(x, y0, x0 + 1, h, w, &best, &best_i);
    pool_take(x, y0, x0 + 2, h, w, &best, &best_i);
    pool_take(x, y0 + 1, x0, h, w, &best, &best_i);
    pool_take(x, y0 + 1, x0 + 1, h, w, &best, &best_i);
    pool_take(x, y0 + 1, x0 + 2, h, w, &best, &best_i);
    pool_take(x, y0 + 2, x0, h, w, &best, &best_i);
    pool_take(x, y0 + 2, x0 + 1, h, w, &best, &best_i);
    pool_take(x, y0 + 2, x0 + 2, h, w, &best, &best_i);
    size_t o = (size_t)plane * oh * ow + p;
    out[outo + o] = best;
    argmax[ao + o] = best_i;
}
