// PyTorch zip checkpoints (torch.save, PyTorch >= 1.6): reading through
// libzip, writing a minimal STORED zip by hand so that every record starts on
// a 64-byte boundary as torch's own writer does.
#define _POSIX_C_SOURCE 200809L  // strdup
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

#include "model/ckpt.h"
#include "model/pickle.h"

enum {
    MAX_PKL_BYTES = 64 << 20,  // data.pkl of a huge model is still a few MB
    MAX_TOP = 256,
    ALIGN = 64,                // torch's record alignment
};

typedef struct pth_reader {
    zip_t *z;
    const char *fname;
    char top[MAX_TOP];
    char *err;
    size_t errlen;
} pth_reader;

// Finds "<top>/data.pkl" (top without '/'); the folder name is not fixed.
static zip_int64_t find_data_pkl(pth_reader *r) {
    zip_int64_t n = zip_get_num_entries(r->z, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(r->z, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!slash || strcmp(slash, "/data.pkl") != 0 || slash == name ||
            (size_t)(slash - name) >= MAX_TOP)
            continue;
        memcpy(r->top, name, (size_t)(slash - name));
        r->top[slash - name] = 0;
        return i;
    }
    return -1;
}

// Reads up to `want` bytes of entry idx into a malloc'ed buffer.
static int read_entry(pth_reader *r, zip_int64_t idx, const char *label, uint64_t want,
                      uint64_t cap, uint8_t **out, size_t *nout) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(r->z, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        return ckpt_errf(r->err, r->errlen, "%s: cannot stat '%s': %s", r->fname, label,
                         zip_strerror(r->z));
    if (st.size > cap)
        return ckpt_errf(r->err, r->errlen, "%s: record '%s' is %llu bytes, more than the %llu allowed",
                         r->fname, label, (unsigned long long)st.size, (unsigned long long)cap);
    // A stored record cannot be larger than its compressed form, nor deflate beyond ~1032:1.
    if ((st.valid & ZIP_STAT_COMP_SIZE) && st.size / 1032 > st.comp_size + 1024)
        return ckpt_errf(r->err, r->errlen, "%s: record '%s' claims an impossible size", r->fname, label);
    uint64_t n = st.size < want ? st.size : want;
    if (n > SIZE_MAX - 1) return ckpt_errf(r->err, r->errlen, "%s: record '%s' too large", r->fname, label);
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf) return ckpt_errf(r->err, r->errlen, "%s: out of memory for '%s'", r->fname, label);
    zip_file_t *zf = zip_fopen_index(r->z, (zip_uint64_t)idx, 0);
    uint64_t got = 0;
    while (zf && got < n) {
        zip_int64_t k = zip_fread(zf, buf + got, n - got);
        if (k <= 0) break;
        got += (uint64_t)k;
    }
    // libzip checks the CRC-32 only once a read reaches the end of the record.
    uint8_t extra;
    if (zf && got == n && n == st.size && zip_fread(zf, &extra, 1) != 0) got = UINT64_MAX;
    int bad = !zf || got != n;
    const char *why = zf ? zip_file_strerror(zf) : zip_strerror(r->z);
    if (bad && got == UINT64_MAX)
        ckpt_errf(r->err, r->errlen, "%s: record '%s' is corrupt: %s", r->fname, label, why);
    else if (bad)
        ckpt_errf(r->err, r->errlen, "%s: cannot read '%s' (%llu of %llu bytes): %s", r->fname,
                  label, (unsigned long long)got, (unsigned long long)n, why);
    if (zf) zip_fclose(zf);
    if (bad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *nout = (size_t)n;
    return 0;
}

static int read_named(pth_reader *r, const char *sub, uint64_t want, uint64_t cap, int required,
                      uint8_t **out, size_t *nout) {
    char name[MAX_TOP + 600];
    snprintf(name, sizeof(name), "%s/%s", r->top, sub);
    zip_int64_t idx = zip_name_locate(r->z, name, ZIP_FL_ENC_RAW);
    *out = NULL;
    *nout = 0;
    if (idx < 0)
        return required ? ckpt_errf(r->err, r->errlen, "%s: record '%s' is missing", r->fname, name) : 0;
    return read_entry(r, idx, name, want, cap, out, nout);
}

