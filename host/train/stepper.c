// One step interface over the trainer and the replicas: see stepper.h.
#include "host/train/stepper.h"

void stepper_init(stepper *s, trainer *tr, replicas *rep) {
    *s = (stepper){ .tr = tr, .rep = rep, .held = TRAIN_OK };
}

void stepper_enqueue(stepper *s, const float *x, const int32_t *labels, int n,
                     const sgd_config *sgd) {
    if (s->rep) {
        s->held_loss = 0;
        s->held = replicas_step(s->rep, x, labels, n, sgd, &s->held_loss);
    } else {
        train_step_enqueue(s->tr, x, labels, n, sgd);
    }
}

train_status stepper_result(stepper *s, float *loss) {
    if (!s->rep) return train_step_result(s->tr, loss);
    *loss = s->held_loss;
    return s->held;
}

int stepper_pipelined(const stepper *s) { return s->rep == NULL; }
