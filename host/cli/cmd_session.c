// The command layer's share of the set-up: see cmd_session.h.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_session.h"

#include <stdlib.h>
#include <string.h>

int session_read_weights(ckpt *c, const run_options *o, char *err, size_t errlen) {
    ckpt_init(c);
    return o->weights && ckpt_read(c, o->weights, err, errlen) != 0;
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
