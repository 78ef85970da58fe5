// Tuned GEMM configurations: the kernel tables, the text file, device matching, which file
// applies, and applying the parameters to CLBlast.
#define _POSIX_C_SOURCE 200809L
#include "host/tune/tune.h"
#include "common/fs.h"
#include "common/hash.h"

#include <clblast_c.h>
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

// ---- the kernel families: CLBlast 1.5.3's parameter names (its database order) ----

typedef struct kernel_info {
    const char *name;
    int n;
    const char *params[TUNE_MAX_PARAMS];
    size_t defaults[TUNE_MAX_PARAMS];   // CLBlast 1.5.3's "default" database entry (single)
} kernel_info;

static const kernel_info kernels[TK_COUNT] = {
    { "Xgemm", 16,
      { "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA",
        "SB", "STRM", "STRN", "VWM", "VWN" },
      { 0, 1, 32, 2, 8, 8, 32, 16, 16, 32, 1, 1, 0, 0, 4, 2 } },
    { "XgemmDirect", 10,
      { "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD" },
      { 2, 8, 8, 8, 8, 1, 1, 1, 1, 16 } },
    { "Copy", 4, { "COPY_DIMX", "COPY_DIMY", "COPY_VW", "COPY_WPT" }, { 16, 16, 4, 2 } },
    { "Pad", 4, { "PAD_DIMX", "PAD_DIMY", "PAD_WPTX", "PAD_WPTY" }, { 32, 8, 2, 1 } },
    { "Transpose", 4, { "TRA_DIM", "TRA_PAD", "TRA_SHUFFLE", "TRA_WPT" }, { 8, 0, 1, 4 } },
    { "Padtranspose", 3, { "PADTRA_PAD", "PADTRA_TILE", "PADTRA_WPT" }, { 0, 8, 4 } },
};

static const char *const case_names[TUNE_CASES] = { "NN", "NT", "TN", "TT" };

const char *tune_kernel_name(int k) { return k >= 0 && k < TK_COUNT ? kernels[k].name : "?"; }
int tune_kernel_nparams(int k) { return k >= 0 && k < TK_COUNT ? kernels[k].n : 0; }
const char *tune_param_name(int k, int i) { return kernels[k].params[i]; }
const char *tune_case_name(int c) { return c >= 0 && c < TUNE_CASES ? case_names[c] : "?"; }

int tune_kernel_by_name(const char *name) {
    for (int k = 0; k < TK_COUNT; k++)
        if (!strcmp(kernels[k].name, name)) return k;
    return -1;
}

void tune_default_params(int k, size_t *v) {
    memcpy(v, kernels[k].defaults, sizeof kernels[k].defaults);
}

void tune_config_init(tune_config *c) { memset(c, 0, sizeof *c); }

// ---- constraints (those of CLBlast's own tuners, src/tuning/kernels/*.hpp) ----

static int pow2(size_t x) { return x && !(x & (x - 1)); }
static int mult(size_t x, size_t of) { return of && x % of == 0; }

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            snprintf(err, errlen, __VA_ARGS__);            \
            return 1;                                      \
        }                                                  \
    } while (0)

static int check_xgemm(const size_t *v, char *err, size_t errlen, size_t *wg, size_t *local) {
    size_t GEMMK = v[0], KREG = v[1], KWG = v[2], KWI = v[3], MDIMA = v[4], MDIMC = v[5],
           MWG = v[6], NDIMB = v[7], NDIMC = v[8], NWG = v[9], SA = v[10], SB = v[11],
           STRM = v[12], STRN = v[13], VWM = v[14], VWN = v[15];
    CHECK(GEMMK <= 1 && SA <= 1 && SB <= 1 && STRM <= 1 && STRN <= 1,
          "GEMMK, SA, SB, STRM, STRN must be 0 or 1");
    CHECK(pow2(VWM) && pow2(VWN) && VWM <= 16 && VWN <= 16, "VWM, VWN must be 1, 2, 4, 8 or 16");
    CHECK(mult(KWG, KWI), "KWG must be a multiple of KWI");
    CHECK(mult(MWG, MDIMC * VWM) && mult(MWG, MDIMA * VWM), "MWG must be a multiple of "
          "MDIMC*VWM and MDIMA*VWM");
    CHECK(mult(NWG, NDIMC * VWN) && mult(NWG, NDIMB * VWN), "NWG must be a multiple of "
          "NDIMC*VWN and NDIMB*VWN");
    if (GEMMK == 0) {
        CHECK(KREG == 1, "KREG must be 1 with GEMMK 0");
        CHECK(mult(MDIMC * NDIMC, MDIMA) && mult(MDIMC * NDIMC, NDIMB) &&
              mult(KWG, MDIMC * NDIMC / MDIMA) && mult(KWG, MDIMC * NDIMC / NDIMB),
              "KWG must be a multiple of MDIMC*NDIMC/MDIMA and MDIMC*NDIMC/NDIMB");
    } else {
        CHECK(KWG == 1 && KWI == 1 && SA == 0 && SB == 0 && STRM == 0 && STRN == 0,
              "GEMMK 1 needs KWG 1, KWI 1, SA 0, SB 0, STRM 0, STRN 0");
        CHECK(MDIMA == MDIMC && NDIMB == NDIMC, "GEMMK 1 needs MDIMA = MDIMC, NDIMB = NDIMC");
        CHECK(mult(KREG, VWN), "KREG must be a multiple of VWN");
    }
    *wg = MDIMC * NDIMC;
    *local = 4 * (SA * KWG * MWG + SB * KWG * NWG);
    return 0;
}

