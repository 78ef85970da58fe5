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
    int num_classes;               // 0: from the data set
    int epochs, max_steps, batch_size, image_size, normalize, augment, shuffle;
    long long seed;
    int train_limit, test_limit, print_every, checkpoint_every, freeze, bn_eval;
    int strict;                    // 1 (default): loading refuses keys that do not fit
    double lr, momentum, weight_decay;
    int steps;                     // bench
    int profile;                   // bench --profile
} run_options;

void run_options_defaults(run_options *o);

// Loads `o->weights` into m (fc replaced with a message when its size differs). 0 or status.
int session_load_weights(resnet *m, const run_options *o, char *err, size_t errlen);

// The loader configurations of a run: evaluation (the test split, first --test-limit images,
// no augmentation, no shuffling) and training.
void session_eval_loader(const run_options *o, loader_config *lc);
void session_train_loader(const run_options *o, loader_config *lc);

double session_now(void);

#endif
