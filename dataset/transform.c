#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "dataset/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Pillow's fixed-point resampling (libImaging/Resample.c): 32 - 8 (uint8 range) - 2 (headroom).
#define RESIZE_PRECISION_BITS (32 - 8 - 2)
#define RESIZE_MAX_SIDE 65536

// PIL's BILINEAR filter: a triangle of support 1.
static double resize_triangle(double x)
{
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

// PIL's clip8: the accumulator carries a +0.5 rounding term, so the shift rounds half up.
// Pillow's accumulator is an int (22 fractional bits leave room for 255 x weights summing to 1).
static uint8_t resize_clip8(int32_t ss)
{
    if (ss <= 0) return 0;
    if (ss >= ((int32_t)256 << RESIZE_PRECISION_BITS)) return 255;
    return (uint8_t)(ss >> RESIZE_PRECISION_BITS);
}

// PIL precompute_coeffs + normalize_coeffs_8bpc for the full box [0, in): for every output pixel,
// the source window [xmin, xmin + cnt) and its weights, normalised to sum 1 then rounded to 22-bit
// fixed point. The filter widens by in/out when downscaling (antialiasing). Returns ksize or -1.
static int resize_coeffs(int in, int out, int **bounds_out, int32_t **k_out)
{
    double scale = (double)in / out;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out);
    int32_t *k = calloc((size_t)out * (size_t)ksize, sizeof(int32_t));
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !k || !w) {
        free(bounds); free(k); free(w);
        return -1;
    }
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale;
        double ss = 1.0 / filterscale, ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        int xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = resize_triangle((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            double f = v * (1 << RESIZE_PRECISION_BITS);
            k[(size_t)xx * ksize + x] = (int32_t)(v < 0 ? f - 0.5 : f + 0.5);
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(w);
    *bounds_out = bounds;
    *k_out = k;
    return ksize;
}

int transform_resize_init(transform_resize *r, int dh, int dw, int sh, int sw)
{
    memset(r, 0, sizeof(*r));
    if (dh < 1 || dw < 1 || sh < 1 || sw < 1 || dh > RESIZE_MAX_SIDE || dw > RESIZE_MAX_SIDE ||
        sh > RESIZE_MAX_SIDE || sw > RESIZE_MAX_SIDE)
        return 1;
    r->sh = sh; r->sw = sw; r->dh = dh; r->dw = dw;
    r->need_h = dw != sw;
    r->need_v = dh != sh;
    r->ksize_h = resize_coeffs(sw, dw, &r->bounds_h, &r->k_h);
    r->ksize_v = resize_coeffs(sh, dh, &r->bounds_v, &r->k_v);
    r->tmp = malloc((size_t)sh * (size_t)dw);
    r->acc = malloc((size_t)dw * sizeof(int32_t));
    if (r->ksize_h < 0 || r->ksize_v < 0 || !r->tmp || !r->acc) {
        transform_resize_free(r);
        return 1;
    }
    return 0;
}

void transform_resize_free(transform_resize *r)
{
    if (!r) return;
    free(r->bounds_h); free(r->bounds_v);
    free(r->k_h); free(r->k_v);
    free(r->tmp);
    free(r->acc);
    memset(r, 0, sizeof(*r));
}

// PIL ImagingResampleHorizontal_8bpc on the output columns [x0, x1) of source rows [r0, r1):
// src rows of stride sstride, dst (r1 - r0, x1 - x0) with row stride ds.
static void resize_pass_h(const transform_resize *r, uint8_t *dst, size_t ds, const uint8_t *src,
                          size_t sstride, int r0, int r1, int x0, int x1)
{
    for (int y = r0; y < r1; y++) {
        const uint8_t *s = src + (size_t)y * sstride;
        uint8_t *d = dst + (size_t)(y - r0) * ds;
        for (int xx = x0; xx < x1; xx++) {
            int xmin = r->bounds_h[2 * xx], cnt = r->bounds_h[2 * xx + 1];
            const int32_t *k = r->k_h + (size_t)xx * r->ksize_h;
            int32_t ss = 1 << (RESIZE_PRECISION_BITS - 1);
            for (int x = 0; x < cnt; x++) ss += (int32_t)s[xmin + x] * k[x];
            d[xx - x0] = resize_clip8(ss);
        }
    }
}

// PIL ImagingResampleVertical_8bpc on the output rows [y0, y1), w columns: src holds source
// rows from row0 on (stride sstride), dst has row stride ds. A row of accumulators at a time,
// so the inner loop runs along contiguous columns; integer sums do not depend on the order.
static void resize_pass_v(const transform_resize *r, uint8_t *dst, size_t ds, const uint8_t *src,
                          size_t sstride, int row0, int y0, int y1, int w)
{
    int32_t *acc = r->acc;
    for (int yy = y0; yy < y1; yy++) {
        int ymin = r->bounds_v[2 * yy] - row0, cnt = r->bounds_v[2 * yy + 1];
        const int32_t *k = r->k_v + (size_t)yy * r->ksize_v;
        for (int x = 0; x < w; x++) acc[x] = 1 << (RESIZE_PRECISION_BITS - 1);
        for (int y = 0; y < cnt; y++) {
            const uint8_t *row = src + (size_t)(ymin + y) * sstride;
            int32_t ky = k[y];
            for (int x = 0; x < w; x++) acc[x] += (int32_t)row[x] * ky;
        }
        uint8_t *d = dst + (size_t)(yy - y0) * ds;
        for (int x = 0; x < w; x++) d[x] = resize_clip8(acc[x]);
    }
}

// PIL ImagingResampleInner: horizontal pass first, each pass rounded to uint8, an unchanged
// dimension's pass skipped (Image.resize to the same size is a copy). Only the output window
// is computed, and the horizontal pass only on the source rows that window reads: each output
// pixel depends on its own coefficients alone, so the bytes are those of the whole resize.
void transform_resize_window(transform_resize *r, uint8_t *dst, size_t ds, const uint8_t *src,
                             size_t sstride, int y0, int y1, int x0, int x1)
{
    int w = x1 - x0;
    if (y0 < 0 || x0 < 0 || y1 > r->dh || x1 > r->dw || y0 >= y1 || w <= 0) return;
    if (r->need_h && r->need_v) {
        int r0 = r->bounds_v[2 * y0], r1 = r0;
        for (int yy = y0; yy < y1; yy++) {
            int end = r->bounds_v[2 * yy] + r->bounds_v[2 * yy + 1];
            if (end > r1) r1 = end;
            if (r->bounds_v[2 * yy] < r0) r0 = r->bounds_v[2 * yy];
        }
        resize_pass_h(r, r->tmp, (size_t)w, src, sstride, r0, r1, x0, x1);
        resize_pass_v(r, dst, ds, r->tmp, (size_t)w, r0, y0, y1, w);
    } else if (r->need_h) {
        resize_pass_h(r, dst, ds, src, sstride, y0, y1, x0, x1);
    } else if (r->need_v) {
        resize_pass_v(r, dst, ds, src + x0, sstride, 0, y0, y1, w);
    } else {
        for (int y = y0; y < y1; y++)
            memcpy(dst + (size_t)(y - y0) * ds, src + (size_t)y * sstride + x0, (size_t)w);
    }
}

void transform_resize_apply(transform_resize *r, uint8_t *dst, const uint8_t *src)
{
    transform_resize_window(r, dst, (size_t)r->dw, src, (size_t)r->sw, 0, r->dh, 0, r->dw);
}

int transform_resize_u8(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw)
{
    transform_resize r;
    if (transform_resize_init(&r, dh, dw, sh, sw)) return 1;
    transform_resize_apply(&r, dst, src);
    transform_resize_free(&r);
    return 0;
}

void transform_to_tensor(float *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i] / 255.0f;
}

