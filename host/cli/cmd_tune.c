// `cltrain tune`: search the GEMM configuration for a device on ResNet18's own GEMMs, store it
// in the cache folder, print GFLOPS per shape before and after.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cli.h"
#include "host/cli/startup.h"
#include "host/train/session.h"
#include "host/train/trainer.h"
#include "host/tune/tune.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char tune_usage[] =
    "usage: cltrain tune [--device SPEC] [--image-size S] [--batch-size B] [--budget SECONDS]\n"
    "                    [--reps N] [--seed N] [--clock wall|cpu] [--out PATH] [--show]\n"
    "                    [--measure]\n"
    "  Records the GEMMs of one ResNet18 training step at that size (forward, weight and\n"
    "  data gradients), then searches CLBlast parameters (Xgemm, XgemmDirect, the copy/pad/\n"
    "  transpose helpers) and op_gemm's routes (direct or indirect kernel, layout) on exactly\n"
    "  those shapes; every candidate is checked against a host reference. The fastest is\n"
    "  written to the cache folder, keyed by device name, vendor, driver and platform, and\n"
    "  every later cltrain run on this device applies it. Prints time and GFLOPS per shape\n"
    "  before and after. Defaults: --image-size 32 --batch-size 64 --budget 600 --reps 2.\n"
    "  --budget   seconds for the search, compiles included (one candidate takes seconds\n"
    "             on a GPU, 10-20 s on pocl; one already compiling still finishes)\n"
    "  --clock    wall (default) or cpu: score by the process's CPU time, steadier when\n"
    "             other jobs share the cores but blind to how well work spreads over them\n"
    "  --out PATH write the result there instead (e.g. to ship it in tune/)\n"
    "  --show     print the configuration that applies to the device, and where it comes\n"
    "             from, then exit\n"
    "  --measure  only time the GEMMs as they run now (per shape), write nothing\n";

typedef struct tune_options {
    const char *device, *out;
    const char *worker, *config;   // internal: `--worker JOB [--config FILE] [--cap MS]`
    double cap;
    int image_size, batch_size, reps, show, cpu_clock, measure;
    double budget;
    long seed;
} tune_options;

static int parse(int argc, char **argv, tune_options *o) {
    static const struct option opts[] = {
        { "device", required_argument, 0, 'd' }, { "image-size", required_argument, 0, 's' },
        { "batch-size", required_argument, 0, 'b' }, { "budget", required_argument, 0, 'g' },
        { "reps", required_argument, 0, 'r' }, { "seed", required_argument, 0, 'e' },
        { "out", required_argument, 0, 'o' }, { "show", no_argument, 0, 'w' },
        { "clock", required_argument, 0, 'c' }, { "worker", required_argument, 0, 'W' },
        { "config", required_argument, 0, 'C' }, { "cap", required_argument, 0, 'P' },
        { "measure", no_argument, 0, 'm' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    *o = (tune_options){ .image_size = 32, .batch_size = 64, .reps = 2, .budget = 600,
                         .seed = 1, .cap = 1e300 };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'd': o->device = optarg; break;
        case 's': bad = cli_parse_int("--image-size", optarg, 32, 1024, &o->image_size); break;
        case 'b': bad = cli_parse_int("--batch-size", optarg, 2, 4096, &o->batch_size); break;
        case 'g': bad = cli_parse_float("--budget", optarg, 0, 1e6, &o->budget); break;
        case 'r': bad = cli_parse_int("--reps", optarg, 1, 100, &o->reps); break;
        case 'e': bad = cli_parse_long("--seed", optarg, 0, 1L << 62, &o->seed); break;
        case 'o': o->out = optarg; break;
        case 'c': {
            static const char *const clocks[] = { "wall", "cpu", NULL };
            int i = cli_parse_choice("--clock", optarg, clocks);
            bad = i < 0;
            o->cpu_clock = i == 1;
            break;
        }
        case 'w': o->show = 1; break;
        case 'm': o->measure = 1; break;
        case 'W': o->worker = optarg; break;
        case 'C': o->config = optarg; break;
        case 'P': bad = cli_parse_float("--cap", optarg, 0, 1e300, &o->cap); break;
        case 'h': fputs(tune_usage, stdout); return -1;
        default: return cli_show_usage(tune_usage);
        }
        if (bad) return cli_show_usage(tune_usage);
    }
    if (optind < argc) return cli_usage_error(tune_usage, "unexpected argument '%s'", argv[optind]);
    return 0;
}

