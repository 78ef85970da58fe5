// The optimizers, with torch.optim's numbers: SGD (momentum, Nesterov), Adam and AdamW, a
// separate weight decay for batch-norm parameters, clip_grad_norm_ and gradient accumulation.
// An optim owns its state: one device arena for every state tensor, at the parameter arena's
// offsets (SGD: the momentum buffers; Adam/AdamW: exp_avg, then exp_avg_sq), the step count,
// and the per-float decay selector. Everything a step does is enqueued: no host sync.
#ifndef CLTRAIN_OPTIM_H
#define CLTRAIN_OPTIM_H

#include "model/model.h"

typedef enum { OPTIM_SGD = 0, OPTIM_ADAM, OPTIM_ADAMW } optim_kind;

// A zeroed config is plain SGD without momentum; lr, momentum and weight_decay come first so
// that `{ lr, momentum, weight_decay }` still reads as torch.optim.SGD's arguments.
// optim_config_defaults gives the command line's defaults.
typedef struct optim_config {
    double lr, momentum, weight_decay;  // weight_decay: SGD/Adam add wd * p to the gradient
                                        // (torch's L2); AdamW decays p *= 1 - lr * wd
    optim_kind kind;
    int nesterov;                  // SGD(nesterov=True)
    double beta1, beta2, eps;      // Adam/AdamW: betas=(beta1, beta2), eps (outside the sqrt)
    int norm_decay_set;            // 1: batch-norm weights and biases take norm_weight_decay
    double norm_weight_decay;      // (torchvision references' --norm-weight-decay)
    double clip_grad_norm;         // > 0: clip_grad_norm_(max_norm) before the step
    int accumulate;                // batches per optimizer step (0 or 1: every batch)
} optim_config;

// The defaults of `cltrain train`: SGD, momentum 0.9, betas (0.9, 0.999), eps 1e-8, lr 1e-3.
void optim_config_defaults(optim_config *c);
const char *optim_kind_name(optim_kind k);   // "sgd", "adam", "adamw"
int optim_kind_from_name(const char *name);  // -1 when unknown

typedef struct optim {
    model *m;                     // borrowed; planned, its freezing set
    optim_config cfg;              // as set up: the kind and the selector's decays
    size_t off, n;                 // the trainable parameters: one suffix of the arenas
    int nstate;                    // state tensors per parameter (SGD 1, Adam 2)
    cl_mem state;                  // (nstate, n_param_floats) at the parameter offsets
    cl_mem sel;                    // (n_param_floats) uchar: 1 for a batch-norm weight or
                                   // bias; NULL unless cfg.norm_decay_set
    cl_mem acc;                    // (n_param_floats + 1) gradient sum, then the loss sum
                                   // (accumulate > 1)
    cl_mem clip;                   // (OPS_CLIP_GROUPS + 2): partial sums, norm, coefficient
    long step;                     // optimizer steps taken (torch's state['step']; SGD's
                                   // momentum starts as a copy of the first gradient)
} optim;

// Sets up o for model m (planned, freezing set) with c's structure. 0, or -1 with a message.
int optim_init(optim *o, model *m, const optim_config *c, char *err, size_t errlen);
void optim_free(optim *o);         // accepts a zeroed struct
// Bytes o holds on the device (its state, selector, sums and norm).
size_t optim_device_bytes(const optim *o);

// Gradient accumulation (cfg.accumulate > 1), enqueued after each batch of a group has written
// the gradient arena and its mean loss (loss_mean, one float): batch k (from 0) of the group is
// added to the sums; the group's last batch (`last`) leaves the means over its k + 1 batches in
// the gradient arena and in loss_mean, for the step. torch's `(loss / N).backward()` N times
// sums g_k / N instead: the same floats for N a power of two (a scale by 2^-j is exact), within
// an ulp of the sum otherwise (one rounding of sum * fl(1/N) against N roundings of g_k / N).
void optim_accumulate(optim *o, dten loss_mean, int k, int last);
// clip_grad_norm_(c->clip_grad_norm) over the trainable gradients when it is > 0: the total
// norm lands in the float at `norm` (a status word), the gradients are scaled. Enqueued.
void optim_clip(optim *o, const optim_config *c, dten norm);
// One step with c's hyperparameters (lr per step: schedules) on the trainable range, skipped
// on the device unless the int32 at guard is 1. c must have o's structure (kind, selector).
void optim_step(optim *o, const optim_config *c, dten guard);

// The state tensor `which` (0: SGD momentum / Adam exp_avg, 1: exp_avg_sq) as a dten at 0.
dten optim_state(const optim *o, int which);
// The name torch's state_dict gives state tensor `which` of kind k ("momentum", "exp_avg",
// "exp_avg_sq"), for the training state's keys "optimizer.<name>.<parameter>".
const char *optim_state_name(optim_kind k, int which);

#endif
