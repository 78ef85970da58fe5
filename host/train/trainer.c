// The training step and evaluation: see trainer.h.
#include "host/train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { STATUS_LOSS, STATUS_GUARD, STATUS_PARAMS, STATUS_BUFFERS, STATUS_NORM };

// The sticky flags back to 1 (enqueued: the steps already queued keep what they saw).
static void arm(trainer *t) {
    clrt_fill_int(t->m->rt, t->status, STATUS_GUARD * sizeof(cl_int),
                  (STATUS_NORM - STATUS_GUARD) * sizeof(cl_int), 1);
}

static size_t stage_bytes(const model *m) {
    size_t S = (size_t)m->image_size, B = (size_t)m->max_batch;
    return 3 * B * S * S * sizeof(float) + B * sizeof(int32_t);
}

int trainer_init(trainer *t, model *m) {
    memset(t, 0, sizeof *t);
    t->m = m;
    t->status = clrt_alloc(m->rt, TRAINER_STATUS_WORDS * sizeof(cl_int), "training step status");
    float nan = NAN;  // no gradient norm until a step clips
    clrt_write(m->rt, t->status, STATUS_NORM * sizeof(cl_int), &nan, sizeof nan);
    t->grad_norm = NAN;
    // The trainable parameters form one contiguous suffix of the arena, as the optimizer
    // updates them.
    t->grad_off = model_first_trainable(m);
    t->grad_n = m->n_param_floats - t->grad_off;
    for (int i = 0; i < 2; i++) clrt_host_alloc(m->rt, &t->stage[i], stage_bytes(m));
    arm(t);
    return 0;
}

void trainer_free(trainer *t) {
    float loss;
    while (t->pending) train_step_result(t, &loss);
    if (t->m)
        for (int i = 0; i < 2; i++) clrt_host_free(t->m->rt, &t->stage[i]);
    if (t->status) clReleaseMemObject(t->status);
    t->status = NULL;
    optim_free(&t->opt);
}

int trainer_set_optim(trainer *t, const optim_config *c, char *err, size_t errlen) {
    optim_free(&t->opt);
    return optim_init(&t->opt, t->m, c, err, errlen);
}

// A step without trainer_set_optim sets the optimizer up from its config (tests, bench).
static void require_optim(trainer *t, const optim_config *c) {
    char err[256];
    if (t->opt.m || trainer_set_optim(t, c, err, sizeof err) == 0) return;
    fprintf(stderr, "cltrain: error: %s\n", err);
    exit(1);
}

static void upload(model *m, const float *x, const int32_t *labels, int n) {
    size_t S = (size_t)m->image_size;
    clrt_write(m->rt, m->x.mem, 0, x, 3 * (size_t)n * S * S * sizeof(float));
    if (labels) clrt_write(m->rt, m->labels.mem, 0, labels, (size_t)n * sizeof(int32_t));
}

// A step's batch through a pinned copy, without a wait. The copy's last reader is the step
// two before, whose status (read after its upload, in queue order) has been taken: at most
// one step is pending when a step is enqueued.
static void upload_staged(trainer *t, const float *x, const int32_t *labels, int n) {
    model *m = t->m;
    size_t S = (size_t)m->image_size, xb = 3 * (size_t)n * S * S * sizeof(float);
    size_t yb = (size_t)n * sizeof(int32_t);
    unsigned char *p = t->stage[t->next_stage].ptr;
    unsigned char *py = p + 3 * (size_t)m->max_batch * S * S * sizeof(float);
    t->next_stage ^= 1;
    memcpy(p, x, xb);
    memcpy(py, labels, yb);
    clrt_write_async(m->rt, m->x.mem, 0, p, xb);
    clrt_write_async(m->rt, m->labels.mem, 0, py, yb);
}

static dten status_word(const trainer *t, int i) { return (dten){ t->status, (size_t)i }; }

static void require_room(const trainer *t) {
    if (t->pending < 2) return;
    fprintf(stderr, "cltrain: internal error: a third training step enqueued before the "
                    "first one's status was read\n");
    abort();
}

// Upload, forward, loss and backward; staged (no wait) for a step's batch, else written at
// once (an accumulated batch: no status read frees its pinned copy).
static void backward(trainer *t, const float *x, const int32_t *labels, int n, int staged) {
    model *m = t->m;
    if (n > m->max_batch || !labels) {
        fprintf(stderr, "cltrain: internal error: a training batch of %d images with%s labels "
                        "for a model planned for %d\n", n, labels ? "" : "out", m->max_batch);
        abort();
    }
    require_room(t);
    if (staged) upload_staged(t, x, labels, n);
    else upload(m, x, labels, n);
    model_forward(m, n, 1);
    model_loss(m, n);
    model_backward(m, n);
}

void train_step_backward(trainer *t, const float *x, const int32_t *labels, int n) {
    backward(t, x, labels, n, 1);
}

