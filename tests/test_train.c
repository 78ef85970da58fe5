// End-to-end tests of `cltrain train` and `cltrain eval` on small generated data sets: the
// seed's output lines, a loss that falls, bitwise determinism, resume equal to an
// uninterrupted run (shuffling and augmentation on, across an epoch boundary), eval and its
// predictions CSV, partial retraining.
#define _POSIX_C_SOURCE 200809L
#include "model/ckpt.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char *tmpdir(void) {
    char tmpl[] = "/tmp/cltrain-train-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d);
    return strdup(d);
}

// A learnable CIFAR-10-format set: class k images are bright in one channel and a region,
// plus noise, so a few steps of SGD visibly lower the loss.
static void write_cifar(const char *dir, const char *name, int n, unsigned seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    unsigned s = seed;
    unsigned char rec[3073];
    for (int i = 0; i < n; i++) {
        int label = i % 4;
        rec[0] = (unsigned char)label;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++) {
                s = s * 1103515245u + 12345u;
                int v = (int)((s >> 16) % 64);
                int y = p / 32, x = p % 32;
                if (c == label % 3 && ((label < 3) ? (y < 16) : (x < 16))) v += 150;
                rec[1 + c * 1024 + p] = (unsigned char)v;
            }
        cr_assert_eq(fwrite(rec, 1, sizeof rec, f), sizeof rec);
    }
    fclose(f);
}

static char *make_data(int ntrain, int ntest) {
    char *d = tmpdir();
    write_cifar(d, "data_batch_1.bin", ntrain, 1);
    write_cifar(d, "test_batch.bin", ntest, 2);
    return d;
}

// Runs a shell command line; returns its exit status and its combined output in out.
static int run(char *out, size_t outlen, const char *fmt, ...) {
    char cmd[4096], line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    // make test-asan runs the sanitized binary: ./cltrain -> $CLTRAIN_BIN.
    const char *bin = getenv("CLTRAIN_BIN");
    if (!bin || !*bin) bin = "./cltrain";
    size_t k = 0, blen = strlen(bin);
    for (const char *p = line; *p && k + blen + 1 < sizeof cmd;) {
        if (!strncmp(p, "./cltrain", 9)) {
            memcpy(cmd + k, bin, blen);
            k += blen;
            p += 9;
        } else {
            cmd[k++] = *p++;
        }
    }
    cmd[k] = 0;
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    if (len) *len = got;
    return b;
}

// The "loss" values of a --log file, in order.
static int log_losses(const char *path, double *out, int max) {
    char *b = slurp(path, NULL);
    cr_assert_not_null(b, "no log %s", path);
    int n = 0;
    for (char *p = strstr(b, "\"loss\":"); p && n < max; p = strstr(p + 1, "\"loss\":"))
        out[n++] = strtod(p + 7, NULL);
    free(b);
    return n;
}

static const char *common = "--image-size 32 --batch-size 8 --lr 0.003 --device cpu";

Test(train, seed_lines_and_falling_loss, .timeout = 300) {
    char *d = make_data(64, 16);
    static char out[1 << 16];
    int rc = run(out, sizeof out,
                 "./cltrain train --data %s %s --epochs 3 --print-every 4 --seed 5 "
                 "--log %s/log.jsonl --save %s/m.pth", d, common, d, d);
    cr_assert_eq(rc, 0, "train failed: %s", out);
    cr_expect(strstr(out, "[Epoch 1, Batch 4] loss: ") != NULL, "%s", out);
    cr_expect(strstr(out, "[Epoch 3, Batch 8] loss: ") != NULL, "%s", out);
    cr_expect(strstr(out, "Finished Training\n") != NULL, "%s", out);
    cr_expect(strstr(out, "Accuracy of the network on the 16 test images: ") != NULL, "%s", out);
    double l[64];
    char path[512];
    snprintf(path, sizeof path, "%s/log.jsonl", d);
    int n = log_losses(path, l, 64);
    cr_assert_eq(n, 24, "one log line per step (3 epochs x 8 batches), got %d", n);
    double first = 0, last = 0;  // mean loss of the first and of the last epoch
    for (int i = 0; i < 8; i++) { first += l[i] / 8; last += l[16 + i] / 8; }
    cr_expect(last < 0.7 * first, "loss falls: first epoch %.4f, last epoch %.4f", first, last);
    char *log = slurp(path, NULL);
    cr_expect(strstr(log, "\"test_accuracy\":") != NULL, "evaluation logged");
    // Each epoch opens with its lr (the schedule's value), then one line per step.
    cr_expect(strstr(log, "{\"epoch\":1,\"lr\":0.003}\n{\"epoch\":1,\"step\":1,\"loss\":") == log,
              "%.80s", log);
    free(log);
    // The saved model loads back and evaluates to the same accuracy line.
    const char *acc = strstr(out, "Accuracy of the network");
    char want[128];
    snprintf(want, sizeof want, "%.*s", (int)(strchr(acc, '\n') - acc), acc);
    static char out2[1 << 16];
    rc = run(out2, sizeof out2, "./cltrain eval --data %s --weights %s/m.pth --image-size 32 "
                                "--batch-size 5 --predictions %s/p.csv --device cpu", d, d, d);
    cr_assert_eq(rc, 0, "%s", out2);
    cr_expect(strstr(out2, want) != NULL, "eval agrees with train: want '%s' in %s", want, out2);
    cr_expect(strstr(out2, "Accuracy of airplane") != NULL, "per-class lines: %s", out2);
    snprintf(path, sizeof path, "%s/p.csv", d);
    char *csv = slurp(path, NULL);
    cr_assert_not_null(csv);
    cr_expect(strncmp(csv, "index,label,pred,logit_0,logit_1,logit_2,logit_3\n", 48) == 0,
              "%.60s", csv);
    int rows = 0;
    for (char *p = csv; *p; p++) rows += *p == '\n';
    cr_expect_eq(rows, 17, "header + 16 rows");
    free(csv);
    free(d);
}

