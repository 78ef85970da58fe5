// Checkpoint formats: fixtures written by torch 1.13 (tools/make_ckpt_fixtures.py),
// write/read round trips, the zip layout torch expects, atomic writes, and
// hostile files that must each end in an error naming the file.
#define _POSIX_C_SOURCE 200809L  // mkdtemp
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include "model/ckpt.h"
#include "model/pickle.h"

#define FIX "tests/fixtures/"
#define REGEN "regenerate with /usr/bin/python3 tools/make_ckpt_fixtures.py"

// --- helpers ---

static char *tmp_dir(void) {
    char *d = strdup("/tmp/test_ckpt.XXXXXX");
    cr_assert(d && mkdtemp(d), "mkdtemp failed");
    return d;
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (%s)", path, REGEN);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    cr_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(b, 1, n, f) == n);
    fclose(f);
}

static uint64_t rd(const uint8_t **p, const uint8_t *end, int n) {
    cr_assert(*p + n <= end, "expect file truncated (%s)", REGEN);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | (*p)[i];
    *p += n;
    return v;
}

// Reads a CLCK v1 expect file (see tools/make_ckpt_fixtures.py) into c.
static void read_expect(const char *path, ckpt *c) {
    size_t n;
    uint8_t *buf = slurp(path, &n);
    const uint8_t *p = buf, *end = buf + n;
    cr_assert(n >= 12 && memcmp(p, "CLCK", 4) == 0, "%s: not a CLCK file (%s)", path, REGEN);
    p += 4;
    cr_assert_eq(rd(&p, end, 4), 1, "%s: stale version (%s)", path, REGEN);
    uint32_t count = (uint32_t)rd(&p, end, 4);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t nl = (uint32_t)rd(&p, end, 4);
        char name[512];
        cr_assert(nl < sizeof(name) && p + nl <= end);
        memcpy(name, p, nl);
        name[nl] = 0;
        p += nl;
        int kind = (int)rd(&p, end, 1);
        if (kind == 0) {
            int dt = (int)rd(&p, end, 1), nd = (int)rd(&p, end, 4);
            int64_t shape[8];
            cr_assert(nd <= 8);
            for (int d = 0; d < nd; d++) shape[d] = (int64_t)rd(&p, end, 8);
            int64_t numel = ckpt_numel(nd, shape);
            void *data = malloc((size_t)(numel ? numel : 1) * 8);
            for (int64_t j = 0; j < numel; j++) {
                uint64_t v = rd(&p, end, 8);
                if (dt == 0) {
                    double x;
                    memcpy(&x, &v, 8);
                    ((float *)data)[j] = (float)x;  // exact: the values came from float32
                } else {
                    ((int64_t *)data)[j] = (int64_t)v;
                }
            }
            cr_assert_eq(ckpt_add_tensor_owned(c, name, dt ? CKPT_I64 : CKPT_F32, nd, shape, data), 0);
        } else if (kind == 1) {
            ckpt_add_int(c, name, (int64_t)rd(&p, end, 8));
        } else if (kind == 2) {
            uint64_t v = rd(&p, end, 8);
            double x;
            memcpy(&x, &v, 8);
            ckpt_add_float(c, name, x);
        } else {
            uint32_t sl = (uint32_t)rd(&p, end, 4);
            char *s = calloc(sl + 1, 1);
            cr_assert(p + sl <= end);
            memcpy(s, p, sl);
            p += sl;
            ckpt_add_string(c, name, s);
            free(s);
        }
    }
    free(buf);
}

