// Shared set-up and evaluation for train, eval and bench.
#define _POSIX_C_SOURCE 200809L
#include "host/train/session.h"
#include "common/clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void run_options_defaults(run_options *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 10;          // the seed's defaults
    o->batch_size = 64;
    o->lr = 0.001;
    o->momentum = 0.9;
    o->image_size = 224;
    o->shuffle = 1;
    o->print_every = 100;
    o->freeze = -1;
    o->strict = 1;           // PyTorch's load_state_dict(strict=True); --non-strict
    o->steps = 10;
    o->strict = 1;           // load_state_dict(strict=True)
    optim_config c;
    optim_config_defaults(&c);
    o->optimizer = (int)c.kind;
    o->beta1 = c.beta1;
    o->beta2 = c.beta2;
    o->eps = c.eps;
    o->norm_weight_decay = -1;  // --weight-decay's
    o->accumulate = 1;
}

void session_optim_config(const run_options *o, optim_config *c) {
    optim_config_defaults(c);
    c->kind = (optim_kind)o->optimizer;
    c->lr = o->lr;
    c->momentum = o->optimizer == OPTIM_SGD ? o->momentum : 0;
    c->weight_decay = o->weight_decay;
    c->nesterov = o->nesterov;
    c->beta1 = o->beta1;
    c->beta2 = o->beta2;
    c->eps = o->eps;
    c->norm_decay_set = o->norm_weight_decay >= 0;
    c->norm_weight_decay = c->norm_decay_set ? o->norm_weight_decay : o->weight_decay;
    c->clip_grad_norm = o->clip_grad_norm;
    c->accumulate = o->accumulate > 1 ? o->accumulate : 1;
}

double session_now(void) { return util_now(); }

// The config a checkpoint holds (base "model." for a training state); a file with no ResNet at
// all gets resnet18, so that loading it names the problem after the device checks.
static int arch_of(model_arch *cfg, const ckpt *c, const char *fname, int num_classes,
                   char *err, size_t errlen) {
    const char *base = ckpt_find(c, "model.conv1.weight") >= 0 ? "model." : NULL;
    int rc = model_arch_from_ckpt(cfg, c, base, fname, err, errlen);
    if (rc == 1) return model_arch_named(cfg, "resnet18", num_classes, err, errlen);
    cfg->num_classes = num_classes;
    return rc ? 1 : 0;
}

int session_read_weights(ckpt *c, const run_options *o, char *err, size_t errlen) {
    ckpt_init(c);
    return o->weights && ckpt_read(c, o->weights, err, errlen) != 0;
}

int session_weights_classes(const ckpt *c) {
    char prefix[192], key[256];
    if (model_ckpt_prefix(c, NULL, prefix, sizeof prefix) != 0) return 0;
    snprintf(key, sizeof key, "%sfc.weight", prefix);
    int j = ckpt_find(c, key);
    return j >= 0 && c->e[j].kind == CKPT_TENSOR && c->e[j].ndim == 2 ? (int)c->e[j].shape[0] : 0;
}

int session_arch(model_arch *cfg, const run_options *o, const ckpt *from, int num_classes,
                 char *err, size_t errlen) {
    if (o->resume && from) {  // the state holds its model; --arch may only repeat it
        if (arch_of(cfg, from, o->resume, num_classes, err, errlen) != 0) return 1;
        if (o->arch && strcmp(o->arch, cfg->arch)) {
            snprintf(err, errlen, "--arch %s contradicts the saved training state's %s in %s",
                     o->arch, cfg->arch, o->resume);
            return 2;
        }
        return 0;
    }
    if (o->arch || !from)
        return model_arch_named(cfg, o->arch ? o->arch : "resnet18", num_classes, err, errlen);
    return arch_of(cfg, from, o->weights, num_classes, err, errlen);
}

int session_plan(model *m, int batch, int image_size, char *err, size_t errlen) {
    const ops_config *oc = m->rt->ops_cfg;   // CLTRAIN_KEEP_COLS, read at start-up
    model_plan_options po = { oc && oc->keep_cols == 0 ? 0 : -1 };
    char why[512];
    int rc = model_plan(m, batch, image_size, &po, why, sizeof why);
    if (rc == MODEL_PLAN_NO_FIT) {
        int fit = model_largest_batch(m, batch, image_size);
        char tail[96];
        if (fit) snprintf(tail, sizeof tail, "the largest batch size that fits is %d", fit);
        else snprintf(tail, sizeof tail, "not even batch size 1 fits: use a smaller --image-size");
        snprintf(err, errlen, "--batch-size %d at --image-size %d: %s; %s", batch, image_size, why,
                 tail);
        return 1;
    }
    if (rc) snprintf(err, errlen, "%s", why);
    return rc;
}

