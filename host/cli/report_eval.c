// The last evaluation of a training log on the report page: confusion matrix, per-class
// accuracy and the worst mistakes (report.h). The record is parsed by a small cursor over
// the JSON that run_log.c writes (strings, numbers, null, nested arrays, flat objects), and
// every drawn element carries its numbers as data attributes so tests read them back.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/report.h"
#include "dataset/image.h"
#include "dataset/transform.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MATRIX_MAX = 60, THUMB = 96 };

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

// After "key": at the top level of the line, or NULL. An escaped quote inside a string reads
// \" so a key never matches inside a value.
static const char *after_key(const char *line, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p ? skip_ws(p + strlen(k)) : NULL;
}

static void put_utf8(char *o, size_t *n, unsigned u) {
    if (u < 0x80) { o[(*n)++] = (char)u; return; }
    if (u < 0x800) { o[(*n)++] = (char)(0xc0 | u >> 6); }
    else { o[(*n)++] = (char)(0xe0 | u >> 12); o[(*n)++] = (char)(0x80 | (u >> 6 & 63)); }
    o[(*n)++] = (char)(0x80 | (u & 63));
}

// A JSON string at *pp (malloc'd into *out); *pp moves past it. 0 or -1.
static int json_string(const char **pp, char **out) {
    const char *p = skip_ws(*pp);
    if (*p != '"') return -1;
    const char *end = ++p;
    while (*end && *end != '"') end += *end == '\\' && end[1] ? 2 : 1;
    if (*end != '"') return -1;
    char *o = malloc((size_t)(end - p) * 3 + 1);
    if (!o) return -1;
    size_t n = 0;
    for (; p < end; p++) {
        if (*p != '\\') { o[n++] = *p; continue; }
        char c = *++p;
        unsigned u;
        switch (c) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'u':
            if (end - p < 5 || sscanf(p + 1, "%4x", &u) != 1) { free(o); return -1; }
            put_utf8(o, &n, u);
            p += 4;
            break;
        default: o[n++] = c;  // " \ /
        }
    }
    o[n] = 0;
    *out = o;
    *pp = end + 1;
    return 0;
}

// A number or null (NAN) at *pp. 0 or -1.
static int json_number(const char **pp, double *v) {
    const char *p = skip_ws(*pp);
    if (!strncmp(p, "null", 4)) { *v = NAN; *pp = p + 4; return 0; }
    char *end;
    *v = strtod(p, &end);
    if (end == p) return -1;
    *pp = end;
    return 0;
}

// Moves past ',' (returns 1), or past the closing `close` (returns 0); -1 otherwise.
static int next_item(const char **pp, char close) {
    const char *p = skip_ws(*pp);
    *pp = p + 1;
    return *p == ',' ? 1 : *p == close ? 0 : -1;
}

static int open_list(const char **pp, char open) {
    const char *p = skip_ws(*pp);
    if (*p != open) return -1;
    *pp = skip_ws(p + 1);
    return 0;
}

static int parse_names(report_eval *e, const char *p) {
    int cap = 0;
    if (!p || open_list(&p, '[')) return -1;
    if (*p == ']') return 0;
    int more = 1;
    while (more == 1) {
        if (e->K == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(e->names, (size_t)cap * sizeof *nn);
            if (!nn) return -1;
            e->names = nn;
        }
        if (json_string(&p, &e->names[e->K])) return -1;
        e->K++;
        more = next_item(&p, ']');
    }
    return more;  // 0 at the closing bracket, -1 for anything else
}

static int parse_matrix(report_eval *e, const char *p) {
    int K = e->K;
    e->confusion = calloc((size_t)K * K + 1, sizeof *e->confusion);
    if (!p || !e->confusion || open_list(&p, '[')) return -1;
    for (int i = 0; i < K; i++) {
        if (open_list(&p, '[')) return -1;
        for (int j = 0; j < K; j++) {
            double v;
            if (json_number(&p, &v) || !(v >= 0) || next_item(&p, ']') != (j < K - 1)) return -1;
            e->confusion[(size_t)i * K + j] = (long)v;
        }
        if (next_item(&p, ']') != (i < K - 1)) return -1;
    }
    return 0;
}

