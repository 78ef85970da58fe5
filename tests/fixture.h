// fixture: reader of the PyTorch reference files of tests/fixtures/ (written by
// tools/make_fixtures.py), layout helpers between PyTorch's and cltrain's layouts, and the
// counter-based generator of the ResNet18 weights that resnet18_32x2.bin was computed with.
//
// File format "CLFX" version 1, little-endian:
//   magic "CLFX", u32 version, u32 count; per tensor: u16 name length, name bytes (no NUL),
//   u8 dtype (0 float32, 1 int32, 2 int64), u8 ndim, ndim x i64 dims (PyTorch's shape:
//   NCHW, OIHW, (N, K)), then the raw data in C order. Scalars have shape [1].
//
// ResNet18 weight generator (the same definition heads tools/make_fixtures.py):
//   t = the tensor's index in torchvision resnet18(num_classes=10).state_dict() order
//       (0..121, num_batches_tracked entries included); i = C-order element index.
//   splitmix64(x): z = x + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
//                  z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)  (mod 2^64)
//   u = (splitmix64(0x5EED0000 + t * 2^32 + i) >> 40) * 2^-24     exact, in [0, 1)
//   conv weight (O, C, KH, KW): (2u - 1) * sqrt(6 / fan_in), fan_in = C*KH*KW
//   bn weight 0.8 + 0.4u; bn bias 0.2u - 0.1; running_mean 0.2u - 0.1; running_var 0.5 + u;
//   num_batches_tracked 0; fc weight and bias (2u - 1) / sqrt(512)
//   Each value is computed in double (no fused multiply-add) and rounded once to float.
//   Input images: kind FIXTURE_PARAM_UNIFORM (u itself) with t = 1000, shape (B, 3, 32, 32):
//   resnet18_32x2.bin B = 2, labels [3, 7]; resnet18_32x8.bin B = 8 (its first two images
//   are the same), labels [3, 7, 0, 9, 1, 5, 2, 8]. Batch 2 leaves layer4's batch norms two
//   values per channel: its train-mode gradients are ill-conditioned (PyTorch float32 is up
//   to ~3e-2 of max|grad| from float64); batch 8 brings that to ~2e-5.
#ifndef CLTRAIN_FIXTURE_H
#define CLTRAIN_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define FIXTURE_VERSION 1
#define FIXTURE_MAX_DIMS 8

typedef enum fixture_dtype {
    FIXTURE_F32 = 0,
    FIXTURE_I32 = 1,
    FIXTURE_I64 = 2
} fixture_dtype;

typedef struct fixture_tensor {
    char *name;                        // NUL-terminated copy
    fixture_dtype dtype;
    int ndim;
    int64_t dims[FIXTURE_MAX_DIMS];    // PyTorch's shape
    size_t numel;
    void *data;                        // numel elements of dtype, aligned (malloc'd)
} fixture_tensor;

typedef struct fixture {
    fixture_tensor *tensors;           // (count)
    int count;
    char path[512];
} fixture;

// Read the fixture file `path`. Returns 0, or -1 with a message in err (a missing, truncated
// or stale file; the message names tools/make_fixtures.py, which regenerates it). On failure
// *f is left empty (fixture_free is still safe).
int fixture_load(fixture *f, const char *path, char *err, size_t errlen);
// Load tests/fixtures/<name>, or $CLTRAIN_FIXTURES/<name> when that variable is set.
int fixture_load_named(fixture *f, const char *name, char *err, size_t errlen);
void fixture_free(fixture *f);         // accepts a zeroed or half-built struct

// The tensor called `name`, or NULL (tests assert on it).
const fixture_tensor *fixture_get(const fixture *f, const char *name);
// Data pointers, or NULL when the tensor has another dtype.
const float *fixture_f32(const fixture_tensor *t);
const int32_t *fixture_i32(const fixture_tensor *t);
const int64_t *fixture_i64(const fixture_tensor *t);
// The size of dimension d (1 beyond ndim, so an (N, C) tensor reads as (N, C, 1, 1)).
int fixture_dim(const fixture_tensor *t, int d);

// ---- layouts ----
// PyTorch (N, C, H, W) -> cltrain (C, N, H, W), and back.
void fixture_nchw_to_cnhw(float *dst, const float *src, int n, int c, int h, int w);
void fixture_cnhw_to_nchw(float *dst, const float *src, int n, int c, int h, int w);
// Row-major (rows, cols) -> (cols, rows): PyTorch (N, K) logits -> cltrain (K, N) with
// rows = N, cols = K; and back with rows = K, cols = N.
void fixture_transpose(float *dst, const float *src, int rows, int cols);

// ---- ResNet18 weight generator ----
typedef enum fixture_param_kind {
    FIXTURE_PARAM_CONV,            // (2u - 1) * sqrt(6 / fan_in)
    FIXTURE_PARAM_BN_WEIGHT,       // 0.8 + 0.4u
    FIXTURE_PARAM_BN_BIAS,         // 0.2u - 0.1
    FIXTURE_PARAM_RUNNING_MEAN,    // 0.2u - 0.1
    FIXTURE_PARAM_RUNNING_VAR,     // 0.5 + u
    FIXTURE_PARAM_FC,              // (2u - 1) / sqrt(512), weight and bias
    FIXTURE_PARAM_ZERO,            // num_batches_tracked
    FIXTURE_PARAM_UNIFORM          // u (the input images, t = 1000)
} fixture_param_kind;

// u for element i of tensor t: (splitmix64(0x5EED0000 + t * 2^32 + i) >> 40) * 2^-24.
double fixture_resnet_u(int tensor_index, uint64_t i);
// dst[j] = value of element first + j of tensor `tensor_index`, j < n. fan_in is used by
// FIXTURE_PARAM_CONV only (C*KH*KW).
void fixture_resnet_param(float *dst, size_t n, int tensor_index, fixture_param_kind kind,
                          int fan_in, uint64_t first);
// The kind of a torchvision ResNet18 state_dict entry from its name ("layer2.0.downsample.0
// .weight" -> CONV, "...downsample.1.weight" -> BN_WEIGHT, "fc.bias" -> FC, ...).
fixture_param_kind fixture_resnet_kind(const char *name);

#endif
