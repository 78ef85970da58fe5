// The progress bar: see progress.h.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/progress.h"
#include "host/train/session.h"

#include <stdarg.h>
#include <unistd.h>

void progress_init(progress *p, FILE *bar) {
    p->bar = bar;
    p->tty = isatty(fileno(bar));
    p->shown = 0;
    p->t_epoch = session_now();
}

void progress_start_epoch(progress *p) { p->t_epoch = session_now(); }

void progress_update(progress *p, int epoch, int batch, int batches, double loss, double ips) {
    if (!p->tty) return;
    double eta = ips > 0 ? (batches - batch) * (session_now() - p->t_epoch) / (batch ? batch : 1)
                         : 0;
    fflush(stdout);  // a line printed before must reach the screen before the bar
    fprintf(p->bar, "\r\033[K[epoch %d] %d/%d  loss %.4f  %.1f img/s  ETA %d:%02d", epoch,
            batch, batches, loss, ips, (int)eta / 60, (int)eta % 60);
    fflush(p->bar);
    p->shown = 1;
}

void progress_clear(progress *p) {
    if (!p->shown) return;
    fputs("\r\033[K", p->bar);
    fflush(p->bar);
    p->shown = 0;
}

void progress_keep(progress *p) {
    if (!p->shown) return;
    fputc('\n', p->bar);
    fflush(p->bar);
    p->shown = 0;
}

void progress_printf(progress *p, FILE *f, const char *fmt, ...) {
    progress_clear(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

void progress_error(progress *p, const char *fmt, ...) {
    progress_clear(p);
    fflush(stdout);
    fputs("cltrain: error: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}
