// `cltrain report`: the HTML is self-contained (no script, no external resource) and well
// formed, has the four charts, and its polylines carry exactly the log's numbers; the last
// evaluation record becomes a confusion matrix, per-class accuracy bars and a grid of the worst
// mistakes with inlined thumbnails (a missing file is named on the page); bad logs are named.
// When Debian's chromium is installed, a headless screenshot of the page must not be blank.
// (A real run's report, against eval --predictions: test_cli_folder.c.)
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset/image.h"
#include "tests/cli_run.h"

// A log as train --log writes it: 2 epochs of 3 steps, lr lines, validation accuracy.
static void write_log(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    static const double loss[6] = {2.5, 2.25, 1.875, 1.5, 1.25, 1.0625};
    for (int e = 0; e < 2; e++) {
        fprintf(f, "{\"epoch\":%d,\"lr\":%g}\n", e + 1, e ? 0.005 : 0.01);
        for (int s = 0; s < 3; s++)
            fprintf(f, "{\"epoch\":%d,\"step\":%d,\"loss\":%.9g,\"lr\":%g,\"images_per_s\":%d}\n",
                    e + 1, 3 * e + s + 1, loss[3 * e + s], e ? 0.005 : 0.01, 100 + s);
        fprintf(f, "{\"epoch\":%d,\"val_accuracy\":%.4f,\"lr\":%g}\n", e + 1, e ? 62.5 : 40.0,
                e ? 0.005 : 0.01);
    }
    fprintf(f, "{\"epoch\":2,\"test_accuracy\":62.5000}\n");
    fclose(f);
}

// The data-y of the polyline named `name`, or NULL.
static char *series_y(const char *html, const char *name) {
    char key[96];
    snprintf(key, sizeof key, "data-name=\"%s\"", name);
    const char *p = strstr(html, key);
    if (!p) return NULL;
    p = strstr(p, "data-y=\"");
    if (!p) return NULL;
    p += 8;
    return strndup(p, (size_t)(strchr(p, '"') - p));
}

// Every src= is a data: URI (nothing is loaded from elsewhere).
static int only_inline_sources(const char *html) {
    for (const char *p = strstr(html, "src="); p; p = strstr(p + 1, "src="))
        if (strncmp(p, "src=\"data:image/png;base64,", 27)) return 0;
    return 1;
}

// An evaluation record as train --log writes it (run_log.c), with names that need escaping
// in JSON and in HTML, a class without images, one image that exists and one that does not.
static void append_evaluation(const char *log, const char *img, const char *missing) {
    FILE *f = fopen(log, "a");
    cr_assert_not_null(f);
    fprintf(f, "{\"epoch\":2,\"evaluation\":\"test\",\"images\":8,\"accuracy\":62.5000,"
               "\"classes\":[\"a<b\",\"say \\\"hi\\\"\",\"\\u00fcn\"],"
               "\"confusion\":[[3,1,0],[2,2,0],[0,0,0]],"
               "\"per_class_accuracy\":[75.0000,50.0000,null],\"worst\":["
               "{\"path\":\"%s\",\"true\":\"say \\\"hi\\\"\",\"pred\":\"a<b\",\"prob\":0.912500},"
               "{\"path\":\"%s\",\"true\":\"a<b\",\"pred\":\"say \\\"hi\\\"\",\"prob\":0.700000}]}\n",
            img, missing);
    fclose(f);
}

// Base64 (the thumbnails' data: URIs) to bytes; *n gets their number.
static unsigned char *unbase64(const char *s, size_t *n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(s);
    unsigned char *out = malloc(len / 4 * 3 + 3);
    *n = 0;
    for (size_t i = 0; i + 3 < len; i += 4) {
        unsigned v = 0;
        for (int k = 0; k < 4; k++) {
            const char *c = strchr(t, s[i + k]);
            v = v << 6 | (s[i + k] == '=' || !c ? 0 : (unsigned)(c - t));
        }
        out[(*n)++] = (unsigned char)(v >> 16);
        if (s[i + 2] != '=') out[(*n)++] = (unsigned char)(v >> 8);
        if (s[i + 3] != '=') out[(*n)++] = (unsigned char)v;
    }
    return out;
}