static int parse_accuracy(report_eval *e, const char *p) {
    e->class_accuracy = calloc((size_t)e->K + 1, sizeof *e->class_accuracy);
    if (!p || !e->class_accuracy || open_list(&p, '[')) return -1;
    for (int i = 0; i < e->K; i++)
        if (json_number(&p, &e->class_accuracy[i]) || next_item(&p, ']') != (i < e->K - 1))
            return -1;
    return 0;
}

// [{"path":..,"true":..,"pred":..,"prob":..},...]: keys in any order, the first
// REPORT_WORST_MAX kept.
static int parse_worst(report_eval *e, const char *p) {
    if (!p) return 0;  // a record without images
    if (open_list(&p, '[')) return -1;
    if (*p == ']') return 0;
    int more = 1;
    for (; more == 1; more = next_item(&p, ']')) {
        report_worst w = { 0 };
        if (open_list(&p, '{')) return -1;
        int rc = 0, m = 1;
        for (; m == 1 && rc == 0; m = rc ? m : next_item(&p, '}')) {
            char *key = NULL;
            if (json_string(&p, &key) || *(p = skip_ws(p)) != ':') { free(key); rc = -1; break; }
            p++;
            if (!strcmp(key, "prob")) rc = json_number(&p, &w.prob);
            else if (!strcmp(key, "path")) { free(w.path); rc = json_string(&p, &w.path); }
            else if (!strcmp(key, "true")) { free(w.truth); rc = json_string(&p, &w.truth); }
            else if (!strcmp(key, "pred")) { free(w.pred); rc = json_string(&p, &w.pred); }
            else rc = -1;
            free(key);
        }
        int bad = rc || m < 0 || !w.path || !w.truth || !w.pred;
        if (bad || e->n_worst == REPORT_WORST_MAX) {
            free(w.path); free(w.truth); free(w.pred);
            if (bad) return -1;
            continue;
        }
        e->worst[e->n_worst++] = w;
    }
    return more;
}

int report_eval_parse(report_eval *e, const char *line, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    double v;
    const char *p = after_key(line, "epoch");
    e->epoch = p && json_number(&p, &v) == 0 ? (int)v : 0;
    p = after_key(line, "images");
    e->images = p && json_number(&p, &v) == 0 ? (long)v : 0;
    p = after_key(line, "accuracy");
    e->accuracy = p && json_number(&p, &v) == 0 ? v : NAN;
    char *what = NULL;
    p = after_key(line, "evaluation");
    if (p && json_string(&p, &what) == 0) snprintf(e->what, sizeof e->what, "%s", what);
    free(what);
    const char *bad = parse_names(e, after_key(line, "classes")) || !e->K ? "classes"
                    : parse_matrix(e, after_key(line, "confusion")) ? "confusion"
                    : parse_accuracy(e, after_key(line, "per_class_accuracy"))
                        ? "per_class_accuracy"
                    : parse_worst(e, after_key(line, "worst")) ? "worst" : NULL;
    if (!bad) return 0;
    snprintf(err, errlen, "an evaluation record with a bad or missing \"%s\"", bad);
    return -1;
}

void report_eval_free(report_eval *e) {
    for (int k = 0; e->names && k < e->K; k++) free(e->names[k]);
    free(e->names);
    free(e->confusion);
    free(e->class_accuracy);
    for (int i = 0; i < e->n_worst; i++) {
        free(e->worst[i].path); free(e->worst[i].truth); free(e->worst[i].pred);
    }
    memset(e, 0, sizeof *e);
}

void report_html_text(FILE *f, const char *s) {
    for (; *s; s++)
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
}

