// The commands on image folders: a bad file is one error line naming it (exit 1, nothing
// written), --skip-bad trains on the rest and says what it left out, --val-split reports its
// counts, and eval --predictions has a path column.
#define _XOPEN_SOURCE 700  // realpath
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli_run.h"

#define FOLDER_TINY "--image-size 32 --batch-size 2 --max-steps 1 --workers 2"

// A 3x2 PPM with pixels from `seed`.
static void clif_ppm(const char *dir, const char *name, int seed)
{
    char data[11 + 18];
    memcpy(data, "P6\n3 2\n255\n", 11);
    for (int i = 0; i < 18; i++) data[11 + i] = (char)(seed * 37 + i * 11);
    cli_write_file(dir, name, data, sizeof(data));
}

// DIR/train/{a,b}/ and DIR/val/{a,b}/ with two PPMs each (mkdir on the way).
static char *clif_folder(void)
{
    char *d = cli_tmpdir();
    const char *sub[] = {"train", "train/a", "train/b", "val", "val/a", "val/b"};
    for (int i = 0; i < 6; i++) mkdir(cli_path(d, sub[i]), 0755);
    clif_ppm(d, "train/a/1.ppm", 1);
    clif_ppm(d, "train/a/2 two.ppm", 2);
    clif_ppm(d, "train/b/3.ppm", 3);
    clif_ppm(d, "train/b/4.ppm", 4);
    clif_ppm(d, "val/a/5,five.ppm", 5);
    clif_ppm(d, "val/b/6.ppm", 6);
    return d;
}

Test(cli_folder, bad_file_is_named_or_skipped, .timeout = 180)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    cli_write_file(d, "train/b/bad.jpg", "not a jpeg", 10);
    cli_result r = cli_run(60, "", "train --data %s " FOLDER_TINY " --save %s", d,
                           cli_path(out, "m.pth"));
    cli_expect_error(&r, 1, "bad file", "train/b/bad.jpg", "not an image", NULL);
    cli_result_free(&r);
    cr_expect(!cli_exists(cli_path(out, "m.pth")), "no --save file after the error");
    r = cli_run(120, "", "train --data %s " FOLDER_TINY " --skip-bad --save %s", d,
                cli_path(out, "m.pth"));
    cr_assert_eq(r.status, 0, "--skip-bad: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "warning:"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "train/b/bad.jpg"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "1 bad files skipped"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "Accuracy of the network on the 2 test images"), "%s", r.out);
    const char *end = strstr(r.err, "--skip-bad: 1 bad files left out of this run");
    cr_expect(end && !strchr(strchr(end, '\n') + 1, '\n'), "the count ends the run: %s", r.err);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --weights %s --image-size 32 --resize 40 "
                "--skip-bad --predictions %s", d, cli_path(out, "m.pth"),
                cli_path(out, "p.csv"));
    cr_assert_eq(r.status, 0, "eval: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.out, "Accuracy of a "), "per-class names: %s", r.out);
    cr_expect_not_null(strstr(r.err, "--skip-bad: 1 bad files left out"), "%s", r.err);
    cli_result_free(&r);
    size_t n;
    char *csv = cli_read_file(cli_path(out, "p.csv"), &n);
    cr_assert_not_null(csv);
    cr_expect_eq(strncmp(csv, "index,path,label,pred,logit_0,logit_1\n", 38), 0, "%s", csv);
    cr_expect_not_null(strstr(csv, "\n0,\""), "%s", csv);
    cr_expect_not_null(strstr(csv, "val/a/5,five.ppm\",0,"), "quoted path: %s", csv);
    free(csv);
    cli_rmtree(out);
    cli_rmtree(d);
}

Test(cli_folder, val_split_reports_counts, .timeout = 120)
{
    char *d = clif_folder();
    cli_result r = cli_run(60, "", "train --data %s/train " FOLDER_TINY, d);
    cli_expect_error(&r, 1, "no train/", "/train:", "a folder of class folders needs --val-split",
                     NULL);
    cli_result_free(&r);
    r = cli_run(120, "", "train --data %s/train " FOLDER_TINY " --val-split 0.5 --seed 3", d);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "--val-split 0.5 (seed 3): 2 train, 2 val images"), "%s",
                       r.err);
    cli_result_free(&r);
    cli_rmtree(d);
}

