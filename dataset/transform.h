// Image transforms reproducing the torchvision pipeline the seed runs on PIL images:
// [RandomCrop(padding=4) + RandomHorizontalFlip] -> Resize((S,S)) -> ToTensor() -> Normalize.
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
} transform_resize;

// Returns 0, or nonzero for bad sizes (< 1 or > 65536) or out of memory.
int  transform_resize_init(transform_resize *r, int dh, int dw, int sh, int sw);
// dst (dh, dw), src (sh, sw); dst and src must not overlap. Uses r->tmp: one thread per plan.
void transform_resize_apply(transform_resize *r, uint8_t *dst, const uint8_t *src);
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

#endif
