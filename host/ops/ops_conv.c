// conv2d as im2col + one GEMM over the whole batch, and linear layers.
#include "host/ops/ops_internal.h"

// ---- conv2d ----

void conv_shape_init(conv_shape *s, int n, int c, int h, int w, int o, int k, int stride,
                     int pad) {
    const char *op = "conv_shape_init";
    OPS_REQUIRE(n > 0 && c > 0 && h > 0 && w > 0 && o > 0 && k > 0 && stride > 0 && pad >= 0,
                op, "bad conv n=%d c=%d h=%d w=%d o=%d k=%d stride=%d pad=%d", n, c, h, w, o,
                k, stride, pad);
    OPS_REQUIRE(h + 2 * pad >= k && w + 2 * pad >= k, op,
                "kernel %d larger than the padded input %dx%d (pad %d)", k, h, w, pad);
    *s = (conv_shape){.n = n, .c = c, .h = h, .w = w, .o = o, .kh = k, .kw = k,
                      .stride = stride, .pad = pad};
    s->oh = (h + 2 * pad - k) / stride + 1;   // PyTorch's floor rule
    s->ow = (w + 2 * pad - k) / stride + 1;
}

static size_t conv_np(const conv_shape *s) { return (size_t)s->n * s->oh * s->ow; }
static size_t conv_ckk(const conv_shape *s) { return (size_t)s->c * s->kh * s->kw; }

// A 1x1 stride-1 unpadded conv reads its input directly as the col matrix.
static int conv_is_pointwise(const conv_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0;
}

// ---- the live window ----
// A tap that only ever reads padding adds exact zeros to every output, and its weight
// gradient is exactly 0. When the kernel overhangs a small input (ResNet18's layer4 at 32x32:
// 3x3 kernels on 1x1 and 2x2 maps), the conv is the conv with the kernel's live window
// [kh0, kh0 + KH') x [kw0, kw0 + KW') and padding pad - kh0: the same sums without the zero
// terms (a 3x3 on a 1x1 map becomes a pointwise conv), on a copy of the window's weights.
typedef struct conv_plan {
    conv_shape e;                  // what runs: the live window's conv, or the conv itself
    int kh0, kw0, windowed;
} conv_plan;

// The live taps [*k0, *k0 + return) along one dimension: tap t reads o*stride - pad + t.
static int live_taps(int k, int stride, int pad, int in, int out, int *k0) {
    int first = -1, last = -1;
    for (int t = 0; t < k; t++)
        for (int o = 0; o < out; o++) {
            int r = o * stride - pad + t;
            if (r >= in) break;
            if (r >= 0) {
                if (first < 0) first = t;
                last = t;
                break;
            }
        }
    *k0 = first;
    return last - first + 1;
}

static void conv_plan_init(const conv_shape *s, conv_plan *p) {
    p->e = *s;
    p->windowed = 0;
    p->kh0 = p->kw0 = 0;
    int kh0, kw0;
    int kh = live_taps(s->kh, s->stride, s->pad, s->h, s->oh, &kh0);
    int kw = live_taps(s->kw, s->stride, s->pad, s->w, s->ow, &kw0);
    // One padding for both dimensions (conv_shape's): the window must start alike in both.
    if ((kh == s->kh && kw == s->kw) || kh0 != kw0 || kh0 < 0 || kh0 > s->pad) return;
    conv_shape e = *s;
    e.kh = kh;
    e.kw = kw;
    e.pad = s->pad - kh0;
    if ((e.h + 2 * e.pad - e.kh) / e.stride + 1 != s->oh ||
        (e.w + 2 * e.pad - e.kw) / e.stride + 1 != s->ow)
        return;                    // not the same outputs (cannot happen; never guess)
    p->e = e;
    p->kh0 = kh0;
    p->kw0 = kw0;
    p->windowed = 1;
}

// A 3x3 stride-1 pad-1 conv's data gradient is itself such a conv: of dout, with the
// weights' channels swapped and taps flipped. On the packed path it runs as one (im2col of
// dout into panels, a GEMM reading them in place) instead of a GEMM writing dcol and col2im
// gathering it back (dgrad_as_conv below).
static int dgrad_shape(const conv_plan *p) {
    const conv_shape *e = &p->e;
    return !p->windowed && e->kh == 3 && e->kw == 3 && e->stride == 1 && e->pad == 1;
}

