// fixture: the CLFX reader, layout helpers and the ResNet18 weight generator (fixture.h).
#include "tests/fixture.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE_TOOL "/usr/bin/python3 tools/make_fixtures.py"

static int fail(fixture *f, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(err, errlen, "%s: %s (regenerate it with %s)", f->path, msg, FIXTURE_TOOL);
    }
    fixture_free(f);
    return -1;
}

// A bounds-checked little-endian cursor over the file's bytes.
typedef struct cursor {
    const unsigned char *p;
    size_t len, pos;
} cursor;

static int take(cursor *c, size_t n, const unsigned char **out)
{
    if (n > c->len - c->pos)
        return -1;
    *out = c->p + c->pos;
    c->pos += n;
    return 0;
}

static uint64_t le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static size_t dtype_size(int dtype)
{
    return dtype == FIXTURE_I64 ? 8 : 4;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    int rc = -1;
    long size;
    if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        *buf = malloc(size ? (size_t)size : 1);
        if (*buf && fread(*buf, 1, (size_t)size, fp) == (size_t)size) {
            *len = (size_t)size;
            rc = 0;
        } else {
            free(*buf);
            *buf = NULL;
        }
    }
    fclose(fp);
    return rc;
}

// Parse one tensor record at the cursor into t. Returns NULL or a message.
static const char *parse_tensor(cursor *c, fixture_tensor *t, char *msg, size_t msglen)
{
    const unsigned char *b;
    if (take(c, 2, &b))
        return "truncated name length";
    size_t nlen = (size_t)le(b, 2);
    if (take(c, nlen, &b))
        return "truncated name";
    t->name = malloc(nlen + 1);
    if (!t->name)
        return "out of memory";
    memcpy(t->name, b, nlen);
    t->name[nlen] = '\0';
    if (take(c, 2, &b))
        return "truncated tensor header";
    if (b[0] > FIXTURE_I64) {
        snprintf(msg, msglen, "tensor %s: unknown dtype %d", t->name, b[0]);
        return msg;
    }
    t->dtype = (fixture_dtype)b[0];
    t->ndim = b[1];
    if (t->ndim > FIXTURE_MAX_DIMS) {
        snprintf(msg, msglen, "tensor %s: %d dimensions (at most %d)", t->name, t->ndim,
                 FIXTURE_MAX_DIMS);
        return msg;
    }
    if (take(c, 8 * (size_t)t->ndim, &b))
        return "truncated dims";
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        int64_t v = (int64_t)le(b + 8 * d, 8);
        if (v < 0 || (v > 0 && numel > (SIZE_MAX / 8) / (size_t)v)) {
            snprintf(msg, msglen, "tensor %s: bad dimension %lld", t->name, (long long)v);
            return msg;
        }
        t->dims[d] = v;
        numel *= (size_t)v;
    }
    t->numel = numel;
    size_t bytes = numel * dtype_size(t->dtype);
    if (take(c, bytes, &b)) {
        snprintf(msg, msglen, "tensor %s: %zu data bytes, only %zu left in the file", t->name,
                 bytes, c->len - (c->pos));
        return msg;
    }
    t->data = malloc(bytes ? bytes : 1);
    if (!t->data)
        return "out of memory";
    memcpy(t->data, b, bytes);    // the host is little-endian (checked by fixture_load)
    return NULL;
}

int fixture_load(fixture *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    if (!host_is_little_endian())
        return fail(f, err, errlen, "this reader needs a little-endian host");
    unsigned char *buf = NULL;
    size_t len = 0;
    if (read_file(path, &buf, &len))
        return fail(f, err, errlen, "cannot read: %s", strerror(errno));
    cursor c = {buf, len, 0};
    const unsigned char *b;
    if (take(&c, 12, &b) || memcmp(b, "CLFX", 4) != 0) {
        free(buf);
        return fail(f, err, errlen, "not a CLFX fixture file");
    }
    uint32_t version = (uint32_t)le(b + 4, 4), count = (uint32_t)le(b + 8, 4);
    if (version != FIXTURE_VERSION) {
        free(buf);
        return fail(f, err, errlen, "format version %u, this reader wants %d", version,
                    FIXTURE_VERSION);
    }
    // Each record takes at least 4 bytes: a count beyond that is corrupt.
    if (count > len / 4) {
        free(buf);
        return fail(f, err, errlen, "tensor count %u does not fit in %zu bytes", count, len);
    }
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    if (!f->tensors) {
        free(buf);
        return fail(f, err, errlen, "out of memory");
    }
    f->count = (int)count;
    char msg[256];
    for (uint32_t i = 0; i < count; i++) {
        const char *e = parse_tensor(&c, &f->tensors[i], msg, sizeof msg);
        if (e) {
            free(buf);
            return fail(f, err, errlen, "tensor %u of %u: %s", i, count, e);
        }
    }
    size_t extra = c.len - c.pos;
    free(buf);
    if (extra)
        return fail(f, err, errlen, "%zu trailing bytes after the last tensor", extra);
    return 0;
}

int fixture_load_named(fixture *f, const char *name, char *err, size_t errlen)
{
    const char *dir = getenv("CLTRAIN_FIXTURES");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/fixtures", name);
    return fixture_load(f, path, err, errlen);
}

