// The network description and the activation plan (model/graph.c, model/plan.c): what a
// description may not say, and the plan's promise that no two buffers alive at the same time
// share memory, for every ResNet, for training and for forward-only plans.
#include "model/model_internal.h"
#include "tests/testutil.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void plan_of(model *m, const char *arch, int batch, int size, int forward_only) {
    char err[512];
    model_arch a;
    cr_assert_eq(model_arch_named(&a, arch, 10, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_init_arch(m, test_ops(), &a, err, sizeof err), 0, "%s", err);
    model_plan_options po = { .keep_cols = -1, .forward_only = forward_only };
    cr_assert_eq(model_plan(m, batch, size, &po, err, sizeof err), 0, "%s", err);
}

// Every pair of buffers alive at a common time lies apart; every used buffer is placed inside
// its chunk. Returns the number of buffers placed.
static int expect_disjoint(const model *m) {
    const act_plan *p = m->plan;
    int placed = 0;
    for (int i = 0; i < p->nbufs; i++) {
        const plan_buf *a = &p->bufs[i];
        if (a->chunk < 0 || a->lo > a->hi) continue;
        placed++;
        cr_assert_lt(a->chunk, p->nchunks);
        cr_assert_leq(a->off + a->floats, p->chunk_floats[a->chunk], "buffer %d past its chunk", i);
        for (int j = i + 1; j < p->nbufs; j++) {
            const plan_buf *b = &p->bufs[j];
            if (b->chunk != a->chunk || b->lo > b->hi || a->hi < b->lo || b->hi < a->lo) continue;
            int apart = a->off + a->floats <= b->off || b->off + b->floats <= a->off;
            cr_assert(apart, "%s: buffers %d [%d, %d] and %d [%d, %d] overlap at %zu/%zu",
                      m->arch, i, a->lo, a->hi, j, b->lo, b->hi, a->off, b->off);
        }
    }
    return placed;
}

Test(plan, no_two_live_buffers_share_memory, .timeout = 120) {
    static const char *archs[] = { "resnet18", "resnet34", "resnet50", "resnet101", "resnet152" };
    for (size_t k = 0; k < sizeof archs / sizeof archs[0]; k++) {
        model t, e;
        plan_of(&t, archs[k], 3, 64, 0);
        plan_of(&e, archs[k], 3, 64, 1);
        int nt = expect_disjoint(&t), ne = expect_disjoint(&e);
        size_t sum = 0;
        for (int i = 0; i < t.plan->nbufs; i++)
            if (t.plan->bufs[i].chunk >= 0) sum += t.plan->bufs[i].floats * sizeof(float);
        cr_log_info("%s at 3x64: training %d buffers, %zu KiB in the arena (%zu KiB without "
                    "sharing); forward-only %d buffers, %zu KiB", archs[k], nt,
                    t.arena_bytes / 1024, sum / 1024, ne, e.arena_bytes / 1024);
        cr_expect_lt(t.arena_bytes, sum, "%s: lifetimes share memory", archs[k]);
        cr_expect_lt(e.arena_bytes * 4, t.arena_bytes, "%s: a forward-only plan keeps nothing "
                     "for backward", archs[k]);
        model_free(&t);
        model_free(&e);
    }
}

// The same logits from a forward-only plan as from a training plan, bit for bit.
Test(plan, forward_only_same_logits) {
    model t, e;
    plan_of(&t, "resnet34", 4, 40, 0);
    plan_of(&e, "resnet34", 4, 40, 1);
    cr_assert_eq(model_init_weights(&t, 11), 0);
    cr_assert_eq(model_init_weights(&e, 11), 0);
    size_t nx = 3 * 4 * 40 * 40;
    float *x = malloc(nx * sizeof(float)), a[40], b[40];
    for (size_t i = 0; i < nx; i++) x[i] = (float)((i * 7919u) % 255) / 255.0f - 0.5f;
    clrt_write(t.rt, t.x.mem, 0, x, nx * sizeof(float));
    clrt_write(e.rt, e.x.mem, 0, x, nx * sizeof(float));
    model_forward(&t, 4, 0);
    model_forward(&e, 4, 0);
    clrt_read(t.rt, t.logits.mem, 0, a, sizeof a);
    clrt_read(e.rt, e.logits.mem, 0, b, sizeof b);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    free(x);
    model_free(&t);
    model_free(&e);
}

