// Convolution layout kernels over channel-major activations (C, N, H, W). The convolution
// itself is one GEMM on the im2col matrix (host/ops_conv.c).
//
// col (C*KH*KW, N*OH*OW): row r = (c, ky, kx), column p = (n, oy, ox); the value is the input
// pixel (c, n, oy*stride - pad + ky, ox*stride - pad + kx), or 0 in the padding.
//
// Shape of the work, for CPU devices too: a 2-D range whose dimension 0 walks the contiguous
// index (the col column p, or the input pixel) and dimension 1 the channel. pocl runs a
// work-group as a loop over dimension 0 and vectorises that loop only when the kernel body
// is straight-line code, so each item splits its index once (without an integer division)
// and then handles its kernel entries written out one by one (the _kK kernels). Consecutive
// items touch consecutive memory. The generic kernels (plain loops) serve any other shape.
//
// Traps found with pocl 3.1 (POCL_VECTORIZER_REMARKS=1 shows them): clang's SLP vectoriser
// runs when the program is built and packs look-alike row/column arithmetic (clamp(y),
// clamp(x)) into 2-lane vectors, after which pocl cannot vectorise the work-item loop
// ("instruction return type cannot be vectorized"): hence the select-based padding tests.
// Loops over the kernel taps, even with constant counts and `#pragma unroll`, were not
// always unrolled (a build warning), and a loop left inside the work item stops the
// vectorisation: hence the taps written out.
//
// (No backslash-continued macros in these files: tools/embed_cl.sh does not keep them.)

// a / b for 0 <= a < 2^30 (the host checks) and b > 0, without an integer division: CPUs
// have no vector integer divide, so a division in a vectorised work-item loop runs one lane
// at a time. Two float estimates (the first within a few hundred of the quotient, the second
// within one), then an exact integer correction. inv_b = 1.0f / b, the same for every item.
static inline int conv_div(int a, int b, float inv_b) {
    int q = convert_int_rtz((float)a * inv_b);
    q += convert_int_rtz((float)(a - q * b) * inv_b);
    int r = a - q * b;
    return q + (r >= b) - (r < 0);
}

// ---- im2col ----
// Two layouts of the same col matrix (the `panels` argument of the helpers, a constant in
// each kernel, so that every kernel body stays straight-line):
// - rows: row-major (C*KH*KW, N*OH*OW), what CLBlast reads;
// - panels: the packed GEMM's B panels (cl/gemm_packed.cl) written in place: for each run of
//   32 columns, its rows k-major, 32 floats each, the panel holding the rows rounded up to 8
//   (col_panel_rows: the tile kernels read the col matrix's rows 8 at a time); columns past
//   N*OH*OW are 0, rows past C*KH*KW are written by col_panels_pad_rows. The panel layout
//   needs work-groups of exactly 32 items along dimension 0 (the host launches them so):
//   the panel is then the group and the column within it the local id, which keeps the
//   stores of consecutive items consecutive for pocl's vectoriser.

#define COL_PANEL_W 32
static inline int col_panel_rows(int rows) { return (rows + 7) / 8 * 8; }

// Where item (p, ci) reads and writes: the input plane of (ci, n) and the col entry of row
// (ci, ky0, 0) at column p, the distance between consecutive rows, and the window's corner
// (y0, x0) for ky0. 0 when out of range. Columns past N*OH*OW (panels only) read nothing:
// their corner lies far outside the map, so every entry is padding.
static inline int im2col_setup(int p, int ci, int ky0, int n, int c, int h, int w, int stride,
                               int pad, int oh, int ow, int kh, int kw, const int panels,
                               size_t *src_off, size_t *dst_off, size_t *rs, int *y0,
                               int *x0) {
    int np = n * oh * ow;
    if (ci >= c || p >= (panels ? (np + COL_PANEL_W - 1) / COL_PANEL_W * COL_PANEL_W : np))
        return 0;
    int q = min(p, np - 1);
    int t = conv_div(q, ow, 1.0f / ow), ni = conv_div(t, oh, 1.0f / oh);
    int ox = q - t * ow, oy = t - ni * oh;
    *y0 = p < np ? oy * stride - pad + ky0 : -64;
    *x0 = ox * stride - pad;
    *src_off = (size_t)(ci * n + ni) * h * w;
    size_t row = (size_t)((ci * kh + ky0) * kw);
    if (panels) {
        *dst_off = (get_group_id(0) * (size_t)col_panel_rows(c * kh * kw) + row) * COL_PANEL_W +
                   get_local_id(0);
        *rs = COL_PANEL_W;
    } else {
        *dst_off = row * np + p;
        *rs = np;
    }
    return 1;
}

