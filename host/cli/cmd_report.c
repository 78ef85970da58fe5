// `cltrain report RUN.jsonl`: one self-contained HTML file (inline SVG, no script, no network)
// with the run's curves: training loss per step and its running mean, the learning rate,
// validation accuracy per epoch and throughput. The plotting is a small SVG writer here rather
// than a Python script over matplotlib: the binary needs no Python (DESIGN.md), and a chart of
// a few polylines is a page of C. Each polyline carries its values (data-y, data-x) so tests
// read the run's numbers back from the SVG. The last evaluation record (confusion matrix,
// per-class accuracy, worst mistakes) is drawn by report_eval.c.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cli.h"
#include "host/cli/report.h"
#include "common/fs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char report_usage[] =
    "usage: cltrain report RUN.jsonl [--out FILE.html]\n"
    "  Writes one self-contained HTML file (inline SVG) with the curves of a training log\n"
    "  (train --log): loss per step and its running mean, lr, validation accuracy per epoch,\n"
    "  throughput, and of its last evaluation: the confusion matrix, per-class accuracy and\n"
    "  (image folders) the worst misclassified images, inlined. Default --out: RUN.html\n"
    "  beside the log. train --log writes it at the end of a run (unless --no-report).\n";

typedef struct series { double *x, *y; int n, cap; } series;

static int series_add(series *s, double x, double y) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (!nx) return -1;
        s->x = nx;
        double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!ny) return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
    return 0;
}

static int field(const char *line, const char *key, double *v) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    if (!p) return 0;
    char *end;
    *v = strtod(p + strlen(k), &end);
    return end != p + strlen(k);
}

enum { S_LOSS, S_MEAN, S_LR, S_VAL, S_IPS, S_N };

// One chart: series a (and b, drawn dashed, on the same axes) as polylines in a 440x240 box
// (two side by side on a 1000-pixel page).
static void chart(FILE *f, const char *id, const char *title, const char *xlabel,
                  const series *a, const char *aname, const series *b, const char *bname) {
    const int W = 440, H = 240, L = 60, R = 20, T = 30, B = 40;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    const series *ss[2] = { a, b };
    for (int k = 0; k < 2; k++)
        for (int i = 0; ss[k] && i < ss[k]->n; i++) {
            x0 = fmin(x0, ss[k]->x[i]); x1 = fmax(x1, ss[k]->x[i]);
            y0 = fmin(y0, ss[k]->y[i]); y1 = fmax(y1, ss[k]->y[i]);
        }
    fprintf(f, "<div class=\"chart\"><h2>%s</h2>\n<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\">\n", title, id, W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H);
    if (!a->n) {
        fprintf(f, "<text x=\"%d\" y=\"%d\">no data in this log%s</text>\n</svg></div>\n", L,
                H / 2, !strcmp(id, "val") ? " (train --eval-every-epoch adds it)" : "");
        return;
    }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) { y1 = y0 + (y0 ? fabs(y0) * 0.1 : 1); y0 -= y1 - y0; }
    fprintf(f, "<g stroke=\"#888\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/></g>\n",
            L, H - B, W - R, H - B, L, T, L, H - B);
    fprintf(f, "<g font-size=\"11\" font-family=\"sans-serif\">"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>"
               "<text x=\"%d\" y=\"%d\">%.4g</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text></g>\n",
            L - 4, T + 4, y1, L - 4, H - B, y0, L, H - B + 14, x0, W - R, H - B + 14, x1,
            (L + W - R) / 2, H - 8, xlabel);
    static const char *colour[2] = { "#1f77b4", "#d62728" };
    const char *names[2] = { aname, bname };
    for (int k = 0; k < 2; k++) {
        const series *s = ss[k];
        if (!s || !s->n) continue;
        fprintf(f, "<polyline class=\"series\" data-name=\"%s\" fill=\"none\" stroke=\"%s\" "
                   "stroke-width=\"1.5\"%s data-x=\"", names[k], colour[k],
                k ? " stroke-dasharray=\"4 3\"" : "");
        for (int i = 0; i < s->n; i++) fprintf(f, "%s%.9g", i ? " " : "", s->x[i]);
        fprintf(f, "\" data-y=\"");
        for (int i = 0; i < s->n; i++) fprintf(f, "%s%.9g", i ? " " : "", s->y[i]);
        fprintf(f, "\" points=\"");
        for (int i = 0; i < s->n; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "",
                    L + (s->x[i] - x0) / (x1 - x0) * (W - L - R),
                    H - B - (s->y[i] - y0) / (y1 - y0) * (H - T - B));
        fprintf(f, "\"/>\n");
        if (s->n == 1)
            fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"%s\"/>\n", L, T, colour[k]);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" font-family=\"sans-serif\" "
                   "fill=\"%s\">%s</text>\n", L + 10 + 160 * k, T - 10, colour[k], names[k]);
    }
    fprintf(f, "</svg></div>\n");
}

