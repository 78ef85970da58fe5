// Data-parallel training (host/train/replicas.c, `cltrain train --devices`, mpirun): the
// average is DDP's (the loss of a 2-replica step is the mean of the two shards' losses, and
// the replicas stay bitwise identical), 2 devices in one process equal 2 MPI ranks bitwise,
// resume needs the same world size and is bitwise, and faults end every rank with the
// failing rank named. The mpirun tests skip when mpirun or an MPI build is missing.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/startup.h"
#include "host/train/replicas.h"
#include "host/train/session.h"
#include "tests/cli_run.h"
#include "tests/testutil.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *dev(void) {
    const char *d = getenv("CLTRAIN_DEVICE");
    return d && *d ? d : "cpu";
}

// A replica's runtime as the command layer makes it.
static void runtime(clrt *rt) {
    char err[1024];
    clrt_options o = { .device_spec = dev(), .quiet = 1 };
    cr_assert_eq(cli_runtime_init(rt, &o, err, sizeof err), 0, "%s", err);
}

static void model(resnet *m, clrt *rt, int batch) {
    char err[1024];
    resnet_config cfg;
    cr_assert_eq(resnet_config_named(&cfg, "resnet18", 10, err, sizeof err), 0, "%s", err);
    cr_assert_eq(resnet_init(m, rt, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(session_plan(m, batch, 32, err, sizeof err), 0, "%s", err);
    m->freeze = -1;
    cr_assert_eq(resnet_init_weights(m, 7), 0);
}

Test(ddp, step_averages_like_ddp_and_replicas_stay_identical, .timeout = 300) {
    enum { N = 4, S = 32 };
    size_t img = (size_t)S * S;
    float *x = malloc(3 * N * img * sizeof(float));
    int32_t y[N] = { 1, 5, 3, 8 };
    unsigned s = 11;
    for (size_t i = 0; i < 3 * N * img; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 16) % 1000) / 1000.0f;
    }
    sgd_config sgd = { 0.01f, 0.9f, 0.0f };
    // The shards by hand: DistributedSampler's stride gives replica 0 samples 0, 2 and
    // replica 1 samples 1, 3; one model computes each shard's loss from the same weights.
    clrt rt1;
    runtime(&rt1);
    resnet single;
    model(&single, &rt1, N / 2);
    trainer ts;
    trainer_init(&ts, &single);
    float shard_loss[2];
    float *xs = malloc(3 * (N / 2) * img * sizeof(float));
    for (int r = 0; r < 2; r++) {
        int32_t ys[N / 2];
        for (int k = 0; k < N / 2; k++) {
            ys[k] = y[r + 2 * k];
            for (int c = 0; c < 3; c++)
                memcpy(xs + ((size_t)c * (N / 2) + k) * img, x + ((size_t)c * N + r + 2 * k) * img,
                       img * sizeof(float));
        }
        resnet_init_weights(&single, 7);
        cr_assert_eq(train_step(&ts, xs, ys, N / 2, &sgd, &shard_loss[r]), TRAIN_OK);
    }
    trainer_free(&ts);
    resnet_free(&single);
    clrt_free(&rt1);

    clrt rt0, rtb;
    runtime(&rt0);
    runtime(&rtb);
    resnet m0;
    model(&m0, &rt0, N / 2);
    trainer t0;
    trainer_init(&t0, &m0);
    comm c;
    char err[1024];
    cr_assert_eq(comm_init(&c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    replicas R;
    cr_assert_eq(replicas_init(&R, &t0, &c, 2, S, err, sizeof err), 0, "%s", err);
    cr_assert_eq(replicas_add(&R, 1, &rtb, err, sizeof err), 0, "%s", err);
    replicas_sync_state(&R);
    cr_assert(replicas_identical(&R), "replica 1 does not start from replica 0's state");
    float loss;
    cr_assert_eq(replicas_step(&R, x, y, N, &sgd, &loss), TRAIN_OK);
    float want = (shard_loss[0] + shard_loss[1]) / 2;
    cr_expect_eq(loss, want, "2-replica loss %.9g, the shards' mean %.9g (%.9g, %.9g)", loss,
                 want, shard_loss[0], shard_loss[1]);
    cr_assert_eq(replicas_step(&R, x, y, N, &sgd, &loss), TRAIN_OK);
    cr_expect(replicas_identical(&R), "the replicas' weights or momentum differ after 2 steps");
    replicas_free(&R);
    trainer_free(&t0);
    resnet_free(&m0);
    clrt_free(&rt0);
    free(xs);
    free(x);
}

static const char *args = "train --epochs 1 --batch-size 8 --image-size 32 --no-shuffle "
                          "--lr 0.01 --test-limit 2";

Test(ddp, batch_size_must_split_evenly, .timeout = 120) {
    char *d = cli_cifar_dir(16, 2);
    cli_result r = cli_run(60, "", "train --data %s --batch-size 7 --devices %s,%s", d, dev(),
                           dev());
    cr_expect_eq(r.status, 2, "exit %d:\n%s", r.status, r.err);
    cr_expect(strstr(r.err, "--batch-size 7 is not a multiple of the 2 replicas"), "%s", r.err);
    cli_result_free(&r);
    cli_rmtree(d);
}

// --devices all-gpus takes every GPU of every platform; with none (pocl's CPU alone) a
// one-line error says so before any work. "all" takes every device.
Test(ddp, devices_all_gpus_without_a_gpu_is_an_error, .timeout = 300) {
    cli_result r = cli_run(60, "", "devices");
    int gpu = strstr(r.out, "type: GPU") != NULL;
    cli_result_free(&r);
    if (gpu) cr_skip_test("this host has a GPU");
    char *d = cli_cifar_dir(8, 2);
    r = cli_run(60, "", "train --data %s --devices all-gpus", d);
    cr_expect_eq(r.status, 2, "exit %d:\n%s", r.status, r.err);
    cr_expect(strstr(r.err, "--devices all-gpus: no GPU among the"), "%s", r.err);
    int lines = 0;
    for (const char *p = r.err; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 1, "one line: %s", r.err);
    cli_result_free(&r);
    r = cli_run(300, "", "%s --data %s --devices all --max-steps 1", args, d);
    cr_expect_eq(r.status, 0, "exit %d:\n%s", r.status, r.err);
    cr_expect(strstr(r.err, "device 0:0"), "%s", r.err);
    cli_result_free(&r);
    cli_rmtree(d);
}

// DistributedSampler(drop_last=False): 13 images on 2 replicas are padded to 14 (the first
// image again), so the epoch is a batch of 8 and a last one of 6 (3 per replica); the test
// accuracy counts the test images once (evaluation runs on replica 0 over the split).
Test(ddp, uneven_epoch_is_padded_as_distributed_sampler, .timeout = 300) {
    char *d = cli_cifar_dir(16, 5), *w = cli_tmpdir();
    cli_result r = cli_run(300, "", "%s --data %s --train-limit 13 --test-limit 5 "
                           "--eval-every-epoch --devices %s,%s --log %s/log", args, d, dev(),
                           dev(), w);
    cr_assert_eq(r.status, 0, "exit %d:\n%s", r.status, r.err);
    cr_expect(strstr(r.out, "validation accuracy on 5 images"), "%s", r.out);
    cr_expect(strstr(r.out, "on the 5 test images"), "%s", r.out);
    char *log = cli_read_file(cli_path(w, "log"), NULL);
    cr_assert(log);
    int steps = 0;
    for (const char *p = log; (p = strstr(p, "\"step\":")); p++) steps++;
    cr_expect_eq(steps, 2, "an epoch of 13 images padded to 14 is 2 steps of 8:\n%s", log);
    free(log);
    cli_result_free(&r);
    cli_rmtree(w);
    cli_rmtree(d);
}

Test(ddp, resume_same_world_bitwise_other_world_refused, .timeout = 600) {
    char *d = cli_cifar_dir(32, 2), *w = cli_tmpdir();
    char full[600], part[600];
    snprintf(full, sizeof full, "%s/full.pth", w);
    snprintf(part, sizeof part, "%s/part.pth", w);
    cli_result r = cli_run(300, "", "%s --data %s --devices %s,%s --checkpoint %s", args, d,
                           dev(), dev(), full);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    r = cli_run(300, "", "%s --data %s --devices %s,%s --checkpoint %s --max-steps 2", args, d,
                dev(), dev(), part);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    r = cli_run(120, "", "%s --data %s --device %s --resume %s", args, d, dev(), part);
    cr_expect_eq(r.status, 2, "exit %d:\n%s", r.status, r.err);
    cr_expect(strstr(r.err, "was trained by 2 replicas and this run has 1"), "%s", r.err);
    cli_result_free(&r);
    r = cli_run(300, "", "%s --data %s --devices %s,%s --checkpoint %s --resume %s", args, d,
                dev(), dev(), part, part);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    // The states hold their own file names (the zip's folder): compare the tensors' bytes.
    ckpt a, b;
    ckpt_init(&a);
    ckpt_init(&b);
    char err[512];
    cr_assert_eq(ckpt_read(&a, full, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ckpt_read(&b, part, err, sizeof err), 0, "%s", err);
    int tensors = 0;
    for (int i = 0; i < a.n; i++) {
        if (a.e[i].kind != CKPT_TENSOR) continue;
        int j = ckpt_find(&b, a.e[i].name);
        cr_assert(j >= 0, "%s missing after resume", a.e[i].name);
        size_t nb = (size_t)a.e[i].numel * (a.e[i].dtype == CKPT_F32 ? 4 : 8);
        cr_expect(a.e[i].numel == b.e[j].numel && !memcmp(a.e[i].data, b.e[j].data, nb),
                  "%s differs between the uninterrupted and the resumed 2-replica run",
                  a.e[i].name);
        tensors++;
    }
    cr_expect_gt(tensors, 100);
    ckpt_free(&a);
    ckpt_free(&b);
    cli_rmtree(w);
    cli_rmtree(d);
}

// ---- under mpirun (Open MPI; as root it needs --allow-run-as-root) ----

// Runs `mpirun --allow-run-as-root --oversubscribe <rest>` with a time limit ("CLTRAIN" in
// rest stands for the binary under test); skips the test when mpirun is missing or the
// binary was built without MPI.
static cli_result mpi_run(int seconds, const char *fmt, ...) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0) cr_skip_test("no mpirun");
    char rest[4000], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rest, sizeof rest, fmt, ap);
    va_end(ap);
    char *dir = cli_tmpdir(), expanded[6000];
    size_t k = 0;
    const char *bin = cli_bin();
    for (const char *p = rest; *p && k + strlen(bin) + 1 < sizeof expanded;) {
        if (!strncmp(p, "@BIN@", 5)) { k += (size_t)sprintf(expanded + k, "%s", bin); p += 5; }
        else expanded[k++] = *p++;
    }
    expanded[k] = 0;
    // Under make test-asan the ranks check no leaks: Open MPI unloads its dlopen'd components
    // at MPI_Finalize, so what they keep shows as "<unknown module>" frames no suppression in
    // tests/lsan.supp can name. The single-process runs keep the leak check.
    snprintf(cmd, sizeof cmd, "CLTRAIN_DEVICE=%s ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}"
             "detect_leaks=0\" timeout -k 5 %d mpirun --allow-run-as-root --oversubscribe %s "
             ">%s/out 2>%s/err </dev/null", dev(), seconds, expanded, dir, dir);
    int st = system(cmd);
    cli_result r = { WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), NULL, NULL };
    r.out = cli_read_file(cli_path(dir, "out"), NULL);
    r.err = cli_read_file(cli_path(dir, "err"), NULL);
    cli_rmtree(dir);
    if (strstr(r.err, "built without MPI")) cr_skip_test("cltrain built without MPI");
    return r;
}

