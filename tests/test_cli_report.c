// `cltrain report`: the HTML is self-contained (no script, no external resource), has the four
// charts, and its polylines carry exactly the log's numbers; bad logs are named. When Debian's
// chromium is installed, a headless screenshot of the page must not be blank.
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

static int count(const char *s, const char *part) {
    int n = 0;
    for (const char *p = strstr(s, part); p; p = strstr(p + 1, part)) n++;
    return n;
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
    cr_expect_eq(count(html, "<svg "), 4, "four charts");
    cr_expect_eq(count(html, "</svg>"), 4);
    cr_expect_null(strstr(html, "<script"), "no script");
    cr_expect_null(strstr(html, "src="), "nothing loaded from elsewhere");
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

Test(cli_report, renders_in_headless_chromium, .timeout = 180) {
    if (system("command -v chromium >/dev/null 2>&1") != 0)
        cr_skip_test("chromium is not installed (Debian's chromium): the screenshot check is "
                     "skipped");
    char *d = cli_tmpdir();
    write_log(cli_path(d, "run.jsonl"));
    cli_result r = cli_run(30, "", "report %s", cli_path(d, "run.jsonl"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 120 chromium --headless --no-sandbox --disable-gpu "
             "--window-size=800,1200 --screenshot=%s file://%s >/dev/null 2>&1",
             cli_path(d, "shot.png"), cli_path(d, "run.html"));
    cr_assert_eq(system(cmd), 0, "chromium failed: %s", cmd);
    image img = {0};
    char err[512];
    cr_assert_eq(image_decode(cli_path(d, "shot.png"), &img, err, sizeof err), 0, "%s", err);
    long dark = 0, n = (long)img.h * img.w;
    for (long i = 0; i < n; i++) dark += img.pixels[i] < 128;   // the first plane
    cr_expect(dark > n / 1000, "screenshot is blank: %ld dark pixels of %ld", dark, n);
    image_free(&img);
    cli_rmtree(d);
}
