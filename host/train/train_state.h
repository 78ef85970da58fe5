// The whole training state as one torch-loadable file (a dict of tensors, ints, floats and
// strings): model, the optimizer's state, position in the data (epoch, batch: the loader is stateless,
// so these and the seed fix the data order and augmentation), and the arguments that shape
// the run.
#ifndef CLTRAIN_TRAIN_STATE_H
#define CLTRAIN_TRAIN_STATE_H

#include "host/train/optim.h"
#include "host/train/train_config.h"
#include "model/model.h"

typedef struct train_state {
    int epoch, batch;              // the next batch to train: batch `batch` of epoch `epoch`
    long global_step;              // optimizer steps taken
    double running_loss;           // the seed's running_loss since the last print
    int running_count;
    int usage_error;               // set when a flag contradicts the saved state
    char dataset[16];              // the saved data set's format ("" in version 1 files)
    char data[1024];               // the saved --data folder, for messages ("" if unknown)
    int replicas;                  // data-parallel replicas that trained it (1: one device)
    int schedule_epochs;           // the lr schedule's horizon (the first run's --epochs;
                                   // raising --epochs on resume does not bend the curve)
    char schedule_spec[64];        // the saved --lr-schedule (c->lr_schedule points here)
    double best_accuracy;          // --save-best: the best validation accuracy so far (-1 none)
    int best_epoch;                // --early-stop: the epoch that reached it (0: none; saved
                                   // only then, so other runs' files stay as they were)
    ckpt file;                     // as read by train_state_read
} train_state;

void train_state_init(train_state *st);
void train_state_free(train_state *st);
// Reads `path`, takes the saved run arguments into c. `given` (NULL-terminated; may be NULL)
// names the flags of the command line ("batch-size"): those that match the saved run are
// accepted, --epochs and --max-steps may ask for more; a flag that contradicts the saved run
// (or asks for fewer epochs or steps than are done) is refused naming the flag, the saved
// value and the given one, with usage_error set. Returns 0 or -1 with a message.
int train_state_read(train_state *st, const char *path, train_config *c,
                     const char *const *given, char *err, size_t errlen);
// The saved state fits this data set (format as dataset_open detected it) and model?
int train_state_check_data(const train_state *st, const char *format, int num_classes,
                           int train_images, const char *path, char *err, size_t errlen);
// Loads the model into m.
int train_state_apply(train_state *st, model *m, const char *path, char *err, size_t errlen);
// Loads the optimizer's step count and state tensors ("optimizer.<momentum|exp_avg|exp_avg_sq>.
// <parameter>") into o, set up for the saved run's optimizer. Files from before the optimizer
// flags (SGD's "momentum_ready" alone) load as SGD.
int train_state_apply_optim(train_state *st, optim *o, const char *path, char *err,
                            size_t errlen);
// Writes the state atomically (format version 3). Returns 0, or -1 with a message.
int train_state_write(const train_state *st, model *m, const optim *opt, const train_config *o,
                      const char *format, int train_images, const char *path, char *err,
                      size_t errlen);

#endif
