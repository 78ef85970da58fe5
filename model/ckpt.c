// The in-memory state dict, dispatch by file content, and atomic writes.
#define _POSIX_C_SOURCE 200809L
#include "model/ckpt.h"
#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ckpt_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void ckpt_init(ckpt *c) { memset(c, 0, sizeof(*c)); }

void ckpt_free(ckpt *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free(c->e[i].name);
        free(c->e[i].data);
        free(c->e[i].sval);
    }
    free(c->e);
    memset(c, 0, sizeof(*c));
}

int64_t ckpt_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    if (ndim < 0 || ndim > CKPT_MAX_DIMS) return -1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

// Appends a zeroed entry with a copy of name; returns it or NULL.
static ckpt_entry *add_entry(ckpt *c, const char *name, ckpt_kind kind) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        if (cap < c->cap || (size_t)cap > SIZE_MAX / sizeof(ckpt_entry)) return NULL;
        ckpt_entry *e = realloc(c->e, (size_t)cap * sizeof(ckpt_entry));
        if (!e) return NULL;
        c->e = e;
        c->cap = cap;
    }
    char *copy = strdup(name ? name : "");
    if (!copy) return NULL;
    ckpt_entry *e = &c->e[c->n++];
    memset(e, 0, sizeof(*e));
    e->name = copy;
    e->kind = kind;
    return e;
}

int ckpt_add_tensor_owned(ckpt *c, const char *name, ckpt_dtype dtype, int ndim,
                          const int64_t *shape, void *data) {
    int64_t numel = ckpt_numel(ndim, shape);
    ckpt_entry *e = numel < 0 ? NULL : add_entry(c, name, CKPT_TENSOR);
    if (!e) {
        free(data);
        return -1;
    }
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->numel = numel;
    e->data = data;
    return 0;
}

static int add_tensor_copy(ckpt *c, const char *name, ckpt_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, size_t esize) {
    int64_t numel = ckpt_numel(ndim, shape);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / esize) return -1;
    size_t nbytes = (size_t)numel * esize;
    void *copy = malloc(nbytes ? nbytes : 1);
    if (!copy) return -1;
    if (nbytes) memcpy(copy, data, nbytes);
    return ckpt_add_tensor_owned(c, name, dtype, ndim, shape, copy);
}

int ckpt_add_tensor_f32(ckpt *c, const char *name, int ndim, const int64_t *shape,
                        const float *data) {
    return add_tensor_copy(c, name, CKPT_F32, ndim, shape, data, sizeof(float));
}

int ckpt_add_tensor_i64(ckpt *c, const char *name, int ndim, const int64_t *shape,
                        const int64_t *data) {
    return add_tensor_copy(c, name, CKPT_I64, ndim, shape, data, sizeof(int64_t));
}

int ckpt_add_int(ckpt *c, const char *name, int64_t v) {
    ckpt_entry *e = add_entry(c, name, CKPT_INT);
    if (!e) return -1;
    e->ival = v;
    return 0;
}

int ckpt_add_float(ckpt *c, const char *name, double v) {
    ckpt_entry *e = add_entry(c, name, CKPT_FLOAT);
    if (!e) return -1;
    e->fval = v;
    return 0;
}

int ckpt_add_string(ckpt *c, const char *name, const char *s) {
    char *copy = strdup(s ? s : "");
    if (!copy) return -1;
    ckpt_entry *e = add_entry(c, name, CKPT_STRING);
    if (!e) {
        free(copy);
        return -1;
    }
    e->sval = copy;
    return 0;
}

