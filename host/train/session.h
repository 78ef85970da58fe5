// What train, eval and bench share below the command layer: the plan with its message, the
// --skip-bad bookkeeping of the loaders and the clock. (The options, the data and the loaders'
// configurations: host/cli/cmd_session.h; the model set-up: setup.h; the step and evaluation:
// trainer.h.)
#ifndef CLTRAIN_SESSION_H
#define CLTRAIN_SESSION_H

#include "dataset/loader.h"
#include "model/model.h"

#include <stdio.h>

// The number of outputs of the file's fc (0 when it has none).
int session_weights_classes(const ckpt *c);

// model_plan for batch size B at image size S with the plan options of the environment
// (CLTRAIN_KEEP_COLS=0 keeps no im2col per conv); forward_only: for evaluation alone (nothing
// kept for backward). When it does not fit the device, the message names the flags and the
// largest batch size that fits.
int session_plan(model *m, int batch, int image_size, int forward_only, char *err,
                 size_t errlen);

// The files --skip-bad leaves out mid-run (a header that passed the open's check, data that
// fails to decode), per split (0 train, 1 test): shared by the split's loaders, so each file
// is warned about once ("cltrain: warning: FILE: WHY (skipped)") and counted once.
typedef struct session_skips {
    uint8_t *failed[2];            // (train n), (test n): loader_config.failed
    int count[2];                  // files left out so far
    void (*print)(void *ctx, const char *line);  // the warning's line (NULL: not shown)
    void *print_ctx;
    struct session_skip_hook { struct session_skips *s; int split; } hook[2];
} session_skips;
// Zeroed bookkeeping for the splits of ds. 0, or nonzero with a message (out of memory).
int session_skips_init(session_skips *s, const dataset *ds, char *err, size_t errlen);
void session_skips_free(session_skips *s);   // accepts a zeroed struct
// Points a loader configuration of split 0 (train) or 1 (test) at s (nothing without skip_bad).
void session_skips_attach(session_skips *s, int split, loader_config *lc);

double session_now(void);          // util_now() (common/clock.h), for the callers of old

#endif