// The workspace: the col matrix of what runs (none for a pointwise conv), then the window's
// weights (or their gradient) when windowed, or dgrad_as_conv's flipped weights. Room for
// either layout of the col matrix: rows (CLBlast's path, and the data gradient's dcol) or the
// packed path's panels (at least as many floats: rows and columns rounded up), and for dout's.
static size_t plan_col_floats(const conv_plan *p) {
    if (conv_is_pointwise(&p->e)) return 0;
    int np = (int)conv_np(&p->e);
    size_t f = op_gemm_panel_floats((int)conv_ckk(&p->e), np);
    if (dgrad_shape(p)) {   // dout's col matrix (O*9 rows) in its place
        size_t d = op_gemm_panel_floats(p->e.o * 9, np);
        if (d > f) f = d;
    }
    return f;
}

// The col matrix in the panel layout, read in place by the packed GEMMs (CPU devices): no
// copy into panels in the forward, no transposing copy in the weight gradient.
static int conv_panels(const ops_ctx *ops, const conv_plan *p) {
    return plan_col_floats(p) && op_gemm_packed(ops);
}

static void conv_layout_launch(clrt *rt, cl_kernel k, size_t n0, int c);

// ---- Winograd F(2x2, 3x3) (cl/winograd.cl) ----
// The forward of a 3x3 stride-1 pad-1 conv (ResNet18's BasicBlock convs but the first of
// layers 2-4) as 16 GEMMs of transformed tiles: 2.25x fewer multiplications than im2col +
// GEMM, plus the transforms. Used where no col matrix is wanted (op_conv2d_forward; the
// training forward that keeps its col matrix for the weight gradient runs im2col + GEMM).
// Where it pays, measured on pocl (2-core EPYC, best of several runs): at least 128 input
// channels (a deep im2col GEMM, k >= 1152, which CLBlast runs slowest) and 7x7 outputs.
// ResNet18 eval at 224x224/batch 16: 21.2 -> 27.0 img/s (every 3x3 s1 conv: 25.5; layer1's
// 64-channel convs lose); at 32x32 no conv qualifies (every variant tried there was 4-8%
// slower). That was against CLBlast's GEMMs: against the packed path reading the col
// matrix's panels in place (CPU devices' default) it loses, eval device time per batch 346-360
// -> 305-327 ms with it off (2-core Zen 5, 224x16), so by default it runs on CPU devices only
// when their GEMMs go through CLBlast (CLTRAIN_GEMM_PACKED=0); on GPUs it has not been measured
// yet. ops_config.winograd (CLTRAIN_WINOGRAD) = 0 turns it off, = 1 on for any device (same
// shape rule).
#define WINO_MIN_CHANNELS 128
#define WINO_MIN_PIXELS 49

// The shapes (the workspace is sized for them on any device).
static int wino_shape(const conv_plan *p) {
    const conv_shape *e = &p->e;
    return !p->windowed && e->kh == 3 && e->kw == 3 && e->stride == 1 && e->pad == 1 &&
           e->c >= WINO_MIN_CHANNELS && e->oh * e->ow >= WINO_MIN_PIXELS;
}

static int conv_winograd(const ops_ctx *ops, const conv_plan *p) {
    const clrt *rt = ops->rt;
    int sw = OPS_SWITCH(ops, winograd);
    int cpu = (rt->dev.type & CL_DEVICE_TYPE_CPU) != 0;
    return (sw >= 0 ? sw : cpu && !op_gemm_packed(ops)) && wino_shape(p);
}

// U (16, O, C), V (16, C, T), M (16, O, T), each starting a sub-buffer: CLBlast 1.5.3's batched
// GEMM reads an operand that needs no copy at offset 0 of its buffer, whatever the offset given.
// Sub-buffer origins are aligned to CL_DEVICE_MEM_BASE_ADDR_ALIGN (at most 4096 bits here:
// WINO_ALIGN floats of slack per region).
#define WINO_ALIGN 256

