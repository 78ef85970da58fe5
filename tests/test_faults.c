// Faults during training, on real small runs of ./cltrain (32x32 images, batch 8): a
// non-finite loss keeps earlier files, SIGINT/SIGTERM save a resumable state, kill -9 at random
// moments (also inside checkpoint writes) leaves only whole checkpoints, and an unusable kernel
// cache folder costs a warning, not the run.
#define _POSIX_C_SOURCE 200809L
#include "model/ckpt.h"
#include "tests/cli_run.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMALL "--image-size 32 --batch-size 8 --test-limit 8"

// Reads a training state; returns its global_step, or -1 (with a test failure) when it does
// not load. With check_finite, every float tensor must be finite.
static long load_state(const char *path, int check_finite) {
    ckpt c;
    ckpt_init(&c);
    char err[1024];
    if (ckpt_read(&c, path, err, sizeof err) != 0) {
        cr_expect_fail("%s does not load: %s", path, err);
        return -1;
    }
    int f = ckpt_find(&c, "cltrain.format"), s = ckpt_find(&c, "global_step");
    cr_expect(f >= 0 && c.e[f].kind == CKPT_STRING &&
              !strcmp(c.e[f].sval, "cltrain-training-state-3"), "%s: not a training state", path);
    long step = s >= 0 && c.e[s].kind == CKPT_INT ? (long)c.e[s].ival : -1;
    cr_expect_geq(step, 0, "%s: no global_step", path);
    for (int i = 0; check_finite && i < c.n; i++) {
        const ckpt_entry *e = &c.e[i];
        if (e->kind != CKPT_TENSOR || e->dtype != CKPT_F32) continue;
        const float *x = e->data;
        for (int64_t k = 0; k < e->numel; k++)
            if (!isfinite(x[k])) {
                cr_expect_fail("%s: %s[%lld] = %g was saved", path, e->name, (long long)k, x[k]);
                break;
            }
    }
    ckpt_free(&c);
    return step;
}

static int file_equals(const char *path, const char *text) {
    size_t n = 0;
    char *s = cli_read_file(path, &n);
    int same = s && n == strlen(text) && !memcmp(s, text, n);
    free(s);
    return same;
}

// Lines of `path` containing `part`.
static int count_lines(const char *path, const char *part) {
    char *s = cli_read_file(path, NULL);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, part)); p++) n++;
    free(s);
    return n;
}

// (a) A diverging run stops at the first non-finite loss, gradient or weight with exit 1, the
// step and a hint, and leaves the --save and --checkpoint files it found as they were.
Test(faults, non_finite_loss_keeps_earlier_files, .timeout = 180) {
    char *data = cli_cifar_dir(64, 8), *dir = cli_tmpdir();
    cli_write_file(dir, "model.pth", "earlier model", 13);
    cli_write_file(dir, "state.pth", "earlier state", 13);
    cli_result r = cli_run(120, "", "train --data %s " SMALL " --lr 1e6 --save %s --checkpoint %s",
                           data, cli_path(dir, "model.pth"), cli_path(dir, "state.pth"));
    cli_expect_error(&r, 1, "lr 1e6", "non-finite", "at step ", "try a lower --lr", NULL);
    cli_result_free(&r);
    cr_expect(file_equals(cli_path(dir, "model.pth"), "earlier model"), "--save file overwritten");
    cr_expect(file_equals(cli_path(dir, "state.pth"), "earlier state"), "--checkpoint overwritten");
    cr_expect_eq(cli_count_entries(dir, ".tmp"), 0, "no temp file left behind");

    // Saving every step up to the failure: what is left is the last state with finite weights
    // (a finite gradient times a large lr can overflow the weights: that step is not saved).
    r = cli_run(120, "", "train --data %s " SMALL " --lr 1e4 --checkpoint %s --checkpoint-every 1",
                data, cli_path(dir, "every.pth"));
    cli_expect_error(&r, 1, "lr 1e4", "non-finite", "at step ", "try a lower --lr", NULL);
    const char *at = strstr(r.err, "at step ");
    long failed = at ? atol(at + 8) : 0;
    cr_expect_gt(failed, 1, "diverges after a few steps:\n%s", r.err);
    cli_result_free(&r);
    if (failed > 1)
        cr_expect_eq(load_state(cli_path(dir, "every.pth"), 1), failed - 1,
                     "the checkpoint is the one of the step before the failure");
    cli_rmtree(data);
    cli_rmtree(dir);
}