// One col entry: input pixel (y, x) of the plane src, or 0 in the padding. Padding loads
// element 0 and discards it, so the load needs no mask.
static inline void im2col_entry(__global float *restrict dst,
                                __global const float *restrict src, int y, int x, int h,
                                int w) {
    int inside = y >= 0 && y < h && x >= 0 && x < w;
    float v = src[inside ? y * w + x : 0];
    *dst = inside ? v : 0.0f;
}

// Any shape: range (N*OH*OW, C), item (p, ci) writes the KH*KW entries of channel ci.
static inline void im2col_any(__global float *col, __global const float *in, int n, int c,
                              int h, int w, int kh, int kw, int stride, int pad, int oh, int ow,
                              const int panels) {
    size_t so, dof, rs;
    int y0, x0;
    if (!im2col_setup(get_global_id(0), get_global_id(1), 0, n, c, h, w, stride, pad, oh, ow,
                      kh, kw, panels, &so, &dof, &rs, &y0, &x0))
        return;
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++)
            im2col_entry(col + dof + (size_t)(ky * kw + kx) * rs, in + so, y0 + ky, x0 + kx, h,
                         w);
}

// 3x3 (BasicBlock convs), range (N*OH*OW, C): the 9 entries of channel ci.
static inline void im2col_3(__global float *restrict col, __global const float *restrict in,
                            int n, int c, int h, int w, int stride, int pad, int oh, int ow,
                            const int panels) {
    size_t so, dof, r;
    int y0, x0;
    if (!im2col_setup(get_global_id(0), get_global_id(1), 0, n, c, h, w, stride, pad, oh, ow,
                      3, 3, panels, &so, &dof, &r, &y0, &x0))
        return;
    __global float *dst = col + dof;
    __global const float *src = in + so;
    im2col_entry(dst, src, y0, x0, h, w);
    im2col_entry(dst + r, src, y0, x0 + 1, h, w);
    im2col_entry(dst + 2 * r, src, y0, x0 + 2, h, w);
    im2col_entry(dst + 3 * r, src, y0 + 1, x0, h, w);
    im2col_entry(dst + 4 * r, src, y0 + 1, x0 + 1, h, w);
    im2col_entry(dst + 5 * r, src, y0 + 1, x0 + 2, h, w);
    im2col_entry(dst + 6 * r, src, y0 + 2, x0, h, w);
    im2col_entry(dst + 7 * r, src, y0 + 2, x0 + 1, h, w);
    im2col_entry(dst + 8 * r, src, y0 + 2, x0 + 2, h, w);
}

// 3x3 stride 1 pad 1 (all BasicBlock convs but the first of layers 2-4), range (N*OH*OW, C):
// output and input maps are the same size, so the input pixel of entry (ky, kx) for column p
// is p + (ky - 1) * w + (kx - 1) of the channel's (N, H, W) volume, the same offset for every
// column. Consecutive items then load consecutive floats, and the padding's loads are
// skipped (a branch, which pocl turns into masked vector loads) rather than redirected.
static inline void im2col_s1_entry(__global float *dst, __global const float *src, int y,
                                   int x, int h, int w, int off) {
    int inside = y >= 0 && y < h && x >= 0 && x < w;
    float v = 0.0f;
    if (inside) v = src[off];
    *dst = v;
}