static size_t winograd_tiles(const conv_shape *s, int *th, int *tw) {
    *th = (s->oh + 1) / 2;
    *tw = (s->ow + 1) / 2;
    return (size_t)s->n * *th * *tw;
}

static size_t winograd_floats(const conv_shape *s) {
    int th, tw;
    size_t t = winograd_tiles(s, &th, &tw);
    return 16 * ((size_t)s->o * s->c + (size_t)s->c * t + (size_t)s->o * t) + 3 * WINO_ALIGN;
}

// A sub-buffer of work's buffer for floats [*at, *at + n), *at first rounded up to the device's
// base address alignment; *at then moves past it.
static cl_mem wino_region(clrt *rt, dten work, size_t *at, size_t n) {
    size_t align = rt->dev.base_addr_align_bits / 8;
    if (align < sizeof(float)) align = sizeof(float);
    OPS_REQUIRE(align <= WINO_ALIGN * sizeof(float), "op_conv2d_forward",
                "base address alignment %zu bytes is more than %d floats", align, WINO_ALIGN);
    size_t origin = (work.off + *at) * sizeof(float);
    origin = (origin + align - 1) / align * align;
    cl_buffer_region r = { origin, n * sizeof(float) };
    cl_int e;
    cl_mem sub = clCreateSubBuffer(work.mem, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r,
                                   &e);
    if (e != CL_SUCCESS) clrt_die_cl(e, "clCreateSubBuffer", __FILE__, __LINE__);
    *at = origin / sizeof(float) - work.off + n;
    return sub;
}

// A tile transform (winograd_input or winograd_output): dst from src over the range
// (N * th * tw tiles, ch channels) of maps h x w.
static void wino_tiles(clrt *rt, const char *name, dten dst, dten src, int n, int ch, int h,
                       int w, int th, int tw) {
    cl_kernel k = ops_kernel_ten(rt, name, (dten[]){dst, src}, 2);
    CLRT_ARG(k, 4, n);
    CLRT_ARG(k, 5, ch);
    CLRT_ARG(k, 6, h);
    CLRT_ARG(k, 7, w);
    CLRT_ARG(k, 8, th);
    CLRT_ARG(k, 9, tw);
    conv_layout_launch(rt, k, (size_t)n * th * tw, ch);
}

// out (O, N, OH, OW) = the 3x3 s1 p1 conv of in (C, N, H, W) with w (O, C, 3, 3).
static void winograd_forward(ops_ctx *ops, dten out, dten in, dten w, const conv_shape *s,
                             dten work) {
    clrt *rt = ops->rt;
    int th, tw;
    int t = (int)winograd_tiles(s, &th, &tw);
    size_t uc = (size_t)s->o * s->c, vc = (size_t)s->c * t, mc = (size_t)s->o * t, at = 0;
    dten u = { wino_region(rt, work, &at, 16 * uc), 0 };
    dten v = { wino_region(rt, work, &at, 16 * vc), 0 };
    dten m = { wino_region(rt, work, &at, 16 * mc), 0 };

    cl_kernel k = ops_kernel_ten(rt, "winograd_weights", (dten[]){u, w}, 2);
    CLRT_ARG(k, 4, s->o);
    CLRT_ARG(k, 5, s->c);
    clrt_launch1d(rt, k, uc);

    // V from the input's tiles; M[xi] (O, T) = U[xi] (O, C) x V[xi] (C, T); out from M's tiles.
    wino_tiles(rt, "winograd_input", v, in, s->n, s->c, s->h, s->w, th, tw);
    op_gemm_batched(ops, 0, 0, s->o, t, s->c, 1.0f, u, s->c, uc, v, t, vc, 0.0f, m, t, mc, 16);
    wino_tiles(rt, "winograd_output", out, m, s->n, s->o, s->oh, s->ow, th, tw);
    // The commands hold their own references: released when they are done.
    clReleaseMemObject(u.mem);
    clReleaseMemObject(v.mem);
    clReleaseMemObject(m.mem);
}

