// The training loop: see loop.h. Moved out of cmd_train.c; the printing went to the sink.
#define _POSIX_C_SOURCE 200809L
#include "host/train/loop.h"
#include "common/hash.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void loop_error(train_loop *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void loop_error(train_loop *L, const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    L->sink.error(L->sink.ctx, msg);
}

// A signal seen by any process stops all of them after the same step.
static int any_stop_signal(train_loop *r) {
    if (r->comm->size <= 1) return *r->stop_signal != 0;
    int sig = comm_max_int(r->comm, (int)*r->stop_signal, NULL);
    if (sig && !*r->stop_signal) *r->stop_signal = sig;
    return sig != 0;
}

// ---- the seed's printed line ----

// The seed: running_loss / 100 over the last print_every batches (over the steps taken, when
// --skip-bad emptied a batch of them; nothing when it emptied all).
static void print_running_loss(train_loop *r, int epoch, int b) {
    if ((b + 1) % r->print_every) return;
    int k = r->st->running_count, every = r->print_every;
    if (k > 0)
        r->sink.running_loss(r->sink.ctx, epoch, b, r->st->running_loss / (k < every ? k : every));
    r->st->running_loss = 0;
    r->st->running_count = 0;
}

// ---- checkpoints ----

static int write_state(train_loop *r) {
    return train_state_write(r->st, r->m, &r->tr->opt, r->cfg, r->format, r->ld->n,
                             r->checkpoint, r->err, sizeof r->err);
}

// Saves the training state when --checkpoint asks for it now. Returns 0 or TRAIN_LOOP_FAILED.
static int maybe_checkpoint(train_loop *r, int at_end, int stopping) {
    if (!r->checkpoint) return 0;
    if (!stopping && !at_end &&
        !(r->checkpoint_every && r->st->global_step % r->checkpoint_every == 0))
        return 0;
    if (write_state(r) == 0) return 0;
    loop_error(r, "%s", r->err);
    return TRAIN_LOOP_FAILED;
}

// ---- evaluation: after an epoch (--eval-every-epoch, --save-best) and at the end ----

int train_loop_evaluate(train_loop *r, int epochs, const char *what, int *best) {
    loader_config lc = r->eval_lc;
    session_skips_attach(r->skips, 1, &lc);
    if (r->world > 1) lc.batch_size = r->m->max_batch;
    long total = 0, correct = -1;
    eval_stats st;
    if (eval_stats_init(&st, r->m->num_classes)) snprintf(r->err, sizeof r->err, "out of memory");
    else correct = trainer_evaluate(r->tr, &r->ds->test, &lc, &total, &st, NULL, r->err,
                                    sizeof r->err);
    if (correct >= 0) {
        double acc = total ? 100.0 * correct / total : 0.0;
        int is_best = best && (r->save_best || r->early_stop) && acc > r->st->best_accuracy;
        r->sink.evaluation(r->sink.ctx, epochs, what, total, acc, is_best, r->lr_now, &st);
        if (is_best) r->st->best_accuracy = acc;
        if (is_best && r->early_stop) r->st->best_epoch = epochs;
        if (best) *best = is_best;
    }
    eval_stats_free(&st);
    return correct < 0 ? TRAIN_LOOP_FAILED : 0;
}

// Validation accuracy after epoch `epoch` (printed and logged); with --save-best the model is
// written (atomically) when it beats the best so far, which the training state keeps. With
// --early-stop N, N epochs without a better one end the run (every process learns it).
static int end_of_epoch(train_loop *r, int epoch) {
    if (!r->eval_every_epoch && !r->save_best && !r->early_stop) return 0;
    if (r->comm->rank == 0) {  // only replica 0 evaluates, prints and writes
        int best = 0, rc;
        if (train_loop_evaluate(r, epoch + 1, "val", &best)) {
            loop_error(r, "%s", r->err);
            return TRAIN_LOOP_FAILED;
        }
        if (best && r->save_best && (rc = r->sink.save_best(r->sink.ctx))) return rc;
        r->early_stopped = r->early_stop && epoch + 1 - r->st->best_epoch >= r->early_stop;
    }
    if (r->early_stop && r->comm->size > 1)
        r->early_stopped = comm_max_int(r->comm, r->early_stopped, NULL);
    return 0;
}

// ---- the loop ----

static int max_steps_done(const train_loop *r) {
    return r->cfg->max_steps && r->st->global_step >= r->cfg->max_steps;
}