static inline void im2col_3s1(__global float *restrict col, __global const float *restrict in,
                              int n, int c, int h, int w, int oh, int ow, const int panels) {
    size_t so, dof, r;
    int y0, x0;
    int p = get_global_id(0), ci = get_global_id(1);
    if (!im2col_setup(p, ci, 0, n, c, h, w, 1, 1, oh, ow, 3, 3, panels, &so, &dof, &r, &y0,
                      &x0))
        return;
    __global float *dst = col + dof;
    __global const float *src = in + (size_t)ci * n * h * w + p;
    im2col_s1_entry(dst, src, y0, x0, h, w, -w - 1);
    im2col_s1_entry(dst + r, src, y0, x0 + 1, h, w, -w);
    im2col_s1_entry(dst + 2 * r, src, y0, x0 + 2, h, w, -w + 1);
    im2col_s1_entry(dst + 3 * r, src, y0 + 1, x0, h, w, -1);
    im2col_s1_entry(dst + 4 * r, src, y0 + 1, x0 + 1, h, w, 0);
    im2col_s1_entry(dst + 5 * r, src, y0 + 1, x0 + 2, h, w, 1);
    im2col_s1_entry(dst + 6 * r, src, y0 + 2, x0, h, w, w - 1);
    im2col_s1_entry(dst + 7 * r, src, y0 + 2, x0 + 1, h, w, w);
    im2col_s1_entry(dst + 8 * r, src, y0 + 2, x0 + 2, h, w, w + 1);
}

// 1x1 with stride or padding (the downsample convs), range (N*OH*OW, C).
static inline void im2col_1(__global float *restrict col, __global const float *restrict in,
                            int n, int c, int h, int w, int stride, int pad, int oh, int ow,
                            const int panels) {
    size_t so, dof, r;
    int y0, x0;
    if (!im2col_setup(get_global_id(0), get_global_id(1), 0, n, c, h, w, stride, pad, oh, ow,
                      1, 1, panels, &so, &dof, &r, &y0, &x0))
        return;
    im2col_entry(col + dof, in + so, y0, x0, h, w);
}

// 7x7 (the stem), range (N*OH*OW, C*7): item (p, ci*7 + ky) writes the 7 entries of one
// kernel row (49 entries per item did not vectorise).
static inline void im2col_7(__global float *restrict col, __global const float *restrict in,
                            int n, int c, int h, int w, int stride, int pad, int oh, int ow,
                            const int panels) {
    int row = get_global_id(1), ci = row / 7;
    size_t so, dof, r;
    int y, x0;
    if (!im2col_setup(get_global_id(0), ci, row - ci * 7, n, c, h, w, stride, pad, oh, ow, 7,
                      7, panels, &so, &dof, &r, &y, &x0))
        return;
    __global float *dst = col + dof;
    __global const float *src = in + so;
    im2col_entry(dst, src, y, x0, h, w);
    im2col_entry(dst + r, src, y, x0 + 1, h, w);
    im2col_entry(dst + 2 * r, src, y, x0 + 2, h, w);
    im2col_entry(dst + 3 * r, src, y, x0 + 3, h, w);
    im2col_entry(dst + 4 * r, src, y, x0 + 4, h, w);
    im2col_entry(dst + 5 * r, src, y, x0 + 5, h, w);
    im2col_entry(dst + 6 * r, src, y, x0 + 6, h, w);
}

