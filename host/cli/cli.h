// Command-line helpers shared by the subcommands: strict number parsing with ranges, the
// usage-error exit, and the subcommand table.
#ifndef CLTRAIN_CLI_H
#define CLTRAIN_CLI_H

#include <stdio.h>

// Exit statuses: 1 bad data or a runtime failure, 2 bad usage (flags, device SPEC).
enum { CLI_EXIT_OK = 0, CLI_EXIT_DATA = 1, CLI_EXIT_USAGE = 2 };

// Parse a whole decimal integer in [lo, hi] for `flag`; on failure print a one-line reason
// and return -1.
int cli_parse_long(const char *flag, const char *s, long lo, long hi, long *out);
int cli_parse_int(const char *flag, const char *s, int lo, int hi, int *out);
// Parse a finite float in [lo, hi].
int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out);
// Pick one of a NULL-terminated list of words; returns its index or -1 (with a message).
int cli_parse_choice(const char *flag, const char *s, const char *const *choices);

// Print "cltrain: error: <msg>" then the usage text to stderr; returns CLI_EXIT_USAGE.
int cli_usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Print the usage text to stderr after a one-line reason; returns CLI_EXIT_USAGE.
int cli_show_usage(const char *usage);

int cmd_devices(int argc, char **argv);
int cmd_selftest(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tune(int argc, char **argv);

#endif
