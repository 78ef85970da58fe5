// train --early-stop N through the binary: a run whose validation accuracy cannot improve
// (lr 0 and batch norms in eval mode: the model never changes) stops after N + 1 epochs,
// says which epoch was best and keeps its model with --save-best; without validation data
// (a test split is not one) or with N < 1 it is a one-line usage error naming the flag.
#define _POSIX_C_SOURCE 200809L
#include "tests/cli_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TINY "--image-size 32 --batch-size 2 --workers 2 --seed 1"

// A 3x2 PPM with pixels from `seed`.
static void es_ppm(const char *dir, const char *name, int seed) {
    char data[11 + 18];
    memcpy(data, "P6\n3 2\n255\n", 11);
    for (int i = 0; i < 18; i++) data[11 + i] = (char)(seed * 37 + i * 11);
    cli_write_file(dir, name, data, sizeof data);
}

// DIR/train/{a,b}/ with three PPMs each and DIR/<held>/{a,b}/ with one each.
static char *es_folder(const char *held) {
    char *d = cli_tmpdir(), sub[64];
    const char *dirs[] = { "train", "train/a", "train/b" };
    for (int i = 0; i < 3; i++) mkdir(cli_path(d, dirs[i]), 0755);
    mkdir(cli_path(d, held), 0755);
    for (int c = 0; c < 2; c++) {
        snprintf(sub, sizeof sub, "%s/%c", held, 'a' + c);
        mkdir(cli_path(d, sub), 0755);
        snprintf(sub, sizeof sub, "%s/%c/9.ppm", held, 'a' + c);
        es_ppm(d, sub, 90 + c);
        for (int i = 0; i < 3; i++) {
            snprintf(sub, sizeof sub, "train/%c/%d.ppm", 'a' + c, i);
            es_ppm(d, sub, 10 * c + i);
        }
    }
    return d;
}

Test(early_stop, plateau_stops_after_n_plus_one_epochs, .timeout = 300) {
    char *d = es_folder("val"), *out = cli_tmpdir();
    char best[512];
    snprintf(best, sizeof best, "%s", cli_path(out, "best.pth"));
    cli_result r = cli_run(240, "", "train --data %s " TINY " --epochs 10 --lr 0 --bn-eval "
                           "--early-stop 2 --save-best %s --log %s", d, best,
                           cli_path(out, "log.jsonl"));
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_eq(cli_count(r.out, "validation accuracy on 2 images"), 3, "N + 1 epochs:\n%s",
                 r.out);
    cr_expect_null(strstr(r.out, "[Epoch 4"), "no fourth epoch:\n%s", r.out);
    cr_expect_eq(cli_count(r.out, "(best so far)"), 1, "%s", r.out);
    cr_expect_not_null(strstr(r.out, "Early stop after epoch 3: no better validation accuracy "
                                     "for 2 epochs; the best, "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, ", was at epoch 1 (its model is in "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "Finished Training"), "%s", r.out);
    cr_expect(cli_exists(best), "--save-best kept the best model");
    cli_result_free(&r);
    char *log = cli_read_file(cli_path(out, "log.jsonl"), NULL);
    cr_assert_not_null(log);
    cr_expect_eq(cli_count(log, "\"val_accuracy\":"), 3, "%s", log);
    cr_expect_not_null(strstr(log, "\"test_accuracy\":"), "%s", log);
    free(log);
    // Not reached: an improving run (or one with more patience) trains every epoch.
    r = cli_run(240, "", "train --data %s " TINY " --epochs 2 --lr 0 --bn-eval --early-stop 5",
                d);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_eq(cli_count(r.out, "validation accuracy on 2 images"), 2, "%s", r.out);
    cr_expect_null(strstr(r.out, "Early stop"), "%s", r.out);
    cli_result_free(&r);
    cli_rmtree(out);
    cli_rmtree(d);
}

Test(early_stop, val_split_is_validation_data, .timeout = 300) {
    char *d = es_folder("val");
    cli_result r = cli_run(240, "", "train --data %s/train " TINY " --val-split 0.34 --epochs 6 "
                           "--lr 0 --bn-eval --early-stop 1", d);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_eq(cli_count(r.out, "validation accuracy on "), 2, "%s", r.out);
    cr_expect_not_null(strstr(r.out, "Early stop after epoch 2: no better validation accuracy "
                                     "for 1 epoch; the best, "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "was at epoch 1\n"), "%s", r.out);
    cli_result_free(&r);
    cli_rmtree(d);
}

Test(early_stop, bad_input_is_a_usage_error, .timeout = 120) {
    char *test_only = es_folder("test"), *cifar = cli_cifar_dir(8, 4);
    const struct { const char *data, *args, *msg; } bad[] = {
        { test_only, "--early-stop 2", "--early-stop 2 needs validation data" },
        { cifar, "--early-stop 1", "--early-stop 1 needs validation data" },
        { cifar, "--early-stop 0", "--early-stop must be between 1 and" },
        { cifar, "--early-stop -3", "--early-stop must be between 1 and" },
        { cifar, "--early-stop x", "--early-stop" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cli_result r = cli_run(60, "", "train --data %s " TINY " --epochs 2 %s", bad[i].data,
                               bad[i].args);
        cli_expect_error(&r, 2, bad[i].args, bad[i].msg, NULL);
        cr_expect_null(strstr(r.err, "usage:"), "%s: one line, no usage:\n%s", bad[i].args,
                       r.err);
        cli_result_free(&r);
    }
    cli_rmtree(cifar);
    cli_rmtree(test_only);
}

// The validation after an epoch and the final test share one evaluation path: an image of the
// validation split that fails to decode mid-run is one error line naming it (exit 1, no
// "Finished Training"), and nothing leaks on the way out (its confusion matrix used to, which
// the ASan run of this test catches).
Test(early_stop, validation_that_fails_is_one_error, .timeout = 180) {
    char *d = es_folder("val");
    cli_write_cut_jpeg(d, "val/b/cut.jpg");
    cli_result r = cli_run(120, "", "train --data %s " TINY " --epochs 3 --early-stop 2", d);
    cli_expect_error(&r, 1, "val/b/cut.jpg", "val/b/cut.jpg", NULL);
    cli_result_free(&r);
    cli_rmtree(d);
}
