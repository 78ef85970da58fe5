// Start-up: the environment and the tuning files, read once (startup.h).
#define _POSIX_C_SOURCE 200809L
#include "host/cli/startup.h"
#include "host/tune/tune.h"

#include <stdlib.h>
#include <string.h>

// "0" or "1" exactly: that value; anything else (or unset): -1, the launcher's own rule.
static int env_switch(const char *name) {
    const char *e = getenv(name);
    return e && (e[0] == '0' || e[0] == '1') && !e[1] ? e[0] - '0' : -1;
}

double cli_ddp_bucket_mb(void) {
    const char *e = getenv("CLTRAIN_DDP_BUCKET_MB");
    if (!e) return -1;
    char *end;
    double v = strtod(e, &end);
    return end != e && !*end && v >= 0 && v <= 1e6 ? v : -2;
}

void cli_cache_dir(char *out, size_t outlen) {
    out[0] = 0;
    const char *no = getenv("CLTRAIN_NO_CACHE");
    if (no && *no && strcmp(no, "0") != 0) return;
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg) snprintf(out, outlen, "%s/cltrain", xdg);
    else if (home && *home) snprintf(out, outlen, "%s/.cache/cltrain", home);
}

void cli_runtime_options(clrt_options *o, char *buf, size_t buflen) {
    if (!o->device_spec || !*o->device_spec) o->device_spec = getenv("CLTRAIN_DEVICE");
    o->kernel_dir = getenv("CLTRAIN_KERNEL_DIR");
    cli_cache_dir(buf, buflen);
    o->cache_dir = buf;
}

void cli_ops_config(ops_config *c, const clrt_devinfo *d) {
    ops_config_init(c);
    c->splitk = env_switch("CLTRAIN_SPLITK");
    c->winograd = env_switch("CLTRAIN_WINOGRAD");
    c->gemm_packed = env_switch("CLTRAIN_GEMM_PACKED");
    c->bn_interleave = env_switch("CLTRAIN_BN_INTERLEAVE");
    c->keep_cols = env_switch("CLTRAIN_KEEP_COLS");
    const char *no = getenv("CLTRAIN_NO_TUNE");
    if (no && *no && strcmp(no, "0") != 0) return;
    char cache[1024];
    cli_cache_dir(cache, sizeof cache);
    c->has_gemm = tune_find(d, getenv("CLTRAIN_TUNE_FILE"), cache, &c->gemm, c->gemm_source,
                            sizeof c->gemm_source);
    if (!c->has_gemm) snprintf(c->gemm_source, sizeof c->gemm_source, "none");
}

int cli_runtime_init(clrt *rt, ops_ctx *ops, ops_shared *shared, const clrt_options *opt,
                     char *err, size_t errlen) {
    clrt_options o = opt ? *opt : (clrt_options){ 0 };
    char cache[1024];
    cli_runtime_options(&o, cache, sizeof cache);
    int rc = clrt_init(rt, &o, err, errlen);
    if (rc != 0) return rc;
    ops_config c;
    cli_ops_config(&c, &rt->dev);
    rc = ops_ctx_init(ops, rt, &c, shared, err, errlen);
    if (rc != 0) clrt_free(rt);
    return rc;
}

void cli_print_stderr(void *ctx, const char *line) {
    (void)ctx;
    fputs(line, stderr);
}

setup_spec cli_setup_spec(const run_options *o, const ckpt *from, const ckpt *weights, int K,
                          int batch) {
    setup_spec s = { .arch = o->arch, .from = from, .from_state = o->resume != NULL,
                     .from_path = o->resume ? o->resume : o->weights, .num_classes = K,
                     .batch = batch, .image_size = o->image_size, .freeze = -1,
                     .seed = (uint64_t)o->seed, .weights = weights,
                     .weights_path = o->weights, .strict = o->strict,
                     .note = cli_print_stderr };
    return s;
}
