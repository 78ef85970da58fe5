// The training run's arguments that shape its numbers: what the training state saves and
// checks a resumed run against (train_state.h), and what the training loop runs with. The
// command layer fills it from its flags; train/ never sees the flag table.
#ifndef CLTRAIN_TRAIN_CONFIG_H
#define CLTRAIN_TRAIN_CONFIG_H

typedef struct train_config {
    const char *data;              // --data (saved for messages)
    const char *dataset;           // --dataset (NULL or "auto": detected)
    int epochs, max_steps;         // --epochs, --max-steps (0: none)
    int batch_size, image_size;    // the global batch, S
    int normalize, augment, shuffle;
    long long seed;
    int train_limit;
    int freeze, bn_eval;           // --freeze stage (-1 none), --bn-eval
    int num_classes;               // 0: from the data set
    int resize;                    // --resize N (0: none)
    double val_split;              // --val-split F (0: none)
    double lr, momentum, weight_decay;
    const char *lr_schedule;       // --lr-schedule (NULL: none)
    int warmup_epochs;
    double label_smoothing;
    int replicas;                  // data-parallel replicas (0 or 1: one device)
    // The optimizer (host/train/optim.h): its kind (optim_kind), Nesterov, Adam's betas and
    // eps, the norm parameters' weight decay (< 0: weight_decay's), the clipping norm (0:
    // none), batches per optimizer step.
    int optimizer, nesterov, accumulate;
    double beta1, beta2, eps, norm_weight_decay, clip_grad_norm;
} train_config;

#endif