// Compares one entry exactly (tensors bitwise), naming it and the first bad index.
static void expect_entry(const ckpt_entry *a, const ckpt_entry *b) {
    cr_expect_str_eq(a->name, b->name);
    cr_assert_eq(a->kind, b->kind, "'%s': kind %d, expected %d", a->name, a->kind, b->kind);
    if (a->kind == CKPT_INT) cr_expect_eq(a->ival, b->ival, "'%s': %lld != %lld", a->name,
                                          (long long)a->ival, (long long)b->ival);
    if (a->kind == CKPT_FLOAT) cr_expect(memcmp(&a->fval, &b->fval, 8) == 0, "'%s': %.17g != %.17g",
                                         a->name, a->fval, b->fval);
    if (a->kind == CKPT_STRING) cr_expect_str_eq(a->sval, b->sval, "'%s'", a->name);
    if (a->kind != CKPT_TENSOR) return;
    cr_assert_eq(a->dtype, b->dtype, "'%s': dtype", a->name);
    cr_assert_eq(a->ndim, b->ndim, "'%s': ndim %d != %d", a->name, a->ndim, b->ndim);
    for (int d = 0; d < a->ndim; d++)
        cr_assert_eq(a->shape[d], b->shape[d], "'%s': shape[%d]", a->name, d);
    cr_assert_eq(a->numel, b->numel, "'%s': numel", a->name);
    size_t es = a->dtype == CKPT_F32 ? 4 : 8;
    for (int64_t j = 0; j < a->numel; j++)
        if (memcmp((char *)a->data + j * es, (char *)b->data + j * es, es) != 0) {
            if (a->dtype == CKPT_F32)
                cr_assert_fail("'%s': element %lld is %.9g, expected %.9g", a->name, (long long)j,
                               ((float *)a->data)[j], ((float *)b->data)[j]);
            cr_assert_fail("'%s': element %lld is %lld, expected %lld", a->name, (long long)j,
                           (long long)((int64_t *)a->data)[j], (long long)((int64_t *)b->data)[j]);
        }
}

// Same entries; in the same order unless by_name.
static void expect_same(const ckpt *got, const ckpt *want, int by_name) {
    cr_assert_eq(got->n, want->n, "%d entries, expected %d", got->n, want->n);
    for (int i = 0; i < want->n; i++) {
        int j = by_name ? ckpt_find(got, want->e[i].name) : i;
        cr_assert(j >= 0, "entry '%s' missing", want->e[i].name);
        expect_entry(&got->e[j], &want->e[i]);
    }
}

static void expect_fixture(const char *file, const char *expect, int by_name) {
    ckpt got, want;
    char err[512] = "";
    ckpt_init(&got);
    ckpt_init(&want);
    cr_assert_eq(ckpt_read(&got, file, err, sizeof(err)), 0, "%s: %s (%s)", file, err, REGEN);
    read_expect(expect, &want);
    expect_same(&got, &want, by_name);
    ckpt_free(&got);
    ckpt_free(&want);
}

// ckpt_read must fail with a message that names the file.
static void expect_read_error(const char *path, const char *needle) {
    ckpt c;
    char err[512] = "";
    ckpt_init(&c);
    int rc = ckpt_read(&c, path, err, sizeof(err));
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    cr_assert_neq(rc, 0, "%s: read succeeded", path);
    cr_assert_eq(c.n, 0, "%s: entries left after a failure", path);
    cr_assert(strstr(err, base), "message does not name %s: %s", base, err);
    cr_assert(!strchr(err, '\n'), "message is not one line: %s", err);
    if (needle) cr_assert(strstr(err, needle), "message lacks '%s': %s", needle, err);
    ckpt_free(&c);
}

// A zip holding the given (name, bytes) records.
static void write_zip(const char *path, int n, const char *const *names, const void *const *data,
                      const size_t *sizes) {
    int zerr;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    cr_assert(z);
    for (int i = 0; i < n; i++) {
        zip_source_t *s = zip_source_buffer(z, data[i], sizes[i], 0);
        cr_assert(s && zip_file_add(z, names[i], s, ZIP_FL_OVERWRITE) >= 0);
    }
    cr_assert_eq(zip_close(z), 0);
}

// A torch-like zip: data.pkl = pkl, data/0 = storage bytes (if any), version.
static void write_torch_zip(const char *path, const pickle_buf *pkl, const void *st, size_t nst) {
    const char *names[] = {"t/data.pkl", "t/version", "t/data/0"};
    const void *data[] = {pkl->p, "3\n", st};
    size_t sizes[] = {pkl->n, 2, nst};
    write_zip(path, st ? 3 : 2, names, data, sizes);
}

static void pb(pickle_buf *b, const char *bytes, size_t n) { pickle_buf_put(b, bytes, n); }
#define PB(b, lit) pb((b), (lit), sizeof(lit) - 1)

static void pb_str(pickle_buf *b, const char *s) {
    uint8_t h[5] = {'X', (uint8_t)strlen(s), 0, 0, 0};
    pickle_buf_put(b, h, 5);
    pickle_buf_put(b, s, strlen(s));
}

static void pb_int(pickle_buf *b, int64_t v) {
    uint8_t h[10] = {0x8a, 8};
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)v >> (8 * i));
    pickle_buf_put(b, h, 10);
}

