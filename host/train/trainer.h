// The training step and evaluation: what `train`, `bench` and `tune` run on a model, written
// once. A step is upload, forward (training mode), loss, backward, the finiteness checks and
// a guarded optimizer step (host/train/optim.h), with no device sync inside: the loss and the
// check flags come back in one read, which the caller may take one step late
// (train_step_enqueue, train_step_result).
// Data-parallel replicas and other precisions plug in here.
#ifndef CLTRAIN_TRAINER_H
#define CLTRAIN_TRAINER_H

#include "dataset/loader.h"
#include "host/train/optim.h"
#include "model/model.h"

#include <stdio.h>

typedef enum {
    TRAIN_OK = 0,
    TRAIN_BAD_LOSS,        // the mean loss is not finite
    TRAIN_BAD_GRADIENT,    // a trainable gradient is not finite
    TRAIN_BAD_WEIGHTS,     // a weight or running statistic is not finite after the update
} train_status;

enum { TRAINER_STATUS_WORDS = 5 };

typedef struct trainer {
    model *m;                     // planned (model_plan) before trainer_init
    optim opt;                     // the optimizer and its state (trainer_set_optim, else
                                   // set up at the first step from that step's config)
    cl_mem status;                 // (5) int32: the step's loss bits, then sticky flags (1
                                   // until a check fails): the guard (loss and gradients
                                   // finite), weights, running statistics finite; then the
                                   // gradient norm's bits (--clip-grad-norm)
    size_t grad_off, grad_n;       // the trainable parameters: one suffix of the arenas
    // Steps enqueued whose status is not read yet (at most 2, oldest at `head`): each one's
    // status words are read without a wait into words[slot] (ev[slot] says when).
    int pending, head;
    cl_event ev[2];
    cl_int words[2][TRAINER_STATUS_WORDS];
    // Pinned copies of the last two steps' batches, uploaded without a wait (the caller may
    // refill its own buffer while the device still has to read the batch).
    clrt_host_buf stage[2];
    int next_stage;
    float grad_norm;               // the last result's clip_grad_norm_ total norm (NaN
                                   // without clipping)
    int micro;                     // batches accumulated toward the next step (--accumulate)
} trainer;

// Allocates the status buffer for model m, planned and with its freezing set (the trainable
// range is taken now). Returns 0.
int trainer_init(trainer *t, model *m);
void trainer_free(trainer *t);     // accepts a zeroed struct; waits for pending steps
// Sets up the optimizer for config c (its kind, norm-decay selector, accumulation and
// clipping buffers), fresh state; before the first step. 0, or -1 with a message.
int trainer_set_optim(trainer *t, const optim_config *c, char *err, size_t errlen);

// Every step function takes the step's optimizer config c (optim.h): lr may change from step
// to step (schedules); its structure (kind, norm decay on or off) must stay that of the
// optimizer's set-up. With c->clip_grad_norm > 0 the gradients are clipped (after the
// data-parallel average) before the finiteness checks and the step.

// One optimizer step on the host batch x (3, n, S, S) with labels (n), waiting for its
// status. *loss gets the mean cross-entropy. On a non-finite loss or gradient an on-device
// guard skips the update (weights and optimizer state stay those of the step before,
// bitwise; the step count moves on); on TRAIN_BAD_WEIGHTS the update itself overflowed.
// Either way the model must not be saved and the caller stops.
train_status train_step(trainer *t, const float *x, const int32_t *labels, int n,
                        const optim_config *c, float *loss);
// train_step without the wait: enqueues the step and the read of its status; at most one
// other step may be pending. train_step_result waits for the oldest pending step's status
// (there must be one), so a loop reads each step's loss and checks one step late and the
// device never waits for the host inside a step. A failed check stays set (sticky) for the
// steps enqueued behind it, so their guard skips their updates too; it is re-armed after its
// result is read. Anything that reads the weights (saving, evaluation) must first read every
// pending result, or it sees a later step's weights.
void train_step_enqueue(trainer *t, const float *x, const int32_t *labels, int n,
                        const optim_config *c);
train_status train_step_result(trainer *t, float *loss);
// Gradient accumulation (c->accumulate > 1): a batch of a group that is not its last. Its
// forward and backward are enqueued and its gradient and loss added to the optimizer's sums
// (optim_accumulate), with no step and no status; the step that follows (the group's last
// batch, any of the step functions) takes the means over the group. Batch norm sees each batch
// as its own forward, as PyTorch's accumulation loop does.
void train_micro_enqueue(trainer *t, const float *x, const int32_t *labels, int n,
                         const optim_config *c);
// The means of an accumulated group into the gradient arena and the loss, after the group's
// last backward (the step functions call it; replicas call it before their average). Nothing
// when no batch was accumulated.
void trainer_accumulate_finish(trainer *t);
// train_step in two halves, for data-parallel replicas (replicas.h) that average the
// gradients in between: upload, forward, loss and backward (enqueued), then the checks, the
// optimizer step and the wait for the status. train_step is exactly the two in a row.
void train_step_backward(trainer *t, const float *x, const int32_t *labels, int n);
train_status train_step_update(trainer *t, const optim_config *c, float *loss);
// What failed, for messages: "loss", "gradient", "weights after the update" ("" for OK).
const char *train_status_what(train_status s);

// Forward in eval mode of the host batch x (3, n, S, S); logits (K, n) into host memory.
void trainer_predict(trainer *t, const float *x, int n, float *logits);

// What an evaluation saw beyond the count, for the report: the confusion matrix and the images
// the model got most confidently wrong (softmax probability of the wrong prediction).
#define EVAL_WORST_MAX 16
typedef struct eval_worst {
    long index;                    // in the split (dataset_path gives a folder's file)
    int label, pred;
    double prob;                   // softmax(logits)[pred]
} eval_worst;
typedef struct eval_stats {
    int num_classes;               // K
    long *confusion;               // (K, K): [label * K + pred] counts; malloc'd
    eval_worst worst[EVAL_WORST_MAX];  // highest prob first; ties keep the earlier image
    int n_worst;
} eval_stats;
// Zeroed counts for K classes. 0, or -1 (out of memory). eval_stats_free accepts a zeroed one.
int eval_stats_init(eval_stats *s, int num_classes);
void eval_stats_free(eval_stats *s);

// Evaluates `split` through a loader made from lc (augment and shuffle are forced off).
// Returns the number correct (torch.max's first maximum), or -1 with a message; *total gets
// the number evaluated (lc->skip_bad: without the files that failed to decode). stats (may be
// NULL; from eval_stats_init with the model's classes) gets the confusion matrix and the worst
// mistakes. When csv is non-NULL, writes "index,label,pred,logit_0,..." rows (index: the
// image's in the split).
long trainer_evaluate(trainer *t, const dataset_split *split, const loader_config *lc,
                      long *total, eval_stats *stats, FILE *csv, char *err, size_t errlen);

#endif