void train_micro_enqueue(trainer *t, const float *x, const int32_t *labels, int n,
                         const optim_config *c) {
    require_optim(t, c);
    backward(t, x, labels, n, 0);
    optim_accumulate(&t->opt, t->m->loss_mean, t->micro++, 0);
}

void trainer_accumulate_finish(trainer *t) {
    if (!t->micro) return;
    optim_accumulate(&t->opt, t->m->loss_mean, t->micro, 1);
    t->micro = 0;
}

train_status train_step(trainer *t, const float *x, const int32_t *labels, int n,
                        const optim_config *c, float *loss) {
    train_step_backward(t, x, labels, n);
    return train_step_update(t, c, loss);
}

// The checks, the guarded update and the status read, all enqueued: the loss and every
// gradient into the guard before the update (which it skips unless the guard is 1), the
// weights and running statistics after it.
static void update_enqueue(trainer *t, const optim_config *c) {
    model *m = t->m;
    clrt *rt = m->rt;
    require_optim(t, c);
    trainer_accumulate_finish(t);
    optim_clip(&t->opt, c, status_word(t, STATUS_NORM));
    ops_ctx *ops = m->ops;
    clrt_profile_layer(rt, "checks");
    op_finite_and(ops, status_word(t, STATUS_GUARD), m->loss_mean, 1);
    op_finite_and(ops, status_word(t, STATUS_GUARD), (dten){ m->arena_grads, t->grad_off },
                  t->grad_n);
    optim_step(&t->opt, c, status_word(t, STATUS_GUARD));
    clrt_profile_layer(rt, "checks");
    op_finite_and(ops, status_word(t, STATUS_PARAMS), (dten){ m->arena_params, 0 },
                  m->n_param_floats);
    op_finite_and(ops, status_word(t, STATUS_BUFFERS), (dten){ m->arena_buffers, 0 },
                  m->n_buffer_floats);
    clrt_copy(rt, t->status, STATUS_LOSS * sizeof(cl_int), m->loss_mean.mem,
              m->loss_mean.off * sizeof(float), sizeof(float));
    int slot = (t->head + t->pending) % 2;
    clrt_read_async(rt, t->status, 0, t->words[slot], sizeof t->words[slot], &t->ev[slot]);
    t->pending++;
    clrt_flush(rt);  // the device starts on the step while the host prepares the next
}

void train_step_enqueue(trainer *t, const float *x, const int32_t *labels, int n,
                        const optim_config *c) {
    train_step_backward(t, x, labels, n);
    update_enqueue(t, c);
}

train_status train_step_result(trainer *t, float *loss) {
    if (!t->pending) {
        fprintf(stderr, "cltrain: internal error: no training step to read\n");
        abort();
    }
    int slot = t->head;
    clrt_wait(t->ev[slot]);
    t->ev[slot] = NULL;
    t->head ^= 1;
    t->pending--;
    const cl_int *w = t->words[slot];
    memcpy(loss, &w[STATUS_LOSS], sizeof *loss);
    memcpy(&t->grad_norm, &w[STATUS_NORM], sizeof t->grad_norm);
    train_status s = TRAIN_OK;
    if (!isfinite(*loss)) s = TRAIN_BAD_LOSS;
    else if (w[STATUS_GUARD] != 1) s = TRAIN_BAD_GRADIENT;
    else if (w[STATUS_PARAMS] != 1 || w[STATUS_BUFFERS] != 1) s = TRAIN_BAD_WEIGHTS;
    if (s != TRAIN_OK) arm(t);
    return s;
}

train_status train_step_update(trainer *t, const optim_config *c, float *loss) {
    update_enqueue(t, c);
    return train_step_result(t, loss);
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
    model *m = t->m;
    upload(m, x, NULL, n);
    model_forward(m, n, 0);
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

// idx (n): each image's index in the split (an image left out by --skip-bad has none here).
static long score_batch(const dataset_split *split, const float *logits, const int32_t *y,
                        const int *idx, int n, int K, eval_stats *stats, FILE *csv) {
    long correct = 0;
    for (int b = 0; b < n; b++) {
        long index = idx[b];
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
    model *m = t->m;
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
    int *idx = malloc((size_t)B * sizeof(int));
    long correct = idx ? 0 : -1;
    if (!idx) snprintf(err, errlen, "out of memory for a batch of %d", B);
    loader_start_epoch(&ld, 0, 0);
    int n, rc = 0;
    while (idx && (rc = loader_next_ex(&ld, x, y, idx, &n)) == 1) {
        if (!n) continue;  // --skip-bad left out every image of the batch
        trainer_predict(t, x, n, logits);
        correct += score_batch(split, logits, y, idx, n, K, stats, csv);
        *total += n;
    }
    if (rc < 0) {  // a file that failed to decode mid-run
        snprintf(err, errlen, "%s", ld.error);
        correct = -1;
    }
    free(idx);
    loader_free(&ld);
    clrt_host_free(m->rt, &xb);
    clrt_host_free(m->rt, &yb);
    clrt_host_free(m->rt, &lb);
    return correct;
}
