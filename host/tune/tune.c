// Tuned GEMM configurations on disk: the text file, device matching, which file applies.
// (The kernel tables and applying them to CLBlast: host/ops/gemm_tuning.c.)
#define _POSIX_C_SOURCE 200809L
#include "host/tune/tune.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/hash.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The files of tune/, embedded at build time (Makefile: build/tune_files.c).
extern const char *const tune_file_names[];
extern const char *const tune_file_texts[];
extern const size_t tune_file_count;

#define TUNE_MAGIC "cltrain-gemm-tune"
#define TUNE_VERSION 1

// ---- text form ----

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    size_t i = 0;
    while (s[i] == ' ' || s[i] == '\t') i++;
    if (i) memmove(s, s + i, n - i + 1);
}

static int parse_size(const char *s, size_t *out) {
    if (!s || !*s) return 1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || *s == '-') return 1;
    *out = (size_t)v;
    return 0;
}

// "kernel NAME K=V ..." (line without the leading word)
static int parse_kernel(tune_config *c, char *rest, char *err, size_t errlen) {
    char *save = NULL, *name = strtok_r(rest, " \t", &save);
    int k = name ? tune_kernel_by_name(name) : -1;
    UTIL_CHECK(k >= 0, "unknown kernel family '%s'", name ? name : "");
    UTIL_CHECK(!c->has_kernel[k], "kernel %s given twice", name);
    int seen[TUNE_MAX_PARAMS] = { 0 };
    for (char *kv = strtok_r(NULL, " \t", &save); kv; kv = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(kv, '=');
        UTIL_CHECK(eq, "expected NAME=VALUE, got '%s'", kv);
        *eq = 0;
        int i = 0;
        while (i < tune_kernel_nparams(k) && strcmp(tune_param_name(k, i), kv)) i++;
        UTIL_CHECK(i < tune_kernel_nparams(k), "%s has no parameter %s", tune_kernel_name(k), kv);
        UTIL_CHECK(!seen[i], "%s %s given twice", tune_kernel_name(k), kv);
        UTIL_CHECK(!parse_size(eq + 1, &c->kernel[k][i]), "%s %s: bad value '%s'",
                   tune_kernel_name(k), kv, eq + 1);
        seen[i] = 1;
    }
    for (int i = 0; i < tune_kernel_nparams(k); i++)
        UTIL_CHECK(seen[i], "%s misses %s (CLBlast needs every parameter)", tune_kernel_name(k),
                   tune_param_name(k, i));
    if (tune_kernel_check(k, c->kernel[k], NULL, err, errlen)) return 1;
    c->has_kernel[k] = 1;
    return 0;
}

// "route NN indirect-mnk=N direct=row|col indirect=row|col"
static int parse_route(tune_config *c, char *rest, int *seen, char *err, size_t errlen) {
    char *save = NULL, *cs = strtok_r(rest, " \t", &save);
    int ci = -1;
    for (int i = 0; cs && i < TUNE_CASES; i++)
        if (!strcmp(cs, tune_case_name(i))) ci = i;
    UTIL_CHECK(ci >= 0, "unknown route case '%s' (NN, NT, TN or TT)", cs ? cs : "");
    UTIL_CHECK(!seen[ci], "route %s given twice", cs);
    int got = 0;
    tune_route *r = &c->route[ci];
    for (char *kv = strtok_r(NULL, " \t", &save); kv; kv = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(kv, '=');
        UTIL_CHECK(eq, "expected NAME=VALUE, got '%s'", kv);
        *eq = 0;
        const char *v = eq + 1;
        if (!strcmp(kv, "indirect-mnk")) {
            size_t x;
            UTIL_CHECK(!parse_size(v, &x), "indirect-mnk: bad value '%s'", v);
            r->indirect_mnk = x;
            got |= 1;
        } else if (!strcmp(kv, "direct") || !strcmp(kv, "indirect")) {
            UTIL_CHECK(!strcmp(v, "row") || !strcmp(v, "col"), "%s must be row or col", kv);
            *(kv[0] == 'd' ? &r->direct_colmajor : &r->indirect_colmajor) = v[0] == 'c';
            got |= kv[0] == 'd' ? 2 : 4;
        } else {
            UTIL_CHECK(0, "unknown route setting '%s'", kv);
        }
    }
    UTIL_CHECK(got == 7, "route %s needs indirect-mnk=, direct= and indirect=", cs);
    seen[ci] = 1;
    return 0;
}

static int parse_identity(tune_config *c, const char *key, const char *val) {
    struct { const char *key; char *dst; size_t len; } f[] = {
        { "device", c->device, sizeof c->device },
        { "vendor", c->vendor, sizeof c->vendor },
        { "driver", c->driver, sizeof c->driver },
        { "platform", c->platform, sizeof c->platform },
        { "match-device", c->match_device, sizeof c->match_device },
        { "match-vendor", c->match_vendor, sizeof c->match_vendor },
        { "match-driver", c->match_driver, sizeof c->match_driver },
        { "match-platform", c->match_platform, sizeof c->match_platform },
        { "note", c->note, sizeof c->note },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(key, f[i].key)) {
            snprintf(f[i].dst, f[i].len, "%s", val);
            return 1;
        }
    return 0;
}