static void pb_tuple(pickle_buf *b, const int64_t *v, int n) {
    PB(b, "(");
    for (int i = 0; i < n; i++) pb_int(b, v[i]);
    PB(b, "t");
}

// {'w': _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', snumel), offset, size, stride, ...)}
static void tensor_pickle(pickle_buf *b, int64_t snumel, int64_t offset, int nd,
                          const int64_t *size, const int64_t *stride) {
    PB(b, "\x80\x02}");
    pb_str(b, "w");
    PB(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    pb_str(b, "storage");
    PB(b, "ctorch\nFloatStorage\n");
    pb_str(b, "0");
    pb_str(b, "cpu");
    pb_int(b, snumel);
    PB(b, "tQ");
    pb_int(b, offset);
    pb_tuple(b, size, nd);
    pb_tuple(b, stride, nd);
    PB(b, "\x89}tRs.");
}

// --- fixtures written by torch ---

Test(ckpt, reads_torch_small) { expect_fixture(FIX "ckpt_small.pth", FIX "ckpt_small.expect.bin", 0); }

Test(ckpt, reads_torch_protocol4) {
    expect_fixture(FIX "ckpt_small_p4.pth", FIX "ckpt_small.expect.bin", 0);
}

Test(ckpt, reads_torch_nested_and_scalars) {
    expect_fixture(FIX "ckpt_nested.pth", FIX "ckpt_nested.expect.bin", 0);
}

Test(ckpt, reads_safetensors) {
    expect_fixture(FIX "ckpt_small.safetensors", FIX "ckpt_small_st.expect.bin", 0);
}

Test(ckpt, small_has_views_and_0dim) {
    ckpt c;
    char err[256];
    ckpt_init(&c);
    cr_assert_eq(ckpt_read(&c, FIX "ckpt_small.pth", err, sizeof(err)), 0, "%s", err);
    int i = ckpt_find(&c, "1.num_batches_tracked");
    cr_assert(i >= 0);
    cr_expect_eq(c.e[i].ndim, 0);
    cr_expect_eq(c.e[i].numel, 1);
    cr_expect_eq(c.e[i].dtype, CKPT_I64);
    cr_expect_eq(((int64_t *)c.e[i].data)[0], 17);
    i = ckpt_find(&c, "transposed");
    cr_assert(i >= 0 && c.e[i].shape[0] == 5 && c.e[i].shape[1] == 3);
    cr_expect_eq(ckpt_find(&c, "no such"), -1);
    ckpt_free(&c);
}

Test(ckpt, half_conversion_matches_torch) {
    cr_expect_eq(ckpt_half_to_f32(0x3c00), 1.0f);
    cr_expect_eq(ckpt_half_to_f32(0x0001), ldexpf(1.0f, -24));  // smallest subnormal
    cr_expect_eq(ckpt_half_to_f32(0x03ff), ldexpf(1023.0f, -24));
    cr_expect_eq(ckpt_half_to_f32(0x7bff), 65504.0f);
    cr_expect(isinf(ckpt_half_to_f32(0xfc00)) && ckpt_half_to_f32(0xfc00) < 0);
    cr_expect(isnan(ckpt_half_to_f32(0x7e00)));
    cr_expect(signbit(ckpt_half_to_f32(0x8000)));
    cr_expect_eq(ckpt_bf16_to_f32(0x3f80), 1.0f);
}

// --- round trips ---

static void fill_sample(ckpt *c) {
    float f[2 * 3 * 5];
    for (int i = 0; i < 30; i++) f[i] = (float)i * 0.37f - 3.0f;
    f[0] = NAN;
    f[1] = -INFINITY;
    f[2] = 1e-42f;  // subnormal
    f[3] = -0.0f;
    int64_t s3[] = {2, 3, 5}, s1[] = {4}, s0[] = {0, 3}, s8[] = {1, 2, 1, 1, 1, 1, 1, 1};
    int64_t l[] = {INT64_MIN, INT64_MAX, -1, 1LL << 40};
    int64_t nbt = 12345;
    cr_assert_eq(ckpt_add_tensor_f32(c, "layer1.0.conv1.weight", 3, s3, f), 0);
    cr_assert_eq(ckpt_add_tensor_i64(c, "bn1.num_batches_tracked", 0, NULL, &nbt), 0);
    cr_assert_eq(ckpt_add_int(c, "epoch", 7), 0);
    cr_assert_eq(ckpt_add_tensor_i64(c, "longs", 1, s1, l), 0);
    cr_assert_eq(ckpt_add_float(c, "lr", 0.1), 0);
    cr_assert_eq(ckpt_add_tensor_f32(c, "empty", 2, s0, NULL), 0);
    cr_assert_eq(ckpt_add_string(c, "arch", "resnet18 \"q\" \\ h\xc3\xa9llo\n\ttab"), 0);
    cr_assert_eq(ckpt_add_tensor_f32(c, "eight_dims", 8, s8, f + 4), 0);
    cr_assert_eq(ckpt_add_int(c, "big", INT64_MIN), 0);
    cr_assert_eq(ckpt_add_int(c, "i32max", 2147483647), 0);
    cr_assert_eq(ckpt_add_int(c, "i32over", 2147483648LL), 0);
    cr_assert_eq(ckpt_add_float(c, "negzero", -0.0), 0);
    cr_assert_eq(ckpt_add_float(c, "tiny", 4.9e-324), 0);
    cr_assert_eq(ckpt_add_float(c, "inf", INFINITY), 0);
    cr_assert_eq(ckpt_add_string(c, "empty_str", ""), 0);
}

static void round_trip(const char *file, int by_name) {
    char *dir = tmp_dir(), path[512], err[512] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    ckpt a, b;
    ckpt_init(&a);
    ckpt_init(&b);
    fill_sample(&a);
    cr_assert_eq(ckpt_write(&a, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ckpt_read(&b, path, err, sizeof(err)), 0, "%s", err);
    expect_same(&b, &a, by_name);
    ckpt_free(&a);
    ckpt_free(&b);
    rm_dir(dir);
    free(dir);
}

Test(ckpt, round_trip_pth) { round_trip("rt.pth", 0); }
Test(ckpt, round_trip_safetensors) { round_trip("rt.safetensors", 1); }

Test(ckpt, round_trip_torch_fixture) {
    char *dir = tmp_dir(), path[512], err[512] = "";
    snprintf(path, sizeof(path), "%s/again.pth", dir);
    ckpt a, b;
    ckpt_init(&a);
    ckpt_init(&b);
    cr_assert_eq(ckpt_read(&a, FIX "ckpt_nested.pth", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ckpt_write(&a, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ckpt_read(&b, path, err, sizeof(err)), 0, "%s", err);
    expect_same(&b, &a, 0);
    ckpt_free(&a);
    ckpt_free(&b);
    rm_dir(dir);
    free(dir);
}

// Walks the local headers: each record 64-byte aligned, CRC right in both directories.
Test(ckpt, pth_layout_aligned_with_crc) {
    char *dir = tmp_dir(), path[512], err[512] = "";
    snprintf(path, sizeof(path), "%s/my-model.v2.pth", dir);
    ckpt a;
    ckpt_init(&a);
    fill_sample(&a);
    cr_assert_eq(ckpt_write(&a, path, err, sizeof(err)), 0, "%s", err);
    size_t n;
    uint8_t *f = slurp(path, &n);
    size_t off = 0;
    int records = 0;
    while (off + 30 <= n && memcmp(f + off, "PK\x03\x04", 4) == 0) {
        const uint8_t *h = f + off, *p = h + 14;
        uint32_t crc = (uint32_t)rd(&p, f + n, 4), size = (uint32_t)(p += 4, rd(&p, f + n, 4));
        uint32_t nl = h[26] | h[27] << 8, el = h[28] | h[29] << 8;
        size_t data = off + 30 + nl + el;
        cr_assert(data + size <= n);
        cr_expect_eq(data % 64, 0, "record %.*s starts at %zu", (int)nl, (const char *)h + 30, data);
        cr_expect(nl > 9 && memcmp(h + 30, "my_model_v2/", 12) == 0, "top folder: %.*s", (int)nl, h + 30);
        cr_expect_eq(crc, (uint32_t)crc32(0, f + data, size));
        off = data + size;
        records++;
    }
    cr_expect_eq(records, 2 + 5 + 1, "data.pkl, byteorder, 5 storages, version");
    int zerr;
    zip_t *z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    cr_assert(z, "libzip consistency check failed: %d", zerr);
    for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0); i++) {
        zip_stat_t st;
        cr_assert_eq(zip_stat_index(z, (zip_uint64_t)i, 0, &st), 0);
        uint8_t *buf = malloc(st.size + 1);
        zip_file_t *zf = zip_fopen_index(z, (zip_uint64_t)i, 0);
        cr_assert(zf && zip_fread(zf, buf, st.size) == (zip_int64_t)st.size);
        zip_fclose(zf);
        cr_expect_eq(st.crc, (uint32_t)crc32(0, buf, (uInt)st.size), "%s: crc", st.name);
        cr_expect_eq(st.comp_method, ZIP_CM_STORE);
        free(buf);
    }
    zip_discard(z);
    free(f);
    ckpt_free(&a);
    rm_dir(dir);
    free(dir);
}

// --- atomic writes ---

static int count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, needle)) n++;
    if (d) closedir(d);
    return n;
}