// The kernels: (col, colo, in, ino, n, c, h, w, kh, kw, stride, pad, oh, ow), rows and panels.
__kernel void im2col(__global float *col, ulong colo, __global const float *in, ulong ino,
                     int n, int c, int h, int w, int kh, int kw, int stride, int pad, int oh,
                     int ow) {
    im2col_any(col + colo, in + ino, n, c, h, w, kh, kw, stride, pad, oh, ow, 0);
}
__kernel void im2col_panels(__global float *col, ulong colo, __global const float *in,
                            ulong ino, int n, int c, int h, int w, int kh, int kw, int stride,
                            int pad, int oh, int ow) {
    im2col_any(col + colo, in + ino, n, c, h, w, kh, kw, stride, pad, oh, ow, 1);
}
__kernel void im2col_k3(__global float *restrict col, ulong colo,
                        __global const float *restrict in, ulong ino, int n, int c, int h,
                        int w, int kh, int kw, int stride, int pad, int oh, int ow) {
    im2col_3(col + colo, in + ino, n, c, h, w, stride, pad, oh, ow, 0);
}
__kernel void im2col_k3_panels(__global float *restrict col, ulong colo,
                               __global const float *restrict in, ulong ino, int n, int c,
                               int h, int w, int kh, int kw, int stride, int pad, int oh,
                               int ow) {
    im2col_3(col + colo, in + ino, n, c, h, w, stride, pad, oh, ow, 1);
}
__kernel void im2col_k3s1(__global float *restrict col, ulong colo,
                          __global const float *restrict in, ulong ino, int n, int c, int h,
                          int w, int kh, int kw, int stride, int pad, int oh, int ow) {
    im2col_3s1(col + colo, in + ino, n, c, h, w, oh, ow, 0);
}
__kernel void im2col_k3s1_panels(__global float *restrict col, ulong colo,
                                 __global const float *restrict in, ulong ino, int n, int c,
                                 int h, int w, int kh, int kw, int stride, int pad, int oh,
                                 int ow) {
    im2col_3s1(col + colo, in + ino, n, c, h, w, oh, ow, 1);
}
__kernel void im2col_k1(__global float *restrict col, ulong colo,
                        __global const float *restrict in, ulong ino, int n, int c, int h,
                        int w, int kh, int kw, int stride, int pad, int oh, int ow) {
    im2col_1(col + colo, in + ino, n, c, h, w, stride, pad, oh, ow, 0);
}
__kernel void im2col_k1_panels(__global float *restrict col, ulong colo,
                               __global const float *restrict in, ulong ino, int n, int c,
                               int h, int w, int kh, int kw, int stride, int pad, int oh,
                               int ow) {
    im2col_1(col + colo, in + ino, n, c, h, w, stride, pad, oh, ow, 1);
}
__kernel void im2col_k7(__global float *restrict col, ulong colo,
                        __global const float *restrict in, ulong ino, int n, int c, int h,
                        int w, int kh, int kw, int stride, int pad, int oh, int ow) {
    im2col_7(col + colo, in + ino, n, c, h, w, stride, pad, oh, ow, 0);
}
__kernel void im2col_k7_panels(__global float *restrict col, ulong colo,
                               __global const float *restrict in, ulong ino, int n, int c,
                               int h, int w, int kh, int kw, int stride, int pad, int oh,
                               int ow) {
    im2col_7(col + colo, in + ino, n, c, h, w, stride, pad, oh, ow, 1);
}

// The panel layout's rows past `rows` (up to col_panel_rows(rows)) set to 0, so that the
// tile kernels that read rows 8 at a time read zeros there. Range (32, pad rows, panels): no
// division (Oclgrind's uninitialised-value pass cannot take LLVM's div/rem pairs).
__kernel void col_panels_pad_rows(__global float *col, ulong colo, int rows) {
    int j = get_global_id(0), r = rows + get_global_id(1), p = get_global_id(2);
    int rp = col_panel_rows(rows);
    if (r >= rp) return;
    col[colo + ((size_t)p * rp + r) * COL_PANEL_W + j] = 0.0f;
}

// ---- col2im ----
//
// The adjoint of im2col as a gather (no atomics): item (pixel, ci) sums every col entry that
// copied input pixel (ci, pixel), in (ky, kx) ascending order, the order in which PyTorch's
// col2im scatter adds them. Overwrites `in`. Range (N*H*W, C).

// Item (pix, ci)'s pixel (y, x), its col plane (row (ci, 0, 0), columns of image n) and
// output offset; 0 when out of range.
static inline int col2im_setup(int pix, int ci, int n, int c, int h, int w, int oh, int ow,
                               int kh, int kw, int *y, int *x, size_t *col_off,
                               size_t *in_off) {
    if (pix >= n * h * w || ci >= c) return 0;
    int t = conv_div(pix, w, 1.0f / w), ni = conv_div(t, h, 1.0f / h);
    *x = pix - t * w;
    *y = t - ni * h;
    *col_off = (size_t)ci * kh * kw * n * oh * ow + (size_t)ni * oh * ow;
    *in_off = (size_t)ci * n * h * w + pix;
    return 1;
}

