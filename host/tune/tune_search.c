// The search behind `cltrain tune`: candidate parameters for each CLBlast kernel family, each
// measured on the recorded GEMM shapes and checked against a host reference, then combined
// into per-case routes (direct or indirect kernel, row- or column-major hand-over).
//
// Phases, each until its share of the budget is spent (a candidate already compiling
// finishes): 1. the indirect kernel (Xgemm), every GEMM forced indirect; 2. the direct kernel
// (XgemmDirect), every GEMM forced direct, both layouts; then the best pair and routes are
// chosen from the per-shape times; 3. the copy/pad/transpose helpers of the indirect path;
// 4. a runoff: the chosen configuration, runners-up and what ran before, measured in turns
// until the budget is spent (at least once). Each family starts with seeds
// (what runs now, CLBlast's generic defaults, values known good on CPUs), then alternates
// random valid samples with mutations of the best so far. Compiling a candidate (CLBlast
// builds a program per parameter set) costs seconds on pocl: it dominates the budget.
#define _POSIX_C_SOURCE 200809L
#include "host/tune/tune_job.h"
#include "common/clock.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---- the parameter space (CLBlast's tuners' value sets) ----

typedef struct choice { int n; size_t v[8]; } choice;

// Indexed like tune_param_name(k, i).
static const choice space[TK_COUNT][TUNE_MAX_PARAMS] = {
    [TK_XGEMM] = {
        // GEMMK 1 (CLBlast's other indirect kernel) is left out: on pocl it wrote past the
        // end of C for shapes it pads (K = 147), and crashed; a check on the tuned shapes
        // cannot vouch for the batch sizes it was not tuned on.
        { 1, { 0 } },                       // GEMMK
        { 1, { 1 } },                       // KREG (GEMMK 1 only)
        { 2, { 16, 32 } },                  // KWG
        { 2, { 2, 8 } },                    // KWI
        { 5, { 2, 4, 8, 16, 32 } },         // MDIMA
        { 5, { 2, 4, 8, 16, 32 } },         // MDIMC
        { 5, { 8, 16, 32, 64, 128 } },      // MWG
        { 5, { 2, 4, 8, 16, 32 } },         // NDIMB
        { 5, { 2, 4, 8, 16, 32 } },         // NDIMC
        { 5, { 8, 16, 32, 64, 128 } },      // NWG
        { 2, { 0, 1 } }, { 2, { 0, 1 } },   // SA, SB
        { 2, { 0, 1 } }, { 2, { 0, 1 } },   // STRM, STRN
        { 4, { 1, 2, 4, 8 } },              // VWM
        { 4, { 1, 2, 4, 8 } },              // VWN
    },
    [TK_XGEMM_DIRECT] = {
        { 3, { 2, 8, 16 } },                // KWID
        { 3, { 8, 16, 32 } },               // MDIMAD
        { 3, { 8, 16, 32 } },               // MDIMCD
        { 3, { 8, 16, 32 } },               // NDIMBD
        { 3, { 8, 16, 32 } },               // NDIMCD
        { 2, { 0, 1 } }, { 2, { 0, 1 } },   // PADA, PADB
        { 4, { 1, 2, 4, 8 } },              // VWMD
        { 4, { 1, 2, 4, 8 } },              // VWND
        { 5, { 8, 16, 32, 64, 128 } },      // WGD
    },
    [TK_COPY] = { { 3, { 8, 16, 32 } }, { 3, { 8, 16, 32 } }, { 4, { 1, 2, 4, 8 } },
                  { 4, { 1, 2, 4, 8 } } },
    [TK_PAD] = { { 3, { 8, 16, 32 } }, { 3, { 8, 16, 32 } }, { 3, { 1, 2, 4 } },
                 { 3, { 1, 2, 4 } } },
    [TK_TRANSPOSE] = { { 5, { 4, 8, 16, 32, 64 } }, { 2, { 0, 1 } }, { 2, { 0, 1 } },
                       { 5, { 1, 2, 4, 8, 16 } } },
    [TK_PADTRANSPOSE] = { { 2, { 0, 1 } }, { 4, { 8, 16, 32, 64 } },
                          { 5, { 1, 2, 4, 8, 16 } } },
};

