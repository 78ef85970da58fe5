// Image transforms reproducing torchvision's on PIL images: the seed's [RandomCrop(padding=4) +
// RandomHorizontalFlip] -> Resize((S,S)), the ImageNet recipes Resize(N) -> CenterCrop(S) and
// RandomResizedCrop(S) -> RandomHorizontalFlip, then ToTensor() -> Normalize.
#ifndef CLTRAIN_TRANSFORM_H
#define CLTRAIN_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

// ImageNet statistics used by torchvision's pretrained models, per RGB channel.
#define TRANSFORM_IMAGENET_MEAN {0.485f, 0.456f, 0.406f}
#define TRANSFORM_IMAGENET_STD  {0.229f, 0.224f, 0.225f}

// A planned PIL BILINEAR resize of one uint8 plane (sh, sw) -> (dh, dw): the coefficient tables
// and the scratch row buffer are built once by _init, so _apply allocates nothing.
typedef struct transform_resize {
    int sh, sw, dh, dw;
    int need_h, need_v;     // PIL skips a pass whose dimension is unchanged
    int ksize_h, ksize_v;   // coefficients per output pixel
    int *bounds_h;          // (dw, 2): first source column, number of columns
    int *bounds_v;          // (dh, 2): first source row, number of rows
    int32_t *k_h;           // (dw, ksize_h) fixed-point weights, 22 fractional bits
    int32_t *k_v;           // (dh, ksize_v)
    uint8_t *tmp;           // (sh, dw) result of the horizontal pass
    int32_t *acc;           // (dw) accumulators of the vertical pass
} transform_resize;

// Returns 0, or nonzero for bad sizes (< 1 or > 65536) or out of memory.
int  transform_resize_init(transform_resize *r, int dh, int dw, int sh, int sw);
// dst (dh, dw), src (sh, sw); dst and src must not overlap. Uses r->tmp: one thread per plan.
void transform_resize_apply(transform_resize *r, uint8_t *dst, const uint8_t *src);
// Only the output window rows [y0, y1) x columns [x0, x1), written to dst with row stride ds;
// src rows have stride sstride (a plane inside a larger one). The bytes equal the same window
// of transform_resize_apply's output. An empty or out-of-range window writes nothing.
void transform_resize_window(transform_resize *r, uint8_t *dst, size_t ds, const uint8_t *src,
                             size_t sstride, int y0, int y1, int x0, int x1);
// Accepts a zeroed or half-built plan.
void transform_resize_free(transform_resize *r);

// One-shot PIL Image.resize((dw, dh), BILINEAR) of a single plane, as torchvision's Resize((dh, dw))
// does on a PIL image. dst (dh, dw), src (sh, sw). Returns 0, or nonzero on bad sizes / no memory.
int transform_resize_u8(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw);

// torchvision ToTensor(): dst[i] = src[i] / 255 in float32 (img.float().div(255)). dst, src (n).
void transform_to_tensor(float *dst, const uint8_t *src, size_t n);

// torchvision Normalize for one plane: x = (x - mean) / std in float32 (F.normalize's
// tensor.sub_(mean).div_(std)). x (n).
void transform_normalize(float *x, size_t n, float mean, float std);

// The geometry of torchvision RandomCrop((h, w), padding=pad) followed by RandomHorizontalFlip:
// zero-pad by `pad` on all sides, take the (h, w) window whose top-left corner in the padded image
// is (top, left) with 0 <= top, left <= 2*pad, then mirror left-right if `flip`.
// dst, src (c, h, w) planar; must not overlap.
void transform_flip_crop_u8(uint8_t *dst, const uint8_t *src, int c, int h, int w,
                            int pad, int top, int left, int flip);

// torchvision Resize(size) with an int: the shorter side becomes `size`, the longer
// int(size * long / short) (truncated). (h, w) -> (*oh, *ow).
void transform_shorter_side(int h, int w, int size, int *oh, int *ow);

// torchvision CenterCrop(size)'s window in an (h, w) image: top = int(round((h - size) / 2))
// (round half to even), likewise left; a side shorter than `size` is zero-padded first
// (padding (size - h) // 2 before), which puts the window at a negative offset.
void transform_center_box(int h, int w, int size, int *top, int *left);

// dst (c, bh, bw) = the window of src (c, h, w) at (top, left); zeros outside the image
// (PIL's crop of a box reaching outside). dst and src must not overlap.
void transform_crop_u8(uint8_t *dst, int bh, int bw, const uint8_t *src, int c, int h, int w,
                       int top, int left);

// torchvision RandomResizedCrop.get_params(scale=(0.08, 1), ratio=(3/4, 4/3)) on an (h, w)
// image: 10 attempts of area * U(scale), exp(U(log ratio)), rounded sides, then the centred
// fallback. The uniform draws come from `uniform(ctx, k)` (k = 0, 1, ... each a number in
// [0, 1)), not from torch's generator: the distribution is torchvision's, the draws are ours.
typedef double (*transform_uniform_fn)(void *ctx, int k);
void transform_rrc_box(int h, int w, transform_uniform_fn uniform, void *ctx, int *top,
                       int *left, int *bh, int *bw);

// Mirrors every row of x (c, h, w) in place (torchvision hflip).
void transform_hflip_u8(uint8_t *x, int c, int h, int w);

// One image's geometric pipeline to (c, S, S), as a composition of the above.
typedef enum transform_kind {
    TRANSFORM_SQUARE = 0,   // Resize((S, S)) of the whole image (the seed's pipeline)
    TRANSFORM_CENTER,       // Resize(resize) -> CenterCrop(S)
    TRANSFORM_BOX,          // crop (top, left, bh, bw) -> Resize((S, S)) -> hflip if `flip`
                            // (torchvision RandomResizedCrop's resized_crop + RandomHorizontalFlip)
} transform_kind;

typedef struct transform_op {
    transform_kind kind;
    int size;                     // S
    int resize;                   // TRANSFORM_CENTER: the shorter side before the crop
    int top, left, bh, bw, flip;  // TRANSFORM_BOX
} transform_op;

// Buffers and the last resize plan, reused across images (one per thread).
typedef struct transform_scratch {
    uint8_t *buf;                 // intermediate (c, h, w) image
    size_t cap;
    transform_resize plan;
    int have_plan;
} transform_scratch;

// dst (c, S, S) from src (c, h, w). Returns 0, or nonzero for bad sizes / out of memory.
int  transform_apply(uint8_t *dst, const uint8_t *src, int c, int h, int w,
                     const transform_op *op, transform_scratch *s);
// Accepts a zeroed scratch.
void transform_scratch_free(transform_scratch *s);

#endif