static int check_direct(const size_t *v, char *err, size_t errlen, size_t *wg, size_t *local) {
    size_t KWID = v[0], MDIMAD = v[1], MDIMCD = v[2], NDIMBD = v[3], NDIMCD = v[4],
           PADA = v[5], PADB = v[6], VWMD = v[7], VWND = v[8], WGD = v[9];
    CHECK(PADA <= 1 && PADB <= 1, "PADA, PADB must be 0 or 1");
    CHECK(pow2(VWMD) && pow2(VWND) && VWMD <= 16 && VWND <= 16,
          "VWMD, VWND must be 1, 2, 4, 8 or 16");
    CHECK(mult(WGD, KWID), "WGD must be a multiple of KWID");
    CHECK(mult(WGD, MDIMCD * VWMD) && mult(WGD, NDIMCD * VWND) && mult(WGD, MDIMAD * VWMD) &&
          mult(WGD, NDIMBD * VWND), "WGD must be a multiple of MDIMCD*VWMD, NDIMCD*VWND, "
          "MDIMAD*VWMD and NDIMBD*VWND");
    CHECK(mult(MDIMCD * NDIMCD, MDIMAD) && mult(MDIMCD * NDIMCD, NDIMBD) &&
          mult(WGD, MDIMCD * NDIMCD / MDIMAD) && mult(WGD, MDIMCD * NDIMCD / NDIMBD),
          "WGD must be a multiple of MDIMCD*NDIMCD/MDIMAD and MDIMCD*NDIMCD/NDIMBD");
    *wg = MDIMCD * NDIMCD;
    *local = 4 * (WGD * (WGD + PADA) + WGD * (WGD + PADB));
    return 0;
}