// (b) SIGINT / SIGTERM: the step under way finishes, the state is saved, exit 130 / 143, and
// training resumes from it. A second signal ends the process at once, files still whole.
static void interrupt_and_resume(int sig, int twice) {
    char *data = cli_cifar_dir(64, 8), *dir = cli_tmpdir();
    char state[1024], log[1024];
    snprintf(state, sizeof state, "%s", cli_path(dir, "state.pth"));
    snprintf(log, sizeof log, "%s", cli_path(dir, "log"));
    const char *argv[] = { "train", "--data", data, "--image-size", "32", "--batch-size", "8",
                           "--test-limit", "8", "--epochs", "100", "--checkpoint", state,
                           "--log", log, NULL };
    pid_t pid = cli_spawn(dir, argv);
    double t0 = cli_now();
    while (count_lines(log, "\"step\":") < 2 && cli_now() - t0 < 120) cli_sleep(0.01);
    cr_assert_geq(count_lines(log, "\"step\":"), 2, "no training steps within 120 s");
    kill(pid, sig);
    if (twice) {
        cli_sleep(0.02 * (rand() % 20));
        kill(pid, sig);
    }
    int st = cli_wait(pid, 120);
    char *err = cli_read_file(cli_path(dir, "err.txt"), NULL);
    cr_expect_eq(st, 128 + sig, "exit status %d after signal %d:\n%s", st, sig, err);
    cr_expect_leq(cli_count_entries(dir, ".tmp"), twice ? 1 : 0, "temp files left behind");
    if (twice) {  // whatever is there is whole
        if (cli_exists(state)) load_state(state, 0);
        free(err);
        cli_rmtree(data);
        cli_rmtree(dir);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "interrupted by signal %d after step ", sig);
    cr_expect(err && strstr(err, msg) && strstr(err, "training state saved to"),
              "the message says it saved:\n%s", err);
    free(err);
    long steps = count_lines(log, "\"step\":");
    cr_expect_eq(load_state(state, 1), steps, "the state holds every finished step");
    cli_result r = cli_run(120, "", "train --data %s --resume %s --max-steps %ld --checkpoint %s "
                                    "--log %s", data, state, steps + 1, state, log);
    cr_expect_eq(r.status, 0, "resume failed:\n%s", r.err);
    cr_expect(strstr(r.out, "Accuracy of the network") != NULL, "%s", r.out);
    cli_result_free(&r);
    cr_expect_eq(count_lines(log, "\"step\":"), steps + 1, "one more step after the resume");
    cr_expect_eq(load_state(state, 0), steps + 1);
    cli_rmtree(data);
    cli_rmtree(dir);
}

Test(faults, sigint_saves_and_resumes, .timeout = 300) { interrupt_and_resume(SIGINT, 0); }
Test(faults, sigterm_saves_and_resumes, .timeout = 300) { interrupt_and_resume(SIGTERM, 0); }
Test(faults, second_signal_exits_at_once, .timeout = 300) { interrupt_and_resume(SIGINT, 1); }

// (c) kill -9 at random moments of a run that saves after every step, half of the kills aimed
// at checkpoint writes (the temp file exists). After each kill the target file is a whole,
// loadable state at least as new as the one before, at most one temp file is left (the one
// being written), and the next run resumes from it; the last run resumes to the end.
enum { KILLS = 22 };