// Seeds beyond the defaults: values that did well on CPUs (FORMATS.md's tuner run on this
// project's pocl machine; CLBlast's database entries for Intel CPUs).
static const size_t seed_xgemm[][16] = {
    { 0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4 },
    { 0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4 },
    { 0, 1, 32, 2, 32, 8, 128, 8, 8, 128, 1, 1, 1, 1, 2, 8 },
};
static const size_t seed_direct[][10] = {
    { 8, 8, 32, 8, 8, 1, 1, 2, 8, 64 },
    { 8, 32, 32, 32, 16, 0, 1, 1, 1, 32 },
    { 2, 8, 8, 8, 8, 0, 0, 2, 2, 64 },
};

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t pick(const choice *c, uint64_t *rng) { return c->v[rng_next(rng) % (uint64_t)c->n]; }

// GEMMK 1 ties some parameters (CLBlast's tuner does the same).
static void xgemm_tie(size_t *v) {
    if (v[0] == 1) {
        v[2] = v[3] = 1;                       // KWG, KWI
        v[4] = v[5];                           // MDIMA = MDIMC
        v[7] = v[8];                           // NDIMB = NDIMC
        v[10] = v[11] = v[12] = v[13] = 0;     // SA SB STRM STRN
    } else {
        v[1] = 1;                              // KREG
        if (v[2] == 1) v[2] = 32;
        if (v[3] == 1) v[3] = 2;
    }
}

// A random valid parameter set for kernel k; from `base` with one or two values changed when
// base is given. 0 when none was found.
static int sample(int k, const size_t *base, const clrt_devinfo *d, uint64_t *rng, size_t *out) {
    int n = tune_kernel_nparams(k);
    char err[200];
    for (int tries = 0; tries < 20000; tries++) {
        if (base) {
            memcpy(out, base, (size_t)n * sizeof *out);
            int changes = 1 + (int)(rng_next(rng) % 2);
            for (int c = 0; c < changes; c++) {
                int i = (int)(rng_next(rng) % (uint64_t)n);
                out[i] = pick(&space[k][i], rng);
            }
        } else {
            for (int i = 0; i < n; i++) out[i] = pick(&space[k][i], rng);
        }
        if (k == TK_XGEMM) xgemm_tie(out);
        if (tune_kernel_check(k, out, d, err, sizeof err) == 0) return 1;
    }
    return 0;
}

// ---- measuring (each configuration in a worker process, host/tune/tune_job.c) ----

typedef struct bench {
    const clrt_devinfo *dev; // the device's limits, for valid candidates
    const tune_shapes *sh;
    tune_job job;
    tune_runner runner;
    FILE *log;
    double t0;
    int measured;
} bench;

static double elapsed(const bench *b) { return util_now() - b->t0; }