static int parse_line(tune_config *c, char *line, int *state, int *route_seen, char *err,
                      size_t errlen) {
    char *sp = line + strcspn(line, " \t");
    char *rest = *sp ? sp + 1 : sp;
    if (*sp) *sp = 0;
    trim(rest);
    if (*state == 0) {
        UTIL_CHECK(!strcmp(line, TUNE_MAGIC), "not a cltrain GEMM tuning file (no '%s' line)",
                   TUNE_MAGIC);
        size_t v;
        UTIL_CHECK(!parse_size(rest, &v) && v == TUNE_VERSION, "format version '%s' is not %d "
                   "(made by another cltrain; run `cltrain tune` again)", rest, TUNE_VERSION);
        *state = 1;
        return 0;
    }
    UTIL_CHECK(*state == 1, "text after 'end'");
    if (!strcmp(line, "end")) { *state = 2; return 0; }
    if (!strcmp(line, "kernel")) return parse_kernel(c, rest, err, errlen);
    if (!strcmp(line, "route")) return parse_route(c, rest, route_seen, err, errlen);
    UTIL_CHECK(parse_identity(c, line, rest), "unknown setting '%s'", line);
    return 0;
}

int tune_parse(tune_config *c, const char *text, char *err, size_t errlen) {
    tune_config_init(c);
    char *copy = strdup(text ? text : "");
    if (!copy) { snprintf(err, errlen, "out of host memory"); return 1; }
    int state = 0, lineno = 0, rc = 0, route_seen[TUNE_CASES] = { 0 };
    char msg[300];
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line && !rc;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        trim(line);
        if (!*line || *line == '#') continue;
        if (parse_line(c, line, &state, route_seen, msg, sizeof msg)) {
            snprintf(err, errlen, "line %d: %s", lineno, msg);
            rc = 1;
        }
    }
    // strtok_r skips empty lines, so line numbers count non-empty lines only: good enough to
    // find the line, and exact for files tune_write wrote.
    free(copy);
    if (rc) return rc;
    UTIL_CHECK(state == 2, "%s", state == 0 ? "empty or truncated (no '" TUNE_MAGIC "' line)"
                                             : "truncated (no 'end' line)");
    int nroutes = 0;
    for (int i = 0; i < TUNE_CASES; i++) nroutes += route_seen[i];
    UTIL_CHECK(nroutes == 0 || nroutes == TUNE_CASES, "routes must cover NN, NT, TN and TT");
    c->has_routes = nroutes == TUNE_CASES;
    UTIL_CHECK(c->device[0] || c->match_device[0], "no device or match-device line");
    return 0;
}

void tune_write(FILE *f, const tune_config *c) {
    fprintf(f, "# cltrain GEMM tuning: CLBlast kernel parameters and op_gemm routes for one "
               "device.\n# Made by `cltrain tune`; see README.md \"Tuning a new device\".\n");
    fprintf(f, "%s %d\n", TUNE_MAGIC, TUNE_VERSION);
    const struct { const char *key; const char *val; } id[] = {
        { "device", c->device }, { "vendor", c->vendor }, { "driver", c->driver },
        { "platform", c->platform }, { "match-device", c->match_device },
        { "match-vendor", c->match_vendor }, { "match-driver", c->match_driver },
        { "match-platform", c->match_platform }, { "note", c->note },
    };
    for (size_t i = 0; i < sizeof id / sizeof id[0]; i++)
        if (id[i].val[0]) fprintf(f, "%s %s\n", id[i].key, id[i].val);
    for (int k = 0; k < TK_COUNT; k++) {
        if (!c->has_kernel[k]) continue;
        fprintf(f, "kernel %s", tune_kernel_name(k));
        for (int i = 0; i < tune_kernel_nparams(k); i++)
            fprintf(f, " %s=%zu", tune_param_name(k, i), c->kernel[k][i]);
        fputc('\n', f);
    }
    if (c->has_routes)
        for (int i = 0; i < TUNE_CASES; i++)
            fprintf(f, "route %s indirect-mnk=%llu direct=%s indirect=%s\n", tune_case_name(i),
                    (unsigned long long)c->route[i].indirect_mnk,
                    c->route[i].direct_colmajor ? "col" : "row",
                    c->route[i].indirect_colmajor ? "col" : "row");
    fprintf(f, "end\n");
}

int tune_read_file(const char *path, tune_config *c, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    UTIL_CHECK(f, "cannot open %s: %s", path, strerror(errno));
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = fgetc(f) != EOF;
    fclose(f);
    UTIL_CHECK(!big, "%s: larger than a tuning file can be", path);
    UTIL_CHECK(memchr(buf, 0, n) == NULL, "%s: binary data in a text file", path);
    buf[n] = 0;
    char msg[400];
    if (tune_parse(c, buf, msg, sizeof msg)) {
        snprintf(err, errlen, "%s: %s", path, msg);
        return 1;
    }
    return 0;
}