// The GEMMs of one training step (all stages trained) at batch B, image size S.
static int record_shapes(ops_ctx *ops, int B, int S, tune_shapes *sh, char *err, size_t errlen) {
    model m;
    setup_spec spec = { .arch = "resnet18", .num_classes = 10, .batch = B, .image_size = S,
                        .freeze = -1, .init_weights = 1, .seed = 1 };
    int rc = setup_model(&m, ops, &spec, err, errlen);
    if (rc == 0) {
        size_t nx = 3 * (size_t)B * S * S;
        float *x = calloc(nx, sizeof *x);
        int32_t *y = calloc((size_t)B, sizeof *y);
        if (!x || !y) {
            snprintf(err, errlen, "out of host memory");
            rc = 1;
        } else {
            for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 97) / 97.0f;
            trainer tr;
            trainer_init(&tr, &m);
            const optim_config sgd = { .lr = 1e-4, .momentum = 0.9 };  // bench's SGD
            float loss;
            op_gemm_record(ops, sh);
            train_step(&tr, x, y, B, &sgd, &loss);  // the step `train` runs
            op_gemm_record(ops, NULL);
            trainer_free(&tr);
        }
        free(x);
        free(y);
    }
    model_free(&m);
    return rc;
}

static double gflops(const tune_shape *s, double ms) {
    return ms > 0 ? 2.0 * s->m * s->n * s->k / (ms * 1e6) : 0.0;
}

static void print_table(FILE *f, const tune_shapes *sh, const tune_result *r) {
    fprintf(f, "%-4s %6s %7s %6s %5s %10s %7s %10s %7s\n", "case", "m", "n", "k", "calls",
            "before ms", "GFLOPS", "after ms", "GFLOPS");
    double flop = 0;
    for (int i = 0; i < sh->n; i++) {
        const tune_shape *s = &sh->v[i];
        flop += 2.0 * s->m * s->n * s->k * s->calls;
        fprintf(f, "%-4s %6d %7d %6d %5d %10.3f %7.1f %10.3f %7.1f\n",
                tune_case_name(s->ta * 2 + s->tb), s->m, s->n, s->k, s->calls, r->before_ms[i],
                gflops(s, r->before_ms[i]), r->after_ms[i], gflops(s, r->after_ms[i]));
    }
    fprintf(f, "per step: %.1f ms (%.1f GFLOPS) before, %.1f ms (%.1f GFLOPS) after\n",
            r->before_total_ms, flop / (r->before_total_ms * 1e6), r->after_total_ms,
            flop / (r->after_total_ms * 1e6));
}

static void search_opts(const clrt *rt, const tune_options *o, char *exe, size_t exelen,
                        char *dev, size_t devlen, tune_search_opts *so) {
    ssize_t n = readlink("/proc/self/exe", exe, exelen - 1);   // the workers run this binary
    if (n > 0) exe[n] = 0;
    else snprintf(exe, exelen, "cltrain");                     // else: the one on PATH
    snprintf(dev, devlen, "%d:%d", rt->dev.platform, rt->dev.device);
    *so = (tune_search_opts){ .exe = exe, .device = dev, .budget_s = o->budget,
                              .reps = o->reps, .seed = (uint64_t)o->seed,
                              .cpu_clock = o->cpu_clock, .log = stderr };
}

// --measure: the GEMMs as they run now.
static int measure_now(ops_ctx *ops, const tune_options *o, const tune_shapes *sh, char *err,
                       size_t errlen) {
    char exe[1024], dev[32];
    tune_search_opts so;
    search_opts(ops->rt, o, exe, sizeof exe, dev, sizeof dev, &so);
    tune_result r = { calloc((size_t)sh->n, sizeof(double)), NULL, 0, 0, 0 };
    if (!r.before_ms) {
        snprintf(err, errlen, "out of host memory");
        return 1;
    }
    int rc = tune_measure(ops, sh, &so, r.before_ms, &r.before_total_ms, err, errlen);
    if (rc == 0) {
        r.after_ms = r.before_ms;
        r.after_total_ms = r.before_total_ms;
        print_table(stdout, sh, &r);
    }
    free(r.before_ms);
    return rc;
}