static int bench_init(bench *b, const tune_shapes *sh, const tune_search_opts *o, char *err,
                      size_t errlen) {
    memset(b, 0, sizeof *b);   // bench_free is safe on what this leaves, whatever fails
    b->sh = sh;
    b->log = o->log;
    b->t0 = util_now();
    if (!o->exe || !o->device) {
        snprintf(err, errlen, "tune_search: no worker binary or device given");
        return 1;
    }
    // The recorded shapes, then canaries: odd sizes in every case, operands inside their
    // buffers or not, so a configuration that only works on this model's sizes is caught
    // here rather than at another batch size.
    tune_shapes all = { 0 };
    all.cap = sh->n + 8;
    all.v = calloc((size_t)all.cap, sizeof *all.v);
    if (!all.v) {
        snprintf(err, errlen, "out of host memory");
        return 1;
    }
    memcpy(all.v, sh->v, (size_t)sh->n * sizeof *sh->v);
    all.n = sh->n;
    static const int odd[2][3] = { { 37, 53, 29 }, { 100, 257, 147 } };
    for (int cs = 0; cs < 3; cs++)
        for (int q = 0; q < 2; q++) {
            int ta = cs == 2, tb = cs == 1, m = odd[q][0], n = odd[q][1], k = odd[q][2];
            all.v[all.n++] = (tune_shape){ ta, tb, m, n, k, ta ? m : k, tb ? k : n, n, 1.0f,
                                           q ? 1.0f : 0.0f, 0, q, !q, q };
        }
    int rc = tune_job_init(&b->job, &all, o->reps, o->cpu_clock, err, errlen);
    free(all.v);
    if (rc) return 1;
    tune_runner *r = &b->runner;
    snprintf(r->exe, sizeof r->exe, "%s", o->exe);
    snprintf(r->device, sizeof r->device, "%s", o->device);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/cltrain-tune-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->dir)) {
        snprintf(err, errlen, "cannot make a scratch folder %s: %s", r->dir, strerror(errno));
        r->dir[0] = 0;
        return 1;
    }
    snprintf(r->job_path, sizeof r->job_path, "%s/job.txt", r->dir);
    // Compiling a candidate takes seconds to minutes on a loaded CPU; past this it is lost.
    r->timeout_s = 900;
    return tune_job_write(&b->job, r->job_path, err, errlen);
}

static void bench_free(bench *b) {
    if (b->runner.dir[0]) {   // the scratch folder and what the workers left in it
        const char *names[] = { "job.txt", "candidate.tune", "worker.log" };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char path[700];
            snprintf(path, sizeof path, "%s/%s", b->runner.dir, names[i]);
            unlink(path);
        }
        rmdir(b->runner.dir);
    }
    tune_job_free(&b->job);
}

// Per shape milliseconds with configuration c (NULL: CLBlast as it comes). 0 when every
// shape ran and matched the reference, 2 when the step passed `cap`, 1 failed or wrong.
static int measure(bench *b, const tune_config *c, const char *what, double *ms,
                   double *total, double cap) {
    char why[400] = "";
    b->measured++;
    int rc = tune_job_measure(&b->runner, &b->job, c, cap, ms, total, why, sizeof why);
    if (!b->log) return rc;
    if (rc == 0) fprintf(b->log, "[%6.0fs] %-36s %10.2f ms/step\n", elapsed(b), what, *total);
    else if (rc == 2)
        fprintf(b->log, "[%6.0fs] %-36s too slow (over %.1f ms/step)\n", elapsed(b), what, cap);
    else fprintf(b->log, "[%6.0fs] %-36s rejected: %s\n", elapsed(b), what, why);
    return rc;
}

// ---- candidates ----

enum { MAX_CAND = 400 };

typedef struct family {
    int k;                   // kernel family searched
    int n;                   // candidates measured (valid ones)
    size_t v[MAX_CAND][TUNE_MAX_PARAMS];
    double *ms[MAX_CAND];    // [layout][shape] (direct: both layouts; indirect: one)
    double total[MAX_CAND];
    int best;
    size_t tried[MAX_CAND * 2][TUNE_MAX_PARAMS];  // everything tried, valid or not
    int ntried;
} family;

static int seen_before(family *f, const size_t *v) {
    size_t bytes = (size_t)tune_kernel_nparams(f->k) * sizeof *v;
    for (int i = 0; i < f->ntried; i++)
        if (!memcmp(f->tried[i], v, bytes)) return 1;
    if (f->ntried < MAX_CAND * 2) memcpy(f->tried[f->ntried++], v, bytes);
    return 0;
}