static int fetch_storage(void *ctx, const char *key, uint64_t want, uint8_t **bytes, size_t *nbytes,
                         char *err, size_t errlen) {
    pth_reader *r = ctx;
    char sub[560];
    (void)err;
    (void)errlen;
    snprintf(sub, sizeof(sub), "data/%s", key);
    return read_named(r, sub, want, UINT64_MAX, 1, bytes, nbytes);
}

// torch writes "byteorder" since 1.10; absent means little-endian.
static int check_byteorder(pth_reader *r) {
    uint8_t *b = NULL;
    size_t n = 0;
    if (read_named(r, "byteorder", 16, 64, 0, &b, &n)) return -1;
    int ok = !b || (n >= 6 && memcmp(b, "little", 6) == 0);
    free(b);
    return ok ? 0 : ckpt_errf(r->err, r->errlen, "%s: storages are not little-endian", r->fname);
}

int pth_read(ckpt *c, const char *path, const char *fname, char *err, size_t errlen) {
    pth_reader r = {.fname = fname, .err = err, .errlen = errlen};
    int zerr = 0;
    r.z = zip_open(path, ZIP_RDONLY, &zerr);
    if (!r.z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        ckpt_errf(err, errlen, "%s: not a readable zip: %s", fname, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return -1;
    }
    uint8_t *pkl = NULL;
    size_t npkl = 0;
    int rc = 0;
    if (find_data_pkl(&r) < 0)
        rc = ckpt_errf(err, errlen, "%s: zip has no '<folder>/data.pkl'; not a torch.save file", fname);
    if (rc == 0) rc = check_byteorder(&r);
    if (rc == 0) rc = read_named(&r, "data.pkl", MAX_PKL_BYTES, MAX_PKL_BYTES, 1, &pkl, &npkl);
    if (rc == 0) rc = pickle_read_state_dict(c, pkl, npkl, fetch_storage, &r, fname, err, errlen);
    free(pkl);
    zip_discard(r.z);
    return rc;
}

// --- writer ---

typedef struct zip_rec {
    char *name;
    uint32_t crc;
    uint64_t size, offset;
} zip_rec;

typedef struct zip_writer {
    FILE *f;
    uint64_t off;
    zip_rec *rec;
    int n;
    const char *fname;
    char *err;
    size_t errlen;
} zip_writer;

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); }

static int zw_write(zip_writer *z, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, z->f) != n)
        return ckpt_errf(z->err, z->errlen, "%s: write failed", z->fname);
    z->off += n;
    return 0;
}

static uint32_t crc_of(const uint8_t *p, uint64_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)crc;
}

// The fields local and central headers share, from "version needed" on.
static void common_fields(uint8_t *p, const zip_rec *r, size_t namelen) {
    put16(p, 20);       // version needed: 2.0
    put16(p + 2, 0);    // flags: sizes known, no data descriptor
    put16(p + 4, 0);    // method: STORED
    put16(p + 6, 0);    // time 00:00
    put16(p + 8, 0x21); // date 1980-01-01
    put32(p + 10, r->crc);
    put32(p + 14, (uint32_t)r->size);
    put32(p + 18, (uint32_t)r->size);
    put16(p + 22, (uint32_t)namelen);
}

// One STORED entry; the 'FB' extra field pads so the data starts on ALIGN.
static int zw_entry(zip_writer *z, const char *name, const void *data, uint64_t size) {
    size_t namelen = strlen(name);
    uint64_t pos = z->off + 30 + namelen + 4;
    size_t pad = (size_t)((ALIGN - pos % ALIGN) % ALIGN);
    if (z->n >= 65535 || size >= 0xffffffffu || z->off + 30 + namelen + 4 + pad + size >= 0xffffffffu)
        return ckpt_errf(z->err, z->errlen, "%s: checkpoint larger than 4 GB (zip64 not written)", z->fname);
    zip_rec *rec = realloc(z->rec, (size_t)(z->n + 1) * sizeof(*rec));
    if (!rec) return ckpt_errf(z->err, z->errlen, "%s: out of memory", z->fname);
    z->rec = rec;
    zip_rec *r = &z->rec[z->n];
    r->name = strdup(name);
    if (!r->name) return ckpt_errf(z->err, z->errlen, "%s: out of memory", z->fname);
    z->n++;
    r->crc = crc_of(data, size);
    r->size = size;
    r->offset = z->off;
    uint8_t h[34 + ALIGN];
    memset(h, 'Z', sizeof(h));  // torch pads with 'Z'
    put32(h, 0x04034b50);
    common_fields(h + 4, r, namelen);
    put16(h + 28, (uint32_t)(4 + pad));
    if (zw_write(z, h, 30) || zw_write(z, name, namelen)) return -1;
    put16(h, 0x4246);  // 'FB'
    put16(h + 2, (uint32_t)pad);
    memset(h + 4, 'Z', pad);
    if (zw_write(z, h, 4 + pad)) return -1;
    return zw_write(z, data, (size_t)size);
}