// The search, then the file: exact identity of this device (never a shipped file's patterns).
static int tune_and_write(ops_ctx *ops, const tune_options *o, const tune_shapes *sh,
                          const char *path, char *err, size_t errlen) {
    char exe[1024], dev[32];
    tune_search_opts so;
    search_opts(ops->rt, o, exe, sizeof exe, dev, sizeof dev, &so);
    tune_config best;
    tune_result res = { 0 };
    int rc = tune_search(ops, sh, &so, &best, &res, err, errlen);
    if (rc) return rc;
    print_table(stdout, sh, &res);
    tune_config out = best;
    memset(out.match_device, 0, sizeof out.match_device);
    memset(out.match_vendor, 0, sizeof out.match_vendor);
    memset(out.match_driver, 0, sizeof out.match_driver);
    memset(out.match_platform, 0, sizeof out.match_platform);
    tune_set_identity(&out, &ops->rt->dev);
    snprintf(out.note, sizeof out.note, "cltrain tune --image-size %d --batch-size %d "
             "--budget %.0f: GEMMs %.1f -> %.1f ms per step, %d candidates", o->image_size,
             o->batch_size, o->budget, res.before_total_ms, res.after_total_ms, res.candidates);
    rc = tune_write_file(path, &out, err, errlen);
    if (rc == 0) printf("written: %s\n", path);
    tune_result_free(&res);
    return rc;
}

int cmd_tune(int argc, char **argv) {
    tune_options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? CLI_EXIT_OK : rc;
    char err[2048];
    clrt rt;
    ops_ctx ops;
    ops_shared shared = { 0 };
    clrt_options ro = { .device_spec = o.device, .quiet = o.worker != NULL };
    if ((rc = cli_runtime_init(&rt, &ops, &shared, &ro, err, sizeof err)) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return rc;
    }
    if (o.worker) {   // one candidate, in its own process (host/tune/tune_job.h says why)
        rc = tune_worker_main(&ops, o.worker, o.config, o.cap, stdout);
        clrt_free(&rt);
        ops_shared_free(&shared);
        return rc ? CLI_EXIT_DATA : CLI_EXIT_OK;
    }
    const char *packed_note = "op_gemm runs its packed kernels on this device "
                              "(CLTRAIN_GEMM_PACKED); this configuration serves CLBlast's "
                              "path (CLTRAIN_GEMM_PACKED=0)";
    if (o.show) {
        if (op_gemm_packed(&ops)) printf("# note: %s\n", packed_note);
        printf("# in force: %s\n", op_gemm_source(&ops));
        tune_write(stdout, op_gemm_config(&ops));
        clrt_free(&rt);
        ops_shared_free(&shared);
        return CLI_EXIT_OK;
    }
    char path[1100];
    if (o.out) snprintf(path, sizeof path, "%s", o.out);
    else tune_cache_path(rt.cache_dir, &rt.dev, path, sizeof path);
    if (!path[0] && !o.measure) {
        fprintf(stderr, "cltrain: error: the cache folder is disabled (CLTRAIN_NO_CACHE); "
                        "give --out PATH\n");
        clrt_free(&rt);
        ops_shared_free(&shared);
        return CLI_EXIT_USAGE;
    }
    fprintf(stderr, "cltrain: %s GEMMs for %s at image size %d, batch %d (%s: %s)\n",
            o.measure ? "timing" : "tuning", rt.dev.name, o.image_size, o.batch_size,
            o.measure ? "as they run now" : "starting from", op_gemm_source(&ops));
    if (op_gemm_packed(&ops)) fprintf(stderr, "cltrain: note: %s\n", packed_note);
    tune_shapes sh = { 0 };
    rc = record_shapes(&ops, o.batch_size, o.image_size, &sh, err, sizeof err);
    if (rc == 0) {
        fprintf(stderr, "cltrain: %d distinct GEMMs per training step\n", sh.n);
        rc = o.measure ? measure_now(&ops, &o, &sh, err, sizeof err)
                       : tune_and_write(&ops, &o, &sh, path, err, sizeof err);
    }
    if (rc) fprintf(stderr, "cltrain: error: %s\n", err);
    tune_shapes_free(&sh);
    clrt_free(&rt);
    ops_shared_free(&shared);
    return rc ? CLI_EXIT_DATA : CLI_EXIT_OK;
}