// --resize is part of the training state: resuming without it keeps the saved value (the saved
// model's metadata says 40), and a different one is refused naming both.
Test(cli_folder, resume_keeps_resize, .timeout = 180)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    char state[512], model[512];
    snprintf(state, sizeof state, "%s", cli_path(out, "state.pth"));
    snprintf(model, sizeof model, "%s", cli_path(out, "m.pth"));
    cli_result r = cli_run(120, "", "train --data %s " FOLDER_TINY " --resize 40 --epochs 2 "
                           "--checkpoint %s", d, state);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cli_result_free(&r);
    r = cli_run(60, "", "train --data %s " FOLDER_TINY " --resize 36 --epochs 2 --resume %s", d,
                state);
    cli_expect_error(&r, 2, "--resize 36 contradicts", "state's 40", NULL);
    cli_result_free(&r);
    r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 2 --max-steps 2 "
                "--workers 2 --epochs 2 --resume %s --save %s", d, state, model);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cli_result_free(&r);
    size_t n;
    char path[600];
    snprintf(path, sizeof path, "%s.json", model);
    char *meta = cli_read_file(path, &n);
    cr_assert_not_null(meta, "no %s", path);
    cr_expect_not_null(strstr(meta, "\"resize\":40"), "%s", meta);
    free(meta);
    cli_rmtree(out);
    cli_rmtree(d);
}

// A file that passes the open's header check but is cut in its data: the run stops at that
// batch with one line naming it, after saving --checkpoint as SIGTERM does (exit 1).
Test(cli_folder, file_cut_mid_run_saves_state, .timeout = 180)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    char cut[512], state[512], cmd[1200];
    snprintf(cut, sizeof cut, "%s", cli_path(d, "train/b/cut.jpg"));
    snprintf(state, sizeof state, "%s", cli_path(out, "state.pth"));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import sys; from PIL import Image; "
             "Image.new(\"RGB\", (40, 40), (9, 99, 199)).save(sys.argv[1], quality=90)' %s && "
             "truncate -s 300 %s", cut, cut);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cli_result r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 3 --workers 2 "
                           "--no-shuffle --checkpoint %s", d, state);
    cli_expect_error(&r, 1, "train/b/cut.jpg", "truncated", "training state saved to", NULL);
    cr_expect(strstr(r.out, "Finished Training") == NULL, "%s", r.out);
    cli_result_free(&r);
    cr_expect(cli_exists(state), "no training state at %s", state);
    cli_rmtree(out);
    cli_rmtree(d);
}