static int zw_finish(zip_writer *z) {
    uint64_t cd_start = z->off;
    for (int i = 0; i < z->n; i++) {
        const zip_rec *r = &z->rec[i];
        size_t namelen = strlen(r->name);
        uint8_t h[46];
        memset(h, 0, sizeof(h));
        put32(h, 0x02014b50);
        put16(h + 4, 0x0314);  // made by: unix, 2.0
        common_fields(h + 6, r, namelen);
        put32(h + 38, 0100644u << 16);  // -rw-r--r--
        put32(h + 42, (uint32_t)r->offset);
        if (zw_write(z, h, 46) || zw_write(z, r->name, namelen)) return -1;
    }
    uint8_t e[22];
    memset(e, 0, sizeof(e));
    put32(e, 0x06054b50);
    put16(e + 8, (uint32_t)z->n);
    put16(e + 10, (uint32_t)z->n);
    put32(e + 12, (uint32_t)(z->off - cd_start));
    put32(e + 16, (uint32_t)cd_start);
    if (z->off >= 0xffffffffu)
        return ckpt_errf(z->err, z->errlen, "%s: checkpoint larger than 4 GB (zip64 not written)", z->fname);
    return zw_write(z, e, sizeof(e));
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

// Records in torch's order: data.pkl, byteorder, data/<key>..., version.
static int write_records(zip_writer *z, const ckpt *c, const char *top, const pickle_buf *pkl) {
    char name[MAX_TOP + 64];
    snprintf(name, sizeof(name), "%s/data.pkl", top);
    if (zw_entry(z, name, pkl->p, pkl->n)) return -1;
    snprintf(name, sizeof(name), "%s/byteorder", top);
    if (zw_entry(z, name, "little", 6)) return -1;
    int key = 0;
    for (int i = 0; i < c->n; i++) {
        const ckpt_entry *e = &c->e[i];
        if (e->kind != CKPT_TENSOR) continue;
        snprintf(name, sizeof(name), "%s/data/%d", top, key++);
        uint64_t esize = e->dtype == CKPT_F32 ? 4 : 8;  // numel was overflow-checked when added
        if (zw_entry(z, name, e->data, (uint64_t)e->numel * esize)) return -1;
    }
    snprintf(name, sizeof(name), "%s/version", top);
    return zw_entry(z, name, "3\n", 2);
}

int pth_write(const ckpt *c, FILE *f, const char *top, const char *fname, char *err, size_t errlen) {
    if (!host_is_little_endian())
        return ckpt_errf(err, errlen, "%s: writing needs a little-endian host", fname);
    if (strlen(top) >= MAX_TOP) return ckpt_errf(err, errlen, "%s: folder name too long", fname);
    for (int i = 0; i < c->n; i++)
        if (c->e[i].kind == CKPT_TENSOR && (c->e[i].numel < 0 || (c->e[i].numel && !c->e[i].data)))
            return ckpt_errf(err, errlen, "%s: tensor '%s' has no data", fname, c->e[i].name);
    pickle_buf pkl;
    pickle_buf_init(&pkl);
    zip_writer z = {.f = f, .fname = fname, .err = err, .errlen = errlen};
    int rc = pickle_write_state_dict(c, &pkl) ? ckpt_errf(err, errlen, "%s: out of memory", fname) : 0;
    if (rc == 0) rc = write_records(&z, c, top, &pkl);
    if (rc == 0) rc = zw_finish(&z);
    for (int i = 0; i < z.n; i++) free(z.rec[i].name);
    free(z.rec);
    pickle_buf_free(&pkl);
    return rc;
}
