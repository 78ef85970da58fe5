// safetensors: u64 little-endian header length N, N bytes of JSON describing
// each tensor's dtype, shape and [begin, end) in the data buffer that follows.
// A small strict JSON reader: every length and offset is checked against the
// real file size, nesting is bounded.
#include <stdlib.h>
#include <string.h>

#include "model/ckpt.h"
#include "model/pickle.h"

enum {
    MAX_HEADER = 100 << 20,
    MAX_JSON_DEPTH = 32,
};

#define KINDS_KEY "cltrain.scalar_kinds"

static const struct { const char *name; int esize; int is_float; } st_dtypes[] = {
    {"F32", 4, 1}, {"F16", 2, 1}, {"BF16", 2, 1}, {"F64", 8, 1}, {"I64", 8, 0},
    {"I32", 4, 0}, {"I16", 2, 0}, {"I8", 1, 0},  {"U8", 1, 0},   {"BOOL", 1, 0},
    {"U16", 2, 0}, {"U32", 4, 0}};
enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL, DT_U16,
       DT_U32, DT_COUNT };

typedef struct st_info {
    char *name;
    int dtype, ndim;
    int64_t shape[CKPT_MAX_DIMS];
    uint64_t begin, end;
} st_info;

typedef struct st_meta { char *key, *val; } st_meta;

typedef struct st_reader {
    const char *j;  // the JSON header
    size_t n, pos;
    int depth;
    st_info *t;
    int nt;
    st_meta *m;
    int nm;
    int meta_at;  // how many tensors precede "__metadata__" in the header
    const char *fname;
    char *err;
    size_t errlen;
} st_reader;

static int jfail(st_reader *r, const char *what) {
    return ckpt_errf(r->err, r->errlen, "%s: safetensors header: %s at byte %zu", r->fname, what,
                     r->pos);
}

static void ws(st_reader *r) {
    while (r->pos < r->n && (r->j[r->pos] == ' ' || r->j[r->pos] == '\t' || r->j[r->pos] == '\n' ||
                             r->j[r->pos] == '\r'))
        r->pos++;
}

static int expect(st_reader *r, char ch) {
    ws(r);
    if (r->pos >= r->n || r->j[r->pos] != ch) {
        char msg[32];
        snprintf(msg, sizeof(msg), "expected '%c'", ch);
        return jfail(r, msg);
    }
    r->pos++;
    return 0;
}

// Peeks past whitespace: 1 if the next char is ch (and consumes it).
static int accept(st_reader *r, char ch) {
    ws(r);
    if (r->pos < r->n && r->j[r->pos] == ch) {
        r->pos++;
        return 1;
    }
    return 0;
}

static int hex4(st_reader *r, uint32_t *v) {
    *v = 0;
    if (r->n - r->pos < 4) return jfail(r, "short \\u escape");
    for (int i = 0; i < 4; i++) {
        char ch = r->j[r->pos++];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) return jfail(r, "bad \\u escape");
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); return 4;
}

static int escape_char(st_reader *r, char *o, size_t *k) {
    if (r->pos >= r->n) return jfail(r, "unterminated string");
    char ch = r->j[r->pos++];
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *hit = strchr(from, ch);
    if (hit && ch) {
        o[(*k)++] = to[hit - from];
        return 0;
    }
    if (ch != 'u') return jfail(r, "bad escape");
    uint32_t cp, lo;
    if (hex4(r, &cp)) return -1;
    if (cp >= 0xd800 && cp < 0xdc00) {  // a surrogate pair encodes one code point
        if (r->n - r->pos < 2 || r->j[r->pos] != '\\' || r->j[r->pos + 1] != 'u')
            return jfail(r, "lone surrogate");
        r->pos += 2;
        if (hex4(r, &lo) || lo < 0xdc00 || lo > 0xdfff) return jfail(r, "bad surrogate pair");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0) return jfail(r, "NUL in a string");
    *k += put_utf8(o + *k, cp);
    return 0;
}