static void expect_same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    cr_assert(x && y, "missing %s or %s", a, b);
    cr_expect(la == lb && memcmp(x, y, la) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

static void expect_same_weights(const char *a, const char *b) {
    ckpt x, y;
    ckpt_init(&x);
    ckpt_init(&y);
    char err[512];
    cr_assert_eq(ckpt_read(&x, a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ckpt_read(&y, b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(x.n, y.n);
    for (int i = 0; i < x.n; i++) {
        cr_assert_str_eq(x.e[i].name, y.e[i].name);
        size_t bytes = (size_t)x.e[i].numel * (x.e[i].dtype == CKPT_F32 ? 4 : 8);
        cr_expect(x.e[i].numel == y.e[i].numel &&
                  memcmp(x.e[i].data, y.e[i].data, bytes) == 0, "%s differs", x.e[i].name);
    }
    ckpt_free(&x);
    ckpt_free(&y);
}

Test(train, deterministic_with_seed, .timeout = 300) {
    char *d = make_data(24, 8);
    static char out[1 << 16];
    for (int r = 0; r < 2; r++) {
        int rc = run(out, sizeof out, "mkdir -p %s/r%d && ./cltrain train --data %s %s "
                     "--epochs 2 --seed 11 --augment flip-crop --log %s/r%d/log.jsonl "
                     "--save %s/r%d/m.pth", d, r, d, common, d, r, d, r);
        cr_assert_eq(rc, 0, "%s", out);
    }
    char a[512], b[512];
    double la[16], lb[16];
    snprintf(a, sizeof a, "%s/r0/log.jsonl", d);
    snprintf(b, sizeof b, "%s/r1/log.jsonl", d);
    int na = log_losses(a, la, 16), nb = log_losses(b, lb, 16);
    cr_assert_eq(na, 6);
    cr_assert_eq(nb, 6);
    cr_expect_eq(memcmp(la, lb, sizeof(double) * 6), 0, "same seed, same step losses");
    snprintf(a, sizeof a, "%s/r0/m.pth", d);
    snprintf(b, sizeof b, "%s/r1/m.pth", d);
    expect_same_file(a, b);
    // Another seed shuffles, augments and initialises differently.
    int rc = run(out, sizeof out, "./cltrain train --data %s %s --epochs 1 --seed 12 "
                 "--augment flip-crop --log %s/other.jsonl", d, common, d);
    cr_assert_eq(rc, 0, "%s", out);
    snprintf(b, sizeof b, "%s/other.jsonl", d);
    nb = log_losses(b, lb, 16);
    cr_expect(nb == 3 && lb[0] != la[0], "another seed gives another first loss");
    free(d);
}

// Stopped at --max-steps 5 (mid epoch 2 of 3 batches each), resumed to the end: the same
// later step losses and the same final weights as one uninterrupted run.
Test(train, resume_is_bitwise_identical, .timeout = 300) {
    char *d = make_data(24, 8);
    static char out[1 << 16];
    const char *flags = "--epochs 3 --seed 4 --augment flip-crop --momentum 0.9 "
                        "--weight-decay 0.0005";
    int rc = run(out, sizeof out, "./cltrain train --data %s %s %s --log %s/full.jsonl "
                 "--save %s/full.pth", d, common, flags, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    rc = run(out, sizeof out, "./cltrain train --data %s %s %s --max-steps 5 --checkpoint "
             "%s/state.pth --log %s/part.jsonl", d, common, flags, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    // The training state is a torch-loadable file of tensors, ints and strings.
    ckpt st;
    ckpt_init(&st);
    char err[512], path[512];
    snprintf(path, sizeof path, "%s/state.pth", d);
    cr_assert_eq(ckpt_read(&st, path, err, sizeof err), 0, "%s", err);
    int k = ckpt_find(&st, "global_step");
    cr_assert(k >= 0 && st.e[k].ival == 5);
    k = ckpt_find(&st, "epoch");
    cr_expect(k >= 0 && st.e[k].ival == 1, "stopped in epoch 2 (index 1)");
    ckpt_free(&st);
    // A contradicting flag is refused.
    rc = run(out, sizeof out, "./cltrain train --data %s --resume %s/state.pth --batch-size 4 "
             "--device cpu", d, d);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strstr(out, "--batch-size 4 contradicts") != NULL, "%s", out);
    rc = run(out, sizeof out, "./cltrain train --data %s --device cpu --resume %s/state.pth "
             "--log %s/part.jsonl --save %s/resumed.pth", d, d, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    double lf[16], lp[16];
    snprintf(path, sizeof path, "%s/full.jsonl", d);
    int nf = log_losses(path, lf, 16);
    snprintf(path, sizeof path, "%s/part.jsonl", d);
    int np = log_losses(path, lp, 16);
    cr_assert_eq(nf, 9);
    cr_assert_eq(np, 9, "5 steps, then 4 more after the resume");
    for (int i = 0; i < 9; i++) cr_expect_eq(lf[i], lp[i], "step %d: %.9g vs %.9g", i + 1, lf[i], lp[i]);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/full.pth", d);
    snprintf(b, sizeof b, "%s/resumed.pth", d);
    expect_same_weights(a, b);
    free(d);
}

Test(train, idx_gz_data_and_freeze, .timeout = 300) {
    char *d = tmpdir();
    // Fashion-MNIST-style IDX files, gzipped: 16 train and 8 test images of 28x28.
    const char *names[4] = { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" };
    for (int f = 0; f < 4; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", d, names[f]);
        gzFile g = gzopen(path, "wb");
        cr_assert_not_null(g);
        int n = f < 2 ? 16 : 8, images = f % 2 == 0;
        unsigned char hdr[16] = { 0, 0, 8, images ? 3 : 1, 0, 0, 0, (unsigned char)n,
                                  0, 0, 0, 28, 0, 0, 0, 28 };
        gzwrite(g, hdr, images ? 16 : 8);
        for (int i = 0; i < n; i++) {
            if (images) {
                unsigned char px[784];
                for (int p = 0; p < 784; p++) px[p] = (unsigned char)((p * 7 + i * 31) % 256);
                gzwrite(g, px, sizeof px);
            } else {
                unsigned char lab = (unsigned char)(i % 10);
                gzwrite(g, &lab, 1);
            }
        }
        gzclose(g);
    }
    static char out[1 << 16];
    int rc = run(out, sizeof out, "./cltrain train --data %s %s --epochs 1 --freeze layer3 "
                 "--bn-eval --save %s/f.pth --normalize imagenet", d, common, d);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "Accuracy of the network on the 8 test images") != NULL, "%s", out);
    // --freeze backbone from those weights: only fc changes.
    rc = run(out, sizeof out, "./cltrain train --data %s %s --epochs 1 --freeze backbone "
             "--weights %s/f.pth --save %s/g.pth", d, common, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    ckpt a, b;
    ckpt_init(&a);
    ckpt_init(&b);
    char err[512], pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/f.pth", d);
    snprintf(pb, sizeof pb, "%s/g.pth", d);
    cr_assert_eq(ckpt_read(&a, pa, err, sizeof err), 0);
    cr_assert_eq(ckpt_read(&b, pb, err, sizeof err), 0);
    for (int i = 0; i < a.n; i++) {
        size_t bytes = (size_t)a.e[i].numel * (a.e[i].dtype == CKPT_F32 ? 4 : 8);
        int same = memcmp(a.e[i].data, b.e[i].data, bytes) == 0;
        if (!strncmp(a.e[i].name, "fc.", 3)) cr_expect(!same, "%s trains", a.e[i].name);
        else cr_expect(same, "%s is frozen", a.e[i].name);
    }
    ckpt_free(&a);
    ckpt_free(&b);
    free(d);
}

// Resume the way torchvision's reference scripts do: rerun the very command line (here with
// --weights, which the state then overrides) with --resume appended. The run stopped at
// --max-steps 4 (mid epoch 2) ends with bitwise the weights and step losses of a run that was
// never stopped; rerunning it once more trains nothing.
Test(train, resume_by_rerunning_the_same_command, .timeout = 300) {
    char *d = make_data(24, 8);
    static char out[1 << 16];
    int rc = run(out, sizeof out, "./cltrain train --data %s %s --max-steps 1 --save %s/init.pth",
                 d, common, d);
    cr_assert_eq(rc, 0, "%s", out);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./cltrain train --data %s %s --epochs 2 --seed 4 --augment "
             "flip-crop --weight-decay 0.0005 --weights %s/init.pth --checkpoint %%s/state.pth "
             "--log %%s/log.jsonl --save %%s/final.pth", d, common, d);
    char full[600], part[600];
    snprintf(full, sizeof full, "%s/full", d);
    snprintf(part, sizeof part, "%s/part", d);
    mkdir(full, 0700);
    mkdir(part, 0700);
    char line[4096];
    snprintf(line, sizeof line, cmd, full, full, full);
    rc = run(out, sizeof out, "%s", line);
    cr_assert_eq(rc, 0, "%s", out);
    snprintf(line, sizeof line, cmd, part, part, part);
    rc = run(out, sizeof out, "%s --max-steps 4", line);  // stands for an interruption
    cr_assert_eq(rc, 0, "%s", out);
    rc = run(out, sizeof out, "%s --resume %s/state.pth", line, part);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "is ignored") != NULL, "a note says --weights is ignored: %s", out);
    cr_expect(strstr(out, "Finished Training") != NULL, "%s", out);
    double lf[16], lp[16];
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/log.jsonl", full);
    snprintf(b, sizeof b, "%s/log.jsonl", part);
    int nf = log_losses(a, lf, 16), np = log_losses(b, lp, 16);
    cr_assert_eq(nf, 6);
    cr_assert_eq(np, 6, "4 steps, then 2 more after the resume");
    for (int i = 0; i < 6; i++) cr_expect_eq(lf[i], lp[i], "step %d: %.9g vs %.9g", i + 1, lf[i], lp[i]);
    snprintf(a, sizeof a, "%s/final.pth", full);
    snprintf(b, sizeof b, "%s/final.pth", part);
    expect_same_weights(a, b);
    // Done already: the same command again trains no step and evaluates.
    rc = run(out, sizeof out, "%s --resume %s/state.pth", line, part);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "Accuracy of the network") != NULL, "%s", out);
    snprintf(b, sizeof b, "%s/log.jsonl", part);
    cr_expect_eq(log_losses(b, lp, 16), 6, "no step after the end");
    free(d);
}

// A finished run trains longer when --epochs (or --max-steps) is raised on the rerun, bitwise
// as a run that asked for the longer schedule from the start; fewer epochs than are done is
// refused naming both numbers.
Test(train, resume_raised_epochs_continues, .timeout = 300) {
    char *d = make_data(24, 8);
    static char out[1 << 16];
    const char *flags = "--seed 6 --augment flip-crop";
    int rc = run(out, sizeof out, "./cltrain train --data %s %s %s --epochs 2 --log %s/full.jsonl "
                 "--save %s/full.pth", d, common, flags, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    rc = run(out, sizeof out, "./cltrain train --data %s %s %s --epochs 1 --checkpoint "
             "%s/state.pth --log %s/part.jsonl", d, common, flags, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    rc = run(out, sizeof out, "./cltrain train --data %s %s %s --epochs 1 --checkpoint "
             "%s/state.pth --log %s/part.jsonl --epochs 2 --max-steps 4 --resume %s/state.pth",
             d, common, flags, d, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    rc = run(out, sizeof out, "./cltrain train --data %s %s %s --epochs 2 --checkpoint "
             "%s/state.pth --log %s/part.jsonl --save %s/resumed.pth --resume %s/state.pth",
             d, common, flags, d, d, d, d);
    cr_assert_eq(rc, 0, "%s", out);
    double lf[16], lp[16];
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/full.jsonl", d);
    snprintf(b, sizeof b, "%s/part.jsonl", d);
    int nf = log_losses(a, lf, 16), np = log_losses(b, lp, 16);
    cr_assert_eq(nf, 6);
    cr_assert_eq(np, 6, "3 steps, then 1 to --max-steps 4, then 2 more");
    for (int i = 0; i < 6; i++) cr_expect_eq(lf[i], lp[i], "step %d: %.9g vs %.9g", i + 1, lf[i], lp[i]);
    snprintf(a, sizeof a, "%s/full.pth", d);
    snprintf(b, sizeof b, "%s/resumed.pth", d);
    expect_same_weights(a, b);
    rc = run(out, sizeof out, "./cltrain train --data %s %s %s --epochs 1 --resume %s/state.pth",
             d, common, flags, d);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strstr(out, "--epochs 1 is fewer than the 2 epochs") != NULL, "%s", out);
    free(d);
}
