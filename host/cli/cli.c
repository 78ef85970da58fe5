// Strict flag-value parsing: the whole string must be a number in range.
#include "host/cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno) {
        fprintf(stderr, "cltrain: error: %s expects an integer, got '%s'\n", flag, s ? s : "");
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "cltrain: error: %s must be between %ld and %ld, got %ld\n", flag, lo,
                hi, v);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
    long v;
    if (cli_parse_long(flag, s, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v)) {
        fprintf(stderr, "cltrain: error: %s expects a number, got '%s'\n", flag, s ? s : "");
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "cltrain: error: %s must be between %g and %g, got %g\n", flag, lo, hi,
                v);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_choice(const char *flag, const char *s, const char *const *choices) {
    for (int i = 0; choices[i]; i++)
        if (s && strcmp(s, choices[i]) == 0) return i;
    fprintf(stderr, "cltrain: error: %s expects one of", flag);
    for (int i = 0; choices[i]; i++) fprintf(stderr, "%s%s", i ? "|" : " ", choices[i]);
    fprintf(stderr, ", got '%s'\n", s ? s : "");
    return -1;
}

int cli_usage_error(const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cltrain: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (usage) fputs(usage, stderr);
    return CLI_EXIT_USAGE;
}

int cli_show_usage(const char *usage) {
    if (usage) fputs(usage, stderr);
    return CLI_EXIT_USAGE;
}
