// `cltrain tune`'s measurements: the job file (shapes and reference points), the worker that
// measures one configuration on the device, and starting a worker from the search.
#define _POSIX_C_SOURCE 200809L
#include "host/tune/tune_job.h"
#include "common/clock.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JOB_MAGIC "cltrain-tune-job"
#define OFF 64                 // floats before an operand that does not start its buffer
#define GUARD 1024             // floats of sentinel after every operand
#define SENTINEL (-777.25f)
#define C_FILL 0.25f           // C before each checked call (beta != 0 reads it)

// ---- operands and reference points ----

// Deterministic operand values in [-1, 1), exact in float.
static float val(int which, size_t i) {
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(which + 1) * 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 29;
    return (float)((double)(x >> 40) / 8388608.0 - 1.0);
}

static size_t a_floats(const tune_shape *s) { return (size_t)(s->ta ? s->k : s->m) * s->lda; }
static size_t b_floats(const tune_shape *s) { return (size_t)(s->tb ? s->n : s->k) * s->ldb; }
static size_t c_floats(const tune_shape *s) { return (size_t)s->m * s->ldc; }

static uint64_t mix(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The four corners and random points of shape si, computed once in double.
static void make_reference(tune_job *j, int si) {
    const tune_shape *s = &j->sh.v[si];
    uint64_t rng = 0x5eed + (uint64_t)si;
    for (int p = 0; p < j->nsample; p++) {
        int i = p < 4 ? (p & 1 ? s->m - 1 : 0) : (int)(mix(&rng) % (uint64_t)s->m);
        int c = p < 4 ? (p & 2 ? s->n - 1 : 0) : (int)(mix(&rng) % (uint64_t)s->n);
        double sum = 0, mag = 0;
        for (int q = 0; q < s->k; q++) {
            double x = val(0, s->ta ? (size_t)q * s->lda + i : (size_t)i * s->lda + q);
            double y = val(1, s->tb ? (size_t)c * s->ldb + q : (size_t)q * s->ldb + c);
            sum += x * y;
            mag += fabs(x * y);
        }
        int at = si * j->nsample + p;
        j->si[at] = i;
        j->sj[at] = c;
        j->ref[at] = s->alpha * sum + s->beta * C_FILL;
        // float32 accumulation in any order stays far inside this; a wrong kernel does not.
        j->tol[at] = 1e-4 * (fabs(s->alpha) * mag + fabs(s->beta * C_FILL)) + 1e-5;
    }
}

static int job_alloc(tune_job *j, int nshapes, char *err, size_t errlen) {
    size_t np = (size_t)nshapes * j->nsample + 1;
    j->sh.v = calloc((size_t)nshapes + 1, sizeof *j->sh.v);
    j->sh.cap = nshapes;
    j->si = malloc(np * sizeof *j->si);
    j->sj = malloc(np * sizeof *j->sj);
    j->ref = malloc(np * sizeof *j->ref);
    j->tol = malloc(np * sizeof *j->tol);
    if (!j->sh.v || !j->si || !j->sj || !j->ref || !j->tol) {
        snprintf(err, errlen, "out of host memory");
        return 1;
    }
    return 0;
}

int tune_job_init(tune_job *j, const tune_shapes *sh, int reps, int cpu_clock, char *err,
                  size_t errlen) {
    memset(j, 0, sizeof *j);
    j->reps = reps > 0 ? reps : 2;
    j->cpu_clock = cpu_clock;
    j->nsample = 48;
    if (job_alloc(j, sh->n, err, errlen)) return 1;
    memcpy(j->sh.v, sh->v, (size_t)sh->n * sizeof *sh->v);
    j->sh.n = sh->n;
    for (int i = 0; i < sh->n; i++) make_reference(j, i);
    return 0;
}

void tune_job_free(tune_job *j) {
    free(j->sh.v);
    free(j->si);
    free(j->sj);
    free(j->ref);
    free(j->tol);
    memset(j, 0, sizeof *j);
}

int tune_job_write(const tune_job *j, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return 1;
    }
    fprintf(f, "%s 1\nreps %d\nclock %d\nshapes %d %d\n", JOB_MAGIC, j->reps, j->cpu_clock,
            j->sh.n, j->nsample);
    for (int i = 0; i < j->sh.n; i++) {
        const tune_shape *s = &j->sh.v[i];
        fprintf(f, "%d %d %d %d %d %d %d %d %.9g %.9g %d %d %d %d\n", s->ta, s->tb, s->m, s->n,
                s->k, s->lda, s->ldb, s->ldc, s->alpha, s->beta, s->calls, s->a_at0, s->b_at0,
                s->c_at0);
    }
    for (int p = 0; p < j->sh.n * j->nsample; p++)
        fprintf(f, "%d %d %.17g %.17g\n", j->si[p], j->sj[p], j->ref[p], j->tol[p]);
    fprintf(f, "end\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        snprintf(err, errlen, "cannot write %s", path);
        return 1;
    }
    return 0;
}

