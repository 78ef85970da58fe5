// The training step's guard and its status read one step late (host/train/trainer.c): a
// non-finite loss or gradient at step k skips the update on the device, so the weights and
// momentum stay those of step k - 1 bitwise, also for a step enqueued behind it before its
// status was read (the flags are sticky); a weight the update overflows is reported; the
// flags are re-armed once the failure is read. (Batch norm's running statistics are updated
// by the forward, before any check: after a NaN batch they are NaN, as before the guard, and
// the run stops without saving.)
#include "host/cli/startup.h"
#include "host/train/session.h"
#include "host/train/trainer.h"
#include "tests/testutil.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, S = 32 };

typedef struct fixture {
    clrt rt;
    ops_ctx ops;
    model m;
    trainer t;
    float *x;
    int32_t y[B];
} fixture;

static void setup(fixture *f) {
    char err[1024];
    const char *d = getenv("CLTRAIN_DEVICE");
    clrt_options o = { .device_spec = d && *d ? d : "cpu", .quiet = 1 };
    cr_assert_eq(cli_runtime_init(&f->rt, &f->ops, test_ops_shared(), &o, err, sizeof err), 0,
                 "%s", err);
    model_arch cfg;
    cr_assert_eq(model_arch_named(&cfg, "resnet18", 10, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_init_arch(&f->m, &f->ops, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(session_plan(&f->m, B, S, 0, err, sizeof err), 0, "%s", err);
    f->m.freeze = -1;
    cr_assert_eq(model_init_weights(&f->m, 7), 0);
    trainer_init(&f->t, &f->m);
    size_t nx = 3 * (size_t)B * S * S;
    f->x = malloc(nx * sizeof(float));
    unsigned s = 5;
    for (size_t i = 0; i < nx; i++) {
        s = s * 1103515245u + 12345u;
        f->x[i] = (float)((s >> 16) % 1000) / 1000.0f;
    }
    f->y[0] = 3, f->y[1] = 7;
}

static void teardown(fixture *f) {
    trainer_free(&f->t);
    model_free(&f->m);
    clrt_free(&f->rt);
    free(f->x);
}

static float *read_arena(fixture *f, cl_mem mem) {
    size_t n = f->m.n_param_floats;
    float *h = malloc(n * sizeof(float));
    clrt_read(&f->rt, mem, 0, h, n * sizeof(float));
    return h;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static void poke(fixture *f, cl_mem mem, size_t i, float v) {
    clrt_write(&f->rt, mem, i * sizeof(float), &v, sizeof v);
}

Test(trainer, nan_step_keeps_the_weights_of_the_step_before, .timeout = 300) {
    fixture f;
    setup(&f);
    const optim_config sgd = { .lr = 0.01f, .momentum = 0.9f, .weight_decay = 1e-4f };
    float loss;
    cr_assert_eq(train_step(&f.t, f.x, f.y, B, &sgd, &loss), TRAIN_OK);
    float *p1 = read_arena(&f, f.m.arena_params), *b1 = read_arena(&f, f.t.opt.state);
    size_t n = f.m.n_param_floats;
    // Step 2 sees a NaN pixel, step 3 (finite) is enqueued before step 2's status is read.
    float keep = f.x[100];
    f.x[100] = NAN;
    train_step_enqueue(&f.t, f.x, f.y, B, &sgd);
    f.x[100] = keep;
    train_step_enqueue(&f.t, f.x, f.y, B, &sgd);
    cr_expect_eq(train_step_result(&f.t, &loss), TRAIN_BAD_LOSS, "step 2");
    cr_expect(isnan(loss));
    cr_expect_neq(train_step_result(&f.t, &loss), TRAIN_OK, "step 3, behind the failure");
    float *p3 = read_arena(&f, f.m.arena_params), *b3 = read_arena(&f, f.t.opt.state);
    cr_expect(same_bits(p1, p3, n), "weights after the NaN step are step 1's, bitwise");
    cr_expect(same_bits(b1, b3, n), "momentum after the NaN step is step 1's, bitwise");
    free(p1), free(b1), free(p3), free(b3);
    teardown(&f);
}

Test(trainer, nan_gradient_skips_the_update, .timeout = 300) {
    fixture f;
    setup(&f);
    const optim_config sgd = { .lr = 0.01f, .momentum = 0.0f, .weight_decay = 0.0f };
    float loss;
    size_t n = f.m.n_param_floats;
    float *p0 = read_arena(&f, f.m.arena_params);
    size_t where[3] = { f.t.grad_off, f.t.grad_off + f.t.grad_n / 2, n - 1 };
    for (int w = 0; w < 3; w++) {
        train_step_backward(&f.t, f.x, f.y, B);
        poke(&f, f.m.arena_grads, where[w], w == 1 ? INFINITY : NAN);
        cr_expect_eq(train_step_update(&f.t, &sgd, &loss), TRAIN_BAD_GRADIENT, "at %zu",
                     where[w]);
        cr_expect(isfinite(loss));
        float *p = read_arena(&f, f.m.arena_params);
        cr_expect(same_bits(p0, p, n), "weights untouched (gradient at %zu)", where[w]);
        free(p);
    }
    // Re-armed after each failure: a finite step trains again.
    cr_expect_eq(train_step(&f.t, f.x, f.y, B, &sgd, &loss), TRAIN_OK);
    float *p1 = read_arena(&f, f.m.arena_params);
    cr_expect(!same_bits(p0, p1, n), "a finite step after the failures updates");
    free(p0), free(p1);
    teardown(&f);
}

Test(trainer, overflowing_update_is_reported, .timeout = 300) {
    fixture f;
    setup(&f);
    // p - lr * (g + weight_decay * p) = 3e38 + 3e38: the update itself overflows.
    const optim_config sgd = { .lr = 1.0f, .momentum = 0.0f, .weight_decay = -1.0f };
    float loss;
    train_step_backward(&f.t, f.x, f.y, B);
    poke(&f, f.m.arena_params, f.m.n_param_floats - 1, 3e38f);
    cr_expect_eq(train_step_update(&f.t, &sgd, &loss), TRAIN_BAD_WEIGHTS);
    cr_expect_eq(train_step(&f.t, f.x, f.y, B, &(optim_config){ .lr = 0.01f }, &loss),
                 TRAIN_BAD_LOSS, "the infinite weight reaches the next loss");
    teardown(&f);
}

// --accumulate: a group of the same batch twice is one step on that batch, bitwise (the sum
// g + g and its mean * 0.5 are exact, and so is the loss's), for SGD with Nesterov and for
// AdamW with clipping; a NaN in the group's first batch reaches the step's guard.
static void accumulate_case(const optim_config *base) {
    fixture a, b;
    setup(&a);
    setup(&b);
    optim_config acc = *base, one = *base;
    acc.accumulate = 2;
    one.accumulate = 1;
    char err[256];
    cr_assert_eq(trainer_set_optim(&a.t, &acc, err, sizeof err), 0, "%s", err);
    cr_assert_eq(trainer_set_optim(&b.t, &one, err, sizeof err), 0, "%s", err);
    float la, lb;
    for (int k = 0; k < 2; k++) {
        train_micro_enqueue(&a.t, a.x, a.y, B, &acc);
        cr_assert_eq(train_step(&a.t, a.x, a.y, B, &acc, &la), TRAIN_OK);
        cr_assert_eq(train_step(&b.t, b.x, b.y, B, &one, &lb), TRAIN_OK);
        cr_expect(memcmp(&la, &lb, sizeof la) == 0, "step %d: loss %.9g, one batch's %.9g", k,
                  la, lb);
        if (base->clip_grad_norm > 0)
            cr_expect(memcmp(&a.t.grad_norm, &b.t.grad_norm, sizeof la) == 0 &&
                      b.t.grad_norm > base->clip_grad_norm, "step %d: norm %.9g, %.9g", k,
                      a.t.grad_norm, b.t.grad_norm);
    }
    size_t n = a.m.n_param_floats, ns = n * (size_t)a.t.opt.nstate;
    float *pa = read_arena(&a, a.m.arena_params), *pb = read_arena(&b, b.m.arena_params);
    cr_expect(same_bits(pa, pb, n), "accumulated weights differ from one batch's");
    float *sa = malloc(ns * sizeof(float)), *sb = malloc(ns * sizeof(float));
    clrt_read(&a.rt, a.t.opt.state, 0, sa, ns * sizeof(float));
    clrt_read(&b.rt, b.t.opt.state, 0, sb, ns * sizeof(float));
    cr_expect(same_bits(sa, sb, ns), "accumulated optimizer state differs from one batch's");
    // A NaN pixel in a group's first batch: the group's step is skipped.
    float keep = a.x[100];
    a.x[100] = NAN;
    train_micro_enqueue(&a.t, a.x, a.y, B, &acc);
    a.x[100] = keep;
    cr_expect_eq(train_step(&a.t, a.x, a.y, B, &acc, &la), TRAIN_BAD_LOSS);
    float *pc = read_arena(&a, a.m.arena_params);
    cr_expect(same_bits(pa, pc, n), "the guarded group left the weights");
    free(pa), free(pb), free(pc), free(sa), free(sb);
    teardown(&a);
    teardown(&b);
}

Test(trainer, accumulated_twice_is_one_batch_sgd_nesterov, .timeout = 300) {
    optim_config c = { .lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4 };
    c.nesterov = 1;
    accumulate_case(&c);
}

Test(trainer, accumulated_twice_is_one_batch_adamw_clipped, .timeout = 300) {
    optim_config c = test_adamw_clipped();
    accumulate_case(&c);
}