// Cells shaded by the fraction of their row (the true class), counts written in them.
static void confusion_svg(FILE *f, const report_eval *e) {
    size_t longest = 1;
    for (int k = 0; k < e->K; k++) longest = strlen(e->names[k]) > longest ? strlen(e->names[k]) : longest;
    int margin = 30 + 7 * (int)(longest < 16 ? longest : 16);  // room for the names
    int K = e->K, cell = K <= 10 ? 44 : 440 / K < 10 ? 10 : 440 / K, L = margin, T = margin;
    int W = L + K * cell + 20, H = T + K * cell + 20;
    fprintf(f, "<div class=\"chart\"><h2>Confusion matrix (%s, epoch %d)</h2>\n<svg id=\"confusion\" "
               "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 "
               "%d %d\" font-family=\"sans-serif\" font-size=\"11\">\n<rect x=\"0\" y=\"0\" "
               "width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", e->what, e->epoch, W, H, W, H, W,
            H);
    fprintf(f, "<text x=\"%d\" y=\"14\" text-anchor=\"middle\">predicted</text><text x=\"14\" "
               "y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">true</text>\n",
            L + K * cell / 2, T + K * cell / 2, T + K * cell / 2);
    for (int k = 0; k < K; k++) {
        int c = L + k * cell + cell / 2, r = T + k * cell + cell / 2 + 4;
        fprintf(f, "<text class=\"pred-label\" data-index=\"%d\" x=\"%d\" y=\"%d\" "
                   "transform=\"rotate(-60 %d %d)\">", k, c, T - 6, c, T - 6);
        report_html_text(f, e->names[k]);
        fprintf(f, "</text>\n<text class=\"true-label\" data-index=\"%d\" x=\"%d\" y=\"%d\" "
                   "text-anchor=\"end\">", k, L - 6, r);
        report_html_text(f, e->names[k]);
        fputs("</text>\n", f);
    }
    for (int i = 0; i < K; i++) {
        long row = 0;
        for (int j = 0; j < K; j++) row += e->confusion[(size_t)i * K + j];
        for (int j = 0; j < K; j++) {
            long n = e->confusion[(size_t)i * K + j];
            double t = row ? (double)n / row : 0;
            int x = L + j * cell, y = T + i * cell;
            fprintf(f, "<rect class=\"cell\" data-true=\"%d\" data-pred=\"%d\" data-count=\"%ld\" "
                       "x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" stroke=\"#ddd\" "
                       "fill=\"rgb(%d,%d,%d)\"/>", i, j, n, x, y, cell, cell,
                    (int)(255 - t * (255 - 31)), (int)(255 - t * (255 - 119)),
                    (int)(255 - t * (255 - 180)));
            if (cell >= 18)
                fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%ld</text>",
                        x + cell / 2, y + cell / 2 + 4, t > 0.5 ? "#fff" : "#000", n);
            fputc('\n', f);
        }
    }
    fputs("</svg></div>\n", f);
}

