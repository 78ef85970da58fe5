// The training loop: epochs from the saved position, each step's result read one step late
// (stepper.h), the seed's running loss, checkpoints (--checkpoint, --checkpoint-every), the
// validation after an epoch (--eval-every-epoch, --save-best, --early-stop), --max-steps and
// stop signals, every process of a data-parallel run in step. It prints nothing: what the user
// sees and the --log records go through the command layer's train_sink.
#ifndef CLTRAIN_LOOP_H
#define CLTRAIN_LOOP_H

#include "dataset/loader.h"
#include "host/train/comm.h"
#include "host/train/optim.h"
#include "host/train/schedule.h"
#include "host/train/session.h"
#include "host/train/stepper.h"
#include "host/train/train_state.h"

#include <signal.h>

// What the loop reports, each call with the sink's ctx. Epochs and batches are 0-based.
typedef struct train_sink {
    void *ctx;
    void (*epoch_start)(void *ctx, int epoch, int first_batch, double lr);
    // A step was booked: global_step steps in all, its loss, the lr, images per second, the
    // total gradient norm (--clip-grad-norm; NaN without).
    void (*step)(void *ctx, int epoch, int batch, int batches, long global_step, float loss,
                 double lr, double ips, float grad_norm);
    // The seed's line: the mean loss of the last --print-every batches, at batch `batch`.
    void (*running_loss)(void *ctx, int epoch, int batch, double loss);
    void (*epoch_end)(void *ctx, int epoch);
    // An evaluation of the test split after `epoch` epochs: what is "val" (after an epoch) or
    // "test" (the end of the run); best: a new best validation accuracy (--save-best).
    void (*evaluation)(void *ctx, int epochs, const char *what, long total, double accuracy,
                       int best, double lr, const eval_stats *stats);
    // --save-best: writes the model (a new best). 0, or an exit status after its message.
    int (*save_best)(void *ctx);
    void (*warning)(void *ctx, const char *line);  // a whole line, newline included
    void (*error)(void *ctx, const char *msg);     // "cltrain: error: " and a newline around
} train_sink;

enum { TRAIN_LOOP_FAILED = 1 };    // the loop's failure status (CLI_EXIT_DATA)

typedef struct train_loop {
    // The run (borrowed; set by the caller before train_loop_run).
    const train_config *cfg;       // epochs, max_steps, batch_size, lr, freeze, bn_eval...
    int print_every;               // the seed's running loss every N batches
    const char *checkpoint;        // --checkpoint FILE (NULL: none)
    int checkpoint_every;          // also every N steps (0: epoch ends only)
    int eval_every_epoch, save_best;
    int early_stop;                // stop after N epochs without a better validation accuracy
    const char *format;            // the data set's format, saved in the training state
    train_state *st;               // position, running loss, best accuracy
    model *m;                     // replica 0's model
    trainer *tr;                   // replica 0's trainer (evaluation)
    stepper *step;                 // the step, on one device or the replicas
    loader *ld;                    // the training split's loader
    dataset *ds;                   // its test split is evaluated
    loader_config eval_lc;         // the evaluation loader (batch, transform, --test-limit)
    session_skips *skips;          // --skip-bad's bookkeeping (the test split's)
    comm *comm;                    // the processes
    int world;                     // replicas in all
    float *x;                      // (3, B, S, S) the batch, host side
    int32_t *y;                    // (B)
    int *idx;                      // (B) its images' indices in the split
    optim_config opt;              // the optimizer; lr set per epoch from the schedule
    lr_schedule sched;
    volatile sig_atomic_t *stop_signal;  // set by a signal handler (stops after a step)
    train_sink sink;
    // Out.
    double lr_now;                 // this epoch's lr
    int agreed_rc;                 // a failure every process saw (same_batch)
    int early_stopped;             // --early-stop ended the run (st->best_epoch was the best)
    char err[2048];
} train_loop;

// Trains from st's position to cfg->epochs, --max-steps or a stop signal. 0 (then
// *stop_signal says whether a signal stopped it), or TRAIN_LOOP_FAILED after the sink's
// error (or a status save_best returned).
int train_loop_run(train_loop *L);

// Evaluates the test split on replica 0 alone (planned for a shard of the batch) over every
// image once: no padding, so no image counts twice (DistributedSampler's would). Reports it
// through sink.evaluation as `what` after `epochs` epochs. With best non-NULL (validation),
// *best says whether it beats st->best_accuracy under --save-best or --early-stop (then kept
// there, with st->best_epoch). 0, or
// TRAIN_LOOP_FAILED with the message in L->err (nothing reported).
int train_loop_evaluate(train_loop *L, int epochs, const char *what, int *best);

#endif