int tune_kernel_check(int k, const size_t *v, const clrt_devinfo *d, char *err, size_t errlen) {
    CHECK(k >= 0 && k < TK_COUNT, "unknown kernel family %d", k);
    static const char *const may_be_zero[] = { "GEMMK", "SA", "SB", "STRM", "STRN", "PADA",
                                                "PADB", "TRA_PAD", "TRA_SHUFFLE", "PADTRA_PAD" };
    for (int i = 0; i < kernels[k].n; i++) {
        int zero_ok = 0;
        for (size_t j = 0; j < sizeof may_be_zero / sizeof may_be_zero[0]; j++)
            zero_ok |= !strcmp(may_be_zero[j], kernels[k].params[i]);
        CHECK(v[i] <= 4096 && (v[i] >= 1 || zero_ok), "%s %s=%zu is out of range",
              kernels[k].name, kernels[k].params[i], v[i]);
    }
    size_t wg = 1, local = 0;
    int rc = 0;
    switch (k) {
    case TK_XGEMM: rc = check_xgemm(v, err, errlen, &wg, &local); break;
    case TK_XGEMM_DIRECT: rc = check_direct(v, err, errlen, &wg, &local); break;
    case TK_COPY:    // COPY_DIMX COPY_DIMY COPY_VW COPY_WPT
        CHECK(pow2(v[2]) && v[2] <= 16 && v[3] >= 1, "COPY_VW must be 1..16 (a power of two), "
              "COPY_WPT at least 1");
        wg = v[0] * v[1];
        break;
    case TK_PAD:     // PAD_DIMX PAD_DIMY PAD_WPTX PAD_WPTY
        CHECK(v[2] >= 1 && v[3] >= 1, "PAD_WPTX, PAD_WPTY must be at least 1");
        wg = v[0] * v[1];
        break;
    case TK_TRANSPOSE:   // TRA_DIM TRA_PAD TRA_SHUFFLE TRA_WPT
        CHECK(v[1] <= 1 && v[2] <= 1 && pow2(v[3]), "TRA_PAD, TRA_SHUFFLE must be 0 or 1, "
              "TRA_WPT a power of two");
        wg = v[0] * v[0];
        local = 4 * v[3] * (v[3] * v[0]) * (v[0] + v[1]);
        break;
    case TK_PADTRANSPOSE:    // PADTRA_PAD PADTRA_TILE PADTRA_WPT
        CHECK(v[0] <= 1 && v[2] >= 1, "PADTRA_PAD must be 0 or 1, PADTRA_WPT at least 1");
        wg = v[1] * v[1];
        local = 4 * (v[2] * v[1]) * (v[2] * v[1] + v[0]);
        break;
    }
    if (rc) return rc;
    CHECK(wg >= 1, "%s: empty work-group", kernels[k].name);
    if (d) {
        CHECK(wg <= d->max_work_group, "%s: work-group of %zu exceeds the device's %zu",
              kernels[k].name, wg, d->max_work_group);
        CHECK(local <= d->local_mem, "%s: needs %zu bytes of local memory, the device has %lu",
              kernels[k].name, local, (unsigned long)d->local_mem);
    }
    return 0;
}

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
    CHECK(k >= 0, "unknown kernel family '%s'", name ? name : "");
    CHECK(!c->has_kernel[k], "kernel %s given twice", name);
    int seen[TUNE_MAX_PARAMS] = { 0 };
    for (char *kv = strtok_r(NULL, " \t", &save); kv; kv = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(kv, '=');
        CHECK(eq, "expected NAME=VALUE, got '%s'", kv);
        *eq = 0;
        int i = 0;
        while (i < kernels[k].n && strcmp(kernels[k].params[i], kv)) i++;
        CHECK(i < kernels[k].n, "%s has no parameter %s", kernels[k].name, kv);
        CHECK(!seen[i], "%s %s given twice", kernels[k].name, kv);
        CHECK(!parse_size(eq + 1, &c->kernel[k][i]), "%s %s: bad value '%s'", kernels[k].name,
              kv, eq + 1);
        seen[i] = 1;
    }
    for (int i = 0; i < kernels[k].n; i++)
        CHECK(seen[i], "%s misses %s (CLBlast needs every parameter)", kernels[k].name,
              kernels[k].params[i]);
    if (tune_kernel_check(k, c->kernel[k], NULL, err, errlen)) return 1;
    c->has_kernel[k] = 1;
    return 0;
}