static void accuracy_svg(FILE *f, const report_eval *e) {
    int K = e->K, bar = 18, L = 130, W = 460, H = 30 + K * (bar + 4) + 10;
    fprintf(f, "<div class=\"chart\"><h2>Per-class accuracy (%%)</h2>\n<svg id=\"class-accuracy\" "
               "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d "
               "%d\" font-family=\"sans-serif\" font-size=\"11\">\n<rect x=\"0\" y=\"0\" "
               "width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H, W, H, W, H);
    for (int k = 0; k < K; k++) {
        int y = 20 + k * (bar + 4);
        double a = e->class_accuracy[k];
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", L - 6, y + 13);
        report_html_text(f, e->names[k]);
        fputs("</text>", f);
        if (isnan(a)) {
            fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#888\">no images</text>\n", L, y + 13);
            continue;
        }
        fprintf(f, "<rect class=\"bar\" data-index=\"%d\" data-accuracy=\"%.4f\" x=\"%d\" y=\"%d\" "
                   "width=\"%.1f\" height=\"%d\" fill=\"#1f77b4\"/><text x=\"%.1f\" y=\"%d\">"
                   "%.2f</text>\n", k, a, L, y, a / 100 * (W - L - 70), bar,
                L + a / 100 * (W - L - 70) + 4, y + 13, a);
    }
    fputs("</svg></div>\n", f);
}

static void base64(FILE *f, const uint8_t *d, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        fputc(t[v >> 18], f);
        fputc(t[v >> 12 & 63], f);
        fputc(i + 1 < n ? t[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
}

// The file as a PNG thumbnail (longer side THUMB, PIL bilinear) in a data: URI, or a line
// that names why it is not there.
static void thumbnail(FILE *f, const char *path) {
    image img = { 0 }, th = { 0 };
    char err[1024];
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = image_decode(path, &img, err, sizeof err);
    if (rc == 0) {
        th.c = img.c;
        th.w = img.w >= img.h ? THUMB : (img.w * THUMB + img.h / 2) / img.h;
        th.h = img.h >= img.w ? THUMB : (img.h * THUMB + img.w / 2) / img.w;
        th.w += !th.w;
        th.h += !th.h;
        th.pixels = malloc((size_t)th.c * th.h * th.w);
        rc = th.pixels ? 0 : -1;
        for (int k = 0; rc == 0 && k < img.c; k++)
            rc = transform_resize_u8(th.pixels + (size_t)k * th.h * th.w, th.h, th.w,
                                     img.pixels + (size_t)k * img.h * img.w, img.h, img.w);
        if (rc) snprintf(err, sizeof err, "%s: cannot make its thumbnail", path);
        else rc = image_encode_png(&th, &png, &len, err, sizeof err);
    }
    if (rc == 0) {
        fprintf(f, "<img width=\"%d\" height=\"%d\" alt=\"\" src=\"data:image/png;base64,", th.w,
                th.h);
        base64(f, png, len);
        fputs("\">", f);
    } else {
        fputs("<p class=\"missing\">image not shown: ", f);
        report_html_text(f, err);
        fputs("</p>", f);
    }
    free(png);
    free(th.pixels);
    image_free(&img);
}

static void worst_grid(FILE *f, const report_eval *e) {
    fprintf(f, "<h2>Worst misclassified images (%s)</h2>\n", e->what);
    if (!e->n_worst) {
        fputs("<p>No misclassified images with files to show.</p>\n", f);
        return;
    }
    fputs("<div id=\"worst\" class=\"grid\">\n", f);
    for (int i = 0; i < e->n_worst; i++) {
        const report_worst *w = &e->worst[i];
        fputs("<figure class=\"worst\" data-path=\"", f);
        report_html_text(f, w->path);
        fputs("\" data-true=\"", f);
        report_html_text(f, w->truth);
        fputs("\" data-pred=\"", f);
        report_html_text(f, w->pred);
        fprintf(f, "\" data-prob=\"%.6f\">", w->prob);
        thumbnail(f, w->path);
        fputs("<figcaption>true: ", f);
        report_html_text(f, w->truth);
        fputs("<br>predicted: ", f);
        report_html_text(f, w->pred);
        fprintf(f, " (%.1f%%)</figcaption></figure>\n", 100 * w->prob);
    }
    fputs("</div>\n", f);
}

void report_eval_html(FILE *f, const report_eval *e) {
    fprintf(f, "<p>Last evaluation (%s, epoch %d): %ld images, accuracy %.2f%%</p>\n", e->what,
            e->epoch, e->images, e->accuracy);
    fputs("<div class=\"row\">\n", f);
    if (e->K <= MATRIX_MAX) confusion_svg(f, e);
    else fprintf(f, "<p>%d classes: too many to draw a confusion matrix.</p>\n", e->K);
    accuracy_svg(f, e);
    fputs("</div>\n", f);
    worst_grid(f, e);
}
