// The training progress bar on a terminal, and every line printed while it may be on screen.
// The bar is redrawn in place (carriage return, no newline); a line printed over it without
// erasing it first leaves the bar's tail on screen ("loss: 2.40763.7 img/s"), so everything
// the train command prints during the loop goes through progress_printf / progress_error,
// which erase the bar first (\r and erase-to-end-of-line); the next update redraws it.
#ifndef CLTRAIN_PROGRESS_H
#define CLTRAIN_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    FILE *bar;                     // where the bar is drawn (stderr)
    int tty;                       // draw it at all: bar is a terminal
    int shown;                     // the bar is on screen, the cursor at its end
    double t_epoch;                // when the current epoch started
} progress;

// tty: isatty of bar's file descriptor.
void progress_init(progress *p, FILE *bar);
void progress_start_epoch(progress *p);
// Redraws "[epoch E] b/B  loss L  X img/s  ETA m:ss" (epoch and batch 1-based).
void progress_update(progress *p, int epoch, int batch, int batches, double loss, double ips);
// Erases the bar if it is on screen. Safe to call any time (a no-op off a terminal).
void progress_clear(progress *p);
// Ends the bar's line and leaves it on screen (an epoch's last state).
void progress_keep(progress *p);
// Erases the bar, prints to f and flushes it.
void progress_printf(progress *p, FILE *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Erases the bar and prints "cltrain: error: <msg>" to stderr.
void progress_error(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
