// `cltrain devices` and `cltrain selftest`.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cli.h"
#include "common/clock.h"
#include "host/runtime/clrt.h"
#include "host/cli/startup.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char devices_usage[] =
    "usage: cltrain devices [--device SPEC]\n"
    "  Lists every OpenCL platform and device (P:D index, names, type, driver, memory).\n"
    "  --device SPEC  also say which device SPEC selects (P:D, index, gpu, cpu, name part)\n";

int cmd_devices(int argc, char **argv) {
    static const struct option opts[] = { { "device", required_argument, 0, 'd' },
                                          { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    const char *spec = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd') spec = optarg;
        else if (c == 'h') { fputs(devices_usage, stdout); return CLI_EXIT_OK; }
        else return cli_show_usage(devices_usage);
    }
    if (optind < argc) return cli_usage_error(devices_usage, "unexpected argument '%s'", argv[optind]);
    clrt_devinfo *list = NULL;
    int n = 0;
    char err[512];
    int rc = clrt_list_devices(&list, &n, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return rc;
    }
    clrt_print_devices(stdout, list, n);
    if (!spec) spec = getenv("CLTRAIN_DEVICE");
    int idx = clrt_select_device(list, n, spec);
    if (idx < 0) {
        fprintf(stderr, "cltrain: error: no OpenCL device matches '%s'\n", spec ? spec : "");
        free(list);
        return CLI_EXIT_USAGE;
    }
    printf("selected: %d:%d %s\n", list[idx].platform, list[idx].device, list[idx].name);
    free(list);
    return CLI_EXIT_OK;
}

static const char selftest_usage[] =
    "usage: cltrain selftest [--device SPEC] [-n N] [--strict]\n"
    "  Builds the kernels (or loads them from the cache), runs y = 2x + 1 on N floats on the\n"
    "  device, checks the result against the host and reports the start-up time.\n"
    "  --strict  build from source (not from cltrain's cache) and fail (exit status 1) when\n"
    "            the OpenCL compiler's build log is not empty, e.g. a warning\n";

int cmd_selftest(int argc, char **argv) {
    static const struct option opts[] = { { "device", required_argument, 0, 'd' },
                                          { "strict", no_argument, 0, 's' },
                                          { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    clrt_options ro = { 0 };
    int n = 1 << 16, strict = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        if (c == 'd') ro.device_spec = optarg;
        else if (c == 'n') {
            if (cli_parse_int("-n", optarg, 1, 1 << 26, &n)) return cli_show_usage(selftest_usage);
        } else if (c == 's') strict = 1;
        else if (c == 'h') { fputs(selftest_usage, stdout); return CLI_EXIT_OK; }
        else return cli_show_usage(selftest_usage);
    }
    double t0 = util_now();
    clrt rt;
    char err[1024];
    char cache_dir[1024];
    cli_runtime_options(&ro, cache_dir, sizeof cache_dir);
    if (strict) ro.cache_dir = NULL;   // a binary from the cache comes with no build log
    int rc = clrt_init(&rt, &ro, err, sizeof err);
    if (rc) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return rc;
    }
    if (strict && rt.build_log) {
        fprintf(stderr, "cltrain: error: --strict: the kernels' build log is not empty (above)\n");
        clrt_free(&rt);
        return 1;
    }
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    if (!x || !y) { fprintf(stderr, "cltrain: error: out of host memory\n"); exit(1); }
    for (int i = 0; i < n; i++) x[i] = (float)(i % 1000) * 0.25f - 17.0f;
    cl_mem bx = NULL, by = NULL;
    if (clrt_alloc_buf(&rt, &bx, sizeof(float) * (size_t)n, "selftest input", err, sizeof err) ||
        clrt_alloc_buf(&rt, &by, sizeof(float) * (size_t)n, "selftest output", err, sizeof err)) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        if (bx) clReleaseMemObject(bx);
        free(x);
        free(y);
        clrt_free(&rt);
        return CLI_EXIT_DATA;
    }
    clrt_write(&rt, bx, 0, x, sizeof(float) * (size_t)n);
    cl_kernel k = clrt_kernel(&rt, "selftest_axpb");
    cl_ulong zero = 0;
    float a = 2.0f;
    CLRT_ARG(k, 0, by); CLRT_ARG(k, 1, zero); CLRT_ARG(k, 2, bx); CLRT_ARG(k, 3, zero);
    CLRT_ARG(k, 4, a); CLRT_ARG(k, 5, n);
    clrt_launch1d(&rt, k, (size_t)n);
    clrt_read(&rt, by, 0, y, sizeof(float) * (size_t)n);
    double t1 = util_now();
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (y[i] != 2.0f * x[i]) bad++;  // the embedded kernel adds SELFTEST_B = 0
    printf("selftest: %d values, %d mismatches, kernels %s, start to first result %.3f s\n", n,
           bad, rt.cache_hit ? "from cache" : "built from source", t1 - t0);
    clReleaseMemObject(bx);
    clReleaseMemObject(by);
    free(x);
    free(y);
    clrt_free(&rt);
    return bad ? 1 : 0;
}
