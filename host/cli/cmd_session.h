// What train, eval and bench share in the command layer: the weights file read once, the data
// set opened with the run's options, the loaders' configurations and the skipped-files line.
// (Below it: host/train/session.h.)
#ifndef CLTRAIN_CMD_SESSION_H
#define CLTRAIN_CMD_SESSION_H

#include "host/cli/cmd_options.h"
#include "host/train/session.h"

// The optimizer config of the options (lr: --lr; schedules change it per epoch).
void session_optim_config(const run_options *o, optim_config *c);

// The --weights file, read once for the run (from ckpt_read): the architecture, the number
// of classes and the tensors all come from this one copy. 0, or nonzero with a message.
int session_read_weights(ckpt *c, const run_options *o, char *err, size_t errlen);
// The loader configurations of a run: evaluation (the test split, first --test-limit images,
// no augmentation, no shuffling) and training (its epoch padded for o->replicas).
void session_eval_loader(const run_options *o, loader_config *lc);
void session_train_loader(const run_options *o, loader_config *lc);

// Opens --data with --dataset, --val-split, --seed and --skip-bad (a warning per skipped file
// and the count on stderr). 0 or nonzero with the message in err.
int session_open_data(dataset *ds, const run_options *o, char *err, size_t errlen);

// The end of a run with --skip-bad: one line with the count of files left out, when the folder
// was opened (each named then) and mid-run (s may be NULL). Nothing when none was.
void session_report_skipped(const dataset *ds, const session_skips *s);

// The loader settings of o for a split: training (augment, shuffle, --train-limit) or eval;
// --skip-bad leaves out images that fail to decode (session_skips_attach for the bookkeeping).
loader_config session_loader_config(const run_options *o, int train);

#endif