// 21 images: padded to 22 (DistributedSampler), batches of 8, 8 and 6.
Test(ddp, two_ranks_equal_two_devices_bitwise, .timeout = 600) {
    char *d = cli_cifar_dir(21, 2), *w1 = cli_tmpdir(), *w2 = cli_tmpdir();
    cli_result r = mpi_run(300, "-np 2 @BIN@ %s --data %s --save %s/m.pth --log %s/log", args,
                           d, w1, w1);
    cr_assert_eq(r.status, 0, "mpirun: exit %d\n%s", r.status, r.err);
    cr_expect(strstr(r.out, "Finished Training") && strstr(r.out, "Accuracy"),
              "rank 0 prints the seed's lines:\n%s", r.out);
    cr_expect(!strstr(strstr(r.out, "Finished Training") + 1, "Finished Training"),
              "only rank 0 prints:\n%s", r.out);
    cli_result_free(&r);
    r = cli_run(300, "", "%s --data %s --devices %s,%s --save %s/m.pth --log %s/log", args, d,
                dev(), dev(), w2, w2);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    size_t n1, n2, l1, l2;
    char *a = cli_read_file(cli_path(w1, "m.pth"), &n1), *b = cli_read_file(cli_path(w2, "m.pth"), &n2);
    char *la = cli_read_file(cli_path(w1, "log"), &l1), *lb = cli_read_file(cli_path(w2, "log"), &l2);
    cr_assert(a && b && la && lb);
    cr_expect(n1 == n2 && !memcmp(a, b, n1), "2 ranks and 2 devices saved different models");
    // The logs differ only in images_per_s: compare the losses.
    for (const char *p = la, *q = lb; (p = strstr(p, "\"loss\":")) && (q = strstr(q, "\"loss\":"));
         p++, q++)
        cr_expect(!strncmp(p, q, 20), "losses differ: %.20s vs %.20s", p, q);
    free(a); free(b); free(la); free(lb);
    cli_rmtree(w1);
    cli_rmtree(w2);
    cli_rmtree(d);
}

