// `cltrain bench`: training and evaluation throughput on synthetic data, one JSON line.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_session.h"
#include "host/cli/startup.h"
#include "host/train/trainer.h"
#include "host/tune/tune.h"

#include <stdlib.h>
#include <string.h>

static const char bench_usage[] =
    "usage: cltrain bench [--arch A] [--image-size S] [--batch-size B] [--steps N] [--device SPEC]\n"
    "  Times N training steps (forward, loss, backward, optimizer, finiteness checks: the step\n"
    "  `train` runs) and N evaluation batches of a ResNet (--arch resnet18|resnet34|resnet50|\n"
    "  resnet101|resnet152, default resnet18) on synthetic data after a warm-up, and prints one\n"
    "  JSON line:\n"
    "  {\"arch\",\"device\",\"image_size\",\"batch_size\",\"train_images_per_s\",\"eval_images_per_s\",\n"
    "   \"peak_device_bytes\",\"eval_device_bytes\",\"last_loss\"}: peak_device_bytes is what the\n"
    "  training run holds on the device, eval_device_bytes what eval and predict hold at the same\n"
    "  size (their plan keeps nothing for backward).  Defaults: --image-size 224 --batch-size 64\n"
    "  --steps 10.\n"
    "  --num-classes N (10)  --freeze STAGE  --seed N  --non-strict (--strict: the default)\n"
    "  --optimizer sgd|adam|adamw   the step's optimizer (sgd: lr 1e-4, momentum 0.9)\n"
    "  --profile   also print device time per op type and per layer (stderr); events add\n"
    "              some overhead to the timed loops\n";

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s >= 0x20) putchar(*s);
    }
    putchar('"');
}

int cmd_bench(int argc, char **argv) {
    run_options o;
    run_options_defaults(&o);
    int rc = cmd_parse_options(argc, argv, &o, CMD_BENCH, bench_usage, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    int K = o.num_classes ? o.num_classes : 10, B = o.batch_size, S = o.image_size;
    char err[2048];
    clrt rt;
    ops_ctx ops;
    ops_shared shared = { 0 };
    clrt_options ro = { .device_spec = o.device, .profiling = o.profile };
    if ((rc = cli_runtime_init(&rt, &ops, &shared, &ro, err, sizeof err)) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return rc;
    }
    model m;
    setup_spec spec = cli_setup_spec(&o, NULL, NULL, K, B);
    spec.freeze = o.freeze;
    spec.init_weights = 1;
    if ((rc = setup_model(&m, &ops, &spec, err, sizeof err)) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        model_free(&m);
        clrt_free(&rt);
        ops_shared_free(&shared);
        return rc;
    }
    trainer tr;
    trainer_init(&tr, &m);
    size_t nx = 3 * (size_t)B * S * S;
    clrt_host_buf xb, yb, lb;
    float *x = clrt_host_alloc(&rt, &xb, nx * sizeof(float));
    int32_t *y = clrt_host_alloc(&rt, &yb, (size_t)B * sizeof(int32_t));
    float *logits = clrt_host_alloc(&rt, &lb, (size_t)K * B * sizeof(float));
    uint64_t s = 12345;
    for (size_t i = 0; i < nx; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)(s >> 40) / 16777216.0f;
    }
    for (int i = 0; i < B; i++) y[i] = i % K;
    optim_config sgd;  // SGD lr 1e-4, momentum 0.9 as always; --optimizer adam|adamw times those
    optim_config_defaults(&sgd);
    sgd.lr = 1e-4;
    sgd.kind = (optim_kind)o.optimizer;
    if (sgd.kind != OPTIM_SGD) sgd.momentum = 0;
    if (trainer_set_optim(&tr, &sgd, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        exit(CLI_EXIT_DATA);
    }
    float loss;
    // Warm-up: kernels and CLBlast routines compile on first use.
    train_step(&tr, x, y, B, &sgd, &loss);
    trainer_predict(&tr, x, B, logits);
    clrt_finish(&rt);
    clrt_profile_start(&rt);  // records only with --profile
    double t0 = session_now();
    for (int i = 0; i < o.steps; i++) {  // as training: each step's loss read one step late
        train_step_enqueue(&tr, x, y, B, &sgd);
        if (i > 0) train_step_result(&tr, &loss);
    }
    if (o.steps > 0) train_step_result(&tr, &loss);
    double t1 = session_now();
    if (o.profile) {
        fprintf(stderr, "---- training step profile (device time from OpenCL events) ----\n");
        clrt_profile_report(&rt, stderr, o.steps);
        clrt_profile_start(&rt);
        t1 = session_now();
    }
    for (int i = 0; i < o.steps; i++) trainer_predict(&tr, x, B, logits);
    double t2 = session_now();
    if (o.profile) {
        fprintf(stderr, "---- evaluation batch profile ----\n");
        clrt_profile_report(&rt, stderr, o.steps);
    }
    // What eval and predict take at the same size: a forward-only plan (nothing for backward,
    // no gradients or momentum).
    model_arch a = { .num_classes = m.num_classes };
    snprintf(a.arch, sizeof a.arch, "%s", m.arch);
    size_t eval_bytes = model_plan_bytes(&a, B, S, 1);
    printf("{\"arch\":\"%s\",\"device\":", m.arch);
    json_string(rt.dev.name);
    printf(",\"image_size\":%d,\"batch_size\":%d,\"steps\":%d,\"train_images_per_s\":%.2f,"
           "\"eval_images_per_s\":%.2f,\"peak_device_bytes\":%zu,\"eval_device_bytes\":%zu,"
           "\"last_loss\":%.6g}\n",
           S, B, o.steps, (double)B * o.steps / (t1 - t0), (double)B * o.steps / (t2 - t1),
           m.device_bytes + optim_device_bytes(&tr.opt) + op_gemm_scratch_bytes(&ops), eval_bytes,
           loss);
    clrt_host_free(&rt, &xb);
    clrt_host_free(&rt, &yb);
    clrt_host_free(&rt, &lb);
    trainer_free(&tr);
    model_free(&m);
    clrt_free(&rt);
    ops_shared_free(&shared);
    return 0;
}
