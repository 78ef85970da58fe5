// What train, eval and bench share: the options common to them, opening the device, the
// data and the model, uploading a batch, and evaluating a split.
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
    int train_limit, test_limit, print_every, checkpoint_every, freeze, bn_eval, strict;
    double lr, momentum, weight_decay;
    int steps;                     // bench
    int profile;                   // bench --profile
} run_options;

void run_options_defaults(run_options *o);

// The architecture of the run with `num_classes` outputs: --arch, else the one the --resume
// or --weights file holds, else resnet18. 0, or nonzero with a message.
int session_arch(resnet_config *cfg, const run_options *o, int num_classes, char *err,
                 size_t errlen);

// resnet_plan for batch size B at image size S with the plan options of the environment
// (CLTRAIN_KEEP_COLS=0 keeps no im2col per conv). When it does not fit the device, the
// message names the flags and the largest batch size that fits.
int session_plan(resnet *m, int batch, int image_size, char *err, size_t errlen);

// Loads `o->weights` into m (fc replaced with a message when its size differs). 0 or status.
int session_load_weights(resnet *m, const run_options *o, char *err, size_t errlen);

// Upload a host batch x (3, n, S, S) and labels (n) into the model's input buffers.
void session_upload_batch(resnet *m, const float *x, const int32_t *labels, int n);

// Evaluates `split` (first `limit` images, 0 = all) in eval mode. Returns the number correct;
// *total gets the number evaluated. per_class_correct/total (num_classes) may be NULL.
// When csv is non-NULL, writes "index,label,pred,logit_0,..." rows.
long session_evaluate(resnet *m, const dataset_split *split, const run_options *o,
                      long *total, long *per_class_correct, long *per_class_total, FILE *csv,
                      char *err, size_t errlen);

double session_now(void);          // util_now() (common/clock.h), for the callers of old

#endif