// The col entry (ky, kx) for pixel (y, x), or +0.0f when that entry did not copy it (adding
// +0.0f leaves a sum that starts at +0 unchanged, so the result equals skipping it). The
// load of a missing entry reads the row's first element and discards it: no mask.
static inline float col2im_entry(__global const float *restrict cc, int y, int x, int ky,
                                 int kx, int kw, int stride, int pad, int oh, int ow, int np) {
    int ty = y + pad - ky, tx = x + pad - kx;
    int oy = ty / stride, ox = tx / stride;
    int ok = ty >= 0 && tx >= 0 && oy * stride == ty && ox * stride == tx && oy < oh && ox < ow;
    float v = cc[(size_t)(ky * kw + kx) * np + (ok ? oy * ow + ox : 0)];
    return ok ? v : 0.0f;
}

__kernel void col2im(__global float *in, ulong ino, __global const float *col, ulong colo,
                     int n, int c, int h, int w, int kh, int kw, int stride, int pad, int oh,
                     int ow) {
    int y, x, np = n * oh * ow;
    size_t co, io;
    if (!col2im_setup(get_global_id(0), get_global_id(1), n, c, h, w, oh, ow, kh, kw, &y, &x,
                      &co, &io))
        return;
    float s = 0.0f;
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++)
            s += col2im_entry(col + colo + co, y, x, ky, kx, kw, stride, pad, oh, ow, np);
    in[ino + io] = s;
}

// Where output row (or column) o = (t + pad - k) / stride of kernel tap k reads pixel t,
// and whether it exists (the division exact and o inside [0, n)).
static inline int col2im_tap(int t, int k, int stride, int pad, int n, int *ok) {
    int u = t + pad - k, o = u / stride;
    *ok = u >= 0 && u % stride == 0 && o < n;
    return o;
}

// 3x3 with a compile-time stride (divisions by a constant), the 9 entries written out. Each
// entry adds +0.0f when it did not copy the pixel, and reads the first element of its col
// row in that case (no mask).
static inline void col2im_k3(__global float *restrict in, __global const float *restrict col,
                             int n, int c, int h, int w, int pad, int oh, int ow,
                             const int stride) {
    int y, x, np = n * oh * ow;
    size_t co, io;
    if (!col2im_setup(get_global_id(0), get_global_id(1), n, c, h, w, oh, ow, 3, 3, &y, &x,
                      &co, &io))
        return;
    __global const float *cc = col + co;
    int ry0, ry1, ry2, rx0, rx1, rx2;
    int oy0 = col2im_tap(y, 0, stride, pad, oh, &ry0) * ow;
    int oy1 = col2im_tap(y, 1, stride, pad, oh, &ry1) * ow;
    int oy2 = col2im_tap(y, 2, stride, pad, oh, &ry2) * ow;
    int ox0 = col2im_tap(x, 0, stride, pad, ow, &rx0);
    int ox1 = col2im_tap(x, 1, stride, pad, ow, &rx1);
    int ox2 = col2im_tap(x, 2, stride, pad, ow, &rx2);
    size_t r = np;   // one col row
    float s = 0.0f, v;
    v = cc[ry0 && rx0 ? oy0 + ox0 : 0], s += ry0 && rx0 ? v : 0.0f;
    v = cc[r + (ry0 && rx1 ? oy0 + ox1 : 0)], s += ry0 && rx1 ? v : 0.0f;
    v = cc[2 * r + (ry0 && rx2 ? oy0 + ox2 : 0)], s += ry0 && rx2 ? v : 0.0f;
    v = cc[3 * r + (ry1 && rx0 ? oy1 + ox0 : 0)], s += ry1 && rx0 ? v : 0.0f;
    v = cc[4 * r + (ry1 && rx1 ? oy1 + ox1 : 0)], s += ry1 && rx1 ? v : 0.0f;
    v = cc[5 * r + (ry1 && rx2 ? oy1 + ox2 : 0)], s += ry1 && rx2 ? v : 0.0f;
    v = cc[6 * r + (ry2 && rx0 ? oy2 + ox0 : 0)], s += ry2 && rx0 ? v : 0.0f;
    v = cc[7 * r + (ry2 && rx1 ? oy2 + ox1 : 0)], s += ry2 && rx1 ? v : 0.0f;
    v = cc[8 * r + (ry2 && rx2 ? oy2 + ox2 : 0)], s += ry2 && rx2 ? v : 0.0f;
    in[io] = s;
}