size_t conv_workspace_floats(const conv_shape *s) {
    conv_plan p;
    conv_plan_init(s, &p);
    // After the col matrix: the window's weights, or the flipped weights of dgrad_as_conv.
    size_t f = plan_col_floats(&p) +
               (p.windowed || dgrad_shape(&p) ? (size_t)s->o * conv_ckk(&p.e) : 0);
    if (wino_shape(&p) && winograd_floats(s) > f) f = winograd_floats(s);
    return f;
}


static void weight_window_args(cl_kernel k, const conv_shape *s, const conv_plan *p) {
    int oc = s->o * s->c;
    CLRT_ARG(k, 4, oc);
    CLRT_ARG(k, 5, s->kh);
    CLRT_ARG(k, 6, s->kw);
    CLRT_ARG(k, 7, p->kh0);
    CLRT_ARG(k, 8, p->kw0);
    CLRT_ARG(k, 9, p->e.kh);
    CLRT_ARG(k, 10, p->e.kw);
}

// dst (O, C, KH', KW') = the window of w (O, C, KH, KW).
static void weight_window(clrt *rt, dten dst, dten w, const conv_shape *s, const conv_plan *p) {
    cl_kernel k = ops_kernel_ten(rt, "conv_weight_window", (dten[]){dst, w}, 2);
    weight_window_args(k, s, p);
    clrt_launch1d(rt, k, (size_t)s->o * s->c);
}

// dw (O, C, KH, KW) = src (O, C, KH', KW') in the window, 0 elsewhere.
static void weight_unwindow(clrt *rt, dten dw, dten src, const conv_shape *s,
                            const conv_plan *p) {
    cl_kernel k = ops_kernel_ten(rt, "conv_weight_unwindow", (dten[]){dw, src}, 2);
    weight_window_args(k, s, p);
    clrt_launch1d(rt, k, (size_t)s->o * s->c);
}

// Every index the kernels and CLBlast compute must fit in an int.
static void conv_check(const conv_shape *s, const char *op) {
    OPS_REQUIRE(s->n > 0 && s->c > 0 && s->o > 0 && s->oh > 0 && s->ow > 0, op,
                "conv_shape not initialised (use conv_shape_init)");
    ops_int(conv_ckk(s) * conv_np(s), op, "C*KH*KW*N*OH*OW");
    ops_int((size_t)s->c * s->n * s->h * s->w, op, "C*N*H*W");
    ops_int((size_t)s->o * conv_np(s), op, "O*N*OH*OW");
    // The layout kernels split N*OH*OW and N*H*W indices with float arithmetic that is exact
    // below 2^30 (cl/conv.cl, conv_div).
    OPS_REQUIRE(conv_np(s) < (1u << 30) && (size_t)s->n * s->h * s->w < (1u << 30), op,
                "N*H*W or N*OH*OW is 2^30 or more");
}

static void conv_layout_args(cl_kernel k, cl_uint i, const conv_shape *s) {
    CLRT_ARG(k, i + 0, s->n);
    CLRT_ARG(k, i + 1, s->c);
    CLRT_ARG(k, i + 2, s->h);
    CLRT_ARG(k, i + 3, s->w);
    CLRT_ARG(k, i + 4, s->kh);
    CLRT_ARG(k, i + 5, s->kw);
    CLRT_ARG(k, i + 6, s->stride);
    CLRT_ARG(k, i + 7, s->pad);
    CLRT_ARG(k, i + 8, s->oh);
    CLRT_ARG(k, i + 9, s->ow);
}

// Local size along dimension 0 of the layout kernels: items of one group walk consecutive
// memory, and pocl vectorises across them; 64 keeps the rounding waste small on ResNet's
// smallest layers (N*OH*OW = batch at layer4 of a 32x32 image).
#define CONV_LOCAL0 64

// The 2-D range (n0 rounded up to CONV_LOCAL0, channels) of the layout kernels.
static void conv_layout_launch(clrt *rt, cl_kernel k, size_t n0, int c) {
    size_t global[2] = {n0, (size_t)c}, local[2] = {CONV_LOCAL0, 1};
    clrt_launch(rt, k, 2, global, local);
}

// The kernel-size specialisation of im2col for this shape, else the generic kernel.
static const char *im2col_kernel_name(const conv_shape *s) {
    if (s->kh != s->kw) return "im2col";
    switch (s->kh) {
    case 1: return "im2col_k1";
    case 3: return s->stride == 1 && s->pad == 1 ? "im2col_k3s1" : "im2col_k3";
    case 7: return "im2col_k7";
    default: return "im2col";
    }
}