static void routes_all(tune_config *c, int indirect, int colmajor) {
    c->has_routes = 1;
    for (int i = 0; i < TUNE_CASES; i++) {
        c->route[i].indirect_mnk = indirect ? 0 : UINT64_MAX;
        c->route[i].direct_colmajor = colmajor;
        c->route[i].indirect_colmajor = colmajor;
    }
}

// GEMMK 0 wants C column-major (the mirror), GEMMK 1 row-major (see ops_gemm.c).
static int xgemm_colmajor(const size_t *v) { return v[0] == 0; }

// Measure candidate v of family f on top of base; keeps it when valid.
static void try_candidate(bench *b, family *f, const tune_config *base, const size_t *v,
                          const char *how) {
    if (f->n >= MAX_CAND || seen_before(f, v)) return;
    int nsh = b->sh->n, layouts = f->k == TK_XGEMM_DIRECT ? 2 : 1;
    double *ms = malloc((size_t)layouts * nsh * sizeof *ms);
    if (!ms) return;
    tune_config c = *base;
    c.has_kernel[f->k] = 1;
    memcpy(c.kernel[f->k], v, sizeof c.kernel[f->k]);
    double total = 0;
    int ok = 1;
    for (int l = 0; l < layouts && ok; l++) {
        char what[80];
        snprintf(what, sizeof what, "%s #%d %s%s", tune_kernel_name(f->k), f->ntried, how,
                 layouts > 1 ? (l ? " col" : " row") : "");
        if (f->k == TK_XGEMM_DIRECT) routes_all(&c, 0, l);
        else routes_all(&c, 1, xgemm_colmajor(c.kernel[TK_XGEMM]));
        double t, cap = f->n ? 2.0 * f->total[f->best] : INFINITY;
        int rc = measure(b, &c, what, ms + (size_t)l * nsh, &t, cap);
        ok = rc == 0;
        if (rc == 1 && b->log) {   // a wrong result: say which parameters gave it
            fprintf(b->log, "          %s", tune_kernel_name(f->k));
            for (int i = 0; i < tune_kernel_nparams(f->k); i++)
                fprintf(b->log, " %s=%zu", tune_param_name(f->k, i), v[i]);
            fputc('\n', b->log);
        }
        total = l ? fmin(total, t) : t;
    }
    if (!ok) { free(ms); return; }
    memcpy(f->v[f->n], v, sizeof f->v[0]);
    f->ms[f->n] = ms;
    f->total[f->n] = total;
    if (f->n == 0 || total < f->total[f->best]) {
        f->best = f->n;
        if (b->log) {
            fprintf(b->log, "          best so far: %s", tune_kernel_name(f->k));
            for (int i = 0; i < tune_kernel_nparams(f->k); i++)
                fprintf(b->log, " %s=%zu", tune_param_name(f->k, i), v[i]);
            fputc('\n', b->log);
        }
    }
    f->n++;
}

// Does some candidate of f beat `ref` (per-shape times) on at least one shape?
static int wins_somewhere(const family *f, const double *ref, int nsh) {
    if (!ref) return 1;
    for (int c = 0; c < f->n; c++)
        for (int i = 0; i < nsh; i++)
            if (f->ms[c][i] < ref[i] || f->ms[c][nsh + i] < ref[i]) return 1;
    return 0;
}

// Seeds, then random samples and mutations of the best, until `until` seconds have passed.
// With `rival` (the direct family against the best indirect times), the search stops after the
// seeds when no candidate beats the rival on any shape: the budget goes to the next phase.
static void search_family(bench *b, family *f, const tune_config *base, const size_t *start,
                          const size_t (*seeds)[TUNE_MAX_PARAMS], int nseeds, double until,
                          const double *rival, uint64_t *rng) {
    size_t v[TUNE_MAX_PARAMS] = { 0 };
    if (start) try_candidate(b, f, base, start, "now");
    tune_default_params(f->k, v);
    if (elapsed(b) < until) try_candidate(b, f, base, v, "default");
    for (int i = 0; i < nseeds && elapsed(b) < until; i++) {
        char err[200];
        if (tune_kernel_check(f->k, seeds[i], b->dev, err, sizeof err) == 0)
            try_candidate(b, f, base, seeds[i], "seed");
    }
    if (!wins_somewhere(f, rival, b->sh->n)) {
        if (b->log) fprintf(b->log, "          %s loses on every shape: next phase\n",
                            tune_kernel_name(f->k));
        return;
    }
    for (int it = 0; elapsed(b) < until && f->ntried < MAX_CAND * 2 && it < 100000; it++) {
        int mutate = f->n > 0 && (it % 3 != 0);   // two mutations of the best per sample
        if (!sample(f->k, mutate ? f->v[f->best] : NULL, b->dev, rng, v)) break;
        try_candidate(b, f, base, v, mutate ? "mutation" : "random");
    }
}

