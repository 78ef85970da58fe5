// Start-up: the command layer reads the environment (docs/internals.md) and the GEMM
// tuning files once, and hands the result down as structs (DESIGN.md, "Configuration flows
// down"): ops_config to the ops in their context (ops_ctx), clrt_options to the runtime.
#ifndef CLTRAIN_CLI_STARTUP_H
#define CLTRAIN_CLI_STARTUP_H

#include "host/cli/cmd_options.h"
#include "host/ops/ops.h"
#include "host/runtime/clrt.h"
#include "host/train/setup.h"

#include <stddef.h>

// The runtime's share of the environment, into o: device_spec from CLTRAIN_DEVICE when o has
// none, kernel_dir from CLTRAIN_KERNEL_DIR, cache_dir = cli_cache_dir (in buf, which must
// outlive the clrt_init call).
void cli_runtime_options(clrt_options *o, char *buf, size_t buflen);
// The cache folder: "$XDG_CACHE_HOME/cltrain", else "$HOME/.cache/cltrain"; "" when
// CLTRAIN_NO_CACHE is set and not "0" (the kernel binaries and the tuning files live there).
void cli_cache_dir(char *out, size_t outlen);

// The ops' configuration for device d: the switches CLTRAIN_SPLITK, CLTRAIN_WINOGRAD,
// CLTRAIN_BN_INTERLEAVE, CLTRAIN_KEEP_COLS, CLTRAIN_GEMM_PACKED ("0" or "1"; unset or anything else: -1, the
// launcher's own rule), and the GEMM tuning that applies to d (none with CLTRAIN_NO_TUNE set
// and not "0"; else CLTRAIN_TUNE_FILE, the cache folder, the shipped files: tune_find).
void cli_ops_config(ops_config *c, const clrt_devinfo *d);

// CLTRAIN_DDP_BUCKET_MB: the data-parallel gradient buckets' size in MiB (DDP's
// bucket_cap_mb; replicas_set_buckets), 0 for one all-reduce after backward (no overlap).
// -1 when unset (DDP's default, 25), -2 when not a number >= 0.
double cli_ddp_bucket_mb(void);

// clrt_init (same contract) with opt completed by cli_runtime_options, then the ops' context
// on it: cli_ops_config for the chosen device, the device's GEMM state in shared (the
// command's one registry: ops_shared_free it after clrt_free). What every command that runs
// ops starts with.
int cli_runtime_init(clrt *rt, ops_ctx *ops, ops_shared *shared, const clrt_options *opt,
                     char *err, size_t errlen);

// The model set-up (setup_model) of a command's options o: the architecture from --arch or
// `from` (the training state with --resume, else the --weights file; may be NULL), K classes,
// the plan for `batch` at --image-size, then `weights` loaded (NULL: none) with --strict and
// --seed's fc. Nothing is frozen and nothing seeded: train and bench set those fields. Notes
// go to stderr.
setup_spec cli_setup_spec(const run_options *o, const ckpt *from, const ckpt *weights, int K,
                          int batch);
// A setup_spec.note (and the like) that writes the line to stderr.
void cli_print_stderr(void *ctx, const char *line);

#endif
