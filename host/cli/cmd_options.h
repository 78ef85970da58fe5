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
// Was the long flag `name` ("batch-size") given?
int cmd_flag_given(unsigned long long mask, const char *name);

#endif
