// Shared set-up and evaluation for train, eval and bench.
#define _POSIX_C_SOURCE 200809L
#include "host/train/session.h"
#include "common/clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double session_now(void) { return util_now(); }

int session_weights_classes(const ckpt *c) { return model_ckpt_classes(c, NULL); }

int session_plan(model *m, int batch, int image_size, int forward_only, char *err,
                 size_t errlen) {
    const ops_config *oc = &m->ops->cfg;   // CLTRAIN_KEEP_COLS, read at start-up
    model_plan_options po = { .keep_cols = oc->keep_cols == 0 ? 0 : -1,
                              .forward_only = forward_only };
    char why[512];
    int rc = model_plan(m, batch, image_size, &po, why, sizeof why);
    if (rc == MODEL_PLAN_NO_FIT) {
        int fit = model_largest_batch(m, batch, image_size, forward_only);
        char tail[96];
        if (fit) snprintf(tail, sizeof tail, "the largest batch size that fits is %d", fit);
        else snprintf(tail, sizeof tail, "not even batch size 1 fits: use a smaller --image-size");
        snprintf(err, errlen, "--batch-size %d at --image-size %d: %s; %s", batch, image_size, why,
                 tail);
        return 1;
    }
    if (rc) snprintf(err, errlen, "%s", why);
    return rc;
}

int session_skips_init(session_skips *s, const dataset *ds, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->failed[0] = calloc((size_t)ds->train.n + 1, 1);
    s->failed[1] = calloc((size_t)ds->test.n + 1, 1);
    if (!s->failed[0] || !s->failed[1]) {
        session_skips_free(s);
        snprintf(err, errlen, "out of memory for --skip-bad's list of %d files",
                 ds->train.n + ds->test.n);
        return 1;
    }
    return 0;
}

void session_skips_free(session_skips *s) {
    free(s->failed[0]);
    free(s->failed[1]);
    memset(s, 0, sizeof *s);
}

static void session_skip_warn(void *ctx, const char *msg) {
    struct session_skip_hook *h = ctx;
    session_skips *s = h->s;
    s->count[h->split]++;
    char line[1024];
    snprintf(line, sizeof line, "cltrain: warning: %s (skipped)\n", msg);
    if (s->print) s->print(s->print_ctx, line);  // the command layer prints
}

void session_skips_attach(session_skips *s, int split, loader_config *lc) {
    if (!lc->skip_bad || !s->failed[split]) return;
    s->hook[split] = (struct session_skip_hook){ s, split };
    lc->failed = s->failed[split];
    lc->warn = session_skip_warn;
    lc->warn_ctx = &s->hook[split];
}

