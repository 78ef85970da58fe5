// The training run's record for `predict` (model_meta.h): JSON out, a small JSON reader in.
#define _POSIX_C_SOURCE 200809L
#include "host/train/model_meta.h"
#include "common/fs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void model_meta_free(model_meta *m) {
    if (m->classes)
        for (int i = 0; i < m->num_classes; i++) free(m->classes[i]);
    free(m->classes);
    memset(m, 0, sizeof *m);
}

// ---- writing ----

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_json_string(sbuf *b, const char *s) {
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { sb_add(b, "\\", 1); sb_add(b, s, 1); }
        else if (ch < 0x20) sb_printf(b, "\\u%04x", ch);
        else sb_add(b, s, 1);  // UTF-8 passes through as JSON allows
    }
    sb_add(b, "\"", 1);
}

char *model_meta_to_json(const model_meta *m) {
    sbuf b = { 0 };
    sb_printf(&b, "{\"format\":\"cltrain-meta\",\"version\":%d,\"arch\":", MODEL_META_VERSION);
    sb_json_string(&b, m->arch[0] ? m->arch : "resnet18");
    sb_printf(&b, ",\"num_classes\":%d,\"classes\":[", m->num_classes);
    for (int i = 0; m->classes && i < m->num_classes; i++) {
        if (i) sb_add(&b, ",", 1);
        sb_json_string(&b, m->classes[i]);
    }
    sb_printf(&b, "],\"image_size\":%d,\"resize\":%d,\"normalize\":\"%s\"}", m->image_size,
              m->resize, m->normalize ? "imagenet" : "none");
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

// ---- reading: just the JSON this file writes (an object of strings, ints, string arrays) ----

typedef struct jp { const char *s; char *err; size_t errlen; } jp;

static int jp_fail(jp *j, const char *what) {
    snprintf(j->err, j->errlen, "bad JSON: %s", what);
    return -1;
}

static void jp_ws(jp *j) {
    while (*j->s == ' ' || *j->s == '\n' || *j->s == '\t' || *j->s == '\r') j->s++;
}

static int jp_hex(const char *s, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v * 16 + (unsigned)d;
    }
    return 0;
}

// A string (malloc'd into *out); \uXXXX below 0x80 only (what the writer emits) plus the
// common escapes; other \u escapes are encoded as UTF-8 (no surrogate pairs).
static int jp_string(jp *j, char **out) {
    jp_ws(j);
    if (*j->s != '"') return jp_fail(j, "expected a string");
    j->s++;
    sbuf b = { 0 };
    sb_add(&b, "", 0);
    while (*j->s && *j->s != '"') {
        if (*j->s != '\\') { sb_add(&b, j->s++, 1); continue; }
        j->s++;
        char c = *j->s++, o = 0;
        unsigned v;
        switch (c) {
        case '"': case '\\': case '/': o = c; break;
        case 'n': o = '\n'; break;
        case 't': o = '\t'; break;
        case 'r': o = '\r'; break;
        case 'b': o = '\b'; break;
        case 'f': o = '\f'; break;
        case 'u':
            if (jp_hex(j->s, &v)) { free(b.p); return jp_fail(j, "bad \\u escape"); }
            j->s += 4;
            if (v < 0x80) { o = (char)v; break; }
            char u[3];
            if (v < 0x800) { u[0] = (char)(0xc0 | v >> 6); u[1] = (char)(0x80 | (v & 63)); sb_add(&b, u, 2); }
            else { u[0] = (char)(0xe0 | v >> 12); u[1] = (char)(0x80 | ((v >> 6) & 63));
                   u[2] = (char)(0x80 | (v & 63)); sb_add(&b, u, 3); }
            continue;
        default: free(b.p); return jp_fail(j, "bad escape");
        }
        sb_add(&b, &o, 1);
    }
    if (*j->s != '"' || b.oom) { free(b.p); return jp_fail(j, "unterminated string"); }
    j->s++;
    *out = b.p;
    return 0;
}

static int jp_int(jp *j, long *v) {
    jp_ws(j);
    char *end;
    errno = 0;
    *v = strtol(j->s, &end, 10);
    if (end == j->s || errno) return jp_fail(j, "expected an integer");
    j->s = end;
    return 0;
}

static int jp_char(jp *j, char c) {
    jp_ws(j);
    if (*j->s != c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return jp_fail(j, what);
    }
    j->s++;
    return 0;
}

static int jp_classes(jp *j, model_meta *m, int *n) {
    if (jp_char(j, '[')) return -1;
    int cap = 0;
    *n = 0;
    jp_ws(j);
    if (*j->s == ']') { j->s++; return 0; }
    for (;;) {
        char *s;
        if (jp_string(j, &s)) return -1;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(m->classes, (size_t)cap * sizeof *p);
            if (!p) { free(s); return jp_fail(j, "out of memory"); }
            m->classes = p;
        }
        m->classes[(*n)++] = s;
        jp_ws(j);
        if (*j->s == ',') { j->s++; continue; }
        return jp_char(j, ']');
    }
}