// The (kernel size, stride) specialisation of col2im, else the generic kernel.
static const char *col2im_kernel_name(const conv_shape *s) {
    if (s->kh != s->kw) return "col2im";
    if (s->kh == 3 && s->stride == 1) return "col2im_k3s1";
    if (s->kh == 3 && s->stride == 2) return "col2im_k3s2";
    if (s->kh == 1 && s->stride == 2) return "col2im_k1s2";
    return "col2im";
}

void op_im2col(ops_ctx *ops, dten col, dten in, const conv_shape *s) {
    clrt *rt = ops->rt;
    conv_check(s, "op_im2col");
    OPS_REQUIRE(ops_has(col) && ops_has(in), "op_im2col", "missing buffer");
    cl_kernel k = ops_kernel_ten(rt, im2col_kernel_name(s), (dten[]){col, in}, 2);
    conv_layout_args(k, 4, s);
    // im2col_k7 takes one kernel row per item.
    int rows = s->kh == 7 && s->kw == 7 ? s->c * 7 : s->c;
    conv_layout_launch(rt, k, conv_np(s), rows);
}

// Work-groups of 32 items along the columns: each is one panel (cl/conv.cl, im2col_setup).
void op_im2col_panels(ops_ctx *ops, dten col, dten in, const conv_shape *s) {
    clrt *rt = ops->rt;
    conv_check(s, "op_im2col_panels");
    OPS_REQUIRE(ops_has(col) && ops_has(in), "op_im2col_panels", "missing buffer");
    char name[32];
    snprintf(name, sizeof name, "%s_panels", im2col_kernel_name(s));
    cl_kernel k = ops_kernel_ten(rt, name, (dten[]){col, in}, 2);
    conv_layout_args(k, 4, s);
    int rows = s->kh == 7 && s->kw == 7 ? s->c * 7 : s->c;
    int ckk = (int)conv_ckk(s), np = (int)conv_np(s), pad = op_gemm_panel_rows(ckk) - ckk;
    size_t cols = (size_t)(np + 31) / 32 * 32;
    clrt_launch(rt, k, 2, (size_t[]){ cols, (size_t)rows }, (size_t[]){ 32, 1 });
    if (pad) {
        cl_kernel kp = ops_kernel_ten(rt, "col_panels_pad_rows", (dten[]){col}, 1);
        CLRT_ARG(kp, 2, ckk);
        clrt_launch(rt, kp, 3, (size_t[]){ 32, (size_t)pad, cols / 32 }, NULL);
    }
}

void op_col2im(ops_ctx *ops, dten in, dten col, const conv_shape *s) {
    clrt *rt = ops->rt;
    conv_check(s, "op_col2im");
    OPS_REQUIRE(ops_has(col) && ops_has(in), "op_col2im", "missing buffer");
    cl_kernel k = ops_kernel_ten(rt, col2im_kernel_name(s), (dten[]){in, col}, 2);
    conv_layout_args(k, 4, s);
    conv_layout_launch(rt, k, (size_t)s->n * s->h * s->w, s->c);
}

static void conv_forward(ops_ctx *ops, dten out, dten in, dten w, const conv_shape *s, dten work,
                         int keep_col, const char *op) {
    clrt *rt = ops->rt;
    conv_check(s, op);
    OPS_REQUIRE(ops_has(out) && ops_has(in) && ops_has(w), op, "missing buffer");
    conv_plan p;
    conv_plan_init(s, &p);
    const conv_shape *e = &p.e;
    int ckk = (int)conv_ckk(e), np = (int)conv_np(e);
    size_t ncol = plan_col_floats(&p);
    OPS_REQUIRE(ops_has(work) || conv_workspace_floats(s) == 0, op,
                "needs a workspace of %zu floats", conv_workspace_floats(s));
    if (!keep_col && conv_winograd(ops, &p)) {
        winograd_forward(ops, out, in, w, s, work);
        return;
    }
    dten col = in, wt = w;
    if (p.windowed) {
        wt = dten_at(work, ncol);
        weight_window(rt, wt, w, s, &p);
    }
    if (conv_panels(ops, &p)) {
        op_im2col_panels(ops, work, in, e);
        op_gemm_bpanels(ops, s->o, np, ckk, 1.0f, wt, ckk, work, 0.0f, out, np);
        return;
    }
    if (ncol) {
        op_im2col(ops, work, in, e);
        col = work;
    }
    // out (O, NP) = w (O, CKK) x col (CKK, NP)
    op_gemm(ops, 0, 0, s->o, np, ckk, 1.0f, wt, ckk, col, np, 0.0f, out, np);
}