// A JSON string into a new NUL-terminated buffer (escapes never grow it).
static int jstring(st_reader *r, char **out) {
    *out = NULL;
    if (expect(r, '"')) return -1;
    size_t start = r->pos, k = 0;
    while (r->pos < r->n && r->j[r->pos] != '"') r->pos += r->j[r->pos] == '\\' ? 2 : 1;
    if (r->pos >= r->n) return jfail(r, "unterminated string");
    char *o = malloc(r->pos - start + 1);
    if (!o) return jfail(r, "out of memory");
    size_t end = r->pos;
    r->pos = start;
    while (r->pos < end) {
        unsigned char ch = (unsigned char)r->j[r->pos++];
        int rc = 0;
        if (ch == '\\') rc = escape_char(r, o, &k);
        else if (ch < 0x20 || ch == 0) rc = jfail(r, "control character in a string");
        else o[k++] = (char)ch;
        if (rc) {
            free(o);
            return -1;
        }
    }
    r->pos = end + 1;
    o[k] = 0;
    *out = o;
    return 0;
}

static int juint(st_reader *r, uint64_t *v) {
    ws(r);
    *v = 0;
    size_t start = r->pos;
    while (r->pos < r->n && r->j[r->pos] >= '0' && r->j[r->pos] <= '9') {
        uint64_t d = (uint64_t)(r->j[r->pos++] - '0');
        if (*v > (UINT64_MAX - d) / 10) return jfail(r, "number too large");
        *v = *v * 10 + d;
    }
    return r->pos == start ? jfail(r, "expected a non-negative integer") : 0;
}

static int skip_value(st_reader *r);

static int skip_container(st_reader *r, char close) {
    if (++r->depth > MAX_JSON_DEPTH) return jfail(r, "nested too deeply");
    if (!accept(r, close)) {
        do {
            if (close == '}') {
                char *k = NULL;
                if (jstring(r, &k)) return -1;
                free(k);
                if (expect(r, ':')) return -1;
            }
            if (skip_value(r)) return -1;
        } while (accept(r, ','));
        if (expect(r, close)) return -1;
    }
    r->depth--;
    return 0;
}

static int skip_value(st_reader *r) {
    ws(r);
    if (r->pos >= r->n) return jfail(r, "truncated");
    char ch = r->j[r->pos];
    if (ch == '{' || ch == '[') {
        r->pos++;
        return skip_container(r, ch == '{' ? '}' : ']');
    }
    if (ch == '"') {
        char *s = NULL;
        int rc = jstring(r, &s);
        free(s);
        return rc;
    }
    size_t start = r->pos;  // number, true, false, null: a run of literal characters
    while (r->pos < r->n && strchr("0123456789+-.eEtruefalsn", r->j[r->pos]) && r->j[r->pos]) r->pos++;
    return r->pos == start ? jfail(r, "unexpected character") : 0;
}

static int parse_shape(st_reader *r, st_info *t) {
    if (expect(r, '[')) return -1;
    t->ndim = 0;
    if (accept(r, ']')) return 0;
    do {
        uint64_t v;
        if (t->ndim >= CKPT_MAX_DIMS) return jfail(r, "more than 8 dimensions");
        if (juint(r, &v)) return -1;
        if (v > INT64_MAX) return jfail(r, "dimension too large");
        t->shape[t->ndim++] = (int64_t)v;
    } while (accept(r, ','));
    return expect(r, ']');
}

static int parse_offsets(st_reader *r, st_info *t) {
    if (expect(r, '[') || juint(r, &t->begin) || expect(r, ',') || juint(r, &t->end)) return -1;
    return expect(r, ']');
}

static int parse_dtype(st_reader *r, st_info *t) {
    char *s = NULL;
    if (jstring(r, &s)) return -1;
    t->dtype = -1;
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) t->dtype = i;
    int rc = 0;
    if (t->dtype < 0)
        rc = ckpt_errf(r->err, r->errlen, "%s: tensor '%s' has unsupported dtype '%.20s'", r->fname,
                       t->name, s);
    free(s);
    return rc;
}

