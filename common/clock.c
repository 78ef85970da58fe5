// See clock.h.
#define _POSIX_C_SOURCE 200809L
#include "common/clock.h"

#include <time.h>

double util_clock(util_clock_kind kind) {
    struct timespec ts;
    clock_gettime(kind == UTIL_CLOCK_CPU ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
