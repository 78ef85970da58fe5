// What train, eval and bench share: the options common to them, loading weights, the
// loaders' configurations and the clock. (The step and evaluation: host/train/trainer.h.)
#ifndef CLTRAIN_SESSION_H
#define CLTRAIN_SESSION_H

#include "dataset/loader.h"
#include "model/resnet.h"

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
    const char *lr_schedule;       // --lr-schedule none|step:STEP:GAMMA|cosine (NULL: none)
    int warmup_epochs;             // --warmup-epochs N (linear, host/train/schedule.h)
    double label_smoothing;        // --label-smoothing X
    int eval_every_epoch;          // --eval-every-epoch: validation after each epoch
    const char *save_best;         // --save-best FILE: the best model by validation accuracy
} run_options;

void run_options_defaults(run_options *o);

// The architecture of the run with `num_classes` outputs: when resuming, what the training
// state (already read: `state`, else NULL) holds, and --arch may only repeat it (2: a usage
// error naming both); else --arch, else what the --weights file holds, else resnet18.
// 0, or nonzero with a message.
int session_arch(resnet_config *cfg, const run_options *o, const ckpt *state, int num_classes,
                 char *err, size_t errlen);

// resnet_plan for batch size B at image size S with the plan options of the environment
// (CLTRAIN_KEEP_COLS=0 keeps no im2col per conv). When it does not fit the device, the
// message names the flags and the largest batch size that fits.
int session_plan(resnet *m, int batch, int image_size, char *err, size_t errlen);

// Loads `o->weights` into m (fc replaced with a message when its size differs). 0 or status.
int session_load_weights(resnet *m, const run_options *o, char *err, size_t errlen);

// The loader configurations of a run: evaluation (the test split, first --test-limit images,
// no augmentation, no shuffling) and training.
void session_eval_loader(const run_options *o, loader_config *lc);
void session_train_loader(const run_options *o, loader_config *lc);

// Opens --data with --dataset, --val-split, --seed and --skip-bad (a warning per skipped file
// and the count on stderr). 0 or nonzero with the message in err.
int session_open_data(dataset *ds, const run_options *o, char *err, size_t errlen);

// The loader settings of o for a split: training (augment, shuffle, --train-limit) or eval.
loader_config session_loader_config(const run_options *o, int train);

double session_now(void);          // util_now() (common/clock.h), for the callers of old

#endif
