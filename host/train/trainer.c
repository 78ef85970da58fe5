// The training step and evaluation: see trainer.h.
#include "host/train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { STATUS_LOSS, STATUS_GRADS, STATUS_PARAMS, STATUS_BUFFERS, STATUS_WORDS };

int trainer_init(trainer *t, resnet *m) {
    memset(t, 0, sizeof *t);
    t->m = m;
    t->status = clrt_alloc(m->rt, STATUS_WORDS * sizeof(cl_int), "training step status");
    // The trainable parameters form one contiguous suffix of the arena (stages are in order),
    // as resnet_sgd updates them.
    t->grad_off = m->n_param_floats;
    for (int i = 0; i < m->nparams; i++)
        if (resnet_param_trainable(m, i)) { t->grad_off = m->params[i].off; break; }
    t->grad_n = m->n_param_floats - t->grad_off;
    return 0;
}

void trainer_free(trainer *t) {
    if (t->status) clReleaseMemObject(t->status);
    t->status = NULL;
}

static void upload(resnet *m, const float *x, const int32_t *labels, int n) {
    size_t S = (size_t)m->image_size;
    clrt_write(m->rt, m->x.mem, 0, x, 3 * (size_t)n * S * S * sizeof(float));
    if (labels) clrt_write(m->rt, m->labels.mem, 0, labels, (size_t)n * sizeof(int32_t));
}

static dten status_word(const trainer *t, int i) { return (dten){ t->status, (size_t)i }; }

void train_step_backward(trainer *t, const float *x, const int32_t *labels, int n) {
    resnet *m = t->m;
    upload(m, x, labels, n);
    resnet_forward(m, n, 1);
    resnet_loss(m, n);
    resnet_backward(m, n);
}

train_status train_step(trainer *t, const float *x, const int32_t *labels, int n,
                        const sgd_config *sgd, float *loss) {
    train_step_backward(t, x, labels, n);
    return train_step_update(t, sgd, loss);
}

train_status train_step_update(trainer *t, const sgd_config *sgd, float *loss) {
    resnet *m = t->m;
    clrt *rt = m->rt;
    clrt_profile_layer(rt, "checks");
    if (t->grad_n)
        op_all_finite_flag(rt, status_word(t, STATUS_GRADS),
                           (dten){ m->arena_grads, t->grad_off }, t->grad_n);
    resnet_sgd(m, sgd->lr, sgd->momentum, sgd->weight_decay);
    clrt_profile_layer(rt, "checks");
    op_all_finite_flag(rt, status_word(t, STATUS_PARAMS), (dten){ m->arena_params, 0 },
                       m->n_param_floats);
    if (m->n_buffer_floats)
        op_all_finite_flag(rt, status_word(t, STATUS_BUFFERS), (dten){ m->arena_buffers, 0 },
                           m->n_buffer_floats);
    clrt_copy(rt, t->status, STATUS_LOSS * sizeof(cl_int), m->loss_mean.mem,
              m->loss_mean.off * sizeof(float), sizeof(float));
    cl_int w[STATUS_WORDS];
    clrt_read(rt, t->status, 0, w, sizeof w);  // the step's one sync
    memcpy(loss, &w[STATUS_LOSS], sizeof *loss);
    if (!isfinite(*loss)) return TRAIN_BAD_LOSS;
    if (t->grad_n && w[STATUS_GRADS] != 1) return TRAIN_BAD_GRADIENT;
    if (w[STATUS_PARAMS] != 1 || (m->n_buffer_floats && w[STATUS_BUFFERS] != 1))
        return TRAIN_BAD_WEIGHTS;
    return TRAIN_OK;
}

const char *train_status_what(train_status s) {
    switch (s) {
    case TRAIN_BAD_LOSS: return "loss";
    case TRAIN_BAD_GRADIENT: return "gradient";
    case TRAIN_BAD_WEIGHTS: return "weights after the update";
    default: return "";
    }
}

void trainer_predict(trainer *t, const float *x, int n, float *logits) {
    resnet *m = t->m;
    upload(m, x, NULL, n);
    resnet_forward(m, n, 0);
    clrt_read(m->rt, m->logits.mem, m->logits.off * sizeof(float), logits,
              (size_t)m->num_classes * n * sizeof(float));
}