int tune_write_file(const char *path, const tune_config *c, char *err, size_t errlen) {
    UTIL_CHECK(path && *path, "no path to write the tuning file to");
    UTIL_CHECK(util_mkdir_parent(path) == 0, "cannot create the folder of %s: %s", path,
               strerror(errno));
    util_atomic_file a;
    if (util_atomic_open(&a, path, err, errlen) != 0) return 1;
    tune_write(a.f, c);
    return util_atomic_commit(&a, err, errlen) != 0;
}

// ---- which device a file is for ----

void tune_set_identity(tune_config *c, const clrt_devinfo *d) {
    snprintf(c->device, sizeof c->device, "%s", d->name);
    snprintf(c->vendor, sizeof c->vendor, "%s", d->vendor);
    snprintf(c->driver, sizeof c->driver, "%s", d->driver);
    snprintf(c->platform, sizeof c->platform, "%s", d->platform_name);
    trim(c->device);
    trim(c->vendor);
    trim(c->driver);
    trim(c->platform);
}

// Exact field: equal after trimming (the file cannot keep trailing spaces). "" = not given.
static int same(const char *want, const char *have) {
    if (!want[0]) return 1;
    char h[300];
    snprintf(h, sizeof h, "%s", have);
    trim(h);
    return !strcmp(want, h);
}

static int glob(const char *pattern, const char *have) {
    if (!pattern[0]) return 1;
    char h[300];
    snprintf(h, sizeof h, "%s", have);
    trim(h);
    char alt[300];   // "a*|b*": any of the alternatives
    snprintf(alt, sizeof alt, "%s", pattern);
    char *save = NULL;
    for (char *p = strtok_r(alt, "|", &save); p; p = strtok_r(NULL, "|", &save))
        if (fnmatch(p, h, 0) == 0) return 1;
    return 0;
}

int tune_matches(const tune_config *c, const clrt_devinfo *d) {
    if (!c->device[0] && !c->match_device[0]) return 0;
    return same(c->device, d->name) && same(c->vendor, d->vendor) &&
           same(c->driver, d->driver) && same(c->platform, d->platform_name) &&
           glob(c->match_device, d->name) && glob(c->match_vendor, d->vendor) &&
           glob(c->match_driver, d->driver) && glob(c->match_platform, d->platform_name);
}

static void hash_str(uint64_t *h, const char *s) {   // trimmed, as the file keeps it
    char t[300];
    snprintf(t, sizeof t, "%s", s);
    trim(t);
    *h = util_hash_str(*h, t);
}

void tune_cache_path(const char *dir, const clrt_devinfo *d, char *out, size_t outlen) {
    out[0] = 0;
    if (!dir || !dir[0]) return;
    uint64_t h = UTIL_HASH_INIT;
    hash_str(&h, "cltrain-gemm-tune");
    hash_str(&h, d->name);
    hash_str(&h, d->vendor);
    hash_str(&h, d->driver);
    hash_str(&h, d->platform_name);
    snprintf(out, outlen, "%s/gemm-%016llx.tune", dir, (unsigned long long)h);
}

static void warn_foreign(const char *where, const tune_config *c, const clrt_devinfo *d) {
    fprintf(stderr, "cltrain: warning: ignoring GEMM tuning file %s: made for '%s' (%s, "
                    "driver %s), not '%s' (%s, driver %s)\n", where,
            c->device[0] ? c->device : c->match_device, c->vendor, c->driver, d->name,
            d->vendor, d->driver);
}

// 1: *c is a valid file for d; 0: missing (quiet) or damaged/foreign (a warning).
static int try_file(const char *path, const clrt_devinfo *d, tune_config *c, int must_exist) {
    char err[600];
    if (!must_exist && access(path, F_OK) != 0) return 0;
    if (tune_read_file(path, c, err, sizeof err)) {
        fprintf(stderr, "cltrain: warning: ignoring GEMM tuning file: %s (rerun `cltrain tune` "
                        "to make a new one)\n", err);
        return 0;
    }
    if (!tune_matches(c, d)) {
        warn_foreign(path, c, d);
        return 0;
    }
    return 1;
}

int tune_find(const clrt_devinfo *d, const char *path, const char *cache_dir, tune_config *c,
              char *source, size_t sourcelen) {
    if (path && *path && try_file(path, d, c, 1)) {
        snprintf(source, sourcelen, "CLTRAIN_TUNE_FILE %s", path);
        return 1;
    }
    char cache[1024];
    tune_cache_path(cache_dir, d, cache, sizeof cache);
    if (cache[0] && try_file(cache, d, c, 0)) {
        snprintf(source, sourcelen, "cache %s", cache);
        return 1;
    }
    for (size_t i = 0; i < tune_file_count; i++) {
        char err[400];
        if (tune_parse(c, tune_file_texts[i], err, sizeof err)) {
            fprintf(stderr, "cltrain: warning: shipped tuning file tune/%s is damaged: %s\n",
                    tune_file_names[i], err);
            continue;
        }
        if (tune_matches(c, d)) {
            snprintf(source, sourcelen, "shipped tune/%s", tune_file_names[i]);
            return 1;
        }
    }
    tune_config_init(c);
    return 0;
}
