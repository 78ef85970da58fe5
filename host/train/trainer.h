// The training step and evaluation: what `train`, `bench` and `tune` run on a model, written
// once. A step is upload, forward (training mode), loss, backward, SGD and the finiteness
// checks, with one device sync: the loss and the three check flags come back in one read.
// Data-parallel replicas and other precisions plug in here.
#ifndef CLTRAIN_TRAINER_H
#define CLTRAIN_TRAINER_H

#include "dataset/loader.h"
#include "model/resnet.h"

#include <stdio.h>

// PyTorch's SGD: lr, momentum, weight_decay (L2 added to the gradient).
typedef struct sgd_config {
    float lr, momentum, weight_decay;
} sgd_config;

typedef enum {
    TRAIN_OK = 0,
    TRAIN_BAD_LOSS,        // the mean loss is not finite
    TRAIN_BAD_GRADIENT,    // a trainable gradient is not finite
    TRAIN_BAD_WEIGHTS,     // a weight or running statistic is not finite after the update
} train_status;

typedef struct trainer {
    resnet *m;                     // planned (resnet_plan) before trainer_init
    cl_mem status;                 // (4) int32: the loss's bits, then 1/0: gradients,
                                   // weights, running statistics finite
    size_t grad_off, grad_n;       // the trainable parameters: one suffix of the arenas
} trainer;

// Allocates the status buffer for model m, planned and with its freezing set (the trainable
// range is taken now). Returns 0.
int trainer_init(trainer *t, resnet *m);
void trainer_free(trainer *t);     // accepts a zeroed struct

// One optimizer step on the host batch x (3, n, S, S) with labels (n). *loss gets the mean
// cross-entropy. The update is enqueued before the checks are read (reading them first would
// be a second sync per step), so on any status but TRAIN_OK the model has taken a bad step
// and must not be saved; the caller stops.
train_status train_step(trainer *t, const float *x, const int32_t *labels, int n,
                        const sgd_config *sgd, float *loss);
// train_step in two halves, for data-parallel replicas (replicas.h) that average the
// gradients in between: upload, forward, loss and backward (enqueued), then the checks, SGD
// and the one sync. train_step is exactly the two in a row.
void train_step_backward(trainer *t, const float *x, const int32_t *labels, int n);
train_status train_step_update(trainer *t, const sgd_config *sgd, float *loss);
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
// the number evaluated. stats (may be NULL; from eval_stats_init with the model's classes)
// gets the confusion matrix and the worst mistakes. When csv is non-NULL, writes
// "index,label,pred,logit_0,..." rows.
long trainer_evaluate(trainer *t, const dataset_split *split, const loader_config *lc,
                      long *total, eval_stats *stats, FILE *csv, char *err, size_t errlen);

// Values per channel the deepest batch norm sees for a training batch of n images (n times
// the last block's output plane). PyTorch refuses to train a batch norm on 1.
long trainer_bn_values(const resnet *m, int n);

#endif