int tune_job_read(tune_job *j, const char *path, char *err, size_t errlen) {
    memset(j, 0, sizeof *j);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return 1;
    }
    int version = 0, n = 0, ok = fscanf(f, JOB_MAGIC " %d reps %d clock %d shapes %d %d",
                                        &version, &j->reps, &j->cpu_clock, &n, &j->nsample) == 5;
    ok = ok && version == 1 && n > 0 && n < 100000 && j->nsample > 0 && j->nsample < 1000;
    if (ok && job_alloc(j, n, err, errlen)) ok = 0;
    for (int i = 0; ok && i < n; i++) {
        tune_shape *s = &j->sh.v[i];
        ok = fscanf(f, "%d %d %d %d %d %d %d %d %f %f %d %d %d %d", &s->ta, &s->tb, &s->m,
                    &s->n, &s->k, &s->lda, &s->ldb, &s->ldc, &s->alpha, &s->beta, &s->calls,
                    &s->a_at0, &s->b_at0, &s->c_at0) == 14 &&
             s->m > 0 && s->n > 0 && s->k > 0 && s->lda > 0 && s->ldb > 0 && s->ldc >= s->n;
        j->sh.n = i + 1;
    }
    for (int p = 0; ok && p < n * j->nsample; p++)
        ok = fscanf(f, "%d %d %lf %lf", &j->si[p], &j->sj[p], &j->ref[p], &j->tol[p]) == 4;
    char end[8] = "";
    ok = ok && fscanf(f, "%7s", end) == 1 && !strcmp(end, "end");
    fclose(f);
    if (!ok) {
        snprintf(err, errlen, "%s: not a valid job file", path);
        tune_job_free(j);
        return 1;
    }
    return 0;
}

// ---- the worker ----

// Inputs come in two copies when needed, [1] for operands that start their buffer, [0] for
// operands at OFF: either way the operand's element e is val(which, e).
typedef struct dev_bench {
    ops_ctx *ops;
    clrt *rt;                // ops->rt
    const tune_job *j;
    cl_mem a[2], b[2], c;
    size_t na, nb, nc;       // floats per buffer
    float *host;             // scratch, nc floats
} dev_bench;

// The operand buffer, or NULL with a message in err (the device's memory).
static cl_mem upload(dev_bench *d, int which, size_t n, int at0, char *err, size_t errlen) {
    float *h = malloc(n * sizeof *h);
    if (!h) { fprintf(stderr, "cltrain: error: out of host memory\n"); exit(1); }
    size_t o = at0 ? 0 : OFF;
    for (size_t i = 0; i < n; i++) h[i] = i < o ? SENTINEL : val(which, i - o);
    for (size_t i = n - GUARD; i < n; i++) h[i] = SENTINEL;
    cl_mem m = NULL;
    if (clrt_alloc_buf(d->rt, &m, n * sizeof *h, "tuning operands", err, errlen) == 0)
        clrt_write(d->rt, m, 0, h, n * sizeof *h);
    free(h);
    return m;
}

static int run(dev_bench *d, const tune_shape *s) {
    return op_gemm_try(d->ops, s->ta, s->tb, s->m, s->n, s->k, s->alpha, d->a[s->a_at0],
                       s->a_at0 ? 0 : OFF, s->lda, d->b[s->b_at0], s->b_at0 ? 0 : OFF, s->ldb,
                       s->beta, d->c, s->c_at0 ? 0 : OFF, s->ldc);
}

