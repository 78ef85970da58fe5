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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dev(void) {
    const char *d = getenv("CLTRAIN_DEVICE");
    return d && *d ? d : "cpu";
}

// A replica's runtime and ops' context as the command layer makes them (one GEMM registry
// for the process: test_ops_shared).
static void runtime(clrt *rt, ops_ctx *ops) {
    char err[1024];
    clrt_options o = { .device_spec = dev(), .quiet = 1 };
    cr_assert_eq(cli_runtime_init(rt, ops, test_ops_shared(), &o, err, sizeof err), 0, "%s",
                 err);
}

static void model_sized(model *m, ops_ctx *ops, int batch, int S) {
    char err[1024];
    model_arch cfg;
    cr_assert_eq(model_arch_named(&cfg, "resnet18", 10, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_init_arch(m, ops, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(session_plan(m, batch, S, 0, err, sizeof err), 0, "%s", err);
    m->freeze = -1;
    cr_assert_eq(model_init_weights(m, 7), 0);
}

static void model_at_32(model *m, ops_ctx *ops, int batch) { model_sized(m, ops, batch, 32); }

// n images (3, n, S, S) of deterministic noise in [0, 1).
static float *noise_images(int n, int S, unsigned s) {
    size_t count = 3 * (size_t)n * S * S;
    float *x = malloc(count * sizeof(float));
    cr_assert_not_null(x);
    for (size_t i = 0; i < count; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 16) % 1000) / 1000.0f;
    }
    return x;
}

// The shards of x (3, n, S, S) by hand, as DistributedSampler's stride gives them to 2
// replicas (replica r: samples r, r + 2, ...): each shard's loss from the same weights (seed
// 7), one step of `single` (sized for the larger shard) each.
static void shard_losses(trainer *ts, model *single, const float *x, const int32_t *y, int n,
                         int S, const optim_config *sgd, float loss[2]) {
    size_t img = (size_t)S * S;
    float *xs = malloc(3 * (size_t)((n + 1) / 2) * img * sizeof(float));
    cr_assert_not_null(xs);
    for (int r = 0; r < 2; r++) {
        int b = n / 2 + (r < n % 2);
        int32_t ys[64];
        cr_assert(b <= 64);
        for (int k = 0; k < b; k++) {
            ys[k] = y[r + 2 * k];
            for (int c = 0; c < 3; c++)
                memcpy(xs + ((size_t)c * b + k) * img, x + ((size_t)c * n + r + 2 * k) * img,
                       img * sizeof(float));
        }
        model_init_weights(single, 7);
        cr_assert_eq(train_step(ts, xs, ys, b, sgd, &loss[r]), TRAIN_OK);
    }
    free(xs);
}

// Two replicas in one process, each on its own runtime of the test device, replica 0 planned
// for `batch` images at SxS and replica 1 starting from its state. Used in place: the members
// point at each other.
typedef struct {
    clrt rt0, rt1;
    ops_ctx ops0, ops1;
    model m0;
    trainer t0;
    comm c;
    replicas R;
} replica_pair;

static void pair_init(replica_pair *p, int batch, int S) {
    char err[1024];
    runtime(&p->rt0, &p->ops0);
    runtime(&p->rt1, &p->ops1);
    model_sized(&p->m0, &p->ops0, batch, S);
    trainer_init(&p->t0, &p->m0);
    cr_assert_eq(comm_init(&p->c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(replicas_init(&p->R, &p->t0, &p->c, 2, S, err, sizeof err), 0, "%s", err);
    cr_assert_eq(replicas_add(&p->R, 1, &p->ops1, err, sizeof err), 0, "%s", err);
    replicas_sync_state(&p->R);
}

static void pair_free(replica_pair *p) {
    replicas_free(&p->R);
    trainer_free(&p->t0);
    model_free(&p->m0);
    clrt_free(&p->rt0);
}

Test(ddp, step_averages_like_ddp_and_replicas_stay_identical, .timeout = 300) {
    enum { N = 4, S = 32 };
    float *x = noise_images(N, S, 11);
    int32_t y[N] = { 1, 5, 3, 8 };
    optim_config sgd = { .lr = 0.01f, .momentum = 0.9f, .weight_decay = 0.0f };
    clrt rt1;
    ops_ctx ops1;
    runtime(&rt1, &ops1);
    model single;
    model_at_32(&single, &ops1, N / 2);
    trainer ts;
    trainer_init(&ts, &single);
    float shard_loss[2];
    shard_losses(&ts, &single, x, y, N, S, &sgd, shard_loss);
    trainer_free(&ts);
    model_free(&single);
    clrt_free(&rt1);

    replica_pair p;
    pair_init(&p, N / 2, S);
    cr_assert(replicas_identical(&p.R), "replica 1 does not start from replica 0's state");
    float loss;
    cr_assert_eq(replicas_step(&p.R, x, y, N, &sgd, &loss), TRAIN_OK);
    float want = (shard_loss[0] + shard_loss[1]) / 2;
    cr_expect_eq(loss, want, "2-replica loss %.9g, the shards' mean %.9g (%.9g, %.9g)", loss,
                 want, shard_loss[0], shard_loss[1]);
    cr_assert_eq(replicas_step(&p.R, x, y, N, &sgd, &loss), TRAIN_OK);
    cr_expect(replicas_identical(&p.R), "the replicas' weights or momentum differ after 2 steps");
    pair_free(&p);
    free(x);
}

// AdamW with its own decay for batch norms, accumulation over 2 batches and clipping that
// bites: every replica clips the averaged mean gradient by the same norm and steps the same,
// so after 2 steps the weights, both moments and the step count are bitwise replica 0's, and
// the weights have moved.
Test(ddp, adamw_clipped_replicas_stay_identical, .timeout = 300) {
    enum { N = 4, S = 32 };
    float *x = noise_images(N, S, 13), *x2 = noise_images(N, S, 14);  // a group's 2 batches
    int32_t y[N] = { 2, 7, 0, 9 };
    optim_config c = test_adamw_clipped();
    c.accumulate = 2;         // each step: the mean of two batches, then the average
    replica_pair p;
    pair_init(&p, N / 2, S);
    char err[256];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(trainer_set_optim(p.R.tr[i], &c, err, sizeof err), 0, "%s", err);
    size_t np = p.m0.n_param_floats;
    float *before = malloc(np * sizeof(float)), *after = malloc(np * sizeof(float));
    clrt_read(&p.rt0, p.m0.arena_params, 0, before, np * sizeof(float));
    float loss;
    for (int k = 0; k < 2; k++) {
        replicas_micro(&p.R, x, y, N, &c);
        cr_expect_eq(p.R.tr[1]->micro, 1, "replica 1 accumulated the first batch");
        cr_assert_eq(replicas_step(&p.R, x2, y, N, &c, &loss), TRAIN_OK);
        cr_expect_eq(p.R.tr[0]->micro, 0, "the step took the group's mean");
        float g0 = p.R.tr[0]->grad_norm, g1 = p.R.tr[1]->grad_norm;
        cr_expect(g0 > 0.01f, "step %d: gradient norm %g does not exceed --clip-grad-norm", k, g0);
        cr_expect(memcmp(&g0, &g1, sizeof g0) == 0, "step %d: replicas' norms %.9g, %.9g", k, g0,
                  g1);
    }
    cr_expect_eq(p.R.tr[0]->opt.step, 2);
    cr_expect(replicas_identical(&p.R), "AdamW replicas differ after 2 clipped steps");
    clrt_read(&p.rt0, p.m0.arena_params, 0, after, np * sizeof(float));
    cr_expect(memcmp(before, after, np * sizeof(float)) != 0, "the weights did not move");
    free(before), free(after);
    pair_free(&p);
    free(x);
    free(x2);
}

// A batch that --skip-bad shortened: 3 images on 2 replicas are shares of 2 and 1, each
// weighing its share (the loss is 2/3 of the first shard's plus 1/3 of the second's, the mean
// over the 3 images); 1 image leaves replica 1 without any, and the step is then bitwise one
// device's step on that image (with and without DDP's buckets), the replicas identical after.
Test(ddp, short_batch_weighs_the_shares_and_an_empty_share_adds_nothing, .timeout = 300) {
    enum { N = 3, S = 64 };  // 64: a share of 1 leaves batch norm 2x2 values per channel
    float *x = noise_images(N, S, 5);
    int32_t y[N] = { 4, 9, 2 };
    // no momentum: a re-initialised model starts over
    optim_config sgd = { .lr = 0.01f, .momentum = 0.0f, .weight_decay = 0.0f };
    clrt rt1;
    ops_ctx ops1;
    runtime(&rt1, &ops1);
    model single;
    model_sized(&single, &ops1, 2, S);
    trainer ts;
    trainer_init(&ts, &single);
    float shard_loss[2];  // replica 0: images 0 and 2; replica 1: image 1
    shard_losses(&ts, &single, x, y, N, S, &sgd, shard_loss);
    replica_pair p;
    pair_init(&p, 2, S);
    char err[1024];
    float loss, want = 0;
    want += 2.0f / 3.0f * shard_loss[0];
    want += 1.0f / 3.0f * shard_loss[1];
    cr_assert_eq(replicas_step(&p.R, x, y, N, &sgd, &loss), TRAIN_OK);
    cr_expect_eq(loss, want, "3 images on 2 replicas: loss %.9g, the shares' weighted mean %.9g "
                 "(%.9g, %.9g)", loss, want, shard_loss[0], shard_loss[1]);
    cr_expect(replicas_identical(&p.R), "the replicas differ after a short batch");
    size_t bytes = p.m0.n_param_floats * sizeof(float);
    float *w1 = malloc(bytes), *w2 = malloc(bytes);
    for (int buckets = 1; buckets >= 0; buckets--) {
        if (!buckets) cr_assert_eq(replicas_set_buckets(&p.R, 0, err, sizeof err), 0, "%s", err);
        float one_loss;
        model_init_weights(&single, 7);
        cr_assert_eq(train_step(&ts, x, y, 1, &sgd, &one_loss), TRAIN_OK);  // x's image 0
        model_init_weights(&p.m0, 7);
        replicas_sync_state(&p.R);
        cr_assert_eq(replicas_step(&p.R, x, y, 1, &sgd, &loss), TRAIN_OK);
        cr_expect_eq(loss, one_loss, "buckets %d: 1 image on 2 replicas: loss %.9g, one device "
                     "%.9g", buckets, loss, one_loss);
        clrt_read(&rt1, single.arena_params, 0, w1, bytes);
        clrt_read(&p.rt0, p.m0.arena_params, 0, w2, bytes);
        size_t k = 0, np = p.m0.n_param_floats;
        while (k < np && w1[k] == w2[k]) k++;
        cr_expect_eq(k, np, "buckets %d: weight %zu is %.9g, one device's %.9g", buckets, k,
                     k < np ? w2[k] : 0, k < np ? w1[k] : 0);
        cr_expect(replicas_identical(&p.R), "buckets %d: replica 1 (no images) differs", buckets);
    }
    free(w1);
    free(w2);
    pair_free(&p);
    trainer_free(&ts);
    model_free(&single);
    clrt_free(&rt1);
    free(x);
}

static const char *args = "train --epochs 1 --batch-size 8 --image-size 32 --no-shuffle "
                          "--lr 0.01 --test-limit 2";

// The model files dir_a/m.pth and dir_b/m.pth are bitwise equal (the zip's folder is named
// after the file, so the names must match).
static int same_model(const char *dir_a, const char *dir_b) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/m.pth", dir_a);
    snprintf(b, sizeof b, "%s/m.pth", dir_b);
    size_t na, nb;
    char *x = cli_read_file(a, &na), *y = cli_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

// DDP's buckets (bucket_cap_mb): reverse parameter order, the first one 1 MiB, each closed
// once it reaches the cap; together they tile the trainable range with no gap.
Test(ddp, buckets_tile_the_gradient_in_reverse_order, .timeout = 300) {
    clrt rt;
    ops_ctx ops;
    runtime(&rt, &ops);
    model m;
    model_at_32(&m, &ops, 2);
    trainer t;
    trainer_init(&t, &m);
    comm c;
    char err[1024];
    cr_assert_eq(comm_init(&c, 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    replicas R;
    cr_assert_eq(replicas_init(&R, &t, &c, 1, 32, err, sizeof err), 0, "%s", err);
    // resnet18: 11.2 M floats (44.7 MB): 1 MiB, then 25 MiB, then the rest.
    cr_expect_eq(R.nbuckets, 3, "%d buckets at 25 MiB", R.nbuckets);
    for (double mb = 0.25; mb < 30; mb *= 10) {
        cr_assert_eq(replicas_set_buckets(&R, mb, err, sizeof err), 0, "%s", err);
        size_t hi = m.n_param_floats;
        for (int k = 0; k < R.nbuckets; k++) {
            cr_expect_eq(R.bucket_hi[k], hi, "bucket %d does not start where %d ended", k, k - 1);
            cr_expect_lt(R.bucket_lo[k], R.bucket_hi[k]);
            size_t bytes = (R.bucket_hi[k] - R.bucket_lo[k]) * sizeof(float);
            double cap = k == 0 && mb > 1 ? 1.0 : mb;
            if (k < R.nbuckets - 1)
                cr_expect_geq(bytes, cap * 1048576, "bucket %d: %zu bytes", k, bytes);
            hi = R.bucket_lo[k];
        }
        cr_expect_eq(hi, t.grad_off, "the buckets stop at %zu, not at the first gradient", hi);
    }
    cr_assert_eq(replicas_set_buckets(&R, 0, err, sizeof err), 0, "%s", err);
    cr_expect_eq(R.nbuckets, 0);
    replicas_free(&R);
    trainer_free(&t);
    model_free(&m);
    clrt_free(&rt);
}

// The bucketed all-reduce, overlapped with backward, gives bitwise the numbers of one
// all-reduce after backward (CLTRAIN_DDP_BUCKET_MB=0); with a frozen layer1 too (backward
// ends early). A bad value is a one-line error.
Test(ddp, bucketed_allreduce_equals_unbucketed_bitwise, .timeout = 600) {
    char *d = cli_cifar_dir(16, 2);
    // Unfrozen: 0 (one all-reduce) and 0.25 MiB; layer1 frozen: 0 and 2 MiB.
    const char *mb[4] = { "0", "0.25", "0", "2" };
    char *w[4];
    for (int k = 0; k < 4; k++) {
        w[k] = cli_tmpdir();
        char env[64];
        snprintf(env, sizeof env, "CLTRAIN_DDP_BUCKET_MB=%s", mb[k]);
        cli_result r = cli_run(300, env, "%s --data %s --devices %s,%s --max-steps 2 %s "
                               "--save %s/m.pth", args, d, dev(), dev(),
                               k >= 2 ? "--freeze layer1" : "", w[k]);
        cr_assert_eq(r.status, 0, "CLTRAIN_DDP_BUCKET_MB=%s: exit %d\n%s", mb[k], r.status, r.err);
        cli_result_free(&r);
    }
    cr_expect(same_model(w[0], w[1]), "0.25 MiB buckets differ from one all-reduce");
    cr_expect(same_model(w[2], w[3]), "with layer1 frozen, 2 MiB buckets differ from one "
              "all-reduce");
    cr_expect(!same_model(w[0], w[2]), "the frozen run trained as the unfrozen one");
    cli_result r = cli_run(60, "CLTRAIN_DDP_BUCKET_MB=lots", "%s --data %s --devices %s,%s", args,
                           d, dev(), dev());
    cli_expect_error(&r, 2, "CLTRAIN_DDP_BUCKET_MB='lots'", "MiB", NULL);
    cli_result_free(&r);
    for (int k = 0; k < 4; k++) cli_rmtree(w[k]);
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

// 2 ranks with small buckets (sums under way while backward runs) equal 2 devices in one
// process with one all-reduce after backward, bitwise.
Test(ddp, two_ranks_bucketed_equal_two_devices_unbucketed, .timeout = 600) {
    char *d = cli_cifar_dir(16, 2), *w1 = cli_tmpdir(), *w2 = cli_tmpdir();
    cli_result r = mpi_run(300, "-np 2 -x CLTRAIN_DDP_BUCKET_MB=0.5 @BIN@ %s --data %s "
                           "--max-steps 2 --save %s/m.pth", args, d, w1);
    cr_assert_eq(r.status, 0, "mpirun: exit %d\n%s", r.status, r.err);
    cli_result_free(&r);
    r = cli_run(300, "CLTRAIN_DDP_BUCKET_MB=0", "%s --data %s --devices %s,%s --max-steps 2 "
                "--save %s/m.pth", args, d, dev(), dev(), w2);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    cr_expect(same_model(w1, w2), "bucketed 2 ranks and unbucketed 2 devices saved different "
              "models");
    cli_rmtree(w1);
    cli_rmtree(w2);
    cli_rmtree(d);
}

// The optimizer flags under mpirun: AdamW with a batch-norm decay of 0, clipping and
// accumulation over 2 batches on 2 ranks equal 2 devices in one process, bitwise, with the
// same gradient norms in the log (the buckets are off while accumulating, on otherwise).
Test(ddp, adamw_clip_accumulate_two_ranks_equal_two_devices, .timeout = 600) {
    char *d = cli_cifar_dir(32, 2), *w1 = cli_tmpdir(), *w2 = cli_tmpdir();
    const char *opt = "--optimizer adamw --weight-decay 0.05 --norm-weight-decay 0 "
                      "--clip-grad-norm 0.5 --accumulate 2 --max-steps 2";
    cli_result r = mpi_run(300, "-np 2 @BIN@ %s %s --data %s --save %s/m.pth --log %s/log", args,
                           opt, d, w1, w1);
    cr_assert_eq(r.status, 0, "mpirun: exit %d\n%s", r.status, r.err);
    cli_result_free(&r);
    r = cli_run(300, "", "%s %s --data %s --devices %s,%s --save %s/m.pth --log %s/log", args,
                opt, d, dev(), dev(), w2, w2);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    cr_expect(same_model(w1, w2), "AdamW + clip + accumulate: 2 ranks and 2 devices differ");
    size_t l1, l2;
    char *la = cli_read_file(cli_path(w1, "log"), &l1), *lb = cli_read_file(cli_path(w2, "log"), &l2);
    cr_assert(la && lb);
    cr_expect_eq(cli_count(la, "\"grad_norm\":"), 2, "%s", la);
    for (const char *p = la, *q = lb; (p = strstr(p, "\"grad_norm\":")) &&
                                      (q = strstr(q, "\"grad_norm\":")); p++, q++)
        cr_expect(!strncmp(p, q, 24), "norms differ: %.24s vs %.24s", p, q);
    free(la); free(lb);
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

// DIR/train/{a,b}/ with 3 PPMs each and train/b/cut.jpg (cut in its data: the open keeps it,
// its decode fails), DIR/val/{a,b}/ with one PPM each. In file order, batches of 4 of the 7
// padded to 8: [a0 a1 a2 b3] [b4 b5 cut a0]; --skip-bad makes the second 3 images, shares of
// 2 and 1 on 2 replicas.
static char *skip_bad_folder(void) {
    char *d = cli_tmpdir();
    const char *sub[] = { "train", "train/a", "train/b", "val", "val/a", "val/b" };
    for (int i = 0; i < 6; i++) mkdir(cli_path(d, sub[i]), 0755);
    for (int i = 0; i < 8; i++) {
        char name[32], data[11 + 18];
        snprintf(name, sizeof name, i < 6 ? "train/%c/%d.ppm" : "val/%c/%d.ppm",
                 i < 6 ? "ab"[i / 3] : "ab"[i - 6], i);
        memcpy(data, "P6\n3 2\n255\n", 11);
        for (int k = 0; k < 18; k++) data[11 + k] = (char)(i * 41 + k * 13);
        cli_write_file(d, name, data, sizeof data);
    }
    cli_write_cut_jpeg(d, "train/b/cut.jpg");
    return d;
}

static const char *skip_args = "train --epochs 2 --batch-size 4 --image-size 64 --no-shuffle "
                               "--lr 0.01 --workers 2 --skip-bad";

// A batch that --skip-bad shortened to an odd count: 2 ranks equal 2 devices in one process
// bitwise (each rank computes every share and weight alike), and the file is named once.
Test(ddp, skip_bad_short_batch_two_ranks_equal_two_devices, .timeout = 300) {
    char *d = skip_bad_folder(), *w1 = cli_tmpdir(), *w2 = cli_tmpdir();
    cli_result r = mpi_run(200, "-np 2 @BIN@ %s --data %s --save %s/m.pth", skip_args, d, w1);
    cr_assert_eq(r.status, 0, "mpirun: exit %d\n%s", r.status, r.err);
    const char *warn = strstr(r.err, "warning: ");
    cr_expect(warn && strstr(warn, "train/b/cut.jpg: image file is truncated (skipped)") &&
              !strstr(warn + 1, "warning: "), "one warning, from rank 0:\n%s", r.err);
    cr_expect(strstr(r.err, "--skip-bad: 1 bad files left out"), "%s", r.err);
    cli_result_free(&r);
    r = cli_run(200, "", "%s --data %s --devices %s,%s --save %s/m.pth", skip_args, d, dev(),
                dev(), w2);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    cr_expect(same_model(w1, w2), "2 ranks and 2 devices saved different models");
    cli_rmtree(w1);
    cli_rmtree(w2);
    cli_rmtree(d);
}

// Ranks that read different files (here rank 1's copy of cut.jpg is intact) would split the
// batch differently and wait on each other: every rank stops at that batch, rank 1 named.
Test(ddp, skip_bad_ranks_with_other_files_stop_together, .timeout = 300) {
    char *a = skip_bad_folder(), *b = skip_bad_folder();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import sys; from PIL import Image; "
             "Image.new(\"RGB\", (48, 48), (1, 2, 3)).save(sys.argv[1])' '%s'",
             cli_path(b, "train/b/cut.jpg"));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    char bin[4200], cwd[4096];  // the ranks start in other folders
    const char *rel = cli_bin();
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(bin, sizeof bin, "%s%s%s", rel[0] == '/' ? "" : cwd, rel[0] == '/' ? "" : "/", rel);
    double t = cli_now();
    cli_result r = mpi_run(200, "-np 1 -wdir %s %s %s --data . : -np 1 -wdir %s %s %s --data .",
                           a, bin, skip_args, b, bin, skip_args);
    cr_expect_neq(r.status, 0);
    cr_expect_neq(r.status, 124, "mpirun hung");
    cr_expect(strstr(r.err, "cltrain: error: rank 1 of 2 left other images out of epoch 1, "
                            "batch 2 than rank 0"), "%s", r.err);
    cr_expect_lt(cli_now() - t, 100, "took %.0f s", cli_now() - t);
    cli_result_free(&r);
    cli_rmtree(a);
    cli_rmtree(b);
}