// Adds batch results: torch.max's first maximum over logits (K, n) is the prediction.
// One CSV row: index, the file's path for image folders (quoted as CSV: names may hold
// commas, quotes and newlines), label, prediction, then the logits.
static void csv_row(FILE *csv, const dataset_split *split, long index, int label, int pred,
                    const float *logits, int n, int b, int K) {
    char path[4096];
    fprintf(csv, "%ld,", index);
    if (split->files) {
        dataset_path(split, (int)index, path, sizeof path);
        fputc('"', csv);
        for (const char *p = path; *p; p++) fprintf(csv, *p == '"' ? "\"\"" : "%c", *p);
        fputs("\",", csv);
    }
    fprintf(csv, "%d,%d", label, pred);
    for (int k = 0; k < K; k++) fprintf(csv, ",%.9g", logits[(size_t)k * n + b]);
    fprintf(csv, "\n");
}

int eval_stats_init(eval_stats *s, int num_classes) {
    memset(s, 0, sizeof *s);
    s->num_classes = num_classes;
    s->confusion = calloc((size_t)num_classes * num_classes, sizeof *s->confusion);
    return s->confusion ? 0 : -1;
}

void eval_stats_free(eval_stats *s) {
    free(s->confusion);
    memset(s, 0, sizeof *s);
}

// Keeps the EVAL_WORST_MAX mistakes of highest probability, sorted; a tie does not displace
// an earlier image, so the list does not depend on the batch size.
static void add_worst(eval_stats *s, long index, int label, int pred, double prob) {
    int i = s->n_worst < EVAL_WORST_MAX ? s->n_worst++ : EVAL_WORST_MAX;
    if (i == EVAL_WORST_MAX) {
        if (prob <= s->worst[EVAL_WORST_MAX - 1].prob) return;
        i = EVAL_WORST_MAX - 1;
    }
    for (; i > 0 && s->worst[i - 1].prob < prob; i--) s->worst[i] = s->worst[i - 1];
    s->worst[i] = (eval_worst){ index, label, pred, prob };
}

static long score_batch(const dataset_split *split, const float *logits, const int32_t *y,
                        int n, int K, long index, eval_stats *stats, FILE *csv) {
    long correct = 0;
    for (int b = 0; b < n; b++, index++) {
        int pred = 0;  // torch.max: the first maximum
        for (int k = 1; k < K; k++)
            if (logits[(size_t)k * n + b] > logits[(size_t)pred * n + b]) pred = k;
        int label = y[b];
        correct += pred == label;
        if (stats && label >= 0 && label < K && K == stats->num_classes) {
            stats->confusion[(size_t)label * K + pred]++;
            if (pred != label) {  // torch.softmax(logits)[pred]: 1 / sum exp(l_k - l_pred)
                double sum = 0, top = logits[(size_t)pred * n + b];
                for (int k = 0; k < K; k++) sum += exp((double)logits[(size_t)k * n + b] - top);
                add_worst(stats, index, label, pred, 1.0 / sum);
            }
        }
        if (csv) csv_row(csv, split, index, label, pred, logits, n, b, K);
    }
    return correct;
}

long trainer_evaluate(trainer *t, const dataset_split *split, const loader_config *lc,
                      long *total, eval_stats *stats, FILE *csv, char *err, size_t errlen) {
    resnet *m = t->m;
    loader_config c = *lc;
    c.augment = 0;
    c.shuffle = 0;
    loader ld;
    *total = 0;
    if (loader_init(&ld, split, &c, err, errlen) != 0) return -1;
    int K = m->num_classes, B = c.batch_size;
    size_t S = (size_t)c.image_size;
    clrt_host_buf xb, yb, lb;  // pinned host memory for the transfers
    float *x = clrt_host_alloc(m->rt, &xb, 3 * (size_t)B * S * S * sizeof(float));
    int32_t *y = clrt_host_alloc(m->rt, &yb, (size_t)B * sizeof(int32_t));
    float *logits = clrt_host_alloc(m->rt, &lb, (size_t)K * B * sizeof(float));
    long correct = 0;
    loader_start_epoch(&ld, 0, 0);
    int n;
    while ((n = loader_next(&ld, x, y)) > 0) {
        trainer_predict(t, x, n, logits);
        correct += score_batch(split, logits, y, n, K, *total, stats, csv);
        *total += n;
    }
    if (n < 0) {  // a file that failed to decode mid-run
        snprintf(err, errlen, "%s", ld.error);
        correct = -1;
    }
    loader_free(&ld);
    clrt_host_free(m->rt, &xb);
    clrt_host_free(m->rt, &yb);
    clrt_host_free(m->rt, &lb);
    return correct;
}

long trainer_bn_values(const resnet *m, int n) {
    return (long)n * resnet_final_hw(m);  // the last block's output plane
}