static void small_desc(model_desc *d) {
    cr_assert_eq(model_desc_init(d, "tiny", 8), 0);
    cr_assert_eq(model_desc_stage(d, "body"), 0);
    cr_assert_eq(model_desc_stage(d, "head"), 1);
}

static node conv_node(int in, int out, int groups) {
    node n = { .kind = NODE_CONV, .in = { in, -1 }, .out = out, .k = 3, .stride = 1, .pad = 1,
               .groups = groups, .name = "c" };
    return n;
}

static void head(model_desc *d, int in) {
    node g = { .kind = NODE_GAP, .in = { in, -1 } };
    node f = { .kind = NODE_FLATTEN, .in = { model_desc_add(d, &g), -1 } };
    node l = { .kind = NODE_LINEAR, .in = { model_desc_add(d, &f), -1 }, .out = 4, .stage = 1,
               .name = "fc" };
    cr_assert_geq(model_desc_add(d, &l), 0);
}

// model_init refuses d (and empties it) with a message holding `why`.
static void expect_refused(model_desc *d, const char *why) {
    char err[256] = "";
    model m;
    cr_expect_neq(model_init(&m, test_ops(), d, err, sizeof err), 0, "accepted: %s", why);
    cr_expect(strstr(err, why), "'%s' lacks '%s'", err, why);
    model_free(&m);
    model_desc_free(d);
}

Test(plan, descriptions_that_cannot_run) {
    char err[256];
    model m;
    model_desc d;
    node c;
    small_desc(&d);  // a node reading one that comes after it
    c = conv_node(2, 8, 1);
    model_desc_add(&d, &c);
    head(&d, 1);
    expect_refused(&d, "does not come before it");
    small_desc(&d);  // the last node is not the classifier
    c = conv_node(0, 8, 1);
    model_desc_add(&d, &c);
    expect_refused(&d, "classifier");
    small_desc(&d);  // channels that do not divide into the groups
    c = conv_node(0, 8, 2);
    model_desc_add(&d, &c);
    head(&d, 1);
    expect_refused(&d, "groups 2");
    small_desc(&d);  // more stages before the classifier than --freeze backbone covers
    for (int k = 0; k < 5; k++) {
        char name[24];
        snprintf(name, sizeof name, "extra%d", k);
        model_desc_stage(&d, name);
    }
    c = conv_node(0, 8, 1);
    model_desc_add(&d, &c);
    head(&d, 1);
    d.nodes[d.nnodes - 1].stage = d.nstages - 1;
    expect_refused(&d, "6 stages before the classifier, at most 5");
    // A grouped conv describes (its table is right) but has no kernels yet: the plan says so.
    small_desc(&d);
    c = conv_node(0, 6, 3);
    model_desc_add(&d, &c);
    head(&d, 1);
    cr_assert_eq(model_init(&m, test_ops(), &d, err, sizeof err), 0, "%s", err);
    cr_expect_eq(m.params[0].shape[1], 1, "weight (6, 3/3, 3, 3)");
    cr_expect_eq(model_plan(&m, 2, 8, NULL, err, sizeof err), 2);
    cr_expect(strstr(err, "'c' (conv) has no kernels"), "%s", err);
    model_free(&m);
    model_desc_free(&d);
}