Test(ckpt, write_to_missing_folder_fails_cleanly) {
    char *dir = tmp_dir(), path[600], sub[512], err[512] = "";
    snprintf(sub, sizeof(sub), "%s/missing", dir);
    snprintf(path, sizeof(path), "%s/x.pth", sub);
    ckpt a;
    ckpt_init(&a);
    fill_sample(&a);
    cr_expect_neq(ckpt_write(&a, path, err, sizeof(err)), 0);
    cr_expect(strstr(err, "x.pth"), "%s", err);
    struct stat st;
    cr_expect_neq(stat(sub, &st), 0, "folder was created");
    cr_expect_eq(count_files(dir, "."), 2, "only . and .. remain");
    ckpt_free(&a);
    rm_dir(dir);
    free(dir);
}

Test(ckpt, overwrite_is_whole_and_failure_keeps_old) {
    char *dir = tmp_dir(), path[512], err[512] = "";
    snprintf(path, sizeof(path), "%s/w.pth", dir);
    ckpt a, b, r;
    ckpt_init(&a);
    ckpt_init(&b);
    ckpt_init(&r);
    fill_sample(&a);
    ckpt_add_int(&b, "only", 42);
    cr_assert_eq(ckpt_write(&a, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ckpt_write(&b, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ckpt_read(&r, path, err, sizeof(err)), 0, "%s", err);
    expect_same(&r, &b, 0);
    ckpt_free(&r);
    // Fails after the temp file exists: a tensor without data.
    a.e[0].data = (free(a.e[0].data), NULL);
    cr_expect_neq(ckpt_write(&a, path, err, sizeof(err)), 0);
    cr_expect(strstr(err, "w.pth"), "%s", err);
    ckpt_init(&r);
    cr_assert_eq(ckpt_read(&r, path, err, sizeof(err)), 0, "%s", err);
    expect_same(&r, &b, 0);
    // Duplicate names are refused before anything is written.
    ckpt_add_int(&b, "only", 1);
    cr_expect_neq(ckpt_write(&b, path, err, sizeof(err)), 0);
    cr_expect(strstr(err, "duplicate"), "%s", err);
    cr_expect_eq(count_files(dir, ".tmp."), 0, "temp files left behind");
    cr_expect_eq(count_files(dir, "w.pth"), 1);
    ckpt_free(&a);
    ckpt_free(&b);
    ckpt_free(&r);
    rm_dir(dir);
    free(dir);
}

// --- hostile files ---

Test(ckpt_hostile, empty_and_random) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/empty.pth", dir);
    spit(path, "", 0);
    expect_read_error(path, "empty");
    uint8_t buf[4096];
    uint32_t s = 12345;
    const char *names[] = {"rand.pth", "rand.safetensors", "randzip.pth", "randst.bin"};
    for (int k = 0; k < 4 * 8; k++) {
        for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16);
        if (k % 4 == 2) memcpy(buf, "PK\x03\x04", 4);
        if (k % 4 == 3) memcpy(buf, "\x10\x00\x00\x00\x00\x00\x00\x00{", 9);
        snprintf(path, sizeof(path), "%s/%s", dir, names[k % 4]);
        spit(path, buf, sizeof(buf) >> (k / 8));
        expect_read_error(path, NULL);
    }
    rm_dir(dir);
    free(dir);
}

