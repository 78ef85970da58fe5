// The training options of the tutorial's recipe through `cltrain train`: --lr-schedule with
// --warmup-epochs and --label-smoothing resume bitwise (the epoch is the schedule's position),
// the per-epoch lr and validation accuracy reach the log, --save-best keeps the best epoch's
// model, older (version 2) training states still resume, and bad values are usage errors.
// (Values against PyTorch: tests/test_schedule.c, tools/torch_schedule_parity.py.)
#define _POSIX_C_SOURCE 200809L
#include "model/ckpt.h"
#include "tests/cli_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCHED "--image-size 32 --batch-size 8 --lr 0.01 --epochs 3 --seed 2 " \
              "--lr-schedule step:1:0.5 --warmup-epochs 1 --label-smoothing 0.1 --test-limit 8"

// The step losses of a log, in order.
static int losses(const char *path, double *out, int max) {
    char *b = cli_read_file(path, NULL);
    cr_assert_not_null(b, "no log %s", path);
    int n = 0;
    for (char *p = strstr(b, "\"loss\":"); p && n < max; p = strstr(p + 1, "\"loss\":"))
        out[n++] = strtod(p + 7, NULL);
    free(b);
    return n;
}

static void expect_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = cli_read_file(a, &na), *y = cli_read_file(b, &nb);
    cr_assert(x && y, "%s or %s missing", a, b);
    cr_expect(na == nb && !memcmp(x, y, na), "%s and %s differ", a, b);
    free(x);
    free(y);
}

Test(train_schedule, resume_bitwise_log_and_save_best, .timeout = 400) {
    char *data = cli_cifar_dir(24, 8), *dir = cli_tmpdir();
    char full[512], part[512];
    snprintf(full, sizeof full, "%s", cli_path(dir, "full"));
    snprintf(part, sizeof part, "%s", cli_path(dir, "part"));
    mkdir(full, 0755);
    mkdir(part, 0755);
    cli_result r = cli_run(300, "", "train --data %s " SCHED " --save-best %s/best.pth --log "
                           "%s/log.jsonl --save %s/final.pth", data, full, full, full);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_eq(cli_count(r.out, "validation accuracy on 8 images"), 3, "%s", r.out);
    cr_expect_not_null(strstr(r.out, "(best so far)"), "%s", r.out);
    cli_result_free(&r);
    char *log = cli_read_file(cli_path(full, "log.jsonl"), NULL);
    cr_assert_not_null(log);
    // Warm-up epoch at lr / 100, then StepLR(1, 0.5) from the warm-up's end.
    cr_expect_not_null(strstr(log, "{\"epoch\":1,\"lr\":0.0001}"), "%s", log);
    cr_expect_not_null(strstr(log, "{\"epoch\":2,\"lr\":0.01}"), "%s", log);
    cr_expect_not_null(strstr(log, "{\"epoch\":3,\"lr\":0.005}"), "%s", log);
    cr_expect_not_null(strstr(log, "\"step\":9,\"loss\":"), "%s", log);
    cr_expect_eq(cli_count(log, "\"val_accuracy\":"), 3, "%s", log);
    free(log);
    cr_expect(cli_exists(cli_path(full, "best.pth")) && cli_exists(cli_path(full, "best.pth.json")));
    // Stopped mid epoch 2 (and again at the end of epoch 2), then resumed: the same bits.
    r = cli_run(300, "", "train --data %s " SCHED " --save-best %s/best.pth --log %s/log.jsonl "
                "--checkpoint %s/state.pth --max-steps 4", data, part, part, part);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    r = cli_run(300, "", "train --data %s " SCHED " --save-best %s/best.pth --log %s/log.jsonl "
                "--checkpoint %s/state.pth --max-steps 6 --resume %s/state.pth", data, part, part,
                part, part);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    r = cli_run(300, "", "train --data %s " SCHED " --save-best %s/best.pth --log %s/log.jsonl "
                "--checkpoint %s/state.pth --save %s/final.pth --resume %s/state.pth", data, part,
                part, part, part, part);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    double lf[16], lp[16];
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/log.jsonl", full);
    snprintf(b, sizeof b, "%s/log.jsonl", part);
    int nf = losses(a, lf, 16), np = losses(b, lp, 16);
    cr_assert_eq(nf, 9);
    cr_assert_eq(np, 9);
    for (int i = 0; i < 9; i++) cr_expect_eq(lf[i], lp[i], "step %d: %.9g vs %.9g", i + 1, lf[i], lp[i]);
    snprintf(a, sizeof a, "%s/final.pth", full);
    snprintf(b, sizeof b, "%s/final.pth", part);
    expect_same_file(a, b);
    snprintf(a, sizeof a, "%s/best.pth", full);
    snprintf(b, sizeof b, "%s/best.pth", part);
    expect_same_file(a, b);
    // A contradicting schedule is refused, naming both.
    r = cli_run(60, "", "train --data %s " SCHED " --lr-schedule cosine --resume %s/state.pth",
                data, part);
    cli_expect_error(&r, 2, "--lr-schedule cosine", "contradicts", "step:1:0.5", NULL);
    cli_result_free(&r);
    cli_rmtree(data);
    cli_rmtree(dir);
}

// A version 2 state (before schedules) resumes as a constant-lr run without smoothing.
Test(train_schedule, version2_state_resumes, .timeout = 300) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    char state[512];
    snprintf(state, sizeof state, "%s", cli_path(dir, "state.pth"));
    cli_result r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 8 --epochs 2 "
                           "--max-steps 1 --test-limit 8 --checkpoint %s", data, state);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    ckpt c;
    ckpt_init(&c);
    char err[512];
    cr_assert_eq(ckpt_read(&c, state, err, sizeof err), 0, "%s", err);
    static const char *v3[] = {"args.lr-schedule", "args.warmup-epochs", "schedule_epochs",
                               "args.label-smoothing", "best_accuracy"};
    for (int i = 0; i < 5; i++) {  // renamed out of the way: keys a version 2 file lacks
        int k = ckpt_find(&c, v3[i]);
        cr_assert_geq(k, 0, "no %s", v3[i]);
        free(c.e[k].name);
        char name[64];
        snprintf(name, sizeof name, "unused.%d", i);
        c.e[k].name = strdup(name);
    }
    int f = ckpt_find(&c, "cltrain.format");
    free(c.e[f].sval);
    c.e[f].sval = strdup("cltrain-training-state-2");
    cr_assert_eq(ckpt_write(&c, cli_path(dir, "v2.pth"), err, sizeof err), 0, "%s", err);
    ckpt_free(&c);
    r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 8 --epochs 2 "
                "--test-limit 8 --log %s --resume %s", data, cli_path(dir, "v2.jsonl"),
                cli_path(dir, "v2.pth"));
    cr_expect_eq(r.status, 0, "a version 2 state does not resume:\n%s", r.err);
    cli_result_free(&r);
    char *log = cli_read_file(cli_path(dir, "v2.jsonl"), NULL);
    cr_expect(log && strstr(log, "{\"epoch\":2,\"lr\":0.001}"), "%s", log ? log : "");
    free(log);
    r = cli_run(30, "", "train --data %s --lr-schedule step:0:1", data);
    cli_expect_error(&r, 2, "--lr-schedule", "step:0:1", NULL);
    cli_result_free(&r);
    r = cli_run(30, "", "train --data %s --label-smoothing 1.5", data);
    cli_expect_error(&r, 2, "--label-smoothing", NULL);
    cli_result_free(&r);
    cli_rmtree(data);
    cli_rmtree(dir);
}