// ---- routes from per-shape times ----

static uint64_t mnk(const tune_shape *s) { return (uint64_t)s->m * s->n * s->k; }

// Best routes given per-shape times of an indirect (ti) and a direct candidate (td, both
// layouts: td[shape] row, td[nsh + shape] col). Fills c->route; returns the step time.
static double best_routes(const tune_shapes *sh, const double *ti, const double *td,
                          int ind_col, tune_config *c) {
    int nsh = sh->n;
    double total = 0;
    c->has_routes = 1;
    for (int cs = 0; cs < TUNE_CASES; cs++) {
        // Candidate thresholds: 0 (all indirect), each shape's mnk, never (all direct).
        double best = INFINITY;
        tune_route br = { 0, 0, ind_col };
        for (int t = -1; t <= nsh; t++) {
            uint64_t thr = t < 0 ? 0 : t == nsh ? UINT64_MAX : mnk(&sh->v[t]);
            if (t >= 0 && t < nsh && (sh->v[t].ta * 2 + sh->v[t].tb) != cs) continue;
            for (int col = 0; col < 2; col++) {
                double sum = 0;
                for (int i = 0; i < nsh; i++) {
                    const tune_shape *s = &sh->v[i];
                    if (s->ta * 2 + s->tb != cs) continue;
                    sum += s->calls * (mnk(s) >= thr ? ti[i] : td[col * nsh + i]);
                }
                if (sum < best) {
                    best = sum;
                    br = (tune_route){ thr, col, ind_col };
                }
            }
        }
        c->route[cs] = br;
        total += best;
    }
    return total;
}

// ---- runoff ----

typedef struct contender {
    tune_config c;
    double *ms;              // per shape, the fastest over the rounds (NULL: allocated here)
    double total;
    const char *name;
    int ok;
} contender;

static int is_none(const tune_config *c) {
    int any = c->has_routes;
    for (int k = 0; k < TK_COUNT; k++) any |= c->has_kernel[k];
    return !any;
}

// Each contender is measured in turns, at least once, then again while time is left (up to
// 4 rounds); per shape its fastest time counts, so a burst of load elsewhere does not decide.
static void runoff(bench *b, contender *ct, int n, double until) {
    int nsh = b->sh->n;
    double *ms = malloc((size_t)nsh * sizeof *ms);
    for (int i = 0; i < n; i++)
        if (!ct[i].ms && !(ct[i].ms = malloc((size_t)nsh * sizeof *ct[i].ms))) ct[i].ok = 0;
    for (int round = 0; ms && round < 4 && (round == 0 || elapsed(b) < until); round++)
        for (int i = 0; i < n; i++) {
            double t;
            if (!ct[i].ok) continue;
            const tune_config *c = is_none(&ct[i].c) ? NULL : &ct[i].c;
            if (measure(b, c, ct[i].name, ms, &t, INFINITY) != 0) {
                ct[i].ok = 0;
                continue;
            }
            ct[i].total = 0;
            for (int s = 0; s < nsh; s++) {
                ct[i].ms[s] = round ? fmin(ct[i].ms[s], ms[s]) : ms[s];
                ct[i].total += b->sh->v[s].calls * ct[i].ms[s];
            }
        }
    free(ms);
}

