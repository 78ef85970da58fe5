// The optimizer flags through the real command line (host/train/optim.h): bad values and
// combinations are usage errors naming the flag (exit 2, before any data is read); a resumed
// AdamW run with its own weight decay for batch norms and clipping continues bitwise; a flag
// that contradicts the saved optimizer is refused.
#define _POSIX_C_SOURCE 200809L
#include "model/ckpt.h"
#include "tests/cli_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SMALL "--image-size 32 --batch-size 8 --test-limit 8 --seed 3 --freeze layer3"

Test(cli_optim, bad_values) {
    static const struct { const char *flag, *value, *msg; } bad[] = {
        { "--optimizer", "rmsprop", "expects one of sgd|adam|adamw" },
        { "--betas", "1,0.999", "B1,B2 with each in [0, 1)" },
        { "--betas", "0.9,1", "B1,B2 with each in [0, 1)" },
        { "--betas", "-0.1,0.9", "B1,B2 with each in [0, 1)" },
        { "--betas", "0.9", "B1,B2 with each in [0, 1)" },
        { "--betas", "0.9,0.99,0.9", "B1,B2 with each in [0, 1)" },
        { "--eps", "0", "must be above 0" },
        { "--eps", "-1e-8", "between 0 and" },
        { "--accumulate", "0", "between 1 and" },
        { "--clip-grad-norm", "0", "must be above 0" },
        { "--clip-grad-norm", "-1", "between 0 and" },
        { "--norm-weight-decay", "-0.1", "between 0 and" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cli_result r = cli_run(30, "", "train --data /nonexistent --optimizer adam %s '%s'",
                               bad[i].flag, bad[i].value);
        char what[128];
        snprintf(what, sizeof what, "train %s '%s'", bad[i].flag, bad[i].value);
        cli_expect_error(&r, 2, what, bad[i].flag, bad[i].msg, NULL);
        cli_result_free(&r);
    }
    cli_result r = cli_run(30, "", "bench --optimizer lion");
    cli_expect_error(&r, 2, "bench --optimizer lion", "--optimizer", "expects one of", NULL);
    cli_result_free(&r);
}

Test(cli_optim, flags_that_do_not_go_together) {
    static const cli_usage_case bad[] = {
        { "--nesterov --momentum 0", "--nesterov needs a momentum" },
        { "--betas 0.8,0.99", "--betas applies to --optimizer adam|adamw, not sgd" },
        { "--optimizer sgd --eps 1e-6", "--eps applies to --optimizer adam|adamw, not sgd" },
        { "--optimizer adam --momentum 0.9", "--momentum applies to --optimizer sgd, not adam" },
        { "--optimizer adamw --nesterov", "--nesterov applies to --optimizer sgd, not adamw" },
    };
    cli_expect_usage_errors("train --data /nonexistent ", bad, sizeof bad / sizeof bad[0]);
}

// The final weights file of a run, read whole (the zip's folder is the file's stem: the same
// name in two folders makes the same bytes).
static char *weights(const char *dir, const char *sub, size_t *n) {
    char path[600];
    snprintf(path, sizeof path, "%s/m.pth", cli_path(dir, sub));
    char *w = cli_read_file(path, n);
    cr_assert_not_null(w, "no %s", path);
    return w;
}

// AdamW, decay 0 for batch norms, clipping: 3 steps in one run, or 2 then a resume to 3 with
// the same command line: the same weights, bitwise. Then flags that contradict the state.
Test(cli_optim, adamw_resume_is_bitwise_and_contradictions_refused, .timeout = 300) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    cr_assert_eq(mkdir(cli_path(dir, "a"), 0755), 0);
    cr_assert_eq(mkdir(cli_path(dir, "b"), 0755), 0);
    const char *opt = "--optimizer adamw --lr 0.001 --weight-decay 0.05 "
                      "--norm-weight-decay 0 --clip-grad-norm 0.5 --epochs 2";
    cli_result r = cli_run(180, "", "train --data %s " SMALL " %s --max-steps 3 --log %s "
                           "--no-report --save %s/m.pth", data, opt, cli_path(dir, "full.jsonl"),
                           cli_path(dir, "a"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    char state[512];
    snprintf(state, sizeof state, "%s", cli_path(dir, "state.pth"));
    r = cli_run(180, "", "train --data %s " SMALL " %s --max-steps 2 --checkpoint %s", data, opt,
                state);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    r = cli_run(180, "", "train --data %s " SMALL " %s --max-steps 3 --save %s/m.pth --resume %s",
                data, opt, cli_path(dir, "b"), state);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    size_t na, nb;
    char *a = weights(dir, "a", &na), *b = weights(dir, "b", &nb);
    cr_expect(na == nb && memcmp(a, b, na) == 0, "resumed AdamW weights differ");
    free(a), free(b);
    // --log step records carry clip_grad_norm_'s total norm.
    char *log = cli_read_file(cli_path(dir, "full.jsonl"), &na);
    cr_assert_not_null(log);
    cr_expect_eq(cli_count(log, "\"grad_norm\":"), 3, "%s", log);
    free(log);
    static const struct { const char *flags, *msg; } bad[] = {
        { "--optimizer adam", "--optimizer adam contradicts the saved training state's adamw" },
        { "--clip-grad-norm 1", "--clip-grad-norm 1 contradicts the saved training state's 0.5" },
        { "--norm-weight-decay 0.1", "--norm-weight-decay 0.1 contradicts" },
        { "--betas 0.8,0.9", "--betas 0.8,0.9 contradicts the saved training state's 0.9,0.999" },
        { "--eps 1e-6", "--eps 1e-06 contradicts the saved training state's 1e-08" },
        { "--accumulate 2", "--accumulate 2 contradicts the saved training state's 1" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = cli_run(60, "", "train --data %s --resume %s %s", data, state, bad[i].flags);
        cli_expect_error(&r, 2, bad[i].flags, bad[i].msg, "state.pth", NULL);
        cli_result_free(&r);
    }
    cli_rmtree(data);
    cli_rmtree(dir);
}

// The losses of a --log, in order.
static int log_losses(const char *path, double *out, int max) {
    size_t n;
    char *log = cli_read_file(path, &n);
    cr_assert_not_null(log, "no %s", path);
    int k = 0;
    for (char *p = log; k < max && (p = strstr(p, "\"loss\":")); p += 7) out[k++] = atof(p + 7);
    free(log);
    return k;
}

// --accumulate 2 of batches of 4 with batch norms in eval mode is one step of the mean
// gradient of 8 images: the losses of --batch-size 8, within float rounding (the gradient is a
// sum of two halves). 36 images: the epoch's last group is its one batch of 4, as batch 8's
// last batch.
Test(cli_optim, accumulate_is_the_larger_batch, .timeout = 300) {
    char *data = cli_cifar_dir(36, 8), *dir = cli_tmpdir();
    const char *common = "--image-size 32 --test-limit 8 --seed 3 --bn-eval --lr 0.01 "
                         "--epochs 2 --no-report";
    cli_result r = cli_run(240, "", "train --data %s %s --batch-size 4 --accumulate 2 --log %s",
                           data, common, cli_path(dir, "acc.jsonl"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    r = cli_run(240, "", "train --data %s %s --batch-size 8 --log %s", data, common,
                cli_path(dir, "big.jsonl"));
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    double a[16], b[16];
    int na = log_losses(cli_path(dir, "acc.jsonl"), a, 16);
    int nb = log_losses(cli_path(dir, "big.jsonl"), b, 16);
    cr_assert_eq(na, 10, "2 epochs of 9 batches of 4 in groups of 2: 5 steps each");
    cr_assert_eq(nb, 10);
    for (int i = 0; i < 10; i++)
        cr_expect(fabs(a[i] - b[i]) <= 1e-5 * fabs(b[i]), "step %d: loss %.9g, batch 8's %.9g",
                  i + 1, a[i], b[i]);
    cli_rmtree(data);
    cli_rmtree(dir);
}

// A training state as cltrain wrote it before the optimizer flags: SGD's momentum buffers and
// momentum_ready, none of optimizer.step and args.optimizer/nesterov/betas/eps/...
static void make_old_state(const char *src, const char *dst) {
    static const char *const added[] = { "optimizer.step", "args.optimizer", "args.nesterov",
                                         "args.accumulate", "args.beta1", "args.beta2",
                                         "args.eps", "args.norm-weight-decay",
                                         "args.clip-grad-norm" };
    ckpt c;
    ckpt_init(&c);
    char err[1024];
    cr_assert_eq(ckpt_read(&c, src, err, sizeof err), 0, "%s", err);
    for (size_t k = 0; k < sizeof added / sizeof *added; k++) {
        int i = ckpt_find(&c, added[k]);
        cr_assert_geq(i, 0, "the state lacks '%s'", added[k]);
        free(c.e[i].name);  // renamed out of the reader's sight
        c.e[i].name = strdup(added[k] + 1);
    }
    cr_assert_eq(ckpt_write(&c, dst, err, sizeof err), 0, "%s", err);
    ckpt_free(&c);
}

// An SGD state from before the optimizer flags resumes as SGD, bitwise as the new file does.
Test(cli_optim, old_sgd_state_resumes_bitwise, .timeout = 300) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    cr_assert_eq(mkdir(cli_path(dir, "a"), 0755), 0);
    cr_assert_eq(mkdir(cli_path(dir, "b"), 0755), 0);
    const char *opt = "--lr 0.01 --momentum 0.9 --weight-decay 0.0001 --epochs 2";
    char state[512], old[512];
    snprintf(state, sizeof state, "%s", cli_path(dir, "state.pth"));
    snprintf(old, sizeof old, "%s", cli_path(dir, "old.pth"));
    cli_result r = cli_run(180, "", "train --data %s " SMALL " %s --max-steps 2 --checkpoint %s",
                           data, opt, state);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    make_old_state(state, old);
    const char *sub[2] = { "a", "b" }, *from[2] = { state, old };
    for (int k = 0; k < 2; k++) {
        r = cli_run(180, "", "train --data %s " SMALL " %s --max-steps 3 --save %s/m.pth "
                    "--resume %s", data, opt, cli_path(dir, sub[k]), from[k]);
        cr_assert_eq(r.status, 0, "%s", r.err);
        cli_result_free(&r);
    }
    size_t na, nb;
    char *a = weights(dir, "a", &na), *b = weights(dir, "b", &nb);
    cr_expect(na == nb && memcmp(a, b, na) == 0, "the old state resumed to other weights");
    free(a), free(b);
    r = cli_run(60, "", "train --data %s --resume %s --optimizer adam", data, old);
    cli_expect_error(&r, 2, "old state, adam", "--optimizer adam contradicts the saved training "
                     "state's sgd", NULL);
    cli_result_free(&r);
    cli_rmtree(data);
    cli_rmtree(dir);
}