static void truncations(const char *fixture, const char *name) {
    char *dir = tmp_dir(), path[512];
    size_t n;
    uint8_t *b = slurp(fixture, &n);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    for (int k = 0; k < 30; k++) {
        size_t cut = 1 + (n - 2) * (size_t)k / 29;
        spit(path, b, cut);
        expect_read_error(path, NULL);
    }
    free(b);
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, truncated_pth) { truncations(FIX "ckpt_small.pth", "cut.pth"); }
Test(ckpt_hostile, truncated_safetensors) { truncations(FIX "ckpt_small.safetensors", "cut.safetensors"); }

// data.pkl cut at every few bytes inside an intact zip.
Test(ckpt_hostile, truncated_pickle) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/cutpkl.pth", dir);
    int zerr;
    zip_t *z = zip_open(FIX "ckpt_small.pth", ZIP_RDONLY, &zerr);
    cr_assert(z);
    zip_stat_t st;
    cr_assert_eq(zip_stat(z, "ckpt_small/data.pkl", 0, &st), 0);
    uint8_t *pkl = malloc(st.size);
    zip_file_t *zf = zip_fopen(z, "ckpt_small/data.pkl", 0);
    cr_assert(zip_fread(zf, pkl, st.size) == (zip_int64_t)st.size);
    zip_fclose(zf);
    zip_discard(z);
    for (size_t cut = 0; cut + 1 < st.size; cut += 13) {
        pickle_buf b = {.p = pkl, .n = cut};
        write_torch_zip(path, &b, NULL, 0);
        expect_read_error(path, NULL);
    }
    free(pkl);
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, legacy_format) { expect_read_error(FIX "ckpt_legacy.pth", "re-save"); }