// train --log on an image folder writes RUN.html by itself, and its confusion matrix,
// per-class accuracy and worst-mistake grid are those of `eval --predictions` on the saved
// weights and the same images (softmax of the CSV's logits, computed here).
#define REPORT_K 3
#define REPORT_N 9
Test(cli_folder, report_matches_eval_predictions, .timeout = 300)
{
    char *d = cli_tmpdir(), *out = cli_tmpdir();
    static const char *cls[REPORT_K] = {"ant", "bee", "cow"};
    for (int s = 0; s < 2; s++) {
        mkdir(cli_path(d, s ? "val" : "train"), 0755);
        for (int k = 0; k < REPORT_K; k++) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s/%s", s ? "val" : "train", cls[k]);
            mkdir(cli_path(d, sub), 0755);
            for (int i = 0; i < 3; i++) {
                char name[96];
                snprintf(name, sizeof name, "%s/%d.ppm", sub, i);
                clif_ppm(d, name, 7 * k + i + 20 * s);
            }
        }
    }
    char log[4096];
    snprintf(log, sizeof log, "%s", cli_path(out, "run.jsonl"));
    cli_result r = cli_run(180, "", "train --data %s --image-size 32 --batch-size 3 --epochs 1 "
                           "--workers 2 --log %s --save %s", d, log, cli_path(out, "m.pth"));
    cr_assert_eq(r.status, 0, "train: %s", r.err);
    cr_expect_not_null(strstr(r.out, "report: "), "%s", r.out);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --weights %s --image-size 32 --batch-size 3 "
                "--predictions %s", d, cli_path(out, "m.pth"), cli_path(out, "p.csv"));
    cr_assert_eq(r.status, 0, "eval: %s", r.err);
    cli_result_free(&r);
    // The run's numbers from the CSV: index,"path",label,pred,logit_0,logit_1,logit_2.
    char *csv = cli_read_file(cli_path(out, "p.csv"), NULL);
    cr_assert_not_null(csv);
    long conf[REPORT_K * REPORT_K] = {0};
    char wpath[REPORT_N][4096];
    double wprob[REPORT_N];
    int nw = 0;
    const char *line = strchr(csv, '\n') + 1;
    for (int i = 0; i < REPORT_N; i++, line = strchr(line, '\n') + 1) {
        const char *q = strchr(line, '"') + 1, *qe = strchr(q, '"');
        int label, pred;
        double l[REPORT_K];
        cr_assert_eq(sscanf(qe + 2, "%d,%d,%lf,%lf,%lf", &label, &pred, &l[0], &l[1], &l[2]), 5);
        conf[label * REPORT_K + pred]++;
        if (label == pred) continue;
        double sum = 0;
        for (int k = 0; k < REPORT_K; k++) sum += exp(l[k] - l[pred]);
        char p[4096];
        snprintf(p, sizeof p, "%.*s", (int)(qe - q), q);
        int j = nw++;  // insertion by probability, highest first; ties keep the earlier image
        for (; j > 0 && wprob[j - 1] < 1 / sum; j--) {
            wprob[j] = wprob[j - 1];
            memcpy(wpath[j], wpath[j - 1], sizeof wpath[j]);
        }
        wprob[j] = 1 / sum;
        cr_assert_not_null(realpath(p, wpath[j]));
    }
    free(csv);
    cr_expect_gt(nw, 0, "the tiny run makes mistakes to show");
    char *html = cli_read_file(cli_path(out, "run.html"), NULL), msg[256];
    cr_assert_not_null(html, "train --log writes run.html beside the log");
    cr_expect_eq(cli_html_balanced(html, msg, sizeof msg), 0, "HTML: %s", msg);
    int cells = 0;
    for (const char *p = strstr(html, "<rect class=\"cell\""); p;
         p = strstr(p + 1, "<rect class=\"cell\""), cells++) {
        char *c = cli_html_attr(p, "data-count");
        cr_assert(c && cells < REPORT_K * REPORT_K);
        cr_expect_eq(atol(c), conf[cells], "cell (%d, %d): %s, eval says %ld", cells / REPORT_K,
                     cells % REPORT_K, c, conf[cells]);
        free(c);
    }
    cr_expect_eq(cells, REPORT_K * REPORT_K);
    const char *b = html;
    for (int k = 0; k < REPORT_K; k++) {
        long row = conf[k * REPORT_K] + conf[k * REPORT_K + 1] + conf[k * REPORT_K + 2];
        char want[32];
        snprintf(want, sizeof want, "%.4f", 100.0 * conf[k * REPORT_K + k] / row);
        b = strstr(b + 1, "<rect class=\"bar\"");
        cr_assert_not_null(b);
        char *a = cli_html_attr(b, "data-accuracy");
        cr_expect(a && !strcmp(a, want), "%s: %s, eval says %s", cls[k], a ? a : "none", want);
        free(a);
    }
    const char *fig = html;
    for (int i = 0; i < nw; i++) {
        fig = strstr(fig + 1, "<figure class=\"worst\"");
        cr_assert_not_null(fig, "grid image %d of %d", i + 1, nw);
        char *p = cli_html_attr(fig, "data-path"), *pr = cli_html_attr(fig, "data-prob");
        cr_expect(p && !strcmp(p, wpath[i]), "grid %d: %s, eval says %s", i, p ? p : "none",
                  wpath[i]);
        cr_expect(pr && fabs(atof(pr) - wprob[i]) < 1e-4, "grid %d: prob %s, eval %f", i,
                  pr ? pr : "none", wprob[i]);
        free(p);
        free(pr);
    }
    cr_expect_null(strstr(fig + 1, "<figure class=\"worst\""), "only the %d mistakes", nw);
    cr_expect_eq(cli_count_entries(out, ".tmp."), 0, "no temp file left");
    free(html);
    // A file gone since the run is named on the page; the report still succeeds.
    cr_assert_eq(unlink(wpath[0]), 0);
    r = cli_run(60, "", "report %s --out %s", log, cli_path(out, "again.html"));
    cr_expect_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    html = cli_read_file(cli_path(out, "again.html"), NULL);
    cr_assert_not_null(html);
    const char *miss = strstr(html, "<p class=\"missing\">image not shown: ");
    cr_expect(miss && strstr(miss, wpath[0]), "the missing file is named");
    free(html);
    // A report that cannot be written (its name is taken by a folder) costs a warning only.
    mkdir(cli_path(out, "warn.html"), 0755);
    r = cli_run(180, "", "train --data %s --image-size 32 --batch-size 3 --max-steps 1 "
                "--workers 2 --log %s --save %s", d, cli_path(out, "warn.jsonl"),
                cli_path(out, "w.pth"));
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "cltrain: warning: the report was not written: "), "%s", r.err);
    cr_expect_null(strstr(r.err, "error:"), "%s", r.err);
    cli_result_free(&r);
    cr_expect(cli_exists(cli_path(out, "w.pth")), "the run's model is saved");
    // --no-report: the log only.
    r = cli_run(180, "", "train --data %s --image-size 32 --batch-size 3 --max-steps 1 "
                "--workers 2 --log %s --no-report", d, cli_path(out, "quiet.jsonl"));
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_null(strstr(r.out, "report: "));
    cli_result_free(&r);
    cr_expect(cli_exists(cli_path(out, "quiet.jsonl")));
    cr_expect(!cli_exists(cli_path(out, "quiet.html")), "--no-report writes no page");
    cli_rmtree(out);
    cli_rmtree(d);
}