int ckpt_find(const ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->e[i].name, name) == 0) return i;
    return -1;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ckpt_check_unique(const ckpt *c, const char *fname, char *err, size_t errlen) {
    if (c->n < 2) return 0;
    const char **names = malloc((size_t)c->n * sizeof(*names));
    if (!names) return ckpt_errf(err, errlen, "%s: out of memory", fname);
    for (int i = 0; i < c->n; i++) names[i] = c->e[i].name;
    qsort(names, (size_t)c->n, sizeof(*names), cmp_name_ptr);
    int rc = 0;
    for (int i = 1; i < c->n && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = ckpt_errf(err, errlen, "%s: duplicate entry name '%s'", fname, names[i]);
    free(names);
    return rc;
}

// torch's Half -> float conversion: exact, subnormals, inf and nan kept.
float ckpt_half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal half: normalise into a float exponent
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// BFloat16 is the top half of a float32.
float ckpt_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// The legacy torch.save format starts with PROTO and the pickled magic
// number 0x1950a86a20f9469cfc6c (LONG1, 10 bytes, little-endian).
static int is_legacy_torch(const unsigned char *b, size_t n) {
    static const unsigned char magic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                          0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    return n >= 2 + sizeof(magic) && b[0] == 0x80 && memcmp(b + 2, magic, sizeof(magic)) == 0;
}

static int is_safetensors_head(const unsigned char *b, size_t n, long long fsize) {
    if (n < 9 || b[8] != '{') return 0;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
    return fsize >= 8 && len <= (uint64_t)(fsize - 8);
}

int ckpt_read(ckpt *c, const char *path, char *err, size_t errlen) {
    const char *fname = base_name(path);
    unsigned char head[16];
    FILE *f = fopen(path, "rb");
    if (!f) return ckpt_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return ckpt_errf(err, errlen, "%s: not a regular file", path);
    }
    size_t n = fread(head, 1, sizeof(head), f);
    long long fsize = -1;
    if (fseek(f, 0, SEEK_END) == 0) fsize = ftell(f);
    fclose(f);
    if (n == 0) return ckpt_errf(err, errlen, "%s: file is empty", fname);
    int rc;
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] < 8 && head[3] < 8)
        rc = pth_read(c, path, fname, err, errlen);
    else if (is_legacy_torch(head, n))
        return ckpt_errf(err, errlen,
                         "%s: legacy (non-zip) PyTorch format; re-save it with "
                         "torch.save(torch.load('%s'), 'Y.pth') in PyTorch >= 1.6",
                         fname, fname);
    else if (ends_with(path, ".safetensors") || is_safetensors_head(head, n, fsize))
        rc = safetensors_read(c, path, fname, err, errlen);
    else
        return ckpt_errf(err, errlen,
                         "%s: not a PyTorch zip checkpoint or a safetensors file", fname);
    if (rc == 0) rc = ckpt_check_unique(c, fname, err, errlen);
    if (rc != 0) ckpt_free(c);
    return rc;
}

// The zip's top folder: the target's base name without extension, [A-Za-z0-9_].
static void top_folder(const char *path, char *top, size_t n) {
    const char *base = base_name(path);
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base), k = 0;
    for (size_t i = 0; i < len && k + 1 < n; i++) {
        char ch = base[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || ch == '_';
        top[k++] = ok ? ch : '_';
    }
    top[k] = 0;
    if (k == 0) snprintf(top, n, "archive");
}

// Atomic (common/fs.h): a temp file beside path, fsynced and renamed over it.
int ckpt_write(const ckpt *c, const char *path, char *err, size_t errlen) {
    const char *fname = base_name(path);
    if (!*fname) return ckpt_errf(err, errlen, "%s: not a file name", path);
    if (ckpt_check_unique(c, fname, err, errlen)) return -1;
    util_atomic_file a;
    char msg[1024];
    if (util_atomic_open(&a, path, msg, sizeof msg) != 0)
        return ckpt_errf(err, errlen, "%s: %s", fname, msg);
    int rc;
    if (ends_with(path, ".safetensors")) {
        rc = safetensors_write(c, a.f, fname, err, errlen);
    } else {
        char top[128];
        top_folder(path, top, sizeof(top));
        rc = pth_write(c, a.f, top, fname, err, errlen);
    }
    if (rc != 0) {
        util_atomic_abort(&a);   // leaves the old target intact
        return rc;
    }
    if (util_atomic_commit(&a, msg, sizeof msg) != 0)
        return ckpt_errf(err, errlen, "%s: %s", fname, msg);
    return 0;
}
