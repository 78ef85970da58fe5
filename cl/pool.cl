// Max pooling over channel-major activations (C, N, H, W) -> (C, N, OH, OW), PyTorch's
// MaxPool2d (dilation 1, floor mode).

static int pool_is_nan(float v) { return (as_uint(v) & 0x7fffffffu) > 0x7f800000u; }

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