// "route NN indirect-mnk=N direct=row|col indirect=row|col"
static int parse_route(tune_config *c, char *rest, int *seen, char *err, size_t errlen) {
    char *save = NULL, *cs = strtok_r(rest, " \t", &save);
    int ci = -1;
    for (int i = 0; cs && i < TUNE_CASES; i++)
        if (!strcmp(cs, case_names[i])) ci = i;
    CHECK(ci >= 0, "unknown route case '%s' (NN, NT, TN or TT)", cs ? cs : "");
    CHECK(!seen[ci], "route %s given twice", cs);
    int got = 0;
    tune_route *r = &c->route[ci];
    for (char *kv = strtok_r(NULL, " \t", &save); kv; kv = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(kv, '=');
        CHECK(eq, "expected NAME=VALUE, got '%s'", kv);
        *eq = 0;
        const char *v = eq + 1;
        if (!strcmp(kv, "indirect-mnk")) {
            size_t x;
            CHECK(!parse_size(v, &x), "indirect-mnk: bad value '%s'", v);
            r->indirect_mnk = x;
            got |= 1;
        } else if (!strcmp(kv, "direct") || !strcmp(kv, "indirect")) {
            CHECK(!strcmp(v, "row") || !strcmp(v, "col"), "%s must be row or col", kv);
            *(kv[0] == 'd' ? &r->direct_colmajor : &r->indirect_colmajor) = v[0] == 'c';
            got |= kv[0] == 'd' ? 2 : 4;
        } else {
            CHECK(0, "unknown route setting '%s'", kv);
        }
    }
    CHECK(got == 7, "route %s needs indirect-mnk=, direct= and indirect=", cs);
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
        CHECK(!strcmp(line, TUNE_MAGIC), "not a cltrain GEMM tuning file (no '%s' line)",
              TUNE_MAGIC);
        size_t v;
        CHECK(!parse_size(rest, &v) && v == TUNE_VERSION, "format version '%s' is not %d "
              "(made by another cltrain; run `cltrain tune` again)", rest, TUNE_VERSION);
        *state = 1;
        return 0;
    }
    CHECK(*state == 1, "text after 'end'");
    if (!strcmp(line, "end")) { *state = 2; return 0; }
    if (!strcmp(line, "kernel")) return parse_kernel(c, rest, err, errlen);
    if (!strcmp(line, "route")) return parse_route(c, rest, route_seen, err, errlen);
    CHECK(parse_identity(c, line, rest), "unknown setting '%s'", line);
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
    CHECK(state == 2, "%s", state == 0 ? "empty or truncated (no '" TUNE_MAGIC "' line)"
                                        : "truncated (no 'end' line)");
    int nroutes = 0;
    for (int i = 0; i < TUNE_CASES; i++) nroutes += route_seen[i];
    CHECK(nroutes == 0 || nroutes == TUNE_CASES, "routes must cover NN, NT, TN and TT");
    c->has_routes = nroutes == TUNE_CASES;
    CHECK(c->device[0] || c->match_device[0], "no device or match-device line");
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
        fprintf(f, "kernel %s", kernels[k].name);
        for (int i = 0; i < kernels[k].n; i++)
            fprintf(f, " %s=%zu", kernels[k].params[i], c->kernel[k][i]);
        fputc('\n', f);
    }
    if (c->has_routes)
        for (int i = 0; i < TUNE_CASES; i++)
            fprintf(f, "route %s indirect-mnk=%llu direct=%s indirect=%s\n", case_names[i],
                    (unsigned long long)c->route[i].indirect_mnk,
                    c->route[i].direct_colmajor ? "col" : "row",
                    c->route[i].indirect_colmajor ? "col" : "row");
    fprintf(f, "end\n");
}

int tune_read_file(const char *path, tune_config *c, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s: %s", path, strerror(errno));
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = fgetc(f) != EOF;
    fclose(f);
    CHECK(!big, "%s: larger than a tuning file can be", path);
    CHECK(memchr(buf, 0, n) == NULL, "%s: binary data in a text file", path);
    buf[n] = 0;
    char msg[400];
    if (tune_parse(c, buf, msg, sizeof msg)) {
        snprintf(err, errlen, "%s: %s", path, msg);
        return 1;
    }
    return 0;
}

int tune_write_file(const char *path, const tune_config *c, char *err, size_t errlen) {
    CHECK(path && *path, "no path to write the tuning file to");
    CHECK(util_mkdir_parent(path) == 0, "cannot create the folder of %s: %s", path,
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

void tune_cache_path(const clrt_devinfo *d, char *out, size_t outlen) {
    char dir[900];
    clrt_cache_dir(dir, sizeof dir);
    out[0] = 0;
    if (!dir[0]) return;
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

int tune_find(const clrt_devinfo *d, tune_config *c, char *source, size_t sourcelen) {
    const char *no = getenv("CLTRAIN_NO_TUNE");
    if (no && *no && strcmp(no, "0") != 0) return 0;
    const char *path = getenv("CLTRAIN_TUNE_FILE");
    if (path && *path && try_file(path, d, c, 1)) {
        snprintf(source, sourcelen, "CLTRAIN_TUNE_FILE %s", path);
        return 1;
    }
    char cache[1024];
    tune_cache_path(d, cache, sizeof cache);
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

int tune_apply_kernels(const tune_config *c, cl_device_id dev, char *err, size_t errlen) {
    for (int k = 0; k < TK_COUNT; k++) {
        if (!c->has_kernel[k]) continue;
        CLBlastStatusCode s = CLBlastOverrideParameters(
            dev, kernels[k].name, CLBlastPrecisionSingle, (size_t)kernels[k].n,
            (const char **)kernels[k].params, c->kernel[k]);
        CHECK(s == CLBlastSuccess, "CLBlastOverrideParameters(%s): %s", kernels[k].name,
              clrt_clblast_error_name(s));
    }
    return 0;
}