Test(faults, kill9_leaves_whole_checkpoints, .timeout = 300) {
    char *data = cli_cifar_dir(64, 8), *dir = cli_tmpdir();
    char state[1024];
    snprintf(state, sizeof state, "%s", cli_path(dir, "state.pth"));
    srand(12345);
    long last_step = -1;
    int during_save = 0, kills = 0;
    double t0 = cli_now();
    for (int i = 0; kills < KILLS; i++) {
        cr_assert_lt(i, 4 * KILLS, "runs keep ending on their own");
        const char *fresh[] = { "train", "--data", data, "--image-size", "32", "--batch-size", "8",
                                "--freeze", "backbone", "--epochs", "1000", "--checkpoint", state,
                                "--checkpoint-every", "1", NULL };
        const char *resume[] = { "train", "--data", data, "--resume", state, "--epochs", "1000",
                                 "--checkpoint", state, "--checkpoint-every", "1", NULL };
        pid_t pid = cli_spawn(dir, cli_exists(state) ? resume : fresh);
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s/.state.pth.tmp.%ld", dir, (long)pid);
        int aim_at_save = i % 2;
        double start = cli_now();
        if (aim_at_save) {  // let 0-2 writes complete, strike within the next one
            for (int saves = rand() % 3; saves >= 0 && cli_now() - start < 60; saves--) {
                while (!cli_exists(tmp) && cli_now() - start < 60) cli_sleep(0.001);
                while (saves && cli_exists(tmp) && cli_now() - start < 60) cli_sleep(0.001);
            }
            cli_sleep(0.001 * (rand() % 30));
        } else {  // anywhere: start-up, reading the state, a step, a write
            cli_sleep(0.05 + 0.001 * (rand() % 3000));
        }
        kill(pid, SIGKILL);
        int st = cli_wait(pid, 60);
        if (st != 128 + SIGKILL) {  // it ended by itself: only a failure would do that
            char *err = cli_read_file(cli_path(dir, "err.txt"), NULL);
            cr_assert_fail("run %d ended with status %d before the kill:\n%s", i, st, err);
        }
        kills++;
        if (cli_exists(tmp)) during_save++;
        cr_expect_leq(cli_count_entries(dir, ".tmp."), 1, "temp files pile up after kill %d", i);
        if (cli_exists(state)) {
            long step = load_state(state, 0);
            cr_expect_geq(step, last_step, "kill %d: the checkpoint went back in time", i);
            last_step = step;
        }
    }
    cr_expect_geq(during_save, 3, "only %d of %d kills landed inside a checkpoint write",
                  during_save, KILLS);
    cr_assert_geq(last_step, 3, "the runs made too little progress between kills");
    cli_result r = cli_run(120, "", "train --data %s --resume %s --max-steps %ld --checkpoint %s",
                           data, state, last_step + 1, state);
    cr_expect_eq(r.status, 0, "the last checkpoint does not resume:\n%s", r.err);
    cli_result_free(&r);
    cr_expect_eq(load_state(state, 1), last_step + 1);
    cr_expect_eq(cli_count_entries(dir, ".tmp."), 0, "a stale temp file survived a good save");
    fprintf(stderr, "faults::kill9: %d kills (%d inside a checkpoint write), last step %ld, "
                    "%.1f s\n", kills, during_save, last_step, cli_now() - t0);
    cli_rmtree(data);
    cli_rmtree(dir);
}

// (d) A kernel cache folder that cannot be created (XDG_CACHE_HOME below a regular file: as
// root, permissions would not stop us) costs a warning, not the run. pocl keeps its own cache
// under XDG_CACHE_HOME too and finds no device without one: POCL_CACHE_DIR keeps it where it
// was (warm, so the run stays short).
Test(faults, unusable_kernel_cache_warns, .timeout = 180) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    cli_write_file(dir, "file", "x", 1);
    char pocl[1024];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (getenv("POCL_CACHE_DIR")) snprintf(pocl, sizeof pocl, "%s", getenv("POCL_CACHE_DIR"));
    else if (xdg && *xdg) snprintf(pocl, sizeof pocl, "%s/pocl/kcache", xdg);
    else snprintf(pocl, sizeof pocl, "%s/.cache/pocl/kcache", home && *home ? home : dir);
    char env[2400];
    snprintf(env, sizeof env, "CLTRAIN_NO_CACHE= POCL_CACHE_DIR='%s' XDG_CACHE_HOME=%s/file/cache",
             pocl, dir);
    cli_result r = cli_run(120, env, "train --data %s " SMALL " --max-steps 1", data);
    cr_expect_eq(r.status, 0, "training failed:\n%s", r.err);
    cr_expect(strstr(r.err, "cltrain: warning: kernel cache folder") &&
              strstr(r.err, "continuing without the cache"), "no warning:\n%s", r.err);
    cr_expect(strstr(r.out, "Finished Training") != NULL, "%s", r.out);
    cli_result_free(&r);
    cli_rmtree(data);
    cli_rmtree(dir);
}