Test(ckpt_hostile, os_system_global) {
    expect_read_error(FIX "ckpt_evil.pth", "global 'os system' is not allowed");
}

Test(ckpt_hostile, zip_without_data_pkl) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/nopkl.pth", dir);
    const char *names[] = {"t/version", "t/data/0"};
    const void *data[] = {"3\n", "abcd"};
    size_t sizes[] = {2, 4};
    write_zip(path, 2, names, data, sizes);
    expect_read_error(path, "data.pkl");
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, missing_storage_record) {
    char *dir = tmp_dir(), path[512], cmd[1024];
    snprintf(path, sizeof(path), "%s/nostorage.pth", dir);
    snprintf(cmd, sizeof(cmd), "cp " FIX "ckpt_small.pth %s", path);
    cr_assert_eq(system(cmd), 0);
    int zerr;
    zip_t *z = zip_open(path, 0, &zerr);
    cr_assert(z);
    cr_assert_eq(zip_delete(z, (zip_uint64_t)zip_name_locate(z, "ckpt_small/data/3", 0)), 0);
    cr_assert_eq(zip_close(z), 0);
    expect_read_error(path, "ckpt_small/data/3' is missing");
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, view_exceeds_storage) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/view.pth", dir);
    float st[6] = {0};
    int64_t size[] = {2, 3}, stride[] = {3, 1}, big[] = {1LL << 62, 4}, bstride[] = {4, 1};
    pickle_buf b;
    pickle_buf_init(&b);
    tensor_pickle(&b, 6, 1, 2, size, stride);  // needs elements 1..6 of 6
    write_torch_zip(path, &b, st, sizeof(st));
    expect_read_error(path, "tensor 'w' (offset 1, size [2, 3], stride [3, 1]) exceeds its storage of 6 elements");
    pickle_buf_free(&b);
    tensor_pickle(&b, 6, 0, 2, big, bstride);  // index arithmetic overflows
    write_torch_zip(path, &b, st, sizeof(st));
    expect_read_error(path, "exceeds its storage");
    pickle_buf_free(&b);
    tensor_pickle(&b, 1LL << 61, 0, 2, size, stride);  // huge claimed storage, tiny record
    write_torch_zip(path, &b, st, sizeof(st));
    expect_read_error(path, NULL);
    pickle_buf_free(&b);
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, storage_record_too_small) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/small.pth", dir);
    float st[6] = {0};
    int64_t size[] = {2, 3}, stride[] = {3, 1};
    pickle_buf b;
    pickle_buf_init(&b);
    tensor_pickle(&b, 6, 0, 2, size, stride);
    write_torch_zip(path, &b, st, 20);
    expect_read_error(path, "storage 'data/0' is 20 bytes but tensor 'w' needs 24");
    pickle_buf_free(&b);
    rm_dir(dir);
    free(dir);
}

static void expect_pickle_error(const char *bytes, size_t n, const char *needle) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/p.pth", dir);
    pickle_buf b = {.p = (uint8_t *)bytes, .n = n};
    write_torch_zip(path, &b, NULL, 0);
    expect_read_error(path, needle);
    rm_dir(dir);
    free(dir);
}
#define EXPECT_PICKLE_ERROR(lit, needle) expect_pickle_error((lit), sizeof(lit) - 1, (needle))

