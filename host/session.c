// Shared set-up and evaluation for train, eval and bench.
#define _POSIX_C_SOURCE 200809L
#include "host/session.h"

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
}

double session_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int session_load_weights(resnet *m, const run_options *o, char *err, size_t errlen) {
    ckpt c;
    ckpt_init(&c);
    if (ckpt_read(&c, o->weights, err, errlen) != 0) return 1;
    // A cltrain training state keeps the model under "model.".
    const char *base = ckpt_find(&c, "model.conv1.weight") >= 0 ? "model." : NULL;
    int replaced = 0;
    int rc = resnet_from_ckpt(m, &c, base, o->strict, (uint64_t)o->seed + 1, &replaced,
                              o->weights, err, errlen);
    ckpt_free(&c);
    if (rc == 0 && replaced)
        fprintf(stderr, "cltrain: %s: fc has another number of classes; replaced by a freshly "
                        "initialised fc with %d outputs\n", o->weights, m->num_classes);
    return rc;
}

void session_eval_loader(const run_options *o, loader_config *lc) {
    *lc = (loader_config){ .batch_size = o->batch_size, .image_size = o->image_size,
                           .normalize = o->normalize, .augment = 0, .shuffle = 0,
                           .seed = (uint64_t)o->seed, .limit = o->test_limit };
}

void session_train_loader(const run_options *o, loader_config *lc) {
    *lc = (loader_config){ .batch_size = o->batch_size, .image_size = o->image_size,
                           .normalize = o->normalize, .augment = o->augment,
                           .shuffle = o->shuffle, .seed = (uint64_t)o->seed,
                           .limit = o->train_limit };
}
