// Every record of train --log, one JSON object a line, that `cltrain report` draws (report.h):
// an epoch's lr, each step, the validation and test accuracies, and an evaluation's confusion
// matrix, per-class accuracy and worst mistakes. Epochs are 1-based.
#ifndef CLTRAIN_RUN_LOG_H
#define CLTRAIN_RUN_LOG_H

#include "dataset/dataset.h"
#include "host/train/trainer.h"

#include <stdio.h>

// Writes s as a JSON string (quotes, backslash and control characters escaped).
void run_log_json_string(FILE *f, const char *s);

// One line {"epoch":E,"evaluation":WHAT,"images":N,"accuracy":A,"classes":[...],
// "confusion":[[...],...],"per_class_accuracy":[...|null],"worst":[{"path","true","pred",
// "prob"}...]}: rows of the matrix are true classes, columns predictions; per-class accuracy
// is null for a class without images; "worst" (image folders only: absolute paths where they
// resolve) lists the mistakes of highest probability first. Flushed.
void run_log_evaluation(FILE *f, int epoch, const char *what, const dataset *ds,
                        const dataset_split *split, const eval_stats *st);

// {"epoch":E,"lr":LR} at the start of an epoch. Flushed.
void run_log_epoch(FILE *f, int epoch, double lr);
// {"epoch":E,"step":N,"loss":L,"lr":LR,"images_per_s":X} for each step, with
// "grad_norm" (clip_grad_norm_'s total norm before clipping) when clipping. Flushed.
void run_log_step(FILE *f, int epoch, long step, float loss, double lr, double ips,
                  int clipping, float grad_norm);
// {"epoch":E,"val_accuracy":A,"lr":LR} after an epoch's validation (A in percent). Flushed.
void run_log_val_accuracy(FILE *f, int epoch, double accuracy, double lr);
// {"epoch":E,"test_accuracy":A} at the end of the run (flushed by the evaluation after it).
void run_log_test_accuracy(FILE *f, int epoch, double accuracy);

#endif