static int jp_member(jp *j, model_meta *m, int *nclasses, long *version) {
    char *key = NULL, *s = NULL;
    long v;
    if (jp_string(j, &key) || jp_char(j, ':')) { free(key); return -1; }
    int rc = 0;
    if (!strcmp(key, "classes")) rc = jp_classes(j, m, nclasses);
    else if (!strcmp(key, "format") || !strcmp(key, "arch") || !strcmp(key, "normalize")) {
        rc = jp_string(j, &s);
        if (!rc && !strcmp(key, "format") && strcmp(s, "cltrain-meta"))
            rc = jp_fail(j, "not a cltrain-meta record");
        if (!rc && !strcmp(key, "arch")) snprintf(m->arch, sizeof m->arch, "%s", s);
        if (!rc && !strcmp(key, "normalize")) m->normalize = !strcmp(s, "imagenet");
        free(s);
    } else {
        rc = jp_int(j, &v);
        if (rc == 0) {
            if (!strcmp(key, "version")) *version = v;
            else if (!strcmp(key, "num_classes")) m->num_classes = (int)v;
            else if (!strcmp(key, "image_size")) m->image_size = (int)v;
            else if (!strcmp(key, "resize")) m->resize = (int)v;
        }
    }
    free(key);
    return rc;
}

int model_meta_from_json(model_meta *m, const char *json, char *err, size_t errlen) {
    jp j = { json, err, errlen };
    int nclasses = 0;
    long version = 0;
    memset(m, 0, sizeof *m);
    int rc = jp_char(&j, '{');
    jp_ws(&j);
    if (rc == 0 && *j.s == '}') j.s++;
    else
        while (rc == 0) {
            if ((rc = jp_member(&j, m, &nclasses, &version))) break;
            jp_ws(&j);
            if (*j.s == ',') { j.s++; continue; }
            rc = jp_char(&j, '}');
            break;
        }
    int n = m->num_classes;
    m->num_classes = nclasses;  // what the array holds, so model_meta_free frees each
    if (rc == 0 && version != MODEL_META_VERSION) {
        snprintf(err, errlen, "metadata version %ld, this cltrain reads version %d: rerun "
                 "`cltrain train --save` with this build", version, MODEL_META_VERSION);
        rc = -1;
    }
    if (rc == 0 && nclasses && n != nclasses) {
        snprintf(err, errlen, "metadata lists %d class names for %d classes", nclasses, n);
        rc = -1;
    }
    if (rc == 0 && (m->image_size < 1 || m->image_size > 4096 || m->resize < 0)) {
        snprintf(err, errlen, "metadata: image_size %d / resize %d out of range", m->image_size,
                 m->resize);
        rc = -1;
    }
    if (rc) { model_meta_free(m); return -1; }
    m->num_classes = n;
    return 0;
}

// ---- files ----

void model_meta_sidecar(const char *path, char *buf, size_t len) {
    snprintf(buf, len, "%s.json", path);
}

static int is_safetensors(const char *path) {
    size_t n = strlen(path);
    return n >= 12 && !strcmp(path + n - 12, ".safetensors");
}

int model_meta_save(const model_meta *m, const char *path, ckpt *c, int after_write,
                    char *err, size_t errlen) {
    int st = is_safetensors(path);
    if (st == after_write) return 0;  // safetensors: before the write; .pth: after it
    char *json = model_meta_to_json(m);
    if (!json) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = 0;
    if (st) {
        if (ckpt_add_string(c, MODEL_META_KEY, json)) { snprintf(err, errlen, "out of memory"); rc = -1; }
    } else {
        char side[4200];
        model_meta_sidecar(path, side, sizeof side);
        util_atomic_file a = { 0 };
        rc = util_atomic_open(&a, side, err, errlen);
        if (rc == 0) {
            fputs(json, a.f);
            fputc('\n', a.f);
            rc = util_atomic_commit(&a, err, errlen);
        }
        util_atomic_abort(&a);
    }
    free(json);
    return rc;
}

int model_meta_load(model_meta *m, const char *path, const ckpt *c, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    char msg[512];
    int k = c ? ckpt_find(c, MODEL_META_KEY) : -1;
    if (k >= 0 && c->e[k].kind == CKPT_STRING) {
        if (model_meta_from_json(m, c->e[k].sval, msg, sizeof msg) == 0) return 1;
        snprintf(err, errlen, "%s: %s", path, msg);
        return -1;
    }
    char side[4200];
    model_meta_sidecar(path, side, sizeof side);
    FILE *f = fopen(side, "rb");
    if (!f) return 0;
    sbuf b = { 0 };
    char buf[4096];
    size_t n;
    sb_add(&b, "", 0);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sb_add(&b, buf, n);
    fclose(f);
    int rc = b.oom ? -1 : model_meta_from_json(m, b.p, msg, sizeof msg);
    free(b.p);
    if (rc == 0) return 1;
    snprintf(err, errlen, "%s: %s", side, b.oom ? "out of memory" : msg);
    return -1;
}
