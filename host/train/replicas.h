// Data-parallel training with PyTorch DistributedDataParallel's numbers: W replicas (devices
// of this process x MPI ranks), each with its own runtime, model and trainer, each taking
// the samples at positions r, r+W, r+2W, ... of the global batch (DistributedSampler's
// stride). After backward the gradients are averaged as DDP does (each scaled by 1/W, then
// summed: in replica order inside a process, then MPI_Allreduce between processes; in DDP's
// buckets, overlapped with backward: replicas_set_buckets), the optimizer steps on every
// replica with the averaged gradient (clipping, when asked, after the average), and the
// running statistics are replica 0's (broadcast_buffers=True).
#ifndef CLTRAIN_REPLICAS_H
#define CLTRAIN_REPLICAS_H

#include "host/train/comm.h"
#include "host/train/trainer.h"

typedef struct replicas {
    comm *c;                       // borrowed: the processes (size 1 without MPI)
    int local;                     // replicas in this process (>= 1)
    int world;                     // local * c->size
    int first;                     // global index of this process's replica 0
    trainer **tr;                  // (local) tr[0] is the caller's; the others are owned
    clrt *rt;                      // (local - 1) the other replicas' runtimes
    ops_ctx *ops;                  // (local - 1) their ops' contexts (on rt; one GEMM registry)
    model *m;                     // (local - 1) their models
    trainer *own;                  // (local - 1) their trainers
    int image_size;
    float **xs;                    // (local) shard of the batch (3, B/W, S, S)
    int32_t **ys;                  // (local) its labels (B/W)
    int *share;                    // (local) this step's images per replica (0: none)
    float *weight;                 // (local) its gradient's and loss's weight in the average
    float *grad, *tmp;             // (grad_n) the averaged gradient, one replica's gradient
    float *bufs;                   // (n_buffer_floats) replica 0's running statistics
    // DDP's gradient buckets (replicas_set_buckets): ranges [lo, hi) of the gradient arena
    // (floats) in reverse parameter order, bucket 0 the tail that backward finishes first.
    int nbuckets;                  // 0: one all-reduce after the whole backward
    size_t *bucket_lo, *bucket_hi;
    float **recv;                  // (local) where replica i's gradient is read (grad, tmp...)
    cl_event *ev;                  // (local x nbuckets) each replica's read of each bucket
    int *launched;                 // (local) buckets whose read is enqueued this step
    struct replicas_hook { struct replicas *R; int i; } *hook;  // (local) grads_ready's ctx
} replicas;

// Replicas around t0 (the caller's replica 0, planned for the shard size B/W): the other
// local replicas are added with replicas_add. 0, or nonzero with a message.
int replicas_init(replicas *R, trainer *t0, comm *c, int local, int image_size, char *err,
                  size_t errlen);
// DDP's bucketing of the all-reduce (bucket_cap_mb; replicas_init sets DDP's default, 25):
// trainable parameters in reverse order fill buckets of cap_mb MiB (the first one 1 MiB, as
// DDP's first bucket), each closed once it reaches the cap. During backward each bucket's
// gradients are read as soon as they are produced and summed (over the local replicas in
// their fixed order, then MPI_Iallreduce) while the earlier layers still compute. Every
// element gets the same operations in the same order as without buckets, so the result is
// bitwise that of cap_mb = 0 (one all-reduce after backward): for two processes exactly
// (a + b is commutative); for more, as MPI orders its sums by algorithm and message size.
// 0, or nonzero with a message (out of host memory).
int replicas_set_buckets(replicas *R, double cap_mb, char *err, size_t errlen);
// Adds replica i (1..local-1) with the ops' context ops (copied; its runtime ops->rt,
// initialised by the caller, is owned from now on), built like replica 0 (same config and
// shard plan) and holding a copy of its state.
int replicas_add(replicas *R, int i, const ops_ctx *ops, char *err, size_t errlen);
// Copies replica 0's whole state (weights, optimizer state, running statistics, counters) of
// process 0 to every replica: after loading weights or resuming.
void replicas_sync_state(replicas *R);
void replicas_free(replicas *R);   // accepts a zeroed struct; frees the runtimes it owns

// One data-parallel step on the global host batch x (3, n, S, S), labels (n), n >= 1. When n
// is a multiple of world, *loss gets the mean of the replicas' losses (DDP). When it is not (a
// batch that --skip-bad shortened), the first n % world replicas take one image more, and
// each replica's gradient and loss weigh its share of the n images: the step is the mean over
// the images present, as on one device; a replica left without images takes no forward or
// backward, adds nothing to the average and still applies the update (the replicas stay
// identical). The status is the worst of every replica's, the same on every process.
train_status replicas_step(replicas *R, const float *x, const int32_t *labels, int n,
                           const optim_config *c, float *loss);

// --accumulate: a batch of a group that is not its last (train_micro_enqueue on every
// replica's share); the replicas_step of the group's last batch averages each replica's mean.
void replicas_micro(replicas *R, const float *x, const int32_t *labels, int n,
                    const optim_config *c);

// 1 when every local replica holds bitwise the weights and optimizer state (and step count)
// of replica 0 (a check for tests; reads the arenas).
int replicas_identical(replicas *R);

#endif
