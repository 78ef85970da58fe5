// The setup-path check (STYLE.md 6) of functions that report failure as a message in the
// caller's buffer `err` of `errlen` bytes and a return value of 1.
#ifndef CLTRAIN_COMMON_CHECK_H
#define CLTRAIN_COMMON_CHECK_H

#include <stdio.h>

// Unless cond holds: write the printf-style message to err and return 1 from the caller.
#define UTIL_CHECK(cond, ...)                              \
    do {                                                   \
        if (!(cond)) {                                     \
            snprintf(err, errlen, __VA_ARGS__);            \
            return 1;                                      \
        }                                                  \
    } while (0)

#endif
