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
    o->steps = 10;
    o->strict = 1;           // load_state_dict(strict=True)
}

double session_now(void) { return util_now(); }

int session_arch(resnet_config *cfg, const run_options *o, int num_classes, char *err,
                 size_t errlen) {
    const char *file = o->resume ? o->resume : o->weights;  // a state holds its model
    if (o->arch || !file)
        return resnet_config_named(cfg, o->arch ? o->arch : "resnet18", num_classes, err, errlen);
    ckpt c;
    ckpt_init(&c);
    if (ckpt_read(&c, file, err, errlen) != 0) return 1;
    const char *base = ckpt_find(&c, "model.conv1.weight") >= 0 ? "model." : NULL;
    int rc = resnet_config_from_ckpt(cfg, &c, base, file, err, errlen);
    ckpt_free(&c);
    if (rc == 1)  // no ResNet at all: loading it says so, after the device checks
        return resnet_config_named(cfg, "resnet18", num_classes, err, errlen);
    cfg->num_classes = num_classes;
    return rc ? 1 : 0;
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
    if (rc == 0 && err[0]) fprintf(stderr, "cltrain: warning: %s\n", err);
    if (rc == 0 && replaced)
        fprintf(stderr, "cltrain: %s: fc has another number of classes; replaced by a freshly "
                        "initialised fc with %d outputs\n", o->weights, m->num_classes);
    return rc;
}

void session_upload_batch(resnet *m, const float *x, const int32_t *labels, int n) {
    size_t S = (size_t)m->image_size;
    clrt_write(m->rt, m->x.mem, 0, x, 3 * (size_t)n * S * S * sizeof(float));
    if (labels) clrt_write(m->rt, m->labels.mem, 0, labels, (size_t)n * sizeof(int32_t));
}

long session_evaluate(resnet *m, const dataset_split *split, const run_options *o,
                      long *total, long *per_class_correct, long *per_class_total, FILE *csv,
                      char *err, size_t errlen) {
    loader_config lc = { .batch_size = o->batch_size, .image_size = o->image_size,
                         .normalize = o->normalize, .augment = 0, .shuffle = 0,
                         .seed = (uint64_t)o->seed, .limit = o->test_limit };
    loader ld;
    *total = 0;
    if (loader_init(&ld, split, &lc, err, errlen) != 0) return -1;
    int K = m->num_classes, B = o->batch_size;
    size_t S = (size_t)o->image_size;
    clrt_host_buf xb, yb, lb;  // pinned host memory for the transfers
    float *x = clrt_host_alloc(m->rt, &xb, 3 * (size_t)B * S * S * sizeof(float));
    int32_t *y = clrt_host_alloc(m->rt, &yb, (size_t)B * sizeof(int32_t));
    float *logits = clrt_host_alloc(m->rt, &lb, (size_t)K * B * sizeof(float));
    long correct = 0, index = 0;
    loader_start_epoch(&ld, 0, 0);
    int n;
    while ((n = loader_next(&ld, x, y)) > 0) {
        session_upload_batch(m, x, NULL, n);
        resnet_forward(m, n, 0);
        clrt_read(m->rt, m->logits.mem, 0, logits, (size_t)K * n * sizeof(float));  // (K, n)
        for (int b = 0; b < n; b++, index++) {
            int pred = 0;  // torch.max: the first maximum
            for (int k = 1; k < K; k++)
                if (logits[(size_t)k * n + b] > logits[(size_t)pred * n + b]) pred = k;
            int label = y[b];
            correct += pred == label;
            if (per_class_total && label >= 0 && label < K) {
                per_class_total[label]++;
                per_class_correct[label] += pred == label;
            }
            if (csv) {
                fprintf(csv, "%ld,%d,%d", index, label, pred);
                for (int k = 0; k < K; k++) fprintf(csv, ",%.9g", logits[(size_t)k * n + b]);
                fprintf(csv, "\n");
            }
        }
        *total += n;
    }
    loader_free(&ld);
    clrt_host_free(m->rt, &xb);
    clrt_host_free(m->rt, &yb);
    clrt_host_free(m->rt, &lb);
    return correct;
}
