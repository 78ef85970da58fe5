// The records of train --log: see run_log.h.
#define _XOPEN_SOURCE 700
#include "host/cli/run_log.h"

#include <limits.h>
#include <stdlib.h>

void run_log_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void class_name(FILE *f, const dataset *ds, int k) {
    char idx[16];
    snprintf(idx, sizeof idx, "%d", k);  // a class the data set does not name: its index
    run_log_json_string(f, k < ds->num_classes && ds->class_names ? ds->class_names[k] : idx);
}

void run_log_evaluation(FILE *f, int epoch, const char *what, const dataset *ds,
                        const dataset_split *split, const eval_stats *st) {
    int K = st->num_classes;
    long total = 0, correct = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            total += st->confusion[(size_t)i * K + j];
            correct += i == j ? st->confusion[(size_t)i * K + j] : 0;
        }
    fprintf(f, "{\"epoch\":%d,\"evaluation\":\"%s\",\"images\":%ld,\"accuracy\":%.4f,"
               "\"classes\":[", epoch, what, total, total ? 100.0 * correct / total : 0.0);
    for (int k = 0; k < K; k++) {
        if (k) fputc(',', f);
        class_name(f, ds, k);
    }
    fputs("],\"confusion\":[", f);
    for (int i = 0; i < K; i++) {
        fputs(i ? ",[" : "[", f);
        for (int j = 0; j < K; j++) fprintf(f, "%s%ld", j ? "," : "", st->confusion[(size_t)i * K + j]);
        fputc(']', f);
    }
    fputs("],\"per_class_accuracy\":[", f);
    for (int i = 0; i < K; i++) {
        long n = 0;
        for (int j = 0; j < K; j++) n += st->confusion[(size_t)i * K + j];
        if (i) fputc(',', f);
        if (n) fprintf(f, "%.4f", 100.0 * st->confusion[(size_t)i * K + i] / n);
        else fputs("null", f);
    }
    fputs("],\"worst\":[", f);
    for (int i = 0; split->files && i < st->n_worst; i++) {
        const eval_worst *w = &st->worst[i];
        char path[4096], abs[PATH_MAX];
        dataset_path(split, (int)w->index, path, sizeof path);
        fputs(i ? ",{\"path\":" : "{\"path\":", f);
        run_log_json_string(f, realpath(path, abs) ? abs : path);  // the report runs anywhere
        fputs(",\"true\":", f);
        class_name(f, ds, w->label);
        fputs(",\"pred\":", f);
        class_name(f, ds, w->pred);
        fprintf(f, ",\"prob\":%.6f}", w->prob);
    }
    fputs("]}\n", f);
    fflush(f);
}

void run_log_epoch(FILE *f, int epoch, double lr) {
    fprintf(f, "{\"epoch\":%d,\"lr\":%.9g}\n", epoch, lr);
    fflush(f);
}

void run_log_step(FILE *f, int epoch, long step, float loss, double lr, double ips,
                  int clipping, float grad_norm) {
    fprintf(f, "{\"epoch\":%d,\"step\":%ld,\"loss\":%.9g,\"lr\":%g,"
               "\"images_per_s\":%.2f", epoch, step, loss, lr, ips);
    if (clipping) fprintf(f, ",\"grad_norm\":%.9g", grad_norm);
    fprintf(f, "}\n");
    fflush(f);
}

void run_log_val_accuracy(FILE *f, int epoch, double accuracy, double lr) {
    fprintf(f, "{\"epoch\":%d,\"val_accuracy\":%.4f,\"lr\":%.9g}\n", epoch, accuracy, lr);
    fflush(f);
}

void run_log_test_accuracy(FILE *f, int epoch, double accuracy) {
    fprintf(f, "{\"epoch\":%d,\"test_accuracy\":%.4f}\n", epoch, accuracy);
}