// Checks shape si from C = C_FILL: the reference points, the columns past n untouched, and
// the guards around C, A and B. 0 when right.
static int check(dev_bench *d, int si, char *why, size_t len) {
    const tune_shape *s = &d->j->sh.v[si];
    size_t coff = s->c_at0 ? 0 : OFF, nc = c_floats(s);
    float *h = d->host;
    for (size_t i = 0; i < coff; i++) h[i] = SENTINEL;
    for (size_t i = 0; i < nc; i++) h[coff + i] = C_FILL;
    for (size_t i = 0; i < GUARD; i++) h[coff + nc + i] = SENTINEL;
    size_t span = coff + nc + GUARD;
    clrt_write(d->rt, d->c, 0, h, span * sizeof *h);
    int st = run(d, s);
    if (st != 0) {
        snprintf(why, len, "CLBlast: %s", clrt_clblast_error_name(st));
        return 1;
    }
    clrt_read(d->rt, d->c, 0, h, span * sizeof *h);
    for (size_t i = 0; i < span; i++)
        if ((i < coff || i >= coff + nc) && h[i] != SENTINEL) {
            snprintf(why, len, "wrote outside C (float %zd from its start)",
                     (ssize_t)i - (ssize_t)coff);
            return 1;
        }
    const float *c = h + coff;
    for (int r = 0; r < s->m; r++)
        for (int col = s->n; col < s->ldc; col++)
            if (c[(size_t)r * s->ldc + col] != C_FILL) {
                snprintf(why, len, "wrote C[%d][%d], past its %d columns", r, col, s->n);
                return 1;
            }
    for (int p = 0; p < d->j->nsample; p++) {
        int at = si * d->j->nsample + p;
        double g = c[(size_t)d->j->si[at] * s->ldc + d->j->sj[at]];
        if (!(fabs(g - d->j->ref[at]) <= d->j->tol[at])) {
            snprintf(why, len, "wrong result at C[%d][%d]: %.6g, reference %.6g", d->j->si[at],
                     d->j->sj[at], g, d->j->ref[at]);
            return 1;
        }
    }
    float ga[GUARD];
    cl_mem in[2] = { d->a[s->a_at0], d->b[s->b_at0] };
    size_t n[2] = { d->na, d->nb };
    for (int q = 0; q < 2; q++) {
        clrt_read(d->rt, in[q], (n[q] - GUARD) * sizeof(float), ga, sizeof ga);
        for (int i = 0; i < GUARD; i++)
            if (ga[i] != SENTINEL) {
                snprintf(why, len, "wrote past the end of input %c", q ? 'B' : 'A');
                return 1;
            }
    }
    return 0;
}

int tune_worker_main(ops_ctx *ops, const char *job_path, const char *config_path,
                     double cap_ms, FILE *out) {
    clrt *rt = ops->rt;
    tune_job j;
    char err[600];
    if (tune_job_read(&j, job_path, err, sizeof err)) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return 1;
    }
    tune_config c;
    if (config_path && tune_read_file(config_path, &c, err, sizeof err)) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        tune_job_free(&j);
        return 1;
    }
    if (op_gemm_configure(ops, config_path ? &c : NULL, config_path ? config_path : "none", err,
                          sizeof err)) {
        fprintf(out, "rejected %s\n", err);
        tune_job_free(&j);
        return 0;
    }
    dev_bench d = { .ops = ops, .rt = rt, .j = &j };
    for (int i = 0; i < j.sh.n; i++) {
        const tune_shape *s = &j.sh.v[i];
        size_t na = OFF + a_floats(s) + GUARD, nb = OFF + b_floats(s) + GUARD;
        size_t nc = OFF + c_floats(s) + GUARD;
        if (na > d.na) d.na = na;
        if (nb > d.nb) d.nb = nb;
        if (nc > d.nc) d.nc = nc;
    }
    d.host = malloc(d.nc * sizeof *d.host);
    if (!d.host) { fprintf(stderr, "cltrain: error: out of host memory\n"); exit(1); }
    int rc = 0;   // 1: no device memory for the buffers (the worker fails, with the message)
    for (int i = 0; i < j.sh.n && !rc; i++) {
        const tune_shape *s = &j.sh.v[i];
        if (!d.a[s->a_at0] && !(d.a[s->a_at0] = upload(&d, 0, d.na, s->a_at0, err, sizeof err)))
            rc = 1;
        else if (!d.b[s->b_at0] &&
                 !(d.b[s->b_at0] = upload(&d, 1, d.nb, s->b_at0, err, sizeof err)))
            rc = 1;
    }
    if (!rc && clrt_alloc_buf(rt, &d.c, d.nc * sizeof(float), "tuning result", err,
                              sizeof err) != 0)
        rc = 1;
    if (rc) fprintf(stderr, "cltrain: error: %s\n", err);
    double *ms = rc ? NULL : calloc((size_t)j.sh.n, sizeof *ms), total = 0;
    char why[300];
    int i = 0;
    for (; ms && i < j.sh.n; i++) {
        const tune_shape *s = &j.sh.v[i];
        if (check(&d, i, why, sizeof why)) {
            fprintf(out, "rejected %s (%s %dx%dx%d)\n", why, tune_case_name(s->ta * 2 + s->tb),
                    s->m, s->n, s->k);
            break;
        }
        if (s->calls == 0) continue;   // a canary: checked, not timed
        double best = INFINITY, spent = 0;
        int st = 0;
        for (int r = 0; r < 4 * j.reps && (r < j.reps || spent < 0.02) && !st; r++) {
            clrt_finish(rt);
            double t = util_clock(j.cpu_clock ? UTIL_CLOCK_CPU : UTIL_CLOCK_WALL), w = util_now();
            st = run(&d, s);
            clrt_finish(rt);
            t = util_clock(j.cpu_clock ? UTIL_CLOCK_CPU : UTIL_CLOCK_WALL) - t;
            spent += util_now() - w;
            if (t < best) best = t;
        }
        if (st) {
            fprintf(out, "rejected CLBlast: %s\n", clrt_clblast_error_name(st));
            break;
        }
        ms[i] = best * 1e3;
        total += s->calls * ms[i];
        if (total > cap_ms) {
            fprintf(out, "slow %.3f\n", total);
            break;
        }
    }
    if (ms && i == j.sh.n) {
        for (int k = 0; k < j.sh.n; k++)
            if (j.sh.v[k].calls) fprintf(out, "ms %d %.6f\n", k, ms[k]);
        fprintf(out, "total %.6f\n", total);
    }
    fflush(out);
    free(ms);
    free(d.host);
    for (int q = 0; q < 2; q++) {
        if (d.a[q]) clReleaseMemObject(d.a[q]);
        if (d.b[q]) clReleaseMemObject(d.b[q]);
    }
    if (d.c) clReleaseMemObject(d.c);
    tune_job_free(&j);
    return rc;
}

