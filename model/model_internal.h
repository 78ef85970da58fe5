// What model/*.c share and nothing else uses.
#ifndef CLTRAIN_MODEL_INTERNAL_H
#define CLTRAIN_MODEL_INTERNAL_H

#include "model/model.h"

// The tables alone (no device): zeroes m, takes d. 0, or nonzero with a message (then
// model_table_free still has to run).
int model_table_build(model *m, model_desc *d, char *err, size_t errlen);
void model_table_free(model *m);

// The ResNet family (model/resnet.c).
extern const char resnet_arch_list[];
// 0 and the description when `arch` is one of the family; 1 when it is not (nothing set);
// 2 with a message when the arguments are out of range.
int resnet_desc(model_desc *d, const char *arch, int num_classes, char *err, size_t errlen);
// model_arch_from_ckpt for the family (the same returns).
int resnet_arch_from_ckpt(model_arch *a, const ckpt *c, const char *prefix, const char *fname,
                          char *err, size_t errlen);

#endif

// ---- the activation plan (model/plan.c) and the walks over it (model/run.c) ----

// One buffer the walks use: a value, a gradient, saved statistics, a workspace. The planning
// walks record the first and last time each is used (forward of node i at time i, its
// backward at 2N-1-i); the allocator then places it in a chunk of the arena, at an offset no
// buffer alive at the same time overlaps.
typedef struct plan_buf {
    size_t floats;
    int lo, hi;                    // first and last use (lo > hi: never used)
    int chunk;                     // -1: external (dt set by model_plan: the batch, logits)
    size_t off;                    // floats into its chunk
    dten dt;                       // where it lives (after allocation)
} plan_buf;

enum { GRAD_NONE, GRAD_OWN, GRAD_ALIAS };
enum { PLAN_MAX_CHUNKS = 64 };

typedef struct act_plan {
    int training;                  // planned for backward (else forward-only)
    int keep_cols;                 // a workspace per conv kept from forward to backward
    int batch;                     // the batch size planned for
    plan_buf *bufs;
    int nbufs, capbufs;
    // Per node (ids into bufs, -1 none).
    int *val;                      // its output (a flatten's is its input's)
    int *grad;                     // the gradient of its output, when the walk needs its own
    int *aux0, *aux1;              // batch norm's saved mean and 1/std; max pool's argmax
    int *work_f, *work_b;          // conv workspaces (the same id when keep_cols)
    int *tmp;                      // (2 per node) a contribution to input k, to be added
    int *fused;                    // node i's single consumer, a relu run inside it (-1)
    int *absorbed;                 // node i is a relu run inside the node before it
    int *col_ready;                // conv: its workspace holds the forward's col matrix
    int *needs;                    // backward: the gradient of node i's output is wanted
    int *gstate, *gcur;            // backward: each output gradient's state and buffer id
    // The walks' mode: planning (record uses, create buffers) or running (launch ops).
    int planning;
    int fwd_train;                 // the last forward was in training mode
    cl_mem chunks[PLAN_MAX_CHUNKS];
    size_t chunk_floats[PLAN_MAX_CHUNKS];
    int nchunks;
} act_plan;

// The walks (model/run.c); while m->plan->planning, they record uses instead of launching.
void model_walk_forward(model *m, int n, int train);
void model_walk_backward(model *m, int n);
// Buffer id `*id`, created with `floats` when it is -1 (planning only), used at time t.
int plan_use(act_plan *p, int *id, size_t floats, int t);
