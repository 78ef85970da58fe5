// What train, eval and bench share: the options common to them, loading weights, the
// loaders' configurations and the clock. (The step and evaluation: host/train/trainer.h.)
#ifndef CLTRAIN_SESSION_H
#define CLTRAIN_SESSION_H

#include "dataset/loader.h"
#include "host/train/optim.h"
#include "model/model.h"

#include <stdio.h>

typedef struct run_options {
    const char *device, *data, *dataset, *weights, *save, *log, *checkpoint, *resume;
    const char *predictions;
    const char *arch;              // --arch; NULL: what --weights holds, else resnet18
    int num_classes;               // 0: from the data set
    int epochs, max_steps, batch_size, image_size, normalize, augment, shuffle;
    long long seed;
    int train_limit, test_limit, print_every, checkpoint_every, freeze, bn_eval;
    int strict;                    // 1 (default): loading refuses keys that do not fit
    double lr, momentum, weight_decay;
    int steps;                     // bench
    int profile;                   // bench --profile
    int resize, workers, skip_bad; // image folders: --resize N, --workers N, --skip-bad
    double val_split;              // --val-split F
    const char *devices;           // --devices SPEC,SPEC,...: one data-parallel replica each
    int replicas;                  // data-parallel replicas of the run (0 or 1: one device)
    const char *lr_schedule;       // --lr-schedule none|step:STEP:GAMMA|cosine (NULL: none)
    int warmup_epochs;             // --warmup-epochs N (linear, host/train/schedule.h)
    double label_smoothing;        // --label-smoothing X
    int eval_every_epoch;          // --eval-every-epoch: validation after each epoch
    const char *save_best;         // --save-best FILE: the best model by validation accuracy
    int no_report;                 // train --no-report: no RUN.html beside --log RUN.jsonl
    // The optimizer (host/train/optim.h): --optimizer (optim_kind), --nesterov, --betas,
    // --eps, --norm-weight-decay (< 0: --weight-decay's), --clip-grad-norm (0: none),
    // --accumulate N (batches per optimizer step).
    int optimizer, nesterov, accumulate;
    double beta1, beta2, eps, norm_weight_decay, clip_grad_norm;
} run_options;

void run_options_defaults(run_options *o);
// The optimizer config of the options (lr: --lr; schedules change it per epoch).
void session_optim_config(const run_options *o, optim_config *c);

// The --weights file, read once for the run (from ckpt_read): the architecture, the number
// of classes and the tensors all come from this one copy. 0, or nonzero with a message.
int session_read_weights(ckpt *c, const run_options *o, char *err, size_t errlen);
// The number of outputs of the file's fc (0 when it has none).
int session_weights_classes(const ckpt *c);

// The architecture of the run with `num_classes` outputs, from `from`: the training state
// when resuming (where --arch may only repeat what it holds: 2, a usage error naming both),
// else the --weights file read by session_read_weights (unless --arch names one), else
// --arch, else resnet18. from may be NULL. 0, or nonzero with a message.
int session_arch(model_arch *cfg, const run_options *o, const ckpt *from, int num_classes,
                 char *err, size_t errlen);

// resnet_plan for batch size B at image size S with the plan options of the environment
// (CLTRAIN_KEEP_COLS=0 keeps no im2col per conv). When it does not fit the device, the
// message names the flags and the largest batch size that fits.
int session_plan(model *m, int batch, int image_size, char *err, size_t errlen);

// Loads the --weights file `c` (session_read_weights) into m (fc replaced with a message when its size differs). 0 or status.
int session_load_weights(model *m, const ckpt *c, const run_options *o, char *err,
                         size_t errlen);

// The loader configurations of a run: evaluation (the test split, first --test-limit images,
// no augmentation, no shuffling) and training (its epoch padded for o->replicas).
void session_eval_loader(const run_options *o, loader_config *lc);
void session_train_loader(const run_options *o, loader_config *lc);

// Opens --data with --dataset, --val-split, --seed and --skip-bad (a warning per skipped file
// and the count on stderr). 0 or nonzero with the message in err.
int session_open_data(dataset *ds, const run_options *o, char *err, size_t errlen);

// The files --skip-bad leaves out mid-run (a header that passed the open's check, data that
// fails to decode), per split (0 train, 1 test): shared by the split's loaders, so each file
// is warned about once ("cltrain: warning: FILE: WHY (skipped)") and counted once.
typedef struct session_skips {
    uint8_t *failed[2];            // (train n), (test n): loader_config.failed
    int count[2];                  // files left out so far
    void (*print)(void *ctx, const char *line);  // the warning's line; NULL: stderr
    void *print_ctx;
    struct session_skip_hook { struct session_skips *s; int split; } hook[2];
} session_skips;
// Zeroed bookkeeping for the splits of ds. 0, or nonzero with a message (out of memory).
int session_skips_init(session_skips *s, const dataset *ds, char *err, size_t errlen);
void session_skips_free(session_skips *s);   // accepts a zeroed struct
// Points a loader configuration of split 0 (train) or 1 (test) at s (nothing without skip_bad).
void session_skips_attach(session_skips *s, int split, loader_config *lc);
// The end of a run with --skip-bad: one line with the count of files left out, when the folder
// was opened (each named then) and mid-run (s may be NULL). Nothing when none was.
void session_report_skipped(const dataset *ds, const session_skips *s);

// The loader settings of o for a split: training (augment, shuffle, --train-limit) or eval;
// --skip-bad leaves out images that fail to decode (session_skips_attach for the bookkeeping).
loader_config session_loader_config(const run_options *o, int train);

double session_now(void);          // util_now() (common/clock.h), for the callers of old

#endif