void op_conv2d_forward(ops_ctx *ops, dten out, dten in, dten w, const conv_shape *s, dten work) {
    conv_forward(ops, out, in, w, s, work, 0, "op_conv2d_forward");
}

void op_conv2d_forward_col(ops_ctx *ops, dten out, dten in, dten w, const conv_shape *s,
                           dten work) {
    conv_forward(ops, out, in, w, s, work, 1, "op_conv2d_forward_col");
}

// din (C, N, H, W) of a 3x3 stride-1 pad-1 conv as the conv of dout (O, N, H, W) with
// wf (C, O, 3, 3), wf[c][o][ky][kx] = w[o][c][2 - ky][2 - kx] (conv_weight_flip); the
// workspace's col region takes dout's col matrix, wf comes after it.
static void dgrad_as_conv(ops_ctx *ops, dten din, dten dout, dten w, const conv_shape *s,
                          dten work, size_t ncol) {
    clrt *rt = ops->rt;
    dten wf = dten_at(work, ncol);
    cl_kernel k = ops_kernel_ten(rt, "conv_weight_flip", (dten[]){wf, w}, 2);
    CLRT_ARG(k, 4, s->o);
    CLRT_ARG(k, 5, s->c);
    clrt_launch(rt, k, 2, (size_t[]){ (size_t)s->c, (size_t)s->o }, NULL);
    conv_shape d;
    conv_shape_init(&d, s->n, s->o, s->h, s->w, s->c, 3, 1, 1);
    op_im2col_panels(ops, work, dout, &d);
    op_gemm_bpanels(ops, s->c, (int)conv_np(s), s->o * 9, 1.0f, wf, s->o * 9, work, 0.0f, din,
                    (int)conv_np(s));
}

static void conv_backward(ops_ctx *ops, dten din, dten dw, dten dout, dten in, dten w,
                          const conv_shape *s, dten work, int col_ready, const char *op) {
    clrt *rt = ops->rt;
    conv_check(s, op);
    OPS_REQUIRE(ops_has(dout), op, "missing dout");
    conv_plan p;
    conv_plan_init(s, &p);
    const conv_shape *e = &p.e;
    int ckk = (int)conv_ckk(e), np = (int)conv_np(e);
    size_t ncol = plan_col_floats(&p);
    OPS_REQUIRE(ops_has(work) || conv_workspace_floats(s) == 0 ||
                    (!ops_has(dw) && !ops_has(din)),
                op, "needs a workspace of %zu floats", conv_workspace_floats(s));
    // The workspace holds one col matrix (and the window's weights): the weight gradient
    // uses it first, then the data gradient overwrites it.
    dten wt = p.windowed ? dten_at(work, ncol) : w;
    if (ops_has(dw)) {
        OPS_REQUIRE(ops_has(in), op, "dw needs the forward input");
        dten col = in, dst = p.windowed ? wt : dw;
        // dw (O, CKK) = dout (O, NP) x col^T
        if (conv_panels(ops, &p)) {
            if (!col_ready) op_im2col_panels(ops, work, in, e);
            op_gemm_nt_panels(ops, s->o, ckk, np, 1.0f, dout, np, work, 0.0f, dst, ckk);
        } else {
            if (ncol) {
                if (!col_ready) op_im2col(ops, work, in, e);
                col = work;
            }
            op_gemm(ops, 0, 1, s->o, ckk, np, 1.0f, dout, np, col, np, 0.0f, dst, ckk);
        }
        if (p.windowed) weight_unwindow(rt, dw, wt, s, &p);
    }
    if (ops_has(din)) {
        OPS_REQUIRE(ops_has(w), op, "din needs the weights");
        if (dgrad_shape(&p) && conv_panels(ops, &p)) {
            dgrad_as_conv(ops, din, dout, w, s, work, ncol);
            return;
        }
        if (p.windowed) weight_window(rt, wt, w, s, &p);
        // dcol (CKK, NP) = w^T (CKK, O) x dout (O, NP), then gathered back into din.
        dten dcol = ncol ? work : din;
        op_gemm(ops, 1, 0, ckk, np, s->o, 1.0f, wt, ckk, dout, np, 0.0f, dcol, np);
        if (ncol) op_col2im(ops, din, work, e);
    }
}