void transform_normalize(float *x, size_t n, float mean, float std)
{
    for (size_t i = 0; i < n; i++) x[i] = (x[i] - mean) / std;
}

void transform_flip_crop_u8(uint8_t *dst, const uint8_t *src, int c, int h, int w,
                            int pad, int top, int left, int flip)
{
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *s = src + (size_t)ch * h * w;
        uint8_t *d = dst + (size_t)ch * h * w;
        for (int y = 0; y < h; y++) {
            int sy = y + top - pad;
            for (int x = 0; x < w; x++) {
                int sx = (flip ? w - 1 - x : x) + left - pad;
                int inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
                d[(size_t)y * w + x] = inside ? s[(size_t)sy * w + sx] : 0;
            }
        }
    }
}

void transform_shorter_side(int h, int w, int size, int *oh, int *ow)
{
    int s = w <= h ? w : h, l = w <= h ? h : w;
    int nl = (int)((double)size * (double)l / (double)s);  // both products exact in double
    *ow = w <= h ? size : nl;
    *oh = w <= h ? nl : size;
}

static int center_offset(int side, int size)
{
    if (size > side) return -((size - side) / 2);
    return (int)nearbyint((side - size) / 2.0);  // Python round(): half to even
}

void transform_center_box(int h, int w, int size, int *top, int *left)
{
    *top = center_offset(h, size);
    *left = center_offset(w, size);
}

void transform_crop_u8(uint8_t *dst, int bh, int bw, const uint8_t *src, int c, int h, int w,
                       int top, int left)
{
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < bh; y++) {
            uint8_t *d = dst + ((size_t)ch * bh + y) * bw;
            int sy = top + y;
            if (sy < 0 || sy >= h) {
                memset(d, 0, (size_t)bw);
                continue;
            }
            const uint8_t *s = src + ((size_t)ch * h + sy) * w;
            for (int x = 0; x < bw; x++) {
                int sx = left + x;
                d[x] = sx >= 0 && sx < w ? s[sx] : 0;
            }
        }
}

static int rrc_randint(double u, int n)  // torch.randint(0, n): uniform in [0, n)
{
    int v = (int)(u * n);
    return v < n ? v : n - 1;
}

