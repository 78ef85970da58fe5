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
}

double session_now(void) { return util_now(); }

int session_read_weights(ckpt *c, const run_options *o, char *err, size_t errlen) {
    ckpt_init(c);
    return o->weights && ckpt_read(c, o->weights, err, errlen) != 0;
}

int session_weights_classes(const ckpt *c) {
    char prefix[192], key[256];
    if (resnet_ckpt_prefix(c, NULL, prefix, sizeof prefix) != 0) return 0;
    snprintf(key, sizeof key, "%sfc.weight", prefix);
    int j = ckpt_find(c, key);
    return j >= 0 && c->e[j].kind == CKPT_TENSOR && c->e[j].ndim == 2 ? (int)c->e[j].shape[0] : 0;
}

int session_plan(resnet *m, int batch, int image_size, char *err, size_t errlen) {
    const ops_config *oc = m->rt->ops_cfg;   // CLTRAIN_KEEP_COLS, read at start-up
    resnet_plan_options po = { oc && oc->keep_cols == 0 ? 0 : -1 };
    char why[512];
    int rc = resnet_plan(m, batch, image_size, &po, why, sizeof why);
    if (rc == RESNET_PLAN_NO_FIT) {
        int fit = resnet_largest_batch(m, batch, image_size);
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