Test(ddp, failing_rank_is_named_and_every_rank_exits, .timeout = 300) {
    char *d = cli_cifar_dir(16, 2);
    double t = cli_now();
    // Rank 1 alone has no such device (as a host whose GPU is gone).
    cli_result r = mpi_run(120, "-np 1 @BIN@ %s --data %s : -np 1 env CLTRAIN_DEVICE=nosuch "
                           "@BIN@ %s --data %s", args, d, args, d);
    cr_expect_neq(r.status, 0);
    cr_expect(strstr(r.err, "rank 1 of 2 failed to start"), "%s", r.err);
    cr_expect_lt(cli_now() - t, 100, "took %.0f s", cli_now() - t);
    cli_result_free(&r);
    // Rank 1 with other arguments is refused before any work.
    r = mpi_run(120, "-np 1 @BIN@ %s --data %s : -np 1 @BIN@ %s --data %s --lr 0.1", args,
                d, args, d);
    cr_expect_neq(r.status, 0);
    cr_expect(strstr(r.err, "rank 1 of 2 was started with other arguments"), "%s", r.err);
    cli_result_free(&r);
    // Rank 1 killed mid-run: mpirun ends rank 0 too, within seconds, no hang.
    t = cli_now();
    r = mpi_run(200, "-np 1 @BIN@ %s --data %s --epochs 1000 : -np 1 timeout -s KILL 15 "
                "@BIN@ %s --data %s --epochs 1000", args, d, args, d);
    cr_expect_neq(r.status, 0);
    cr_expect_neq(r.status, 124, "mpirun hung");
    cr_expect(strstr(r.err, "rank 1") && strstr(r.err, "signal 9"), "%s", r.err);
    cr_expect_lt(cli_now() - t, 100, "took %.0f s", cli_now() - t);
    cli_result_free(&r);
    cli_rmtree(d);
}