// A file cut in its data fails mid-run: without --skip-bad, train and eval stop with one
// error line naming it (exit 1); with it, the file is warned about once (over two epochs),
// its batch is one image shorter (batch 2 of 3: [4.ppm, 5.ppm]), the closing line counts it,
// the model is the same for 1 or 3 loader workers and the same as without the file, eval's
// predictions keep each image's own index, and predict names the file (an error, or with
// --skip-bad a warning).
Test(cli_folder, file_cut_mid_run_is_skipped_with_skip_bad, .timeout = 300)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    clif_ppm(d, "train/b/5.ppm", 5);
    cli_write_cut_jpeg(d, "train/b/cut.jpg");  // 6th of 6 in file order: batch 2 of 3
    cli_write_cut_jpeg(d, "val/a/cut.jpg");    // 2nd of 3
    const char *tiny = "--image-size 32 --batch-size 3 --no-shuffle --workers 2";
    cli_result r = cli_run(120, "", "train --data %s %s", d, tiny);
    cli_expect_error(&r, 1, "train/b/cut.jpg", "truncated", NULL);
    cli_result_free(&r);
    r = cli_run(180, "", "train --data %s %s --epochs 2 --skip-bad --log %s --no-report "
                "--save %s", d, tiny, cli_path(out, "run.jsonl"), cli_path(out, "m.pth"));
    cr_assert_eq(r.status, 0, "--skip-bad: status %d\n%s", r.status, r.err);
    cr_expect_eq(cli_count(r.err, "warning:"), 2, "one warning per cut file:\n%s", r.err);
    cr_expect_eq(cli_count(r.err, "train/b/cut.jpg"), 1, "%s", r.err);
    cr_expect_eq(cli_count(r.err, "val/a/cut.jpg"), 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "train/b/cut.jpg: image file is truncated"), "%s", r.err);
    cr_expect_null(strstr(r.err, "error:"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "Accuracy of the network on the 2 test images"), "%s", r.out);
    const char *end = strstr(r.err, "cltrain: --skip-bad: 2 bad files left out of this run (5 "
                                    "train, 2 test images used)\n");
    cr_expect(end && !strchr(end, '\n')[1], "the count ends the run: %s", r.err);
    cli_result_free(&r);
    char *log = cli_read_file(cli_path(out, "run.jsonl"), NULL);
    cr_assert_not_null(log);
    cr_expect_eq(cli_count(log, "\"loss\":"), 4, "2 steps an epoch: %s", log);
    free(log);
    for (int w = 1; w <= 3; w += 2) {  // shuffled: the same model for any number of workers
        char sub[32];
        snprintf(sub, sizeof sub, "w%d", w);
        mkdir(cli_path(out, sub), 0755);
        snprintf(sub, sizeof sub, "w%d/m.pth", w);
        r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 3 --workers %d "
                    "--epochs 2 --skip-bad --save %s", d, w, cli_path(out, sub));
        cr_assert_eq(r.status, 0, "--workers %d: status %d\n%s", w, r.status, r.err);
        cli_result_free(&r);
    }
    size_t n1, n3;
    char *m1 = cli_read_file(cli_path(out, "w1/m.pth"), &n1);
    char *m3 = cli_read_file(cli_path(out, "w3/m.pth"), &n3);
    cr_expect(m1 && m3 && n1 == n3 && !memcmp(m1, m3, n1), "--workers 1 and 3 trained other "
              "models");
    free(m1);
    free(m3);
    r = cli_run(120, "", "eval --data %s --weights %s --image-size 32", d,
                cli_path(out, "m.pth"));
    cli_expect_error(&r, 1, "val/a/cut.jpg", "truncated", NULL);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --weights %s --image-size 32 --batch-size 2 --skip-bad "
                "--predictions %s", d, cli_path(out, "m.pth"), cli_path(out, "p.csv"));
    cr_assert_eq(r.status, 0, "eval --skip-bad: status %d\n%s", r.status, r.err);
    cr_expect_eq(cli_count(r.err, "warning: "), 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "val/a/cut.jpg: image file is truncated"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "cltrain: --skip-bad: 1 bad files left out of this run (6 "
                                     "train, 2 test images used)"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "on the 2 test images"), "%s", r.out);
    cli_result_free(&r);
    // predict decodes file by file: the cut one is an error, or with --skip-bad named and
    // passed over.
    r = cli_run(60, "", "predict --weights %s %s/val/a", cli_path(out, "m.pth"), d);
    cli_expect_error(&r, 1, "val/a/cut.jpg", "truncated", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "predict --weights %s --skip-bad %s/val/a", cli_path(out, "m.pth"), d);
    cr_assert_eq(r.status, 0, "predict --skip-bad: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "val/a/cut.jpg: image file is truncated"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "val/a/5,five.ppm: "), "%s", r.out);
    cli_result_free(&r);
    char *csv = cli_read_file(cli_path(out, "p.csv"), NULL);
    cr_assert_not_null(csv);
    cr_expect_not_null(strstr(csv, "\n0,\""), "%s", csv);
    cr_expect_null(strstr(csv, "\n1,\""), "the cut file has no row: %s", csv);
    cr_expect_not_null(strstr(csv, "\n2,\"") && strstr(csv, "val/b/6.ppm\",1,"),
                       "val/b/6.ppm keeps its index 2: %s", csv);
    free(csv);
    // The cut file ends the last batch: leaving it out gives that batch's mean over the two
    // images present, bitwise the run without the file (whose last batch holds those two).
    cr_assert_eq(unlink(cli_path(d, "train/b/cut.jpg")), 0);
    mkdir(cli_path(out, "nocut"), 0755);
    r = cli_run(180, "", "train --data %s %s --epochs 2 --skip-bad --save %s", d, tiny,
                cli_path(out, "nocut/m.pth"));
    cr_assert_eq(r.status, 0, "without the file: status %d\n%s", r.status, r.err);
    cli_result_free(&r);
    m1 = cli_read_file(cli_path(out, "m.pth"), &n1);
    m3 = cli_read_file(cli_path(out, "nocut/m.pth"), &n3);
    cr_expect(m1 && m3 && n1 == n3 && !memcmp(m1, m3, n1), "a batch one image short trained "
              "another model than the batch without that image");
    free(m1);
    free(m3);
    cli_rmtree(out);
    cli_rmtree(d);
}