// Books a finished step: counters, log, bar, the seed's line, the position in the data. A
// batch that took no step (ran 0: --skip-bad left too few images) moves the position only.
static void after_step(train_loop *r, int epoch, int b, int batches, int ran, float loss,
                       double ips, float grad_norm) {
    train_state *st = r->st;
    if (ran) {
        st->global_step++;
        st->running_loss += loss;
        st->running_count++;
        r->sink.step(r->sink.ctx, epoch, b, batches, st->global_step, loss, r->lr_now, ips,
                     grad_norm);
    }
    print_running_loss(r, epoch, b);
    int at_end = b + 1 == batches;
    st->epoch = at_end ? epoch + 1 : epoch;
    st->batch = at_end ? 0 : b + 1;
    if (at_end) { st->running_loss = 0; st->running_count = 0; }
}

// A step enqueued whose result is not read yet (stepper_enqueue; with replicas the result
// is taken at once, replicas_step being synchronous).
typedef struct pending_step {
    int b, n;
    int ran;                       // 0: no step for this batch (batch_trains)
    train_status s;
    float loss;
    float grad_norm;               // --clip-grad-norm: the step's total gradient norm
    int micro;                     // --accumulate: a batch added to the group's sums
} pending_step;

// Whether batch b, which --skip-bad may have shortened to n images, gives a step. None left:
// no step (as PyTorch users `continue` past an empty batch). So few that a replica's share
// leaves a training batch norm one value per channel (check_last_batch's rule; PyTorch
// raises "Expected more than 1 value per channel"): no step either, with a warning.
static int batch_trains(train_loop *r, int epoch, int b, int n) {
    const train_config *o = r->cfg;
    if (n == 0) return 0;
    if (n == o->batch_size || o->bn_eval || o->freeze >= MODEL_FREEZE_BACKBONE) return 1;
    int least = n >= r->world ? n / r->world : 1;  // the smallest share that is not empty
    if (model_bn_values(r->m, least) >= 2) return 1;
    if (r->comm->rank == 0) {
        char line[512];
        snprintf(line, sizeof line, "cltrain: warning: epoch %d, batch %d: the %d image%s "
                 "that --skip-bad left %s too few for batch norm to train on: no step\n",
                 epoch + 1, b + 1, n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
        r->sink.warning(r->sink.ctx, line);
    }
    return 0;
}

// --accumulate N: batches b with b % N < N - 1 (counted from the epoch's start, so a resumed
// run keeps the groups) only add their gradient; the group's last batch, or the epoch's last,
// takes the optimizer step with the mean over the group.
static int accumulates(const train_loop *r, int b, int batches) {
    int N = r->opt.accumulate;
    return N > 1 && b % N != N - 1 && b + 1 != batches;
}

static void step_enqueue(train_loop *r, pending_step *p, int epoch, int b, int n, int batches) {
    p->b = b;
    p->n = n;
    p->ran = batch_trains(r, epoch, b, n);
    p->s = TRAIN_OK;
    p->loss = 0;
    p->grad_norm = NAN;
    p->micro = accumulates(r, b, batches);
    if (p->ran && p->micro) stepper_micro(r->step, r->x, r->y, n, &r->opt);
    if (p->micro) p->ran = 0;  // no step: its batch moves the position only
    if (!p->ran) return;
    stepper_enqueue(r->step, r->x, r->y, n, &r->opt);
}

// Whether the step after p may be enqueued before p's result is booked: only when booking p
// does nothing but the counters, the log and the bar (no checkpoint, no stop, not the end of
// the epoch), so nothing reads the weights between the two. Ranks always take this in step.
static int may_overlap(train_loop *r, const pending_step *p, int batches) {
    long step = r->st->global_step + 1;  // p's, once booked
    if (p->micro) return 1;  // nothing to read, no step to book
    if (!stepper_pipelined(r->step) || *r->stop_signal || p->b + 1 == batches) return 0;
    if (r->cfg->max_steps && step >= r->cfg->max_steps) return 0;
    return !(r->checkpoint && r->checkpoint_every && step % r->checkpoint_every == 0);
}

// Books step p: its result (stopping on a non-finite one), counters, log, bar; with
// `boundary`, the end of the epoch, the checkpoint and the stop that may follow it.
static int step_finish(train_loop *r, int epoch, int batches, pending_step *p, int boundary,
                       double *t_last, int *stopped) {
    if (p->ran) {
        p->s = stepper_result(r->step, &p->loss);
        p->grad_norm = stepper_grad_norm(r->step);
    }
    if (p->s != TRAIN_OK) {  // earlier checkpoints and --save stay as they are
        if (r->comm->rank == 0)  // every rank has the same status: rank 0 says it
            loop_error(r, "non-finite %s (loss %g) at step %ld (epoch %d, batch %d); "
                       "nothing saved; try a lower --lr", train_status_what(p->s), p->loss,
                       r->st->global_step + 1, epoch + 1, p->b + 1);
        return TRAIN_LOOP_FAILED;
    }
    double t = session_now(), ips = p->n / (t - *t_last);
    *t_last = t;
    after_step(r, epoch, p->b, batches, p->ran, p->loss, ips, p->grad_norm);
    if (!boundary || p->micro) return 0;  // a group is never cut: stops wait for its step
    int stopping = max_steps_done(r) || any_stop_signal(r), rc;
    if (p->b + 1 == batches && (rc = end_of_epoch(r, epoch))) return rc;  // before the state
    if ((rc = maybe_checkpoint(r, p->b + 1 == batches, stopping))) return rc;
    if (stopping || r->early_stopped) *stopped = 1;
    return 0;
}

// With --skip-bad every process must leave the same images out of a batch (each reads the
// files itself): a rank whose files differ from rank 0's would split other shares and take
// other steps, and the collectives would hang. Checked per batch; every rank stops together.
static int same_batch(train_loop *r, int epoch, int b, int n) {
    if (r->comm->size <= 1 || !r->ld->cfg.skip_bad) return 0;
    uint64_t h = util_hash_bytes(UTIL_HASH_INIT, &n, sizeof n), h0;
    h = util_hash_bytes(h, r->idx, (size_t)n * sizeof *r->idx);
    h0 = h;
    comm_broadcast(r->comm, &h0, sizeof h0, 0);
    int who, differ = comm_max_int(r->comm, h0 != h, &who);
    if (!differ) return 0;
    if (r->comm->rank == 0)
        loop_error(r, "rank %d of %d left other images out of epoch %d, batch %d than "
                   "rank 0 (--skip-bad): every rank must read the same files", who,
                   r->comm->size, epoch + 1, b + 1);
    r->agreed_rc = TRAIN_LOOP_FAILED;
    return TRAIN_LOOP_FAILED;
}

// Trains epoch `epoch` from the saved position. Returns 0 or a failure; *stopped is set
// at --max-steps or a signal. Each step's result is read while the next one runs (no wait
// inside a step), except where booking it saves, evaluates or stops (may_overlap).
static int train_epoch(train_loop *r, int epoch, int *stopped) {
    int batches = loader_batches_per_epoch(r->ld);
    int first = epoch == r->st->epoch ? r->st->batch : 0;
    loader_start_epoch(r->ld, epoch, first);
    r->lr_now = lr_schedule_at(&r->sched, r->cfg->lr, epoch);
    r->opt.lr = r->lr_now;
    r->sink.epoch_start(r->sink.ctx, epoch, first, r->lr_now);
    double t_last = session_now();
    int n = 0, got = 0, rc = 0, have = 0;
    pending_step p = { 0 }, next;
    for (int b = first;; b++) {
        if (have && !may_overlap(r, &p, batches)) {  // before the next batch is even read
            have = 0;
            if ((rc = step_finish(r, epoch, batches, &p, 1, &t_last, stopped))) return rc;
            if (*stopped) break;
        }
        if ((got = loader_next_ex(r->ld, r->x, r->y, r->idx, &n)) <= 0) break;
        if ((rc = same_batch(r, epoch, b, n))) return rc;
        step_enqueue(r, &next, epoch, b, n, batches);
        if (have && (rc = step_finish(r, epoch, batches, &p, 0, &t_last, stopped))) {
            float loss;  // the step behind it was guarded (sticky flags): read and drop it
            if (next.ran) stepper_result(r->step, &loss);
            return rc;
        }
        p = next;
        have = 1;
    }
    // Only a file that failed mid-epoch leaves a step unbooked here (the last one of an
    // epoch never overlaps).
    if (have && (rc = step_finish(r, epoch, batches, &p, 1, &t_last, stopped))) return rc;
    if (got < 0) {  // a file that failed mid-run: save the state as SIGTERM does
        int saved = r->checkpoint && write_state(r) == 0;
        loop_error(r, "%s%s%s", r->ld->error, saved ? "; training state saved to " : "",
                   saved ? r->checkpoint : "");
        return TRAIN_LOOP_FAILED;
    }
    r->sink.epoch_end(r->sink.ctx, epoch);
    return 0;
}

int train_loop_run(train_loop *r) {
    int stopped = max_steps_done(r), rc = 0;  // a resumed run may be done already
    for (int epoch = r->st->epoch; rc == 0 && epoch < r->cfg->epochs && !stopped; epoch++)
        rc = train_epoch(r, epoch, &stopped);
    return rc;
}
