// Data-parallel replicas: see replicas.h.
#define _POSIX_C_SOURCE 200809L
#include "host/train/replicas.h"
#include "host/train/session.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int replicas_init(replicas *R, trainer *t0, comm *c, int local, int image_size, char *err,
                  size_t errlen) {
    memset(R, 0, sizeof *R);
    R->c = c;
    R->local = local;
    R->world = local * c->size;
    R->first = c->rank * local;
    R->image_size = image_size;
    model *m = t0->m;
    size_t S = (size_t)image_size, b = (size_t)m->max_batch;
    R->tr = calloc((size_t)local, sizeof *R->tr);
    R->share = calloc((size_t)local, sizeof *R->share);
    R->weight = calloc((size_t)local, sizeof *R->weight);
    R->xs = calloc((size_t)local, sizeof *R->xs);
    R->ys = calloc((size_t)local, sizeof *R->ys);
    if (local > 1) {
        R->rt = calloc((size_t)local - 1, sizeof *R->rt);
        R->ops = calloc((size_t)local - 1, sizeof *R->ops);
        R->m = calloc((size_t)local - 1, sizeof *R->m);
        R->own = calloc((size_t)local - 1, sizeof *R->own);
    }
    R->grad = malloc((m->n_param_floats + 1) * sizeof(float));
    R->tmp = malloc((m->n_param_floats + 1) * sizeof(float));
    R->bufs = malloc((m->n_buffer_floats + 1) * sizeof(float));
    int bad = !R->tr || !R->share || !R->weight || !R->xs || !R->ys || !R->grad || !R->tmp ||
              !R->bufs ||
              (local > 1 && (!R->rt || !R->ops || !R->m || !R->own));
    for (int i = 0; !bad && i < local; i++) {
        R->xs[i] = malloc(3 * b * S * S * sizeof(float));
        R->ys[i] = malloc(b * sizeof(int32_t));
        bad = !R->xs[i] || !R->ys[i];
    }
    if (bad) {
        snprintf(err, errlen, "out of host memory for %d replicas", local);
        return 1;
    }
    R->tr[0] = t0;
    return replicas_set_buckets(R, 25.0, err, errlen);  // DDP's bucket_cap_mb
}

static void free_buckets(replicas *R) {
    for (int i = 2; R->recv && i < R->local; i++) free(R->recv[i]);
    free(R->recv); free(R->ev); free(R->launched); free(R->hook);
    free(R->bucket_lo); free(R->bucket_hi);
    R->recv = NULL; R->ev = NULL; R->launched = NULL; R->hook = NULL;
    R->bucket_lo = R->bucket_hi = NULL;
    R->nbuckets = 0;
}

int replicas_set_buckets(replicas *R, double cap_mb, char *err, size_t errlen) {
    free_buckets(R);
    trainer *t0 = R->tr[0];
    model *m = t0->m;
    if (!(cap_mb > 0) || !t0->grad_n) return 0;
    // DDP: int(bucket_cap_mb * 1024 * 1024) bytes; the first bucket _DEFAULT_FIRST_BUCKET_BYTES.
    double cap = cap_mb * 1024 * 1024, limit = cap < 1048576 ? cap : 1048576;
    R->bucket_lo = malloc(((size_t)m->nparams + 1) * sizeof(size_t));
    R->bucket_hi = malloc(((size_t)m->nparams + 1) * sizeof(size_t));
    R->recv = calloc((size_t)R->local, sizeof *R->recv);
    R->launched = calloc((size_t)R->local, sizeof *R->launched);
    R->hook = calloc((size_t)R->local, sizeof *R->hook);
    int bad = !R->bucket_lo || !R->bucket_hi || !R->recv || !R->launched || !R->hook;
    for (int i = 0; !bad && i < R->local; i++) {
        R->recv[i] = i == 0 ? R->grad : i == 1 ? R->tmp
                                               : malloc((m->n_param_floats + 1) * sizeof(float));
        R->hook[i] = (struct replicas_hook){ R, i };
        bad = !R->recv[i];
    }
    // Reverse parameter order: a bucket closes once it holds `limit` bytes (DDP's
    // compute_bucket_assignment_by_size), the rest of the trainable range is the last one.
    size_t hi = m->n_param_floats;
    double bytes = 0;
    int nb = 0;
    for (int i = m->nparams - 1; !bad && i >= 0; i--) {
        const model_param *p = &m->params[i];
        if (!model_param_trainable(m, i) || p->off < t0->grad_off) continue;
        bytes += (double)p->numel * sizeof(float);
        if (bytes >= limit && p->off > t0->grad_off) {
            R->bucket_lo[nb] = p->off;
            R->bucket_hi[nb++] = hi;
            hi = p->off;
            bytes = 0;
            limit = cap;
        }
    }
    if (!bad && hi > t0->grad_off) {
        R->bucket_lo[nb] = t0->grad_off;
        R->bucket_hi[nb++] = hi;
    }
    R->nbuckets = nb;
    R->ev = bad ? NULL : calloc((size_t)R->local * (size_t)nb, sizeof *R->ev);
    if (bad || !R->ev) {
        free_buckets(R);
        snprintf(err, errlen, "out of host memory for the gradient buckets");
        return 1;
    }
    return 0;
}

