// ckpt: checkpoints as a flat, ordered list of named entries, read from and
// written to PyTorch zip files (torch.save, PyTorch >= 1.6) and safetensors.
//
// Nested dicts in a file are flattened with '.' ("state_dict.conv1.weight");
// stripping such prefixes (or "module.") is the model layer's job.
// Float tensors of any file dtype (F16, BF16, F64) are held as F32; integer
// and bool tensors as I64. A torch 0-dim tensor has ndim 0 and numel 1.
#ifndef CKPT_H
#define CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CKPT_MAX_DIMS 8

typedef enum { CKPT_TENSOR, CKPT_INT, CKPT_FLOAT, CKPT_STRING } ckpt_kind;
typedef enum { CKPT_F32, CKPT_I64 } ckpt_dtype;

typedef struct ckpt_entry {
    char *name;                       // owned, NUL-terminated
    ckpt_kind kind;
    ckpt_dtype dtype;                 // CKPT_TENSOR only
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];     // (shape[0], ..., shape[ndim-1])
    int64_t numel;                    // product of shape; 1 when ndim == 0
    void *data;                       // float* or int64_t*, numel elements, C order (owned)
    int64_t ival;                     // CKPT_INT (Python bools arrive as 0/1)
    double fval;                      // CKPT_FLOAT
    char *sval;                       // CKPT_STRING (owned)
} ckpt_entry;

typedef struct ckpt {
    ckpt_entry *e;                    // (n) entries in file order
    int n, cap;
} ckpt;

void ckpt_init(ckpt *c);
void ckpt_free(ckpt *c);              // accepts a zeroed or half-filled ckpt

// The add functions copy name and data, return 0 or -1 (out of memory, bad
// shape). They do not check for duplicate names; ckpt_write does.
int ckpt_add_tensor_f32(ckpt *c, const char *name, int ndim, const int64_t *shape,
                        const float *data);
int ckpt_add_tensor_i64(ckpt *c, const char *name, int ndim, const int64_t *shape,
                        const int64_t *data);
int ckpt_add_int(ckpt *c, const char *name, int64_t v);
int ckpt_add_float(ckpt *c, const char *name, double v);
int ckpt_add_string(ckpt *c, const char *name, const char *s);

// Index of the first entry called name, or -1.
int ckpt_find(const ckpt *c, const char *name);

// Reads a checkpoint chosen by content: a zip is a PyTorch file, a
// ".safetensors" name or a safetensors header is safetensors, the legacy
// (pre-1.6, non-zip) PyTorch format is refused with advice. c must be freshly
// initialised; on failure it is left empty. Returns 0, or -1 with one line in err.
int ckpt_read(ckpt *c, const char *path, char *err, size_t errlen);

// Writes safetensors for a ".safetensors" name, else a PyTorch zip that
// torch.load(path, weights_only=True) accepts. Atomic: a temp file in the same
// folder is fsynced and renamed over path; on failure path is untouched.
// Ints are pickled as BININT/LONG1, strings as BINUNICODE, floats as BINFLOAT:
// PyTorch 1.13's weights_only unpickler lacks BINFLOAT, so a file with float
// scalars loads there only with weights_only=False (tensors, ints, strings load).
// Returns 0, or -1 with one line in err.
int ckpt_write(const ckpt *c, const char *path, char *err, size_t errlen);

// --- format back ends (used by ckpt.c; tests may call them directly) ---

// fname is the name used in messages. Readers append to an empty c.
int pth_read(ckpt *c, const char *path, const char *fname, char *err, size_t errlen);
// top: the zip's top folder name ([A-Za-z0-9_]+).
int pth_write(const ckpt *c, FILE *f, const char *top, const char *fname,
              char *err, size_t errlen);
int safetensors_read(ckpt *c, const char *path, const char *fname, char *err, size_t errlen);
// Ints, floats and strings go into "__metadata__" as strings, with their kinds
// listed under the metadata key "cltrain.scalar_kinds" so that ckpt_read
// restores them exactly; other metadata comes back as CKPT_STRING.
int safetensors_write(const ckpt *c, FILE *f, const char *fname, char *err, size_t errlen);

// Shared helpers for the back ends.
// Returns -1 after formatting one line into err (err may be NULL).
int ckpt_errf(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
// Appends an entry that takes ownership of data (malloc'ed); frees it on failure.
int ckpt_add_tensor_owned(ckpt *c, const char *name, ckpt_dtype dtype, int ndim,
                          const int64_t *shape, void *data);
// Checks names are unique (sorting a copy); on a duplicate formats the error.
int ckpt_check_unique(const ckpt *c, const char *fname, char *err, size_t errlen);
// IEEE half / bfloat16 bits to float, as torch's .float() does.
float ckpt_half_to_f32(uint16_t h);
float ckpt_bf16_to_f32(uint16_t b);
// Product of shape with overflow check; -1 on overflow or negative dims.
int64_t ckpt_numel(int ndim, const int64_t *shape);

#endif
