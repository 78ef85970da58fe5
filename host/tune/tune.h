// tune: how op_gemm runs its GEMMs on a device — CLBlast kernel parameters (applied with
// CLBlastOverrideParameters) and op_gemm's own routing rules (direct or indirect kernel, which
// of the two equivalent layouts CLBlast is handed) — kept in a small versioned text file per
// device. This header covers the file (parse, write, which device it is for, which file
// applies) and the search behind `cltrain tune` (host/tune/tune_search.c); what a
// configuration holds and op_gemm's entry points for it are the ops layer's
// (host/ops/gemm_tuning.h, included here).
//
// Which file applies to a device, first match wins (tune_find):
//   1. $CLTRAIN_TUNE_FILE, when it names this device (else a warning, and on to 2);
//   2. the cache file written by `cltrain tune`: <cache folder>/gemm-<key>.tune, key =
//      hash of device name, vendor, driver and platform;
//   3. a file shipped in the repository's tune/ folder (embedded at build time) whose
//      match- lines fit the device;
//   4. none: CLBlast's own parameters, every GEMM handed over row-major as called.
// CLTRAIN_NO_TUNE=1 skips all of them. A damaged or foreign file is ignored with a warning.
// The command layer reads the variables once at start-up (host/cli/startup.c) and hands the
// result down in ops_config (host/ops/ops.h); op_gemm reads no files.
#ifndef CLTRAIN_TUNE_H
#define CLTRAIN_TUNE_H

#include "host/ops/gemm_tuning.h"
#include "host/ops/ops.h"
#include "host/runtime/clrt.h"

#include <stdint.h>
#include <stdio.h>

// Text form. tune_parse accepts exactly what tune_write writes (plus comments and blank
// lines); any unknown line, bad value, invalid kernel parameters or a missing "end" make it
// fail with a message naming the line.
int tune_parse(tune_config *c, const char *text, char *err, size_t errlen);
void tune_write(FILE *f, const tune_config *c);
int tune_read_file(const char *path, tune_config *c, char *err, size_t errlen);
// Atomic (temp file + rename); creates the folder.
int tune_write_file(const char *path, const tune_config *c, char *err, size_t errlen);

void tune_set_identity(tune_config *c, const clrt_devinfo *d);
// 1 when every identity field of c given matches d, and at least one was given.
int tune_matches(const tune_config *c, const clrt_devinfo *d);
// The cache file for d in the cache folder dir (clrt.cache_dir; "" when dir is NULL or "").
void tune_cache_path(const char *dir, const clrt_devinfo *d, char *out, size_t outlen);
// The configuration for d (order above): `file` is $CLTRAIN_TUNE_FILE as the command layer
// read it at start-up (NULL or "": none), cache_dir the cache folder (NULL or "": none).
// Returns 1 and fills c and a description of where it came from ("CLTRAIN_TUNE_FILE /path",
// "cache /path", "shipped tune/x.tune"), 0 when none applies. Reads files, never the
// environment (CLTRAIN_NO_TUNE: the caller does not call it).
int tune_find(const clrt_devinfo *d, const char *file, const char *cache_dir, tune_config *c,
              char *source, size_t sourcelen);

// ---- the search (host/tune/tune_search.c; candidates run in workers, host/tune/tune_job.c) ----
typedef struct tune_search_opts {
    const char *exe;         // this binary, started as `cltrain tune --worker` per candidate
    const char *device;      // the device for the workers, "P:D"
    double budget_s;         // wall-clock seconds for the search (compiles included)
    int reps;                // timed runs per shape and candidate (the fastest counts)
    uint64_t seed;
    int cpu_clock;           // score by process CPU time, not wall-clock time: steadier on a
                             // machine others load, blind to how well work spreads on cores
    FILE *log;               // progress lines (NULL: quiet)
} tune_search_opts;

// Per shape: milliseconds per call before (as op_gemm ran when the search started) and with
// the result.
typedef struct tune_result {
    double *before_ms, *after_ms;
    double before_total_ms, after_total_ms;   // per step: sum of calls x ms
    int candidates;                           // configurations measured
} tune_result;

// Search for the fastest configuration of ops->rt's device on the shapes, starting from what
// op_gemm uses now. Every configuration is checked against a host reference on every shape
// before it counts. Returns 0 with *best (identity set) and *res (caller frees with
// tune_result_free).
int tune_search(ops_ctx *ops, const tune_shapes *shapes, const tune_search_opts *o,
                tune_config *best, tune_result *res, char *err, size_t errlen);
void tune_result_free(tune_result *r);
// Measure what op_gemm runs now on the shapes (in a worker; the fastest of three runs per
// shape): ms per shape, the step total.
int tune_measure(ops_ctx *ops, const tune_shapes *shapes, const tune_search_opts *o, double *ms,
                 double *total, char *err, size_t errlen);

// The worker (`cltrain tune --worker JOB [--config FILE] [--cap MS]`): measures one
// configuration (none: CLBlast as it comes) on ops->rt's device and prints the result on out
// for the searching process. 0 when a result (timings, "slow" or "rejected") was printed.
int tune_worker_main(ops_ctx *ops, const char *job_path, const char *config_path, double cap_ms,
                     FILE *out);

#endif