int replicas_add(replicas *R, int i, const ops_ctx *ops, char *err, size_t errlen) {
    model *m0 = R->tr[0]->m, *m = &R->m[i - 1];
    R->rt[i - 1] = *ops->rt;  // the struct moves here (clrt holds no pointer to itself)
    R->ops[i - 1] = *ops;
    R->ops[i - 1].rt = &R->rt[i - 1];
    int rc = model_init_like(m, &R->ops[i - 1], m0, err, errlen);
    if (rc == 0) rc = session_plan(m, m0->max_batch, R->image_size, 0, err, errlen);
    if (rc) return rc;
    m->freeze = m0->freeze;
    m->bn_eval = m0->bn_eval;
    m->label_smoothing = m0->label_smoothing;
    trainer_init(&R->own[i - 1], m);
    R->tr[i] = &R->own[i - 1];
    const optim *o0 = &R->tr[0]->opt;  // replica 0's optimizer, when set up already
    return o0->m ? trainer_set_optim(R->tr[i], &o0->cfg, err, errlen) : 0;
}

// A replica's weights, optimizer state and running statistics to host memory, or back
// (write). opt (nstate, n_param_floats) is skipped for an optimizer not set up yet.
static void state_io(trainer *t, float *p, float *opt, float *buf, int write) {
    model *m = t->m;
    size_t np = m->n_param_floats * sizeof(float), nb = m->n_buffer_floats * sizeof(float);
    cl_mem mems[3] = { m->arena_params, t->opt.state, m->arena_buffers };
    float *host[3] = { p, opt, buf };
    size_t bytes[3] = { np, t->opt.m ? (size_t)t->opt.nstate * np : 0, nb };
    for (int k = 0; k < 3; k++) {
        if (!bytes[k]) continue;
        if (write) clrt_write(m->rt, mems[k], 0, host[k], bytes[k]);
        else clrt_read(m->rt, mems[k], 0, host[k], bytes[k]);
    }
}

void replicas_sync_state(replicas *R) {
    if (R->world <= 1) return;
    trainer *t0 = R->tr[0];
    model *m0 = t0->m;
    size_t np = m0->n_param_floats, ns = t0->opt.m ? (size_t)t0->opt.nstate * np : 0;
    float *opt = malloc((ns + 1) * sizeof(float));
    if (!opt) { fprintf(stderr, "cltrain: out of host memory\n"); exit(1); }
    state_io(t0, R->grad, opt, R->bufs, 0);
    comm *c = R->c;
    comm_broadcast(c, R->grad, np * sizeof(float), 0);
    comm_broadcast(c, opt, ns * sizeof(float), 0);
    comm_broadcast(c, R->bufs, m0->n_buffer_floats * sizeof(float), 0);
    comm_broadcast(c, m0->bn_count, (size_t)m0->nbns * sizeof(int64_t), 0);
    comm_broadcast(c, &t0->opt.step, sizeof t0->opt.step, 0);
    for (int i = c->rank == 0 ? 1 : 0; i < R->local; i++) {
        trainer *t = R->tr[i];
        state_io(t, R->grad, opt, R->bufs, 1);
        if (t != t0) {
            memcpy(t->m->bn_count, m0->bn_count, (size_t)m0->nbns * sizeof(int64_t));
            t->opt.step = t0->opt.step;
        }
    }
    free(opt);
}