// ---- the search ----

typedef struct search {
    bench b;
    family *fx, *fd;         // the indirect and the direct kernel's candidates
    tune_config now;         // what ran when the search started
    tune_config base;        // what every candidate builds on (complete: one CLBlast program)
    tune_config cand;        // the best combination so far
    int have;                // cand is set
    double budget;
    uint64_t rng;
} search;

static int from_now(const tune_config *now, int k, size_t *v) {
    if (!now->has_kernel[k]) return 0;
    memcpy(v, now->kernel[k], sizeof now->kernel[k]);
    return 1;
}

static int find(const family *f, const size_t *v) {
    for (int i = 0; i < f->n; i++)
        if (!memcmp(f->v[i], v, sizeof f->v[i])) return i;
    return -1;
}

// 1 and 2: the indirect kernel, then the direct one; then the best pair and its routes.
static void phase_kernels(search *s) {
    size_t v[TUNE_MAX_PARAMS], seeds[4][TUNE_MAX_PARAMS];
    const size_t (*sd)[TUNE_MAX_PARAMS] = (const size_t (*)[TUNE_MAX_PARAMS])seeds;
    family *fx = s->fx, *fd = s->fd;
    fx->k = TK_XGEMM;
    memset(seeds, 0, sizeof seeds);
    for (int i = 0; i < 3; i++) memcpy(seeds[i], seed_xgemm[i], sizeof seed_xgemm[i]);
    search_family(&s->b, fx, &s->base, from_now(&s->now, TK_XGEMM, v) ? v : NULL, sd, 3,
                  0.45 * s->budget, NULL, &s->rng);
    if (fx->n) memcpy(s->base.kernel[TK_XGEMM], fx->v[fx->best], sizeof v);

    fd->k = TK_XGEMM_DIRECT;
    memset(seeds, 0, sizeof seeds);
    for (int i = 0; i < 3; i++) memcpy(seeds[i], seed_direct[i], sizeof seed_direct[i]);
    search_family(&s->b, fd, &s->base, from_now(&s->now, TK_XGEMM_DIRECT, v) ? v : NULL, sd,
                  3, 0.7 * s->budget, fx->n ? fx->ms[fx->best] : NULL, &s->rng);
    if (fd->n) memcpy(s->base.kernel[TK_XGEMM_DIRECT], fd->v[fd->best], sizeof v);
    // Time the direct kernel did not need goes back to the indirect one (candidates already
    // seen are not measured again).
    if (fx->n && elapsed(&s->b) < 0.7 * s->budget)
        search_family(&s->b, fx, &s->base, NULL, sd, 0, 0.7 * s->budget, NULL, &s->rng);
    if (fx->n) memcpy(s->base.kernel[TK_XGEMM], fx->v[fx->best], sizeof v);

    double best = INFINITY;
    for (int i = 0; i < fx->n; i++)
        for (int j = 0; j < fd->n; j++) {
            tune_config c = s->base;
            memcpy(c.kernel[TK_XGEMM], fx->v[i], sizeof v);
            memcpy(c.kernel[TK_XGEMM_DIRECT], fd->v[j], sizeof v);
            double t = best_routes(s->b.sh, fx->ms[i], fd->ms[j], xgemm_colmajor(fx->v[i]), &c);
            if (t < best) { best = t; s->cand = c; s->have = 1; }
        }
    if (!s->have && fx->n) {   // no direct candidate ran: all indirect
        s->cand = s->base;
        routes_all(&s->cand, 1, xgemm_colmajor(fx->v[fx->best]));
        s->have = 1;
    }
}