// Batches that --skip-bad leaves too small take no step, and the run goes on: one image left
// where batch norm trains on a 1x1 plane (PyTorch raises "Expected more than 1 value per
// channel") is a warning, an emptied batch passes silently (as a collate that returns nothing).
Test(cli_folder, short_batches_without_a_step, .timeout = 300)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    clif_ppm(d, "train/b/5.ppm", 5);
    cli_write_cut_jpeg(d, "train/b/cut.jpg");  // file order: [1 2] [3 4] [5 cut]
    cli_result r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 2 --epochs 1 "
                           "--no-shuffle --workers 2 --skip-bad --log %s --no-report", d,
                           cli_path(out, "a.jsonl"));
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "cltrain: warning: epoch 1, batch 3: the 1 image that "
                                     "--skip-bad left is too few for batch norm to train on: "
                                     "no step\n"), "%s", r.err);
    cli_result_free(&r);
    char *log = cli_read_file(cli_path(out, "a.jsonl"), NULL);
    cr_assert_not_null(log);
    cr_expect_eq(cli_count(log, "\"loss\":"), 2, "%s", log);
    free(log);
    r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 1 --epochs 1 --bn-eval "
                "--no-shuffle --workers 2 --skip-bad --print-every 2 --log %s --no-report", d,
                cli_path(out, "b.jsonl"));
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_eq(cli_count(r.err, "warning:"), 1, "the file alone: %s", r.err);
    cr_expect_not_null(strstr(r.out, "[Epoch 1, Batch 6] loss: "), "the seed's line over the "
                       "step taken: %s", r.out);
    cli_result_free(&r);
    log = cli_read_file(cli_path(out, "b.jsonl"), NULL);
    cr_assert_not_null(log);
    cr_expect_eq(cli_count(log, "\"loss\":"), 5, "6 batches, one empty: %s", log);
    free(log);
    cli_rmtree(out);
    cli_rmtree(d);
}