void transform_rrc_box(int h, int w, transform_uniform_fn uniform, void *ctx, int *top,
                       int *left, int *bh, int *bw)
{
    const double smin = 0.08, smax = 1.0, rmin = 3.0 / 4.0, rmax = 4.0 / 3.0;
    double area = (double)h * w, lmin = log(rmin), lmax = log(rmax);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (smin + (smax - smin) * uniform(ctx, 4 * attempt));
        double aspect = exp(lmin + (lmax - lmin) * uniform(ctx, 4 * attempt + 1));
        int cw = (int)nearbyint(sqrt(target * aspect)), ch = (int)nearbyint(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            *top = rrc_randint(uniform(ctx, 4 * attempt + 2), h - ch + 1);
            *left = rrc_randint(uniform(ctx, 4 * attempt + 3), w - cw + 1);
            *bh = ch; *bw = cw;
            return;
        }
    }
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < rmin) ch = (int)nearbyint(w / rmin);
    else if (in_ratio > rmax) cw = (int)nearbyint(h * rmax);
    *bh = ch; *bw = cw;
    *top = (h - ch) / 2;
    *left = (w - cw) / 2;
}

void transform_hflip_u8(uint8_t *x, int c, int h, int w)
{
    for (size_t r = 0; r < (size_t)c * h; r++) {
        uint8_t *row = x + r * w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            uint8_t t = row[a]; row[a] = row[b]; row[b] = t;
        }
    }
}

void transform_scratch_free(transform_scratch *s)
{
    if (!s) return;
    free(s->buf);
    if (s->have_plan) transform_resize_free(&s->plan);
    memset(s, 0, sizeof(*s));
}

static int scratch_plan(transform_scratch *s, int dh, int dw, int sh, int sw)
{
    transform_resize *p = &s->plan;
    if (s->have_plan && p->dh == dh && p->dw == dw && p->sh == sh && p->sw == sw) return 0;
    if (s->have_plan) transform_resize_free(p);
    s->have_plan = transform_resize_init(p, dh, dw, sh, sw) == 0;
    return !s->have_plan;
}

static uint8_t *scratch_buf(transform_scratch *s, int c, int h, int w)
{
    size_t need = (size_t)c * h * w;
    if (need > s->cap) {
        uint8_t *p = realloc(s->buf, need);
        if (!p) return NULL;
        s->buf = p;
        s->cap = need;
    }
    return s->buf;
}

// Every plane of src (c, sh, sw) resized to dst (c, dh, dw).
static int resize_planes(transform_scratch *s, uint8_t *dst, int dh, int dw, const uint8_t *src,
                         int c, int sh, int sw)
{
    if (scratch_plan(s, dh, dw, sh, sw)) return 1;
    for (int ch = 0; ch < c; ch++)
        transform_resize_apply(&s->plan, dst + (size_t)ch * dh * dw, src + (size_t)ch * sh * sw);
    return 0;
}

int transform_apply(uint8_t *dst, const uint8_t *src, int c, int h, int w,
                    const transform_op *op, transform_scratch *s)
{
    int S = op->size;
    if (op->kind == TRANSFORM_SQUARE) return resize_planes(s, dst, S, S, src, c, h, w);
    if (op->kind == TRANSFORM_CENTER) {
        int oh, ow, top, left;
        transform_shorter_side(h, w, op->resize, &oh, &ow);
        transform_center_box(oh, ow, S, &top, &left);
        if (top >= 0 && left >= 0 && top + S <= oh && left + S <= ow) {
            // Resize then CenterCrop: only the crop's window of the resize is computed.
            if (scratch_plan(s, oh, ow, h, w)) return 1;
            for (int ch = 0; ch < c; ch++)
                transform_resize_window(&s->plan, dst + (size_t)ch * S * S, (size_t)S,
                                        src + (size_t)ch * h * w, (size_t)w, top, top + S, left,
                                        left + S);
            return 0;
        }
        uint8_t *mid = scratch_buf(s, c, oh, ow);
        if (!mid || resize_planes(s, mid, oh, ow, src, c, h, w)) return 1;
        transform_crop_u8(dst, S, S, mid, c, oh, ow, top, left);
        return 0;
    }
    if (op->bh < 1 || op->bw < 1) return 1;
    if (op->top >= 0 && op->left >= 0 && op->top + op->bh <= h && op->left + op->bw <= w) {
        // RandomResizedCrop's box lies inside the image: resize straight from it.
        if (scratch_plan(s, S, S, op->bh, op->bw)) return 1;
        for (int ch = 0; ch < c; ch++)
            transform_resize_window(&s->plan, dst + (size_t)ch * S * S, (size_t)S,
                                    src + ((size_t)ch * h + op->top) * w + op->left, (size_t)w,
                                    0, S, 0, S);
    } else {
        uint8_t *box = scratch_buf(s, c, op->bh, op->bw);
        if (!box) return 1;
        transform_crop_u8(box, op->bh, op->bw, src, c, h, w, op->top, op->left);
        if (resize_planes(s, dst, S, S, box, c, op->bh, op->bw)) return 1;
    }
    if (op->flip) transform_hflip_u8(dst, c, S, S);
    return 0;
}