Test(ckpt_hostile, unsupported_opcodes) {
    EXPECT_PICKLE_ERROR("\x80\x02}(i__main__\nX\nq\x00s.", "opcode INST");
    EXPECT_PICKLE_ERROR("\x80\x02}\x81.", "opcode NEWOBJ");
    EXPECT_PICKLE_ERROR("\x80\x02}0.", "opcode POP");
    EXPECT_PICKLE_ERROR("\x80\x02}\xff.", "opcode unknown (0xff)");
    EXPECT_PICKLE_ERROR("\x80\x02}X\x01\x00\x00\x00" "aS'x'\ns.", "opcode STRING");
}

Test(ckpt_hostile, malformed_pickles) {
    EXPECT_PICKLE_ERROR("\x80\x02N.", "not a dict");
    EXPECT_PICKLE_ERROR("\x80\x02}", "without STOP");
    EXPECT_PICKLE_ERROR("\x80\x02.", "underflow");
    EXPECT_PICKLE_ERROR("\x80\x02}s.", "underflow");
    EXPECT_PICKLE_ERROR("\x80\x02}h\x05.", "memo index 5");
    EXPECT_PICKLE_ERROR("\x80\x02}r\xff\xff\xff\xff.", "memo index");
    EXPECT_PICKLE_ERROR("\x80\x02}X\xff\xff\xff\xff", "truncated");
    EXPECT_PICKLE_ERROR("\x80\x02}\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", "64 bits");
    EXPECT_PICKLE_ERROR("\x80\x02}X\x01\x00\x00\x00" "a]s.", "value of 'a' is a list");
    EXPECT_PICKLE_ERROR("\x80\x02}G\x3f\xf0\x00\x00\x00\x00\x00\x00K\x02s.", "dict key is a float");
    EXPECT_PICKLE_ERROR("\x80\x02}(X\x01\x00\x00\x00" "au.", "odd number");
    EXPECT_PICKLE_ERROR("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R.", "OrderedDict called");
    EXPECT_PICKLE_ERROR("\x80\x02" "ctorch\nFloatStorage\n)R.", "storage class");
    EXPECT_PICKLE_ERROR("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n)R.", "bad arguments");
    EXPECT_PICKLE_ERROR("\x80\x02" "ctorch\nload\n.", "global 'torch load'");
    EXPECT_PICKLE_ERROR("\x80\x02X\x05\x00\x00\x00posixX\x06\x00\x00\x00system\x93.",
                        "global 'posix system'");
    EXPECT_PICKLE_ERROR("\x80\x02}(X\x01\x00\x00\x00" "aN\x85Qs.", "persistent id");
    EXPECT_PICKLE_ERROR("\x80\x02]}b.", "BUILD on a list");
}

// A dict that contains itself: flattening stops at the depth bound.
Test(ckpt_hostile, cycles_and_deep_nesting) {
    EXPECT_PICKLE_ERROR("\x80\x02}q\x00X\x01\x00\x00\x00" "ah\x00s.", "nested deeper than 32");
    pickle_buf b;
    pickle_buf_init(&b);
    PB(&b, "\x80\x02}");
    for (int i = 0; i < 40; i++) PB(&b, "X\x01\x00\x00\x00k}");
    for (int i = 0; i < 40; i++) PB(&b, "s");
    PB(&b, ".");
    expect_pickle_error((const char *)b.p, b.n, "nested deeper than 32");
    pickle_buf_free(&b);
    pickle_buf_init(&b);
    for (int i = 0; i < 100; i++) PB(&b, "(");
    expect_pickle_error((const char *)b.p, b.n, "MARK");
    pickle_buf_free(&b);
}

