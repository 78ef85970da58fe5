// One step interface over the trainer and the replicas: see stepper.h.
#include "host/train/stepper.h"

void stepper_init(stepper *s, trainer *tr, replicas *rep) {
    *s = (stepper){ .tr = tr, .rep = rep, .held = TRAIN_OK };
}

void stepper_enqueue(stepper *s, const float *x, const int32_t *labels, int n,
                     const optim_config *c) {
    if (s->rep) {
        s->held_loss = 0;
        s->held = replicas_step(s->rep, x, labels, n, c, &s->held_loss);
    } else {
        train_step_enqueue(s->tr, x, labels, n, c);
    }
}

void stepper_micro(stepper *s, const float *x, const int32_t *labels, int n,
                   const optim_config *c) {
    if (s->rep) replicas_micro(s->rep, x, labels, n, c);
    else train_micro_enqueue(s->tr, x, labels, n, c);
}

float stepper_grad_norm(const stepper *s) { return s->tr->grad_norm; }

train_status stepper_result(stepper *s, float *loss) {
    if (!s->rep) return train_step_result(s->tr, loss);
    *loss = s->held_loss;
    return s->held;
}

int stepper_pipelined(const stepper *s) { return s->rep == NULL; }