// ResNet's (kernel, stride) pairs that need a data gradient: 3x3 stride 1 and 2, 1x1 stride 2.
__kernel void col2im_k3s1(__global float *in, ulong ino, __global const float *col,
                          ulong colo, int n, int c, int h, int w, int kh, int kw, int stride,
                          int pad, int oh, int ow) {
    col2im_k3(in + ino, col + colo, n, c, h, w, pad, oh, ow, 1);
}

__kernel void col2im_k3s2(__global float *in, ulong ino, __global const float *col,
                          ulong colo, int n, int c, int h, int w, int kh, int kw, int stride,
                          int pad, int oh, int ow) {
    col2im_k3(in + ino, col + colo, n, c, h, w, pad, oh, ow, 2);
}

__kernel void col2im_k1s2(__global float *restrict in, ulong ino,
                          __global const float *restrict col, ulong colo, int n, int c, int h,
                          int w, int kh, int kw, int stride, int pad, int oh, int ow) {
    int y, x;
    size_t co, io;
    if (!col2im_setup(get_global_id(0), get_global_id(1), n, c, h, w, oh, ow, 1, 1, &y, &x,
                      &co, &io))
        return;
    // 0 + v as the sum of one term: -0 becomes +0, as in the scatter form.
    in[ino + io] = 0.0f + col2im_entry(col + colo + co, y, x, 0, 0, 1, 2, pad, oh, ow,
                                       n * oh * ow);
}

// ---- the live window of a kernel (host/ops_conv.c, conv_plan) ----
// One work item per (output, input) channel pair and its whole kernel: no index division,
// and the CPU device vectorises across items.

// Weights (O*C, KH, KW) -> their window [kh0, kh0 + kh2) x [kw0, kw0 + kw2), (O*C, KH2, KW2).
__kernel void conv_weight_window(__global float *dst, ulong dsto, __global const float *w,
                                 ulong wo, int oc, int kh, int kw, int kh0, int kw0, int kh2,
                                 int kw2) {
    int p = get_global_id(0);
    if (p >= oc) return;
    __global float *d = dst + dsto + (size_t)p * kh2 * kw2;
    __global const float *s = w + wo + (size_t)p * kh * kw + kh0 * kw + kw0;
    for (int y = 0; y < kh2; y++)
        for (int x = 0; x < kw2; x++) d[y * kw2 + x] = s[y * kw + x];
}

// The data gradient of a 3x3 stride-1 pad-1 conv as a conv (host/ops/ops_conv.c,
// dgrad_as_conv): wf (C, O, 3, 3) from w (O, C, 3, 3), channels swapped and taps flipped.
// Range (C, O), one item per channel pair.
__kernel void conv_weight_flip(__global float *wf, ulong wfo, __global const float *w,
                               ulong wo, int o, int c) {
    int ci = get_global_id(0), oi = get_global_id(1);
    if (ci >= c || oi >= o) return;
    __global float *d = wf + wfo + ((size_t)ci * o + oi) * 9;
    __global const float *s = w + wo + ((size_t)oi * c + ci) * 9;
    for (int t = 0; t < 9; t++) d[t] = s[8 - t];
}

// The way back, for the weight gradient: dw (O*C, KH, KW) = the window's gradient inside the
// window, 0 outside (taps that only ever read padding).
__kernel void conv_weight_unwindow(__global float *dw, ulong dwo, __global const float *src,
                                   ulong srco, int oc, int kh, int kw, int kh0, int kw0,
                                   int kh2, int kw2) {
    int p = get_global_id(0);
    if (p >= oc) return;
    __global float *d = dw + dwo + (size_t)p * kh * kw;
    __global const float *s = src + srco + (size_t)p * kh2 * kw2;
    for (int y = 0; y < kh; y++)
        for (int x = 0; x < kw; x++) {
            int wy = y - kh0, wx = x - kw0;
            int inside = wy >= 0 && wy < kh2 && wx >= 0 && wx < kw2;
            d[y * kw + x] = inside ? s[wy * kw2 + wx] : 0.0f;
        }
}
