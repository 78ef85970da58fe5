// The one clock of cltrain: seconds as a double, for timings and progress.
#ifndef CLTRAIN_COMMON_CLOCK_H
#define CLTRAIN_COMMON_CLOCK_H

typedef enum {
    UTIL_CLOCK_WALL,               // monotonic wall-clock time (CLOCK_MONOTONIC)
    UTIL_CLOCK_CPU,                // this process's CPU time, all threads (CLOCK_PROCESS_CPUTIME_ID)
} util_clock_kind;

double util_clock(util_clock_kind kind);
// Wall-clock seconds from an arbitrary start: differences are durations.
static inline double util_now(void) { return util_clock(UTIL_CLOCK_WALL); }

#endif