static int parse_tensor(st_reader *r, st_info *t) {
    int have = 0;
    t->dtype = -1;
    if (expect(r, '{')) return -1;
    if (accept(r, '}')) return jfail(r, "empty tensor description");
    do {
        char *k = NULL;
        int rc = jstring(r, &k) || expect(r, ':');
        if (!rc && strcmp(k, "dtype") == 0) rc = parse_dtype(r, t), have |= 1;
        else if (!rc && strcmp(k, "shape") == 0) rc = parse_shape(r, t), have |= 2;
        else if (!rc && strcmp(k, "data_offsets") == 0) rc = parse_offsets(r, t), have |= 4;
        else if (!rc) rc = skip_value(r);
        free(k);
        if (rc) return -1;
    } while (accept(r, ','));
    if (expect(r, '}')) return -1;
    return have == 7 ? 0 : jfail(r, "tensor lacks dtype, shape or data_offsets");
}

static int parse_metadata(st_reader *r) {
    if (expect(r, '{')) return -1;
    if (accept(r, '}')) return 0;
    do {
        st_meta *m = realloc(r->m, (size_t)(r->nm + 1) * sizeof(*m));
        if (!m) return jfail(r, "out of memory");
        r->m = m;
        st_meta *e = &r->m[r->nm++];
        e->key = e->val = NULL;
        if (jstring(r, &e->key) || expect(r, ':') || jstring(r, &e->val)) return -1;
    } while (accept(r, ','));
    return expect(r, '}');
}

static int parse_header(st_reader *r) {
    if (expect(r, '{')) return -1;
    if (accept(r, '}')) return 0;
    do {
        char *k = NULL;
        if (jstring(r, &k)) return -1;
        int rc = expect(r, ':');
        if (!rc && strcmp(k, "__metadata__") == 0) {
            r->meta_at = r->nt;
            rc = parse_metadata(r);
            free(k);
            k = NULL;
        } else if (!rc) {
            st_info *t = realloc(r->t, (size_t)(r->nt + 1) * sizeof(*t));
            if (!t) rc = jfail(r, "out of memory");
            else {
                r->t = t;
                memset(&r->t[r->nt], 0, sizeof(*t));
                r->t[r->nt++].name = k;
                k = NULL;
                rc = parse_tensor(r, &r->t[r->nt - 1]);
            }
        }
        if (rc) {
            free(k);
            return -1;
        }
    } while (accept(r, ','));
    if (expect(r, '}')) return -1;
    ws(r);  // the header may be space-padded
    return r->pos == r->n ? 0 : jfail(r, "trailing bytes");
}