Test(ckpt_hostile, nesting_within_bound_is_fine) {
    char *dir = tmp_dir(), path[512], err[256];
    snprintf(path, sizeof(path), "%s/deep.pth", dir);
    pickle_buf b;
    pickle_buf_init(&b);
    PB(&b, "\x80\x02}");
    for (int i = 0; i < 30; i++) PB(&b, "X\x01\x00\x00\x00k}");
    PB(&b, "X\x01\x00\x00\x00vK\x07s");
    for (int i = 0; i < 30; i++) PB(&b, "s");
    PB(&b, ".");
    write_torch_zip(path, &b, NULL, 0);
    ckpt c;
    ckpt_init(&c);
    cr_assert_eq(ckpt_read(&c, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.n, 1);
    cr_expect_eq(strlen(c.e[0].name), 30 * 2 + 1);
    cr_expect_eq(c.e[0].ival, 7);
    ckpt_free(&c);
    pickle_buf_free(&b);
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, duplicate_keys_follow_python) {
    char *dir = tmp_dir(), path[512], err[256];
    snprintf(path, sizeof(path), "%s/dup.pth", dir);
    // {'a': 1, 'b': 2, 'a': 3} is {'a': 3, 'b': 2} in Python.
    static const char p[] = "\x80\x02}(X\x01\x00\x00\x00" "aK\x01X\x01\x00\x00\x00" "bK\x02"
                            "X\x01\x00\x00\x00" "aK\x03u.";
    pickle_buf b = {.p = (uint8_t *)p, .n = sizeof(p) - 1};
    write_torch_zip(path, &b, NULL, 0);
    ckpt c;
    ckpt_init(&c);
    cr_assert_eq(ckpt_read(&c, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.n, 2);
    cr_expect_str_eq(c.e[0].name, "a");
    cr_expect_eq(c.e[0].ival, 3);
    cr_expect_str_eq(c.e[1].name, "b");
    ckpt_free(&c);
    // {'a.b': 1, 'a': {'b': 2}} flattens to two 'a.b'.
    static const char q[] = "\x80\x02}(X\x03\x00\x00\x00" "a.bK\x01X\x01\x00\x00\x00" "a}"
                            "X\x01\x00\x00\x00" "bK\x02su.";
    pickle_buf b2 = {.p = (uint8_t *)q, .n = sizeof(q) - 1};
    write_torch_zip(path, &b2, NULL, 0);
    expect_read_error(path, "duplicate entry name 'a.b'");
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, big_endian_byteorder) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/be.pth", dir);
    const char *names[] = {"t/data.pkl", "t/version", "t/byteorder"};
    const void *data[] = {"\x80\x02}.", "3\n", "big"};
    size_t sizes[] = {4, 2, 3};
    write_zip(path, 3, names, data, sizes);
    expect_read_error(path, "little-endian");
    rm_dir(dir);
    free(dir);
}

static void expect_st_error(const char *header, size_t datalen, const char *needle) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/h.safetensors", dir);
    size_t hl = strlen(header);
    uint8_t *b = calloc(8 + hl + datalen + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    spit(path, b, 8 + hl + datalen);
    expect_read_error(path, needle);
    free(b);
    rm_dir(dir);
    free(dir);
}

Test(ckpt_hostile, safetensors_headers) {
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "cover");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "do not match");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "holes");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "holes");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                    "\"data_offsets\":[0,0]}}", 0, "do not match");
    expect_st_error("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "lacks");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "integer");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected");
    expect_st_error("{\"a\":{\"dtype\":\"F\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL");
    expect_st_error("{\"__metadata__\":{\"x\":1}}", 0, "expected '\"'");
    char deep[200] = "{\"a\":{\"dtype\":\"F32\",\"x\":";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    expect_st_error(deep, 0, "nested too deeply");
    // Header length larger than the file.
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/len.safetensors", dir);
    spit(path, "\xff\xff\xff\xff\x00\x00\x00\x00{}", 10);
    expect_read_error(path, "exceeds the file");
    rm_dir(dir);
    free(dir);
}

// A flipped bit inside a stored record is caught by its CRC-32.
Test(ckpt_hostile, corrupt_record_crc) {
    char *dir = tmp_dir(), path[512];
    snprintf(path, sizeof(path), "%s/crc.pth", dir);
    size_t n;
    uint8_t *b = slurp(FIX "ckpt_small.pth", &n);
    static const char name[] = "ckpt_small/data/0";
    size_t nl = sizeof(name) - 1, at = 0;
    while (at + nl + 30 < n && (memcmp(b + at + 30, name, nl) != 0 || memcmp(b + at, "PK\x03\x04", 4) != 0))
        at++;
    cr_assert(at + nl + 30 < n, "local header of %s not found (%s)", name, REGEN);
    size_t data = at + 30 + nl + (size_t)(b[at + 28] | b[at + 29] << 8);
    b[data + 1] ^= 0x10;
    spit(path, b, n);
    expect_read_error(path, "corrupt");
    free(b);
    rm_dir(dir);
    free(dir);
}
