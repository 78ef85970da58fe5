// Learning-rate schedules: see schedule.h. Each value is computed by replaying PyTorch's
// chainable (recursive) update from epoch 0, not a closed form, so that the doubles agree.
#include "host/train/schedule.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double pi = 3.14159265358979323846;  // Python's math.pi

int lr_schedule_parse(lr_schedule *s, const char *spec, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (!spec || !strcmp(spec, "none")) return 0;
    if (!strcmp(spec, "cosine")) { s->kind = LR_SCHEDULE_COSINE; return 0; }
    if (!strncmp(spec, "step:", 5)) {
        char *end;
        errno = 0;
        long step = strtol(spec + 5, &end, 10);
        if (*end == ':' && end > spec + 5 && !errno && step >= 1 && step <= 1000000) {
            const char *g = end + 1;
            double gamma = strtod(g, &end);
            if (end > g && !*end && isfinite(gamma) && gamma > 0 && gamma <= 1e6) {
                s->kind = LR_SCHEDULE_STEP;
                s->step = (int)step;
                s->gamma = gamma;
                return 0;
            }
        }
    }
    snprintf(err, errlen, "--lr-schedule expects none, step:STEP:GAMMA (e.g. step:7:0.1, STEP "
             ">= 1, GAMMA > 0) or cosine, got '%s'", spec);
    return -1;
}

void lr_schedule_format(const lr_schedule *s, char *buf, size_t len) {
    if (s->kind == LR_SCHEDULE_STEP) {
        for (int digits = 6; digits <= 17; digits++) {  // the shortest text that reads back
            snprintf(buf, len, "step:%d:%.*g", s->step, digits, s->gamma);
            if (strtod(strrchr(buf, ':') + 1, NULL) == s->gamma) return;
        }
    } else snprintf(buf, len, "%s", s->kind == LR_SCHEDULE_COSINE ? "cosine" : "none");
}

// StepLR.get_lr: lr * gamma when the epoch is a multiple of step_size.
static double step_lr(const lr_schedule *s, double base, int e) {
    double lr = base;
    for (int k = 1; k <= e; k++)
        if (k % s->step == 0) lr *= s->gamma;
    return lr;
}

// CosineAnnealingLR.get_lr with eta_min = 0 over T epochs, recursively.
static double cosine_lr(double base, int T, int e) {
    if (T < 1) return base;
    double lr = base;
    for (int k = 1; k <= e; k++) {
        if ((k - 1 - T) % (2 * T) == 0)
            lr = lr + base * (1 - cos(pi / T)) / 2;
        else
            lr = (1 + cos(pi * k / T)) / (1 + cos(pi * (k - 1) / T)) * lr;
    }
    return lr;
}

// LinearLR(start_factor=LR_WARMUP_START, end_factor=1, total_iters=W).get_lr, recursively.
static double warmup_lr(double base, int W, int e) {
    double f0 = LR_WARMUP_START, lr = base * f0;
    for (int k = 1; k <= e && k <= W; k++)
        lr = lr * (1.0 + (1.0 - f0) / (W * f0 + (k - 1) * (1.0 - f0)));
    return lr;
}

double lr_schedule_at(const lr_schedule *s, double base, int epoch) {
    if (s->warmup > 0 && epoch < s->warmup) return warmup_lr(base, s->warmup, epoch);
    int e = epoch - (s->warmup > 0 ? s->warmup : 0);
    switch (s->kind) {
    case LR_SCHEDULE_STEP: return step_lr(s, base, e);
    case LR_SCHEDULE_COSINE: return cosine_lr(base, s->epochs - s->warmup, e);
    default: return base;
    }
}