// 3: the indirect path's helpers, all four families at once, on the chosen Xgemm.
static void phase_helpers(search *s) {
    int nsh = s->b.sh->n, idx = s->have ? find(s->fx, s->cand.kernel[TK_XGEMM]) : -1;
    if (idx < 0) return;
    double total = s->fx->total[idx];
    for (int it = 0; elapsed(&s->b) < 0.8 * s->budget && it < 200; it++) {
        tune_config c = s->cand;
        int ok = 1;
        for (int k = TK_COPY; k <= TK_PADTRANSPOSE && ok; k++)   // random, or one step away
            ok = sample(k, it % 2 ? s->cand.kernel[k] : NULL, s->b.dev, &s->rng, c.kernel[k]);
        if (!ok) break;
        routes_all(&c, 1, xgemm_colmajor(c.kernel[TK_XGEMM]));
        double *ms = malloc((size_t)nsh * sizeof *ms), t;
        if (!ms) break;
        if (measure(&s->b, &c, "helpers", ms, &t, 1.5 * total) == 0 && t < total) {
            total = t;
            for (int k = TK_COPY; k <= TK_PADTRANSPOSE; k++)
                memcpy(s->cand.kernel[k], c.kernel[k], sizeof c.kernel[k]);
            memcpy(s->fx->ms[idx], ms, (size_t)nsh * sizeof *ms);
        }
        free(ms);
    }
    int j = find(s->fd, s->cand.kernel[TK_XGEMM_DIRECT]);
    if (j >= 0)   // routes again with the helpers' gain
        best_routes(s->b.sh, s->fx->ms[idx], s->fd->ms[j], xgemm_colmajor(s->fx->v[idx]),
                    &s->cand);
}

static int all_indirect(const tune_config *c) {
    for (int i = 0; i < TUNE_CASES; i++)
        if (c->route[i].indirect_mnk != 0) return 0;
    return c->has_routes;
}

// 4: the chosen configuration, what ran before and runners-up, in turns; the winner.
static void phase_runoff(search *s, tune_config *best, tune_result *res) {
    int nsh = s->b.sh->n, nct = 0;
    contender ct[4];
    ct[nct++] = (contender){ s->now, res->before_ms, res->before_total_ms, "runoff: now", 1 };
    if (s->have) {
        ct[nct++] = (contender){ s->cand, res->after_ms, 0, "runoff: chosen", 1 };
        if (!all_indirect(&s->cand)) {
            tune_config alt = s->cand;
            routes_all(&alt, 1, xgemm_colmajor(alt.kernel[TK_XGEMM]));
            ct[nct++] = (contender){ alt, NULL, 0, "runoff: all indirect", 1 };
        }
        int second = -1;   // the next-best indirect kernel, with the chosen direct one
        for (int i = 0; i < s->fx->n; i++)
            if (memcmp(s->fx->v[i], s->cand.kernel[TK_XGEMM], sizeof s->fx->v[i]) &&
                (second < 0 || s->fx->total[i] < s->fx->total[second]))
                second = i;
        int dj = find(s->fd, s->cand.kernel[TK_XGEMM_DIRECT]);
        if (second >= 0 && dj >= 0) {
            tune_config c2 = s->cand;
            memcpy(c2.kernel[TK_XGEMM], s->fx->v[second], sizeof s->fx->v[second]);
            best_routes(s->b.sh, s->fx->ms[second], s->fd->ms[dj],
                        xgemm_colmajor(s->fx->v[second]), &c2);
            ct[nct++] = (contender){ c2, NULL, 0, "runoff: runner-up", 1 };
        }
    }
    runoff(&s->b, ct, nct, s->budget);
    int win = 0;   // "now" passed its check at the start: it stays a valid fallback
    for (int i = 1; i < nct; i++)
        if (ct[i].ok && (!ct[win].ok || ct[i].total < ct[win].total)) win = i;
    *best = win ? ct[win].c : s->now;
    if (ct[win].ms != res->after_ms)
        memcpy(res->after_ms, ct[win].ms, (size_t)nsh * sizeof(double));
    res->after_total_ms = ct[win].total;
    res->before_total_ms = ct[0].total;   // the fastest of its rounds, like the others
    for (int i = 2; i < nct; i++) free(ct[i].ms);
    if (s->b.log)
        fprintf(s->b.log, "%s\n", win ? "chosen: the tuned configuration"
                                      : "nothing beat the configuration in force; keeping it");
}

