// Start-up: the command layer reads the environment (README.md, "Environment") and the GEMM
// tuning files once, and hands the result down as structs (DESIGN.md, "Configuration flows
// down"): ops_config to the ops through the runtime, clrt_options to the runtime.
#ifndef CLTRAIN_CLI_STARTUP_H
#define CLTRAIN_CLI_STARTUP_H

#include "host/ops/ops.h"
#include "host/runtime/clrt.h"

#include <stddef.h>

// The ops' configuration for device d: the switches CLTRAIN_SPLITK, CLTRAIN_WINOGRAD,
// CLTRAIN_BN_INTERLEAVE, CLTRAIN_KEEP_COLS ("0" or "1"; unset or anything else: -1, the
// launcher's own rule), and the GEMM tuning that applies to d (none with CLTRAIN_NO_TUNE set
// and not "0"; else CLTRAIN_TUNE_FILE, the cache, the shipped files: tune_find).
void cli_ops_config(ops_config *c, const clrt_devinfo *d);

// clrt_init (same contract), then cli_ops_config for the chosen device, handed down with rt
// (rt->ops_cfg, freed by clrt_free). What every command that runs ops starts with.
int cli_runtime_init(clrt *rt, const clrt_options *opt, char *err, size_t errlen);

#endif