void replicas_free(replicas *R) {
    free_buckets(R);
    for (int i = 1; i < R->local; i++) {
        if (R->own) trainer_free(&R->own[i - 1]);
        if (R->m) model_free(&R->m[i - 1]);
        if (R->rt) clrt_free(&R->rt[i - 1]);
    }
    for (int i = 0; i < R->local; i++) {
        if (R->xs) free(R->xs[i]);
        if (R->ys) free(R->ys[i]);
    }
    free(R->xs); free(R->ys); free(R->tr); free(R->own); free(R->m); free(R->rt);
    free(R->ops);
    free(R->share); free(R->weight);
    free(R->grad); free(R->tmp); free(R->bufs);
    memset(R, 0, sizeof *R);
}

// Replica g's share of a batch of n: DistributedSampler's stride, samples g, g+W, ...; when
// n is not a multiple of W (a batch that --skip-bad shortened), the first n % W replicas take
// one more and the others may take none.
static int share_of(int n, int g, int W) { return n / W + (g < n % W); }

// Replica g's share of x (3, n, S, S) into xs (3, b, S, S), b = share_of(n, g, W).
static void shard(const float *x, const int32_t *y, int n, int g, int W, size_t SS, float *xs,
                  int32_t *ys) {
    int b = share_of(n, g, W);
    for (int k = 0; k < b; k++) {
        ys[k] = y[g + (size_t)k * W];
        for (int c = 0; c < 3; c++)
            memcpy(xs + ((size_t)c * b + k) * SS, x + ((size_t)c * n + g + (size_t)k * W) * SS,
                   SS * sizeof(float));
    }
}

// DDP's broadcast_buffers=True: replica 0's running statistics reach every replica before
// each forward (they do not change the training forward, only what eval and files see).
static void sync_buffers(replicas *R) {
    model *m0 = R->tr[0]->m;
    size_t nb = m0->n_buffer_floats * sizeof(float);
    if (!nb) return;
    if (R->c->rank == 0) clrt_read(m0->rt, m0->arena_buffers, 0, R->bufs, nb);
    comm_broadcast(R->c, R->bufs, nb, 0);
    for (int i = R->c->rank == 0 ? 1 : 0; i < R->local; i++)
        clrt_write(R->tr[i]->m->rt, R->tr[i]->m->arena_buffers, 0, R->bufs, nb);
}

// DDP's average: each replica's gradient times its weight (1/W), summed in replica order
// here, then over the processes; the result is written back into every local replica's
// gradient arena. A replica without images this step adds nothing.
static void average_grads(replicas *R) {
    trainer *t0 = R->tr[0];
    size_t off = t0->grad_off, n = t0->grad_n, bytes = n * sizeof(float);
    if (!n) return;
    int first = 1;
    for (int i = 0; i < R->local; i++) {
        if (!R->share[i]) continue;
        model *m = R->tr[i]->m;
        float *g = first ? R->grad : R->tmp;
        const float w = R->weight[i];
        clrt_read(m->rt, m->arena_grads, off * sizeof(float), g, bytes);
        if (first)
            for (size_t k = 0; k < n; k++) R->grad[k] = g[k] * w;
        else
            for (size_t k = 0; k < n; k++) R->grad[k] += g[k] * w;
        first = 0;
    }
    if (first) memset(R->grad, 0, bytes);
    comm_sum_floats(R->c, R->grad, n);
    for (int i = 0; i < R->local; i++)
        clrt_write(R->tr[i]->m->rt, R->tr[i]->m->arena_grads, off * sizeof(float), R->grad,
                   bytes);
}