int tune_search(ops_ctx *ops, const tune_shapes *shapes, const tune_search_opts *o,
                tune_config *best, tune_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (shapes->n == 0) {
        snprintf(err, errlen, "no GEMM shapes to tune on");
        return 1;
    }
    search *s = calloc(1, sizeof *s);
    int nsh = shapes->n, rc = 1;
    res->before_ms = calloc((size_t)nsh, sizeof(double));
    res->after_ms = calloc((size_t)nsh, sizeof(double));
    if (s) {
        s->fx = calloc(1, sizeof *s->fx);
        s->fd = calloc(1, sizeof *s->fd);
    }
    if (!s || !s->fx || !s->fd || !res->before_ms || !res->after_ms) {
        snprintf(err, errlen, "out of host memory");
        goto done;
    }
    if (bench_init(&s->b, shapes, o, err, errlen)) goto done;
    s->b.dev = &ops->rt->dev;
    s->budget = o->budget_s;
    s->rng = o->seed ? o->seed : 0x7u;
    s->now = *op_gemm_config(ops);
    if (measure(&s->b, is_none(&s->now) ? NULL : &s->now, "now", res->before_ms,
                &res->before_total_ms, INFINITY) != 0) {
        snprintf(err, errlen, "the GEMM configuration in force gives wrong results or fails; "
                              "run with CLTRAIN_NO_TUNE=1");
        goto done;
    }
    // Families not being searched keep what runs now, else CLBlast's generic defaults.
    s->base = s->now;
    for (int k = 0; k < TK_COUNT; k++)
        if (!s->base.has_kernel[k]) {
            s->base.has_kernel[k] = 1;
            tune_default_params(k, s->base.kernel[k]);
        }
    phase_kernels(s);
    if (elapsed(&s->b) < 0.8 * s->budget) phase_helpers(s);
    phase_runoff(s, best, res);
    res->candidates = s->b.measured;
    rc = 0;
done:
    if (s) {
        bench_free(&s->b);
        for (int i = 0; s->fx && i < s->fx->n; i++) free(s->fx->ms[i]);
        for (int i = 0; s->fd && i < s->fd->n; i++) free(s->fd->ms[i]);
        free(s->fx);
        free(s->fd);
        free(s);
    }
    if (rc) tune_result_free(res);
    return rc;
}

int tune_measure(ops_ctx *ops, const tune_shapes *shapes, const tune_search_opts *o, double *ms,
                 double *total, char *err, size_t errlen) {
    bench b;
    if (bench_init(&b, shapes, o, err, errlen)) {
        bench_free(&b);
        return 1;
    }
    b.dev = &ops->rt->dev;
    tune_config now = *op_gemm_config(ops);
    int rc = 0;
    for (int r = 0; r < 3 && rc == 0; r++) {   // the fastest of three, per shape
        double *one = malloc((size_t)shapes->n * sizeof *one), t;
        if (!one) { rc = 1; break; }
        rc = measure(&b, is_none(&now) ? NULL : &now, op_gemm_source(ops), one, &t, INFINITY);
        for (int i = 0; rc == 0 && i < shapes->n; i++) ms[i] = r ? fmin(ms[i], one[i]) : one[i];
        free(one);
    }
    *total = 0;
    for (int i = 0; i < shapes->n; i++) *total += shapes->v[i].calls * ms[i];
    if (rc) snprintf(err, errlen, "the GEMM configuration in force fails or gives wrong results");
    bench_free(&b);
    return rc;
}

void tune_result_free(tune_result *r) {
    free(r->before_ms);
    free(r->after_ms);
    memset(r, 0, sizeof *r);
}
