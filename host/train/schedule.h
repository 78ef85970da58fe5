// Learning-rate schedules per epoch, with torch.optim.lr_scheduler's values (same recursions
// in double, so the same numbers): StepLR(step_size, gamma), CosineAnnealingLR(T_max, 0),
// and a linear warm-up as torchvision's reference scripts chain it:
// SequentialLR([LinearLR(start_factor=0.01, total_iters=W), main], milestones=[W]), the main
// schedule then running over the epochs after the warm-up (cosine: T_max = epochs - W).
// The lr depends on the epoch only, so the training state's epoch is the schedule's position.
#ifndef CLTRAIN_SCHEDULE_H
#define CLTRAIN_SCHEDULE_H

#include <stddef.h>

typedef enum { LR_SCHEDULE_NONE = 0, LR_SCHEDULE_STEP, LR_SCHEDULE_COSINE } lr_schedule_kind;

#define LR_WARMUP_START 0.01   // torchvision references' --lr-warmup-decay default

typedef struct lr_schedule {
    lr_schedule_kind kind;
    int step;                  // StepLR step_size (epochs)
    double gamma;              // StepLR gamma
    int warmup;                // warm-up epochs (0: none)
    int epochs;                // the run's epochs: the cosine's horizon
} lr_schedule;

// "none", "step:STEP:GAMMA" or "cosine". 0, or -1 with a message.
int lr_schedule_parse(lr_schedule *s, const char *spec, char *err, size_t errlen);
// The canonical spelling of s's kind ("step:7:0.1"), for the training state and messages.
void lr_schedule_format(const lr_schedule *s, char *buf, size_t len);
// The lr of epoch `epoch` (0-based) for base lr `base`.
double lr_schedule_at(const lr_schedule *s, double base, int epoch);

#endif
