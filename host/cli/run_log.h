// The records of train --log that are more than a few numbers: an evaluation's confusion matrix,
// per-class accuracy and worst mistakes, as one JSON line that `cltrain report` draws
// (report.h). The step, lr and accuracy lines stay in cmd_train.c.
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

#endif
