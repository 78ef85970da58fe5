// `cltrain report`: the HTML page of a training log (cmd_report.c), also written by train at
// the end of a run with --log. report_eval.c draws the last evaluation record (run_log.h).
#ifndef CLTRAIN_REPORT_H
#define CLTRAIN_REPORT_H

#include <stddef.h>
#include <stdio.h>

// RUN.html for RUN.jsonl (the extension replaced, else appended), into out.
void report_default_path(const char *log, char *out, size_t len);
// Reads the log and writes the page atomically (common/fs.h). 0, or -1 with a message.
int report_write(const char *log, const char *out, char *err, size_t errlen);

// The last evaluation record of a log: class names, confusion matrix, per-class accuracy and
// the worst mistakes with their image paths.
#define REPORT_WORST_MAX 16
typedef struct report_worst {
    char *path, *truth, *pred;
    double prob;
} report_worst;
typedef struct report_eval {
    int epoch, K;
    char what[16];
    double accuracy;
    long images;
    char **names;                  // (K)
    long *confusion;               // (K, K): [true * K + pred]
    double *class_accuracy;        // (K) percent; NAN for a class without images
    report_worst worst[REPORT_WORST_MAX];
    int n_worst;
} report_eval;

// Parses one {"evaluation":...} line into e (zeroed first; free it whatever the result).
// 0, or -1 with a message.
int report_eval_parse(report_eval *e, const char *line, char *err, size_t errlen);
void report_eval_free(report_eval *e);  // accepts a zeroed struct
// The confusion matrix, the per-class accuracy bars and the grid of worst mistakes (their
// images read and inlined now; a file that cannot be read is named on the page).
void report_eval_html(FILE *f, const report_eval *e);
// Text for HTML (and its attributes), & < > " ' escaped.
void report_html_text(FILE *f, const char *s);

#endif
