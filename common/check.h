// The setup-path check (STYLE.md 6) of functions that report failure as a message in the
// caller's buffer `err` of `errlen` bytes and a return value of 1.
#ifndef CLTRAIN_COMMON_CHECK_H
#define CLTRAIN_COMMON_CHECK_H

#include <stdarg.h>
#include <stdio.h>

// Write the printf-style message to err (when there is one) and return 1: a set-up path's
// failure in one call.
static inline int util_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int util_error(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return 1;
}

// Unless cond holds: write the printf-style message to err and return 1 from the caller.
#define UTIL_CHECK(cond, ...)                              \
    do {                                                   \
        if (!(cond)) {                                     \
            snprintf(err, errlen, __VA_ARGS__);            \
            return 1;                                      \
        }                                                  \
    } while (0)

#endif
