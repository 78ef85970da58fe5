// Flag parsing for train, eval and bench (one table; each command allows its own flags).
#ifndef CLTRAIN_CMD_OPTIONS_H
#define CLTRAIN_CMD_OPTIONS_H

#include "host/cli/cli.h"
#include "host/train/session.h"

typedef enum { CMD_TRAIN, CMD_EVAL, CMD_BENCH } cmd_kind;

// Returns 0 to run, -1 after printing --help (exit 0), or CLI_EXIT_USAGE after a message.
// explicit_mask (may be NULL) records which flags were given.
int cmd_parse_options(int argc, char **argv, run_options *o, cmd_kind kind, const char *usage,
                      unsigned long long *explicit_mask);
// The optimizer flags that do not go together (exit status 2 with a message naming the flag,
// or 0): --betas/--eps with sgd, --momentum/--nesterov with adam or adamw, --nesterov with
// momentum 0. Checked after --resume has filled in the saved run's optimizer.
int cmd_check_optim_flags(const run_options *o, unsigned long long given, const char *usage);
// Was the long flag `name` ("batch-size") given?
int cmd_flag_given(unsigned long long mask, const char *name);

#endif