// Enqueues replica i's reads of every bucket not yet read whose gradients are final from
// float `ready` on (grads_ready; 0 after backward: all of them).
static void read_buckets(replicas *R, int i, size_t ready) {
    model *m = R->tr[i]->m;
    size_t off = R->tr[0]->grad_off;
    int any = 0;
    for (int *k = &R->launched[i]; *k < R->nbuckets && R->bucket_lo[*k] >= ready; (*k)++) {
        size_t lo = R->bucket_lo[*k], hi = R->bucket_hi[*k];
        clrt_read_async(m->rt, m->arena_grads, lo * sizeof(float), R->recv[i] + (lo - off),
                        (hi - lo) * sizeof(float), &R->ev[(size_t)i * R->nbuckets + *k]);
        any = 1;
    }
    if (any) clrt_flush(m->rt);  // the read goes as soon as its kernels are done
}

static void grads_ready(void *ctx, size_t off) {
    struct replicas_hook *h = ctx;
    read_buckets(h->R, h->i, off);
}

// Waits for a bucket's read; while sums are under way, MPI gets to move them (Open MPI
// progresses a non-blocking collective only inside its calls).
static void wait_read(replicas *R, cl_event ev) {
    struct timespec nap = { 0, 50000 };
    while (R->c->nreq && !clrt_event_done(ev)) {
        comm_progress(R->c);
        nanosleep(&nap, NULL);
    }
    clrt_wait(ev);
}

// average_grads bucket by bucket, in bucket order, as each one's reads complete: the same
// operations per element (times the weight, summed in replica order, then over the processes).
static void average_buckets(replicas *R) {
    size_t off = R->tr[0]->grad_off;
    int procs = R->c->size > 1;
    for (int k = 0; k < R->nbuckets; k++) {
        size_t lo = R->bucket_lo[k] - off, hi = R->bucket_hi[k] - off;
        int first = 1;
        for (int i = 0; i < R->local; i++) {
            if (!R->share[i]) continue;  // no backward, no reads
            wait_read(R, R->ev[(size_t)i * R->nbuckets + k]);
            const float *g = R->recv[i];
            const float w = R->weight[i];
            if (first)
                for (size_t j = lo; j < hi; j++) R->grad[j] = g[j] * w;
            else
                for (size_t j = lo; j < hi; j++) R->grad[j] += g[j] * w;
            first = 0;
        }
        if (first) memset(R->grad + lo, 0, (hi - lo) * sizeof(float));
        if (procs && comm_isum_floats(R->c, R->grad + lo, hi - lo) != 0) {
            fprintf(stderr, "cltrain: out of host memory\n");
            comm_abort(R->c, 1);
        }
        for (int i = 0; !procs && i < R->local; i++)  // enqueued behind the backward
            clrt_write_async(R->tr[i]->m->rt, R->tr[i]->m->arena_grads,
                             (lo + off) * sizeof(float), R->grad + lo, (hi - lo) * sizeof(float));
    }
    if (!procs) return;
    comm_wait_sums(R->c);
    for (int i = 0; i < R->local; i++)  // read by the update, which the step waits for
        clrt_write_async(R->tr[i]->m->rt, R->tr[i]->m->arena_grads, off * sizeof(float),
                         R->grad, R->tr[0]->grad_n * sizeof(float));
}

// Each replica's share of a batch of n and its weight in the average: DDP's 1/W when the
// shares are equal; else its share over n, so that the step's gradient and loss are the mean
// over the n images present, as on one device (DDP's 1/W would weigh a short share's images
// more).
static void set_shares(replicas *R, int n) {
    int W = R->world;
    for (int i = 0; i < R->local; i++) {
        R->share[i] = share_of(n, R->first + i, W);
        R->weight[i] = n % W == 0 ? 1.0f / (float)W : (float)R->share[i] / (float)n;
    }
}

