// One training step, whatever runs it: the single-device trainer (trainer.h), whose result is
// read one step late, or the data-parallel replicas (replicas.h), whose step is synchronous
// and whose result is held until it is asked for. The training loop calls only these.
#ifndef CLTRAIN_STEPPER_H
#define CLTRAIN_STEPPER_H

#include "host/train/replicas.h"
#include "host/train/trainer.h"

typedef struct stepper {
    trainer *tr;                   // replica 0 (one device: the only one)
    replicas *rep;                 // NULL: one device
    train_status held;             // replicas: the status and loss of the step taken at
    float held_loss;               // enqueue, until stepper_result
} stepper;

// rep NULL: the trainer alone. Both are borrowed.
void stepper_init(stepper *s, trainer *tr, replicas *rep);
// Enqueues a step on the host batch x (3, n, S, S), labels (n) (train_step_enqueue, or
// replicas_step at once); stepper_result gives its status and mean loss, the oldest first.
void stepper_enqueue(stepper *s, const float *x, const int32_t *labels, int n,
                     const optim_config *c);
// --accumulate: a batch of a group that is not its last only adds its gradient (no step, no
// result to read).
void stepper_micro(stepper *s, const float *x, const int32_t *labels, int n,
                   const optim_config *c);
train_status stepper_result(stepper *s, float *loss);
// The total gradient norm of the step whose result was read last (--clip-grad-norm; NaN
// without clipping): replica 0's, which every replica has.
float stepper_grad_norm(const stepper *s);
// 1 when the next step may be enqueued before this one's result is read (one device).
int stepper_pipelined(const stepper *s);

#endif