Test(cli_report, html_has_the_runs_numbers, .timeout = 120) {
    char *d = cli_tmpdir();
    write_log(cli_path(d, "run.jsonl"));
    cli_result r = cli_run(30, "", "report %s", cli_path(d, "run.jsonl"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    char *html = cli_read_file(cli_path(d, "run.html"), NULL);
    cr_assert_not_null(html, "report writes RUN.html beside the log");
    cr_expect(!strncmp(html, "<!DOCTYPE html>", 15));
    cr_expect_not_null(strstr(html, "</html>"));
    cr_expect_eq(cli_count(html, "<svg "), 4, "four charts");
    cr_expect_eq(cli_count(html, "</svg>"), 4);
    cr_expect_null(strstr(html, "<script"), "no script");
    cr_expect_null(strstr(html, "src="), "nothing loaded from elsewhere");
    char msg[256];
    cr_expect_eq(cli_html_balanced(html, msg, sizeof msg), 0, "HTML: %s", msg);
    cr_expect_not_null(strstr(html, "no evaluation record"), "a log without one says so");
    char *y = series_y(html, "loss");
    cr_expect(y && !strcmp(y, "2.5 2.25 1.875 1.5 1.25 1.0625"), "loss: %s", y ? y : "none");
    free(y);
    y = series_y(html, "running mean (100 steps)");
    cr_expect(y && !strncmp(y, "2.5 2.375 ", 10), "running mean: %s", y ? y : "none");
    free(y);
    y = series_y(html, "lr");
    cr_expect(y && !strcmp(y, "0.01 0.005"), "lr per epoch: %s", y ? y : "none");
    free(y);
    y = series_y(html, "val_accuracy");
    cr_expect(y && !strcmp(y, "40 62.5"), "validation accuracy: %s", y ? y : "none");
    free(y);
    y = series_y(html, "images_per_s");
    cr_expect(y && !strcmp(y, "100 101 102 100 101 102"), "throughput: %s", y ? y : "none");
    free(y);
    free(html);
    // Bad input: a missing log, a log that is not JSON lines.
    r = cli_run(30, "", "report %s", cli_path(d, "nope.jsonl"));
    cli_expect_error(&r, 1, "nope.jsonl", NULL);
    cli_result_free(&r);
    cli_write_file(d, "bad.jsonl", "hello\n", 6);
    r = cli_run(30, "", "report %s --out %s", cli_path(d, "bad.jsonl"), cli_path(d, "b.html"));
    cli_expect_error(&r, 1, "bad.jsonl", "not a JSON line", NULL);
    cr_expect(!cli_exists(cli_path(d, "b.html")));
    cli_result_free(&r);
    cli_rmtree(d);
}

Test(cli_report, draws_the_last_evaluation, .timeout = 120) {
    char *d = cli_tmpdir();
    write_log(cli_path(d, "run.jsonl"));
    char img[4096], missing[4096];
    snprintf(img, sizeof img, "%s", cli_path(d, "shoe.ppm"));
    snprintf(missing, sizeof missing, "%s", cli_path(d, "gone.png"));
    unsigned char ppm[11 + 18] = "P6\n3 2\n255\n";
    for (int i = 0; i < 18; i++) ppm[11 + i] = (unsigned char)(i * 14);
    cli_write_file(d, "shoe.ppm", ppm, sizeof ppm);
    append_evaluation(cli_path(d, "run.jsonl"), img, missing);
    cli_result r = cli_run(30, "", "report %s", cli_path(d, "run.jsonl"));
    cr_assert_eq(r.status, 0, "a missing image is no error: %s", r.err);
    cli_result_free(&r);
    char *html = cli_read_file(cli_path(d, "run.html"), NULL), msg[256];
    cr_assert_not_null(html);
    cr_expect_eq(cli_html_balanced(html, msg, sizeof msg), 0, "HTML: %s", msg);
    cr_expect_eq(cli_count(html, "<svg "), 6, "four charts, the matrix and the bars");
    cr_expect(only_inline_sources(html), "thumbnails are inlined");
    // The matrix: 9 cells, row-major, with the record's counts; names escaped on both axes.
    static const long want[9] = { 3, 1, 0, 2, 2, 0, 0, 0, 0 };
    int cells = 0;
    for (const char *p = strstr(html, "<rect class=\"cell\""); p;
         p = strstr(p + 1, "<rect class=\"cell\""), cells++) {
        char *c = cli_html_attr(p, "data-count"), *t = cli_html_attr(p, "data-true"),
             *q = cli_html_attr(p, "data-pred");
        cr_assert(c && t && q && cells < 9);
        cr_expect_eq(atol(c), want[cells], "cell %d: %s", cells, c);
        cr_expect_eq(atoi(t) * 3 + atoi(q), cells, "cell %d is (%s, %s)", cells, t, q);
        free(c); free(t); free(q);
    }
    cr_expect_eq(cells, 9);
    cr_expect_eq(cli_count(html, "class=\"true-label\""), 3);
    cr_expect_eq(cli_count(html, "class=\"pred-label\""), 3);
    cr_expect_eq(cli_count(html, ">a&lt;b</text>"), 3, "a<b on both axes and the bars");
    cr_expect_eq(cli_count(html, ">say &quot;hi&quot;</text>"), 3);
    cr_expect_eq(cli_count(html, ">\xc3\xbcn</text>"), 3, "\\u00fc decoded to UTF-8");
    // Per-class accuracy: two bars, and the class without images says so.
    const char *b = strstr(html, "<rect class=\"bar\"");
    cr_assert_not_null(b);
    char *a = cli_html_attr(b, "data-accuracy");
    cr_expect(a && !strcmp(a, "75.0000"), "%s", a ? a : "none");
    free(a);
    b = strstr(b + 1, "<rect class=\"bar\"");
    cr_assert_not_null(b);
    a = cli_html_attr(b, "data-accuracy");
    cr_expect(a && !strcmp(a, "50.0000"), "%s", a ? a : "none");
    free(a);
    cr_expect_null(strstr(b + 1, "<rect class=\"bar\""));
    cr_expect_eq(cli_count(html, "no images"), 1);
    // The grid: the existing image as a 96x64 PNG thumbnail, the missing one named.
    const char *fig = strstr(html, "<figure class=\"worst\"");
    cr_assert_not_null(fig);
    char *v = cli_html_attr(fig, "data-path");
    cr_expect(v && !strcmp(v, img), "%s", v ? v : "none");
    free(v);
    v = cli_html_attr(fig, "data-prob");
    cr_expect(v && !strcmp(v, "0.912500"), "%s", v ? v : "none");
    free(v);
    v = cli_html_attr(fig, "data-true");
    cr_expect(v && !strcmp(v, "say &quot;hi&quot;"), "%s", v ? v : "none");
    free(v);
    const char *src = strstr(fig, "src=\"data:image/png;base64,");
    cr_assert_not_null(src);
    char *b64 = cli_html_attr(src - 1, "src");
    size_t n;
    unsigned char *png = unbase64(b64 + 22, &n);
    image th = { 0 };
    char err[512];
    cr_assert_eq(image_decode_mem(png, n, "thumbnail", &th, err, sizeof err), 0, "%s", err);
    cr_expect(th.w == 96 && th.h == 64 && th.c == 3, "thumbnail %dx%dx%d", th.c, th.h, th.w);
    cr_expect_eq(th.pixels[0], 0, "the top-left pixel of the file");
    image_free(&th);
    free(png);
    free(b64);
    cr_expect_not_null(strstr(html, "figcaption>true: say &quot;hi&quot;<br>predicted: a&lt;b (91.2%)"));
    const char *second = strstr(fig + 1, "<figure class=\"worst\"");
    cr_assert_not_null(second);
    cr_expect_not_null(strstr(second, "<p class=\"missing\">image not shown: "));
    cr_expect_not_null(strstr(second, "gone.png"));
    cr_expect_null(strstr(second, "<img"));
    free(html);
    // A broken evaluation record is named with its line.
    const char *bad = "{\"epoch\":1,\"step\":1,\"loss\":1}\n{\"evaluation\":\"test\","
                      "\"classes\":[\"a\",\"b\"],\"confusion\":[[1,2]]}\n";
    cli_write_file(d, "bad.jsonl", bad, strlen(bad));
    r = cli_run(30, "", "report %s", cli_path(d, "bad.jsonl"));
    cli_expect_error(&r, 1, "bad.jsonl:2", "confusion", NULL);
    cli_result_free(&r);
    bad = "{\"epoch\":1,\"step\":1,\"loss\":1}\n{\"evaluation\":\"test\",\"classes\":[\"a\"],"
          "\"confusion\":[[1]],\"per_class_accuracy\":[100],\"worst\":[{\"path\":\"x.png\"}]}\n";
    cli_write_file(d, "bad2.jsonl", bad, strlen(bad));
    r = cli_run(30, "", "report %s", cli_path(d, "bad2.jsonl"));
    cli_expect_error(&r, 1, "bad2.jsonl:2", "worst", NULL);
    cli_result_free(&r);
    cli_rmtree(d);
}

// Debian's chromium, or chromium-browser elsewhere; NULL when neither is on PATH.
static const char *chromium(void) {
    if (system("command -v chromium >/dev/null 2>&1") == 0) return "chromium";
    if (system("command -v chromium-browser >/dev/null 2>&1") == 0) return "chromium-browser";
    return NULL;
}

Test(cli_report, renders_in_headless_chromium, .timeout = 180) {
    const char *browser = chromium();
    if (!browser)
        cr_skip_test("chromium is not installed (Debian's chromium): the screenshot check is "
                     "skipped");
    char *d = cli_tmpdir();
    write_log(cli_path(d, "run.jsonl"));
    unsigned char ppm[11 + 18] = "P6\n3 2\n255\n";
    for (int i = 0; i < 18; i++) ppm[11 + i] = (unsigned char)(i * 14);
    cli_write_file(d, "shoe.ppm", ppm, sizeof ppm);
    char img[4096];
    snprintf(img, sizeof img, "%s", cli_path(d, "shoe.ppm"));
    append_evaluation(cli_path(d, "run.jsonl"), img, cli_path(d, "gone.png"));
    cli_result r = cli_run(30, "", "report %s", cli_path(d, "run.jsonl"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 120 %s --headless --no-sandbox --disable-gpu "
             "--screenshot=%s --window-size=1000,2000 file://%s >/dev/null 2>&1", browser,
             cli_path(d, "shot.png"), cli_path(d, "run.html"));
    cr_assert_eq(system(cmd), 0, "chromium failed: %s", cmd);
    double sd;
    char msg[600];
    cr_expect_eq(cli_png_not_blank(cli_path(d, "shot.png"), &sd, msg, sizeof msg), 0, "%s", msg);
    cli_rmtree(d);
}