// The first conv's weight gradient of m (planned for 2 images at 6x6, weights initialised)
// against central finite differences of the loss, on every 13th weight; float32 losses
// through h = 1e-3 leave about 2e-4 of noise. Returns how many weights got a gradient.
static int expect_fd_gradients(model *m, const char *what) {
    float xin[3 * 2 * 36], conv_w[4 * 3 * 9], g[4 * 3 * 9];
    for (int i = 0; i < 3 * 2 * 36; i++) xin[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    clrt_write(m->rt, m->x.mem, 0, xin, sizeof xin);
    int32_t labels[2] = { 1, 3 };
    clrt_write(m->rt, m->labels.mem, 0, labels, sizeof labels);
    model_forward(m, 2, 1);
    model_loss(m, 2);
    model_backward(m, 2);
    clrt_read(m->rt, m->arena_grads, 0, g, sizeof g);
    clrt_read(m->rt, m->arena_params, 0, conv_w, sizeof conv_w);
    int nonzero = 0;
    for (int k = 0; k < 108; k++) nonzero += g[k] != 0.0f;
    for (int k = 0; k < 108; k += 13) {
        float h = 1e-3f, lp, lm, w0 = conv_w[k];
        float wp = w0 + h, wm = w0 - h;
        clrt_write(m->rt, m->arena_params, (size_t)k * sizeof(float), &wp, sizeof wp);
        model_forward(m, 2, 0);
        model_loss(m, 2);
        clrt_read(m->rt, m->loss_mean.mem, 0, &lp, sizeof lp);
        clrt_write(m->rt, m->arena_params, (size_t)k * sizeof(float), &wm, sizeof wm);
        model_forward(m, 2, 0);
        model_loss(m, 2);
        clrt_read(m->rt, m->loss_mean.mem, 0, &lm, sizeof lm);
        clrt_write(m->rt, m->arena_params, (size_t)k * sizeof(float), &w0, sizeof w0);
        float fd = (lp - lm) / (2 * h);
        cr_expect(fabsf(fd - g[k]) <= 5e-4f + 1e-2f * fabsf(fd),
                  "%s: conv weight %d: backward %g, finite difference %g", what, k, g[k], fd);
    }
    return nonzero;
}

static void plan_tiny(model *m, model_desc *d) {
    char err[256];
    cr_assert_eq(model_init(m, test_ops(), d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_plan(m, 2, 6, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_init_weights(m, 3), 0);
}

// A value read twice (relu(x) + x, the relu not fused: its input is a conv) gets the sum of
// both gradients.
Test(plan, value_used_twice_gets_both_gradients) {
    model m;
    model_desc d;
    small_desc(&d);
    node c = conv_node(0, 4, 1);
    int x = model_desc_add(&d, &c);
    node r = { .kind = NODE_ACT, .act = ACT_RELU, .in = { x, -1 } };
    int y = model_desc_add(&d, &r);
    node add = { .kind = NODE_ADD, .in = { y, x } };
    head(&d, model_desc_add(&d, &add));
    plan_tiny(&m, &d);
    int nonzero = expect_fd_gradients(&m, "relu(x) + x");
    cr_expect_gt(nonzero, 50, "the conv's weights get gradients (%d of 108)", nonzero);
    model_free(&m);
}

// Every activation through the walk: conv -> act -> conv -> head, the gradient through it
// against finite differences (the ops themselves are checked against C in ops_act).
Test(plan, every_activation_trains) {
    static const struct { act_kind act; const char *name; } acts[] = {
        { ACT_RELU, "relu" }, { ACT_RELU6, "relu6" }, { ACT_HARDSWISH, "hardswish" },
        { ACT_HARDSIGMOID, "hardsigmoid" }, { ACT_SILU, "silu" }, { ACT_SIGMOID, "sigmoid" },
    };
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
        model m;
        model_desc d;
        small_desc(&d);
        node c = conv_node(0, 4, 1);
        node a = { .kind = NODE_ACT, .act = acts[k].act, .in = { model_desc_add(&d, &c), -1 } };
        node c2 = conv_node(model_desc_add(&d, &a), 5, 1);
        head(&d, model_desc_add(&d, &c2));
        plan_tiny(&m, &d);
        int nonzero = expect_fd_gradients(&m, acts[k].name);
        cr_expect_gt(nonzero, 20, "%s: the first conv's weights get gradients (%d of 108)",
                     acts[k].name, nonzero);
        model_free(&m);
    }
}

// Squeeze-and-excitation's shape: x = conv, its mean per channel through a gate (sigmoid) scales
// x itself (x is read by the pool and by the scale: two gradient terms).
Test(plan, channel_scale_trains) {
    model m;
    model_desc d;
    small_desc(&d);
    node c = conv_node(0, 4, 1);
    int x = model_desc_add(&d, &c);
    node g = { .kind = NODE_GAP, .in = { x, -1 } };
    node gate = { .kind = NODE_ACT, .act = ACT_SIGMOID, .in = { model_desc_add(&d, &g), -1 } };
    node scale = { .kind = NODE_MUL, .in = { x, model_desc_add(&d, &gate) } };
    head(&d, model_desc_add(&d, &scale));
    plan_tiny(&m, &d);
    int nonzero = expect_fd_gradients(&m, "x * sigmoid(mean(x))");
    cr_expect_gt(nonzero, 50, "the conv's weights get gradients (%d of 108)", nonzero);
    model_free(&m);
}
