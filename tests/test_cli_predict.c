// `cltrain predict`: what `train --save` records (class names, transform) is used without
// flags, flags override it, --csv writes path,class_k,prob_k, and a bad file is one error
// line naming it (exit 1) or, with --skip-bad, a warning and skipped. (Probabilities against
// PyTorch's softmax: tools/torch_predict_parity.py.)
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/cli_run.h"

// A 3x2 PPM with pixels from `seed`.
static void clip_ppm(const char *dir, const char *name, int seed)
{
    char data[11 + 18];
    memcpy(data, "P6\n3 2\n255\n", 11);
    for (int i = 0; i < 18; i++) data[11 + i] = (char)(seed * 29 + i * 13);
    cli_write_file(dir, name, data, sizeof(data));
}

// DIR/train/{cat,dog}/, DIR/val/{cat,dog}/ and a model trained for one step on them, saved
// as DIR/m.pth (sidecar m.pth.json) at --image-size 16.
static char *clip_model(void)
{
    char *d = cli_tmpdir();
    const char *sub[] = {"train", "train/cat", "train/dog", "val", "val/cat", "val/dog"};
    for (int i = 0; i < 6; i++) mkdir(cli_path(d, sub[i]), 0755);
    clip_ppm(d, "train/cat/1.ppm", 1);
    clip_ppm(d, "train/cat/2.ppm", 2);
    clip_ppm(d, "train/dog/3.ppm", 3);
    clip_ppm(d, "train/dog/4.ppm", 4);
    clip_ppm(d, "val/cat/5.ppm", 5);
    clip_ppm(d, "val/dog/6.ppm", 6);
    cli_result r = cli_run(120, "", "train --data %s --image-size 16 --batch-size 4 "
                           "--max-steps 1 --workers 1 --save %s", d, cli_path(d, "m.pth"));
    cr_assert_eq(r.status, 0, "train: status %d\n%s", r.status, r.err);
    cli_result_free(&r);
    return d;
}

Test(cli_predict, uses_what_train_recorded, .timeout = 240)
{
    char *d = clip_model();
    cr_assert(cli_exists(cli_path(d, "m.pth.json")), "train --save writes the sidecar");
    char *meta = cli_read_file(cli_path(d, "m.pth.json"), NULL);
    cr_expect_not_null(strstr(meta, "\"classes\":[\"cat\",\"dog\"]"), "%s", meta);
    cr_expect_not_null(strstr(meta, "\"image_size\":16"), "%s", meta);
    free(meta);
    cli_result r = cli_run(120, "", "predict --weights %s --csv %s %s", cli_path(d, "m.pth"),
                           cli_path(d, "p.csv"), cli_path(d, "val"));
    cr_assert_eq(r.status, 0, "predict: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.out, "val/cat/5.ppm: "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "val/dog/6.ppm: "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, " cat 0."), "class names from the record: %s", r.out);
    cr_expect_not_null(strstr(r.out, " dog 0."), "%s", r.out);
    cli_result_free(&r);
    char *csv = cli_read_file(cli_path(d, "p.csv"), NULL);
    cr_assert_not_null(csv);
    cr_expect(!strncmp(csv, "path,class_1,prob_1,class_2,prob_2\n", 35), "%s", csv);
    int lines = 0;
    for (char *p = csv; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 3, "header + 2 rows: %s", csv);
    free(csv);
    // One file, --top-k 1, names from --classes, transform flags accepted.
    cli_write_file(d, "names.txt", "kitty\npuppy\n", 12);
    r = cli_run(120, "", "predict --weights %s --top-k 1 --classes %s --image-size 24 "
                "--normalize imagenet %s", cli_path(d, "m.pth"), cli_path(d, "names.txt"),
                cli_path(d, "val/cat/5.ppm"));
    cr_assert_eq(r.status, 0, "predict: status %d\n%s", r.status, r.err);
    cr_expect(strstr(r.out, ": kitty 0.") || strstr(r.out, ": puppy 0."),
              "names from --classes: %s", r.out);
    cr_expect_null(strstr(r.out, ", "), "top-1 only: %s", r.out);
    cli_result_free(&r);
    cli_rmtree(d);
}

Test(cli_predict, bad_file_is_named_or_skipped, .timeout = 240)
{
    char *d = clip_model();
    cli_write_file(d, "val/dog/bad.png", "not a png", 9);
    cli_result r = cli_run(120, "", "predict --weights %s --csv %s %s", cli_path(d, "m.pth"),
                           cli_path(d, "p.csv"), cli_path(d, "val"));
    cli_expect_error(&r, 1, "val/dog/bad.png", "not an image", NULL);
    cr_expect(!cli_exists(cli_path(d, "p.csv")), "no CSV after the error");
    cli_result_free(&r);
    r = cli_run(120, "", "predict --weights %s --skip-bad %s", cli_path(d, "m.pth"),
                cli_path(d, "val"));
    cr_assert_eq(r.status, 0, "--skip-bad: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "warning: skipping bad file"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "1 bad files skipped"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "val/dog/6.ppm: "), "%s", r.out);
    cli_result_free(&r);
    r = cli_run(60, "", "predict --weights %s %s", cli_path(d, "m.pth"), cli_path(d, "nope.jpg"));
    cli_expect_error(&r, 1, "nope.jpg", "no such file", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "predict %s", cli_path(d, "val"));
    cli_expect_error(&r, 2, "--weights", NULL);
    cli_result_free(&r);
    cli_rmtree(d);
}