void fixture_free(fixture *f)
{
    if (!f)
        return;
    for (int i = 0; f->tensors && i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    f->tensors = NULL;
    f->count = 0;
}

const fixture_tensor *fixture_get(const fixture *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (f->tensors[i].name && strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const float *fixture_f32(const fixture_tensor *t)
{
    return t && t->dtype == FIXTURE_F32 ? (const float *)t->data : NULL;
}

const int32_t *fixture_i32(const fixture_tensor *t)
{
    return t && t->dtype == FIXTURE_I32 ? (const int32_t *)t->data : NULL;
}

const int64_t *fixture_i64(const fixture_tensor *t)
{
    return t && t->dtype == FIXTURE_I64 ? (const int64_t *)t->data : NULL;
}

int fixture_dim(const fixture_tensor *t, int d)
{
    return d < t->ndim ? (int)t->dims[d] : 1;
}

// ---- layouts ----

void fixture_nchw_to_cnhw(float *dst, const float *src, int n, int c, int h, int w)
{
    size_t hw = (size_t)h * w;
    for (int in = 0; in < n; in++)
        for (int ic = 0; ic < c; ic++)
            memcpy(dst + ((size_t)ic * n + in) * hw, src + ((size_t)in * c + ic) * hw,
                   hw * sizeof *dst);
}

void fixture_cnhw_to_nchw(float *dst, const float *src, int n, int c, int h, int w)
{
    size_t hw = (size_t)h * w;
    for (int in = 0; in < n; in++)
        for (int ic = 0; ic < c; ic++)
            memcpy(dst + ((size_t)in * c + ic) * hw, src + ((size_t)ic * n + in) * hw,
                   hw * sizeof *dst);
}

void fixture_transpose(float *dst, const float *src, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

// ---- ResNet18 weight generator ----

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double fixture_resnet_u(int tensor_index, uint64_t i)
{
    uint64_t key = 0x5EED0000ull + ((uint64_t)tensor_index << 32) + i;
    return (double)(splitmix64(key) >> 40) * (1.0 / 16777216.0);
}

// a * u + b with the product rounded before the sum, as numpy computes it: the volatile
// keeps a compiler allowed to contract (-ffp-contract=fast, FMA targets) from fusing them.
static double mul_add(double a, double u, double b)
{
    volatile double p = a * u;
    return p + b;
}

void fixture_resnet_param(float *dst, size_t n, int tensor_index, fixture_param_kind kind,
                          int fan_in, uint64_t first)
{
    double conv_scale = fan_in > 0 ? sqrt(6.0 / fan_in) : 0.0;
    // fc: fan_in is in_features; the committed resnet18 fixtures record 0 there (512).
    double fc_scale = sqrt(fan_in > 0 ? (double)fan_in : 512.0);
    for (size_t j = 0; j < n; j++) {
        double u = fixture_resnet_u(tensor_index, first + j), v = 0.0;
        switch (kind) {
        case FIXTURE_PARAM_CONV:         v = (2.0 * u - 1.0) * conv_scale; break;  // 2u-1 exact
        case FIXTURE_PARAM_BN_WEIGHT:    v = mul_add(0.4, u, 0.8); break;
        case FIXTURE_PARAM_BN_BIAS:
        case FIXTURE_PARAM_RUNNING_MEAN: v = mul_add(0.2, u, -0.1); break;
        case FIXTURE_PARAM_RUNNING_VAR:  v = 0.5 + u; break;
        case FIXTURE_PARAM_FC:           v = (2.0 * u - 1.0) / fc_scale; break;
        case FIXTURE_PARAM_ZERO:         v = 0.0; break;
        case FIXTURE_PARAM_UNIFORM:      v = u; break;
        }
        dst[j] = (float)v;
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

fixture_param_kind fixture_resnet_kind(const char *name)
{
    if (ends_with(name, ".running_mean"))
        return FIXTURE_PARAM_RUNNING_MEAN;
    if (ends_with(name, ".running_var"))
        return FIXTURE_PARAM_RUNNING_VAR;
    if (ends_with(name, ".num_batches_tracked"))
        return FIXTURE_PARAM_ZERO;
    if (strncmp(name, "fc.", 3) == 0)
        return FIXTURE_PARAM_FC;
    // The module is the name without its last component; its own last component says conv
    // ("conv1", "conv2", "downsample.0") or batch norm ("bn1", "downsample.1").
    const char *last = strrchr(name, '.');
    size_t mlen = last ? (size_t)(last - name) : strlen(name);
    const char *mod_last = name;
    for (const char *p = name; p < name + mlen; p++)
        if (*p == '.')
            mod_last = p + 1;
    size_t llen = (size_t)(name + mlen - mod_last);
    int is_conv = (llen >= 4 && strncmp(mod_last, "conv", 4) == 0) ||
                  (mlen >= 12 && strncmp(name + mlen - 12, "downsample.0", 12) == 0);
    if (is_conv)
        return FIXTURE_PARAM_CONV;
    return ends_with(name, ".weight") ? FIXTURE_PARAM_BN_WEIGHT : FIXTURE_PARAM_BN_BIAS;
}
