// Channel scale (squeeze-and-excitation's gate): x (C, N, H, W) times one factor per (c, n).

// out[c, n, :, :] = x[c, n, :, :] * s[c, n] (torch: x * scale, scale broadcast from (N, C, 1,
// 1)). One item per element; out may alias x.
__kernel void channel_scale(__global float *out, ulong outo, __global const float *x, ulong xo,
                            __global const float *s, ulong so, int n, int hw) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[outo + i] = x[xo + i] * s[so + i / hw];
}

// The scale's gradient: ds[c, n] = the sum over the plane of dout * x, in order (one item per
// (c, n): deterministic).
__kernel void channel_scale_grad(__global float *ds, ulong dso, __global const float *dout,
                                 ulong doo, __global const float *x, ulong xo, int cn, int hw) {
    int j = get_global_id(0);
    if (j >= cn) return;
    ulong base = (ulong)j * (ulong)hw;
    float acc = 0.0f;
    for (int k = 0; k < hw; k++) acc += dout[doo + base + k] * x[xo + base + k];
    ds[dso + j] = acc;
}