void op_conv2d_backward(ops_ctx *ops, dten din, dten dw, dten dout, dten in, dten w,
                        const conv_shape *s, dten work) {
    conv_backward(ops, din, dw, dout, in, w, s, work, 0, "op_conv2d_backward");
}

void op_conv2d_backward_col(ops_ctx *ops, dten din, dten dw, dten dout, dten in, dten w,
                            const conv_shape *s, dten work) {
    conv_backward(ops, din, dw, dout, in, w, s, work, 1, "op_conv2d_backward_col");
}

// ---- linear ----

// out (K, N) = b (K) broadcast along each row: the GEMM then adds w x.
static void linear_bias_fill(clrt *rt, dten out, dten b, int k, int n) {
    cl_kernel kr = ops_kernel_ten(rt, "linear_bias_fill", (dten[]){out, b}, 2);
    CLRT_ARG(kr, 4, k);
    CLRT_ARG(kr, 5, n);
    clrt_launch1d(rt, kr, (size_t)k * n);
}

// db (K) = row sums of dout (K, N), each summed by one work item in column order.
static void linear_bias_grad(clrt *rt, dten db, dten dout, int k, int n) {
    cl_kernel kr = ops_kernel_ten(rt, "linear_bias_grad", (dten[]){db, dout}, 2);
    CLRT_ARG(kr, 4, k);
    CLRT_ARG(kr, 5, n);
    clrt_launch1d(rt, kr, (size_t)k);
}

static void linear_check(int k, int i, int n, const char *op) {
    OPS_REQUIRE(k > 0 && i > 0 && n > 0, op, "bad sizes k=%d i=%d n=%d", k, i, n);
    ops_int((size_t)k * n, op, "K*N");
    ops_int((size_t)k * i, op, "K*I");
    ops_int((size_t)i * n, op, "I*N");
}

void op_linear_forward(ops_ctx *ops, dten out, dten x, dten w, dten b, int k, int i, int n) {
    clrt *rt = ops->rt;
    const char *op = "op_linear_forward";
    linear_check(k, i, n, op);
    OPS_REQUIRE(ops_has(out) && ops_has(x) && ops_has(w) && ops_has(b), op, "missing buffer");
    linear_bias_fill(rt, out, b, k, n);
    // out (K, N) += w (K, I) x x (I, N)
    op_gemm(ops, 0, 0, k, n, i, 1.0f, w, i, x, n, 1.0f, out, n);
}

void op_linear_backward(ops_ctx *ops, dten dx, dten dw, dten db, dten dout, dten x, dten w,
                        int k, int i, int n) {
    clrt *rt = ops->rt;
    const char *op = "op_linear_backward";
    linear_check(k, i, n, op);
    OPS_REQUIRE(ops_has(dout), op, "missing dout");
    if (ops_has(dx)) {
        OPS_REQUIRE(ops_has(w), op, "dx needs the weights");
        // dx (I, N) = w^T (I, K) x dout (K, N)
        op_gemm(ops, 1, 0, i, n, k, 1.0f, w, i, dout, n, 0.0f, dx, n);
    }
    if (ops_has(dw)) {
        OPS_REQUIRE(ops_has(x), op, "dw needs the forward input");
        // dw (K, I) = dout (K, N) x x^T (N, I)
        op_gemm(ops, 0, 1, k, i, n, 1.0f, dout, n, x, n, 0.0f, dw, i);
    }
    if (ops_has(db)) linear_bias_grad(rt, db, dout, k, n);
}