static int cmp_span(const void *a, const void *b) {
    const st_info *x = *(const st_info *const *)a, *y = *(const st_info *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// Every span matches its dtype and shape; sorted, spans tile [0, size) exactly.
static int check_spans(st_reader *r, uint64_t size) {
    for (int i = 0; i < r->nt; i++) {
        st_info *t = &r->t[i];
        int64_t numel = ckpt_numel(t->ndim, t->shape);
        uint64_t es = (uint64_t)st_dtypes[t->dtype].esize;
        if (numel < 0 || (uint64_t)numel > UINT64_MAX / es || t->end < t->begin ||
            t->end - t->begin != (uint64_t)numel * es)
            return ckpt_errf(r->err, r->errlen, "%s: tensor '%s' has data_offsets [%llu, %llu] "
                             "that do not match its dtype and shape", r->fname, t->name,
                             (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    const st_info **s = malloc((size_t)(r->nt ? r->nt : 1) * sizeof(*s));
    if (!s) return ckpt_errf(r->err, r->errlen, "%s: out of memory", r->fname);
    for (int i = 0; i < r->nt; i++) s[i] = &r->t[i];
    qsort(s, (size_t)r->nt, sizeof(*s), cmp_span);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < r->nt && rc == 0; i++) {
        if (s[i]->begin != at)
            rc = ckpt_errf(r->err, r->errlen, "%s: tensor '%s' starts at %llu, expected %llu "
                           "(holes or overlaps)", r->fname, s[i]->name,
                           (unsigned long long)s[i]->begin, (unsigned long long)at);
        at = s[i]->end;
    }
    if (rc == 0 && at != size)
        rc = ckpt_errf(r->err, r->errlen, "%s: tensors cover %llu bytes of a %llu-byte data buffer",
                       r->fname, (unsigned long long)at, (unsigned long long)size);
    free(s);
    return rc;
}

static void widen(int dtype, const uint8_t *src, void *dst, int64_t n) {
    float *f = dst;
    int64_t *l = dst;
    int es = st_dtypes[dtype].esize;
    for (int64_t j = 0; j < n; j++, src += es) {
        uint64_t v = 0;
        for (int i = es - 1; i >= 0; i--) v = v << 8 | src[i];
        switch (dtype) {
        case DT_F32: { uint32_t w = (uint32_t)v; memcpy(&f[j], &w, 4); break; }
        case DT_F16: f[j] = ckpt_half_to_f32((uint16_t)v); break;
        case DT_BF16: f[j] = ckpt_bf16_to_f32((uint16_t)v); break;
        case DT_F64: { double d; memcpy(&d, &v, 8); f[j] = (float)d; break; }
        case DT_I32: l[j] = (int32_t)(uint32_t)v; break;
        case DT_I16: l[j] = (int16_t)(uint16_t)v; break;
        case DT_I8: l[j] = (int8_t)(uint8_t)v; break;
        default: l[j] = (int64_t)v; break;  // I64, U8, BOOL, U16, U32
        }
    }
}

static int load_tensor(st_reader *r, ckpt *c, FILE *f, uint64_t data_start, const st_info *t) {
    uint64_t nbytes = t->end - t->begin;
    int64_t numel = ckpt_numel(t->ndim, t->shape);
    int is_float = st_dtypes[t->dtype].is_float;
    size_t out_es = is_float ? 4 : 8;
    if ((uint64_t)numel > SIZE_MAX / 8 || nbytes > SIZE_MAX)
        return ckpt_errf(r->err, r->errlen, "%s: tensor '%s' too large", r->fname, t->name);
    uint8_t *raw = malloc(nbytes ? (size_t)nbytes : 1);
    void *out = malloc(numel ? (size_t)numel * out_es : 1);
    int rc = 0;
    if (!raw || !out) rc = ckpt_errf(r->err, r->errlen, "%s: out of memory for '%s'", r->fname, t->name);
    else if (fseek(f, (long)(data_start + t->begin), SEEK_SET) != 0 ||
             fread(raw, 1, (size_t)nbytes, f) != nbytes)
        rc = ckpt_errf(r->err, r->errlen, "%s: cannot read tensor '%s'", r->fname, t->name);
    if (rc == 0) widen(t->dtype, raw, out, numel);
    free(raw);
    if (rc) {
        free(out);
        return -1;
    }
    if (ckpt_add_tensor_owned(c, t->name, is_float ? CKPT_F32 : CKPT_I64, t->ndim, t->shape, out))
        return ckpt_errf(r->err, r->errlen, "%s: out of memory for '%s'", r->fname, t->name);
    return 0;
}

// The kind cltrain recorded for a metadata key: 'i', 'f', 's' or 0.
static char scalar_kind(const st_reader *r, const char *key) {
    for (int i = 0; i < r->nm; i++) {
        if (strcmp(r->m[i].key, KINDS_KEY) != 0) continue;
        size_t n = strlen(key);
        for (const char *l = r->m[i].val; *l;) {
            const char *nl = strchr(l, '\n');
            size_t len = nl ? (size_t)(nl - l) : strlen(l);
            if (len == n + 2 && l[1] == ' ' && memcmp(l + 2, key, n) == 0) return l[0];
            l += len + (nl ? 1 : 0);
        }
    }
    return 0;
}

static int add_metadata(st_reader *r, ckpt *c) {
    for (int i = 0; i < r->nm; i++) {
        const char *k = r->m[i].key, *v = r->m[i].val;
        char kind = scalar_kind(r, k), *end = NULL;
        int rc = 0;
        if (strcmp(k, KINDS_KEY) == 0) continue;
        if (kind == 'i') {
            long long x = strtoll(v, &end, 10);
            rc = *v && !*end ? ckpt_add_int(c, k, x) : -2;
        } else if (kind == 'f') {
            double x = strtod(v, &end);
            rc = *v && !*end ? ckpt_add_float(c, k, x) : -2;
        } else {
            rc = ckpt_add_string(c, k, v);
        }
        if (rc == -2) return ckpt_errf(r->err, r->errlen, "%s: metadata '%s' is not a number", r->fname, k);
        if (rc) return ckpt_errf(r->err, r->errlen, "%s: out of memory", r->fname);
    }
    return 0;
}

static int read_header(st_reader *r, FILE *f, long long fsize, uint64_t *data_start, char **hdr) {
    uint8_t b[8];
    if (fsize < 8 || fread(b, 1, 8, f) != 8)
        return ckpt_errf(r->err, r->errlen, "%s: too short for safetensors", r->fname);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > (uint64_t)(fsize - 8) || n > MAX_HEADER)
        return ckpt_errf(r->err, r->errlen, "%s: safetensors header length %llu exceeds the file "
                         "(%lld bytes) or 100 MB", r->fname, (unsigned long long)n, fsize);
    *hdr = malloc((size_t)n + 1);
    if (!*hdr) return ckpt_errf(r->err, r->errlen, "%s: out of memory", r->fname);
    if (fread(*hdr, 1, (size_t)n, f) != n)
        return ckpt_errf(r->err, r->errlen, "%s: cannot read the safetensors header", r->fname);
    (*hdr)[n] = 0;
    r->j = *hdr;
    r->n = (size_t)n;
    *data_start = 8 + n;
    return 0;
}

static int load_all(st_reader *r, ckpt *c, FILE *f, long long fsize) {
    uint64_t data_start = 0;
    char *hdr = NULL;
    int rc = read_header(r, f, fsize, &data_start, &hdr);
    if (rc == 0) rc = parse_header(r);
    if (rc == 0) rc = check_spans(r, (uint64_t)fsize - data_start);
    for (int i = 0; i <= r->nt && rc == 0; i++) {
        if (i == r->meta_at) rc = add_metadata(r, c);
        if (rc == 0 && i < r->nt) rc = load_tensor(r, c, f, data_start, &r->t[i]);
    }
    free(hdr);
    return rc;
}

int safetensors_read(ckpt *c, const char *path, const char *fname, char *err, size_t errlen) {
    st_reader r = {.fname = fname, .err = err, .errlen = errlen, .meta_at = -1};
    FILE *f = fopen(path, "rb");
    if (!f) return ckpt_errf(err, errlen, "%s: cannot open", fname);
    long long fsize = -1;
    if (fseek(f, 0, SEEK_END) == 0) fsize = ftell(f);
    int rc = fsize < 0 || fseek(f, 0, SEEK_SET) != 0
                 ? ckpt_errf(err, errlen, "%s: cannot seek", fname)
                 : load_all(&r, c, f, fsize);
    if (rc == 0 && r.meta_at < 0 && r.nm) rc = add_metadata(&r, c);
    fclose(f);
    for (int i = 0; i < r.nt; i++) free(r.t[i].name);
    free(r.t);
    for (int i = 0; i < r.nm; i++) {
        free(r.m[i].key);
        free(r.m[i].val);
    }
    free(r.m);
    return rc;
}

// --- writer ---

static void put_s(pickle_buf *b, const char *s) { pickle_buf_put(b, s, strlen(s)); }

static void put_json_string(pickle_buf *b, const char *s) {
    put_s(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            pickle_buf_put(b, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            put_s(b, esc);
        } else {
            pickle_buf_put(b, s, 1);
        }
    }
    put_s(b, "\"");
}

// "__metadata__": every scalar as a string, plus the kinds that restore them.
static void put_metadata(const ckpt *c, pickle_buf *b, pickle_buf *kinds, int comma) {
    int first = 1;
    for (int i = 0; i < c->n; i++) {
        const ckpt_entry *e = &c->e[i];
        char num[64];
        if (e->kind == CKPT_TENSOR) continue;
        put_s(b, first ? (comma ? ",\"__metadata__\":{" : "\"__metadata__\":{") : ",");
        first = 0;
        put_json_string(b, e->name);
        put_s(b, ":");
        if (e->kind == CKPT_INT) snprintf(num, sizeof(num), "%lld", (long long)e->ival);
        if (e->kind == CKPT_FLOAT) snprintf(num, sizeof(num), "%.17g", e->fval);  // round-trips exactly
        put_json_string(b, e->kind == CKPT_STRING ? (e->sval ? e->sval : "") : num);
        char k[2] = {e->kind == CKPT_INT ? 'i' : e->kind == CKPT_FLOAT ? 'f' : 's', ' '};
        pickle_buf_put(kinds, k, 2);
        put_s(kinds, e->name);
        put_s(kinds, "\n");
    }
    if (first) return;
    pickle_buf_put(kinds, "", 1);  // NUL-terminate
    put_s(b, ",");
    put_json_string(b, KINDS_KEY);
    put_s(b, ":");
    put_json_string(b, kinds->oom ? "" : (const char *)kinds->p);
    put_s(b, "}");
}

static int build_header(const ckpt *c, pickle_buf *b) {
    pickle_buf kinds;
    pickle_buf_init(&kinds);
    put_s(b, "{");
    int comma = 0;
    uint64_t off = 0;
    for (int i = 0; i < c->n; i++) {
        const ckpt_entry *e = &c->e[i];
        char num[64];
        if (e->kind != CKPT_TENSOR) continue;
        put_s(b, comma ? "," : "");
        comma = 1;
        put_json_string(b, e->name);
        put_s(b, e->dtype == CKPT_F32 ? ":{\"dtype\":\"F32\",\"shape\":[" : ":{\"dtype\":\"I64\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof(num), "%s%lld", d ? "," : "", (long long)e->shape[d]);
            put_s(b, num);
        }
        uint64_t end = off + (uint64_t)e->numel * (e->dtype == CKPT_F32 ? 4 : 8);
        snprintf(num, sizeof(num), "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)end);
        put_s(b, num);
        off = end;
    }
    put_metadata(c, b, &kinds, comma);  // last, so tensors-then-scalars order round-trips
    put_s(b, "}");
    while (b->n % 8) put_s(b, " ");  // keeps the data buffer 8-byte aligned, as safetensors does
    int oom = kinds.oom || b->oom;
    pickle_buf_free(&kinds);
    return oom ? -1 : 0;
}

int safetensors_write(const ckpt *c, FILE *f, const char *fname, char *err, size_t errlen) {
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1)
        return ckpt_errf(err, errlen, "%s: writing needs a little-endian host", fname);
    for (int i = 0; i < c->n; i++) {
        const char *nm = c->e[i].name;
        if (strcmp(nm, "__metadata__") == 0 || strcmp(nm, KINDS_KEY) == 0 ||
            (c->e[i].kind != CKPT_TENSOR && strchr(nm, '\n')))
            return ckpt_errf(err, errlen, "%s: entry name '%s' cannot be stored in safetensors", fname, nm);
        if (c->e[i].kind == CKPT_TENSOR && c->e[i].numel && !c->e[i].data)
            return ckpt_errf(err, errlen, "%s: tensor '%s' has no data", fname, nm);
    }
    pickle_buf h;
    pickle_buf_init(&h);
    int rc = build_header(c, &h) ? ckpt_errf(err, errlen, "%s: out of memory", fname) : 0;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (rc == 0 && (fwrite(len, 1, 8, f) != 8 || fwrite(h.p, 1, h.n, f) != h.n))
        rc = ckpt_errf(err, errlen, "%s: write failed", fname);
    for (int i = 0; i < c->n && rc == 0; i++) {
        const ckpt_entry *e = &c->e[i];
        size_t n = e->kind == CKPT_TENSOR ? (size_t)e->numel * (e->dtype == CKPT_F32 ? 4 : 8) : 0;
        if (n && fwrite(e->data, 1, n, f) != n) rc = ckpt_errf(err, errlen, "%s: write failed", fname);
    }
    pickle_buf_free(&h);
    return rc;
}