// ---- starting a worker ----

// The last line of the worker's log (its error message), for the reason of a failure.
static void last_log_line(const char *path, char *out, size_t len) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0]) snprintf(out, len, "%s", line);
    }
    fclose(f);
}

int tune_job_measure(const tune_runner *r, const tune_job *j, const tune_config *c, double cap,
                     double *ms, double *total, char *why, size_t whylen) {
    char cfg[700], caps[32], errlog[700];
    snprintf(cfg, sizeof cfg, "%s/candidate.tune", r->dir);
    snprintf(errlog, sizeof errlog, "%s/worker.log", r->dir);
    snprintf(caps, sizeof caps, "%.6g", isfinite(cap) ? cap : 1e300);
    if (c && tune_write_file(cfg, c, why, whylen)) return 1;
    const char *argv[12] = { r->exe, "tune", "--worker", r->job_path, "--cap", caps,
                             "--device", r->device };
    int argc = 8;
    if (c) {
        argv[argc++] = "--config";
        argv[argc++] = cfg;
    }
    argv[argc] = NULL;
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, whylen, "pipe: %s", strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {   // the worker: stdout to the pipe, stderr to a log, no tuning file
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        FILE *e = freopen(errlog, "w", stderr);
        (void)e;
        setenv("CLTRAIN_NO_TUNE", "1", 1);
        execvp(r->exe, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t cap_out = 1 << 16, len = 0;
    char *buf = malloc(cap_out);
    double deadline = util_now() + r->timeout_s;
    int timed_out = 0;
    while (buf) {
        double left = deadline - util_now();
        if (left <= 0) { timed_out = 1; break; }
        struct pollfd p = { fds[0], POLLIN, 0 };
        int pr = poll(&p, 1, (int)fmin(left * 1000, 1000));
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        if (len + 1 >= cap_out) {
            char *nb = realloc(buf, cap_out *= 2);
            if (!nb) break;
            buf = nb;
        }
        ssize_t got = read(fds[0], buf + len, cap_out - len - 1);
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fds[0]);
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    int rc = 1;
    if (!buf) snprintf(why, whylen, "out of host memory");
    else if (timed_out) snprintf(why, whylen, "timed out after %.0f s", r->timeout_s);
    else if (WIFSIGNALED(status))
        snprintf(why, whylen, "worker crashed (signal %d)", WTERMSIG(status));
    else {
        buf[len] = 0;
        char *line, *save = NULL, last[520];
        int seen = 0, want = 0;
        for (int i = 0; i < j->sh.n; i++) want += j->sh.v[i].calls > 0;
        last_log_line(errlog, last, sizeof last);
        snprintf(why, whylen, "worker exited %d without a result: %s",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, last);
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            int i;
            double v;
            if (sscanf(line, "ms %d %lf", &i, &v) == 2 && i >= 0 && i < j->sh.n &&
                j->sh.v[i].calls) {
                ms[i] = v;
                seen++;
            } else if (sscanf(line, "total %lf", &v) == 1 && seen == want) {
                *total = v;
                rc = 0;
            } else if (sscanf(line, "slow %lf", &v) == 1) {
                *total = v;
                rc = 2;
            } else if (!strncmp(line, "rejected ", 9)) {
                snprintf(why, whylen, "%s", line + 9);
            }
        }
    }
    free(buf);
    return rc;
}