void replicas_micro(replicas *R, const float *x, const int32_t *labels, int n,
                    const optim_config *c) {
    int W = R->world;
    size_t SS = (size_t)R->image_size * R->image_size;
    set_shares(R, n);
    sync_buffers(R);
    for (int i = 0; i < R->local; i++) {
        if (!R->share[i]) continue;  // nothing to add
        shard(x, labels, n, R->first + i, W, SS, R->xs[i], R->ys[i]);
        train_micro_enqueue(R->tr[i], R->xs[i], R->ys[i], R->share[i], c);
    }
}

train_status replicas_step(replicas *R, const float *x, const int32_t *labels, int n,
                           const optim_config *c, float *loss) {
    int W = R->world;
    size_t SS = (size_t)R->image_size * R->image_size;
    // An accumulated group: each replica's mean over its batches first, then DDP's average
    // (after backward: the buckets would read the last batch's gradient alone).
    int buckets = R->nbuckets && !R->tr[0]->micro;
    set_shares(R, n);
    sync_buffers(R);
    for (int i = 0; i < R->local; i++) {  // enqueued on every device before any waits
        model *m = R->tr[i]->m;
        int b = R->share[i];
        if (!b) {  // nothing to learn from: only the update, with a finite loss for its check
            // (--accumulate with --skip-bad: a replica whose share of a group's last batch is
            // empty steps with the average alone; its own sum of the group is dropped)
            R->tr[i]->micro = 0;
            const float zero = 0;
            clrt_write(m->rt, m->loss_mean.mem, m->loss_mean.off * sizeof(float), &zero,
                       sizeof zero);
            continue;
        }
        shard(x, labels, n, R->first + i, W, SS, R->xs[i], R->ys[i]);
        if (buckets) {
            R->launched[i] = 0;
            m->grads_ready = grads_ready;
            m->grads_ready_ctx = &R->hook[i];
        }
        train_step_backward(R->tr[i], R->xs[i], R->ys[i], b);
        trainer_accumulate_finish(R->tr[i]);
        if (buckets) {
            read_buckets(R, i, 0);  // what a frozen stage's early end left
            m->grads_ready = NULL;
        }
    }
    if (buckets) average_buckets(R);
    else average_grads(R);
    int worst = TRAIN_OK;
    float sum = 0;
    for (int i = 0; i < R->local; i++) {
        float l;
        train_status s = train_step_update(R->tr[i], c, &l);
        if ((int)s > worst) worst = (int)s;
        if (n % W == 0) sum += l;  // DDP's numbers: the mean of the replicas' losses
        else if (R->share[i]) sum += R->weight[i] * l;
    }
    comm_sum_floats(R->c, &sum, 1);
    *loss = n % W == 0 ? sum / (float)W : sum;
    return (train_status)comm_max_int(R->c, worst, NULL);
}

int replicas_identical(replicas *R) {
    trainer *t0 = R->tr[0];
    model *m0 = t0->m;
    size_t bytes = m0->n_param_floats * sizeof(float);
    size_t sbytes = t0->opt.m ? (size_t)t0->opt.nstate * bytes : 0;
    float *a = malloc(sbytes + bytes + 4), *b = malloc(sbytes + bytes + 4);
    int same = a && b;
    for (int k = 0; same && k < 2; k++) {  // weights, then the optimizer state
        size_t n = k ? sbytes : bytes;
        if (!n) continue;
        clrt_read(m0->rt, k ? t0->opt.state : m0->arena_params, 0, a, n);
        for (int i = 1; same && i < R->local; i++) {
            trainer *t = R->tr[i];
            same = !k || (t->opt.m && t->opt.step == t0->opt.step);
            if (!same) break;
            clrt_read(t->m->rt, k ? t->opt.state : t->m->arena_params, 0, b, n);
            same = memcmp(a, b, n) == 0;
        }
    }
    free(a);
    free(b);
    return same;
}