// The curves into s, the last evaluation record into ev. Lines of any length (getline): an
// evaluation of many classes is one long line.
static int read_log(const char *path, series *s, report_eval *ev, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "%s: cannot read it", path); return -1; }
    char *line = NULL;
    size_t cap = 0;
    double step, v, epoch, window[100] = { 0 }, sum = 0;
    int nw = 0, lines = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        lines++;
        if (line[0] != '{') { snprintf(err, errlen, "%s:%d: not a JSON line", path, lines); rc = -1; break; }
        if (strstr(line, "\"evaluation\":")) {
            char e[512];
            report_eval_free(ev);
            if (report_eval_parse(ev, line, e, sizeof e)) {
                snprintf(err, errlen, "%s:%d: %s", path, lines, e);
                rc = -1;
            }
        } else if (field(line, "step", &step) && field(line, "loss", &v)) {
            rc |= series_add(&s[S_LOSS], step, v);
            if (nw == 100) sum -= window[(int)step % 100]; else nw++;
            window[(int)step % 100] = v;
            sum += v;
            rc |= series_add(&s[S_MEAN], step, sum / nw);   // the last 100 steps, as the seed
            if (field(line, "images_per_s", &v)) rc |= series_add(&s[S_IPS], step, v);
        } else if (field(line, "epoch", &epoch) && field(line, "val_accuracy", &v)) {
            rc |= series_add(&s[S_VAL], epoch, v);
        } else if (field(line, "epoch", &epoch) && field(line, "lr", &v) && !strstr(line, "\"step\"")) {
            rc |= series_add(&s[S_LR], epoch, v);
        }
        if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    }
    free(line);
    fclose(f);
    if (rc == 0 && !s[S_LOSS].n) { snprintf(err, errlen, "%s: no training steps in this log", path); rc = -1; }
    return rc;
}

void report_default_path(const char *log, char *out, size_t len) {
    snprintf(out, len, "%s", log);
    char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
    strncat(out, ".html", len - strlen(out) - 1);
}

static void write_page(FILE *f, const series *s, const report_eval *ev) {
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<title>cltrain report</title><style>body{font-family:sans-serif;margin:2em;"
               "background:#fafafa}h2{font-size:1.1em}svg{border:1px solid #ddd}.row{display:flex;"
               "flex-wrap:wrap;gap:0 16px}.grid{display:flex;flex-wrap:wrap;"
               "gap:8px}figure{margin:0;padding:6px;background:#fff;border:1px solid #ddd;"
               "width:150px;font-size:12px}figure img{display:block;margin:0 auto 4px;"
               "image-rendering:pixelated}.missing{color:#b00}</style></head><body>\n"
               "<h1>cltrain report</h1>\n<p>%d steps, final loss %.4g</p>\n",
            s[S_LOSS].n, s[S_LOSS].y[s[S_LOSS].n - 1]);
    fputs("<div class=\"row\">\n", f);
    chart(f, "loss", "Training loss", "step", &s[S_LOSS], "loss", &s[S_MEAN], "running mean (100 steps)");
    chart(f, "lr", "Learning rate", "epoch", &s[S_LR], "lr", NULL, NULL);
    chart(f, "val", "Validation accuracy (%)", "epoch", &s[S_VAL], "val_accuracy", NULL, NULL);
    chart(f, "throughput", "Throughput (images/s)", "step", &s[S_IPS], "images_per_s", NULL, NULL);
    fputs("</div>\n", f);
    if (ev->K) report_eval_html(f, ev);
    else fputs("<p>This log has no evaluation record: no confusion matrix.</p>\n", f);
    fprintf(f, "</body></html>\n");
}

int report_write(const char *log, const char *out, char *err, size_t errlen) {
    series s[S_N];
    memset(s, 0, sizeof s);
    report_eval ev;
    memset(&ev, 0, sizeof ev);
    util_atomic_file a = { 0 };
    err[0] = 0;
    int rc = read_log(log, s, &ev, err, errlen);
    if (rc == 0) rc = util_atomic_open(&a, out, err, errlen);
    if (rc == 0) {
        write_page(a.f, s, &ev);
        rc = util_atomic_commit(&a, err, errlen);
    }
    util_atomic_abort(&a);
    report_eval_free(&ev);
    for (int k = 0; k < S_N; k++) { free(s[k].x); free(s[k].y); }
    return rc;
}

int cmd_report(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(report_usage, stdout); return 0; }
        if (!strcmp(argv[i], "--out")) {
            if (++i >= argc) return cli_usage_error(report_usage, "--out needs a value");
            out = argv[i];
        } else if (argv[i][0] == '-') {
            return cli_usage_error(report_usage, "unknown option '%s'", argv[i]);
        } else if (in) {
            return cli_usage_error(report_usage, "unexpected argument '%s'", argv[i]);
        } else {
            in = argv[i];
        }
    }
    if (!in) return cli_usage_error(report_usage, "report needs RUN.jsonl");
    char def[4096], err[1024] = "";
    if (!out) {
        report_default_path(in, def, sizeof def);
        out = def;
    }
    if (report_write(in, out, err, sizeof err)) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return CLI_EXIT_DATA;
    }
    printf("report: %s\n", out);
    return 0;
}