int session_load_weights(model *m, const ckpt *c, const run_options *o, char *err,
                         size_t errlen) {
    // A cltrain training state keeps the model under "model.".
    const char *base = ckpt_find(c, "model.conv1.weight") >= 0 ? "model." : NULL;
    int replaced = 0;
    int rc = model_from_ckpt(m, c, base, o->strict, (uint64_t)o->seed + 1, &replaced,
                              o->weights, err, errlen);
    if (rc == 0 && err[0]) fprintf(stderr, "cltrain: warning: %s\n", err);
    if (rc == 0 && replaced)
        fprintf(stderr, "cltrain: %s: fc has another number of classes; replaced by a freshly "
                        "initialised fc with %d outputs\n", o->weights, m->num_classes);
    return rc;
}

void session_eval_loader(const run_options *o, loader_config *lc) {
    *lc = session_loader_config(o, 0);
}

void session_train_loader(const run_options *o, loader_config *lc) {
    *lc = session_loader_config(o, 1);
    lc->pad_to = o->replicas;  // each replica's share of the epoch is the same size
}

static void session_warn(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "cltrain: warning: %s (skipped)\n", msg);
}

int session_open_data(dataset *ds, const run_options *o, char *err, size_t errlen) {
    dataset_options dopt = { .format = o->dataset, .val_split = o->val_split,
                             .seed = (uint64_t)o->seed, .skip_bad = o->skip_bad,
                             .warn = session_warn };
    if (dataset_open_ex(ds, o->data, &dopt, err, errlen) != 0) return 1;
    if (ds->skipped) fprintf(stderr, "cltrain: %d bad files skipped\n", ds->skipped);
    if (o->val_split > 0)
        fprintf(stderr, "cltrain: --val-split %g (seed %lld): %d train, %d val images\n",
                o->val_split, o->seed, ds->train.n, ds->test.n);
    return 0;
}

int session_skips_init(session_skips *s, const dataset *ds, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->failed[0] = calloc((size_t)ds->train.n + 1, 1);
    s->failed[1] = calloc((size_t)ds->test.n + 1, 1);
    if (!s->failed[0] || !s->failed[1]) {
        session_skips_free(s);
        snprintf(err, errlen, "out of memory for --skip-bad's list of %d files",
                 ds->train.n + ds->test.n);
        return 1;
    }
    return 0;
}

void session_skips_free(session_skips *s) {
    free(s->failed[0]);
    free(s->failed[1]);
    memset(s, 0, sizeof *s);
}

static void session_skip_warn(void *ctx, const char *msg) {
    struct session_skip_hook *h = ctx;
    session_skips *s = h->s;
    s->count[h->split]++;
    char line[1024];
    snprintf(line, sizeof line, "cltrain: warning: %s (skipped)\n", msg);
    if (s->print) s->print(s->print_ctx, line);
    else fputs(line, stderr);
}

void session_skips_attach(session_skips *s, int split, loader_config *lc) {
    if (!lc->skip_bad || !s->failed[split]) return;
    s->hook[split] = (struct session_skip_hook){ s, split };
    lc->failed = s->failed[split];
    lc->warn = session_skip_warn;
    lc->warn_ctx = &s->hook[split];
}

void session_report_skipped(const dataset *ds, const session_skips *s) {
    int late[2] = { s ? s->count[0] : 0, s ? s->count[1] : 0 };
    int all = ds->skipped + late[0] + late[1];
    if (all)
        fprintf(stderr, "cltrain: --skip-bad: %d bad files left out of this run (%d train, %d "
                        "test images used)\n", all, ds->train.n - late[0], ds->test.n - late[1]);
}

loader_config session_loader_config(const run_options *o, int train) {
    loader_config lc = { .batch_size = o->batch_size, .image_size = o->image_size,
                         .normalize = o->normalize, .augment = train ? o->augment : 0,
                         .shuffle = train ? o->shuffle : 0, .seed = (uint64_t)o->seed,
                         .limit = train ? o->train_limit : o->test_limit,
                         .resize = o->resize, .workers = o->workers,
                         .skip_bad = o->skip_bad };
    return lc;
}
