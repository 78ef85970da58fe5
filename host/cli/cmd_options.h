// Flag parsing for train, eval and bench (one table; each command allows its own flags).
#ifndef CLTRAIN_CMD_OPTIONS_H
#define CLTRAIN_CMD_OPTIONS_H

#include "host/cli/cli.h"
#include "host/train/optim.h"
#include "host/train/train_config.h"

// The flags of train, eval and bench (cmd_parse_options fills it).
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
    int early_stop;                // train --early-stop N: stop after N epochs without a
                                   // better validation accuracy (0: never)
    // The optimizer (host/train/optim.h): --optimizer (optim_kind), --nesterov, --betas,
    // --eps, --norm-weight-decay (< 0: --weight-decay's), --clip-grad-norm (0: none),
    // --accumulate N (batches per optimizer step).
    int optimizer, nesterov, accumulate;
    double beta1, beta2, eps, norm_weight_decay, clip_grad_norm;
} run_options;

void run_options_defaults(run_options *o);

typedef enum { CMD_TRAIN, CMD_EVAL, CMD_BENCH } cmd_kind;

// Returns 0 to run, -1 after printing --help (exit 0), or CLI_EXIT_USAGE after a message.
// explicit_mask (may be NULL) records which flags were given.
int cmd_parse_options(int argc, char **argv, run_options *o, cmd_kind kind, const char *usage,
                      unsigned long long *explicit_mask);
// The optimizer flags that do not go together (exit status 2 with a message naming the flag,
// or 0): --betas/--eps with sgd, --momentum/--nesterov with adam or adamw, --nesterov with
// momentum 0. Checked after --resume has filled in the saved run's optimizer.
int cmd_check_optim_flags(const run_options *o, unsigned long long given, const char *usage);
// Was the long flag `name` ("batch-size") given?
int cmd_flag_given(unsigned long long mask, const char *name);
// The long names of the flags in mask, NULL-terminated, into names (at most max - 1 of them).
void cmd_flags_given(unsigned long long mask, const char **names, int max);

// The run-shaping arguments of o for the train layer (train_config.h), and back: what
// train_state_read took from a saved state.
void cmd_train_config(const run_options *o, train_config *c);
void cmd_take_train_config(run_options *o, const train_config *c);

#endif
