// A network as data: an ordered list of nodes that any torchvision classification CNN can be
// written in, and everything derived by walking it — the parameter table (state_dict names,
// order and shapes), initialisation, the activation plan (one arena, offsets from lifetimes),
// forward and backward, freezing by stages, and the conversion to and from checkpoints.
// Nothing above model/ knows which network it runs.
#ifndef CLTRAIN_MODEL_H
#define CLTRAIN_MODEL_H

#include "host/ops/ops.h"
#include "model/ckpt.h"

#include <stdint.h>

// torchvision's BatchNorm2d defaults.
#define MODEL_BN_EPS 1e-5f
#define MODEL_BN_MOMENTUM 0.1f

typedef enum {
    NODE_INPUT,      // the batch, (3, N, S, S); always node 0
    NODE_CONV,       // Conv2d: weight (O, C/groups, K, K) [, bias (O)]
    NODE_BN,         // BatchNorm2d: weight, bias, running_mean, running_var, num_batches_tracked
    NODE_ACT,        // an activation (act)
    NODE_ADD,        // in[0] + in[1], same shapes
    NODE_MUL,        // in[0] (C, N, H, W) scaled per channel by in[1] (C, N, 1, 1)
    NODE_MAXPOOL,    // MaxPool2d(k, stride, pad)
    NODE_AVGPOOL,    // AvgPool2d(k, stride, pad)
    NODE_GAP,        // AdaptiveAvgPool2d(1): (C, N, H, W) -> (C, N, 1, 1)
    NODE_FLATTEN,    // (C, N, 1, 1) -> (C, N): the same values
    NODE_LINEAR,     // Linear: weight (K, F), bias (K)
    NODE_DROPOUT,    // Dropout(p)
} node_kind;

typedef enum {
    ACT_RELU, ACT_RELU6, ACT_HARDSWISH, ACT_HARDSIGMOID, ACT_SILU, ACT_SIGMOID,
} act_kind;

// One node. The description sets kind, in, name, stage and the kind's fields; model_init
// derives the rest.
typedef struct node {
    node_kind kind;
    int in[2];                     // the nodes whose outputs it reads (-1: none)
    char name[64];                 // torchvision's module name: "layer1.0.conv1" (its
                                   // parameters are "<name>.weight", ...); "" without any
    int stage;                     // index into model.stages (freezing)
    int out;                       // conv: output channels; linear: output features
    int k, stride, pad, dilation, groups;  // conv and pools
    int bias;                      // conv: has a bias
    act_kind act;
    float p;                       // dropout probability
    // Derived.
    int param[5];                  // parameter indices, -1 none: conv/linear weight, bias;
                                   // bn weight, bias, running_mean, running_var, count
    int bn;                        // bn: index into model.bn_count
    int c, h, w;                   // output per image: channels, height, width (model_plan)
} node;

// What a description needs besides its nodes: the stages freezing works on, in order (stage
// i covers the nodes whose .stage is i; the last stage is the classifier, and "backbone" is
// everything before it).
enum { MODEL_MAX_STAGES = 16 };
typedef struct model_desc {
    char arch[32];                 // "resnet18", ...
    node *nodes;
    int nnodes, cap;
    char stages[MODEL_MAX_STAGES][16];
    int nstages;
    int num_classes;
} model_desc;

typedef enum {
    PARAM_WEIGHT,      // conv or linear weight, trainable
    PARAM_BIAS,        // conv or linear bias, trainable
    PARAM_BN_W,        // BatchNorm weight (C), trainable
    PARAM_BN_B,        // BatchNorm bias (C), trainable
    PARAM_BN_MEAN,     // running_mean (C), buffer
    PARAM_BN_VAR,      // running_var (C), buffer
    PARAM_BN_COUNT,    // num_batches_tracked (), int64 kept on the host
} model_param_kind;

// One state_dict entry.
typedef struct model_param {
    char name[96];                 // torchvision's name, e.g. "layer2.0.downsample.1.weight"
    model_param_kind kind;
    int ndim, shape[4];
    size_t numel;
    size_t off;                    // floats into the params arena (trainable) or buffers arena
    int stage;                     // its node's stage
    int node;                      // the node it belongs to
    int bn;                        // PARAM_BN_COUNT: index into model.bn_count
} model_param;

// How the plan may use memory (handed down by the command layer).
typedef struct model_plan_options {
    int keep_cols;   // -1: a workspace per conv when memory allows (model_plan); 0: never
    int forward_only;  // 1: evaluation only (nothing kept for backward: less memory)
} model_plan_options;

struct act_plan;  // model/plan.c

typedef struct model {
    ops_ctx *ops;                  // what the ops run with (model_init's; not owned)
    clrt *rt;                      // ops->rt
    model_desc desc;               // the network (nodes, stages)
    char arch[32];                 // desc.arch
    int num_classes;
    model_param *params;           // (nparams) state_dict order
    int nparams;
    size_t n_param_floats;         // trainable parameters in state_dict order
    size_t n_buffer_floats;        // running means and variances
    int64_t *bn_count;             // (nbns) num_batches_tracked
    int nbns;

    // Device arenas: params and grads share offsets (as the optimizer's state does,
    // host/train/optim.h); the gradients come with a training plan.
    cl_mem arena_params, arena_grads, arena_buffers;

    // Training set-up.
    int freeze;                    // stages 0..freeze are frozen (-1 none)
    int bn_eval;                   // all batch norms in eval mode
    float label_smoothing;         // model_loss: CrossEntropyLoss(label_smoothing=...)

    // The batch, the head's outputs and the loss: buffers of their own (the trainer fills and
    // reads them); everything else lives in the plan's arena.
    int max_batch, image_size;
    dten x;                        // (3, B, S, S) input
    dten labels;                   // (B) int32
    dten logits, dlogits;          // (K, B)
    dten losses, loss_mean;        // (B), (1)
    dten flag;                     // (1) int32 for op_all_finite
    struct act_plan *plan;
    size_t device_bytes;           // everything allocated on the device
    size_t arena_bytes;            // of which the activation arena

    // Optional: model_backward calls grads_ready(grads_ready_ctx, off) as the gradients
    // complete, tail first: once the op calls enqueued so far have run, every gradient from
    // float `off` of the arena to its end is final. Data-parallel replicas start reading a
    // bucket there (DDP's overlap).
    void (*grads_ready)(void *ctx, size_t off);
    void *grads_ready_ctx;
} model;

// ---- descriptions ----
// An empty description with room for `cap` nodes and node 0 the input. 0, or -1 (no memory).
int model_desc_init(model_desc *d, const char *arch, int cap);
void model_desc_free(model_desc *d);
// Appends a stage and returns its index (-1 when full).
int model_desc_stage(model_desc *d, const char *name);
// Appends a node (n->in, kind, name, fields) and returns its index, or -1 when full.
int model_desc_add(model_desc *d, const node *n);

// The architectures cltrain knows: "resnet18|resnet34|resnet50|resnet101|resnet152".
extern const char model_arch_list[];
// Which network, by name, and its number of outputs.
typedef struct model_arch {
    char arch[32];
    int num_classes;
} model_arch;
// `arch` when cltrain knows it and num_classes is in range. 0, or nonzero with a message.
int model_arch_named(model_arch *a, const char *arch, int num_classes, char *err,
                     size_t errlen);
// The description of `arch` with `num_classes` outputs. 0, or nonzero with a message.
int model_desc_named(model_desc *d, const char *arch, int num_classes, char *err,
                     size_t errlen);
// The architecture and number of classes a checkpoint holds (under `base`, "" or NULL for the
// top level; "module."-style prefixes are found as model_from_ckpt finds them; the classes
// from the classifier's weight). Returns 0; 1 when the file holds no network cltrain knows,
// 2 when it holds one of a known family in a layout that is none of its members (both with a
// message naming `fname`).
int model_arch_from_ckpt(model_arch *a, const ckpt *c, const char *base, const char *fname,
                         char *err, size_t errlen);
// The number of outputs of the classifier a checkpoint holds (under `base`; 0 when it has
// none).
int model_ckpt_classes(const ckpt *c, const char *base);
// The key prefix under `base` that a file's weights use: base followed by "", "module.",
// "state_dict.", "model." or a combination. 0, or -1 when no known network's first
// parameter is found.
int model_ckpt_prefix(const ckpt *c, const char *base, char *out, size_t len);

// ---- the model on a device ----
// Takes the description (d is emptied), derives the parameter table and allocates the
// parameter arenas. 0, or nonzero with a message.
// Its ops run with ops (on ops->rt), which must outlive the model.
int model_init(model *m, ops_ctx *ops, model_desc *d, char *err, size_t errlen);
// A model of the same network as `like` (its description copied) with ops.
int model_init_like(model *m, ops_ctx *ops, const model *like, char *err, size_t errlen);
// model_desc_named then model_init.
int model_init_arch(model *m, ops_ctx *ops, const model_arch *a, char *err, size_t errlen);
// Plans and allocates activations for batches up to max_batch at image_size. opt may be NULL
// (defaults). 0, or nonzero with a message: MODEL_PLAN_NO_FIT when the plan does not fit the
// device (checked before anything is allocated; model_largest_batch says what does), 2 when
// the image is too small for the network.
enum { MODEL_PLAN_NO_FIT = 3 };
int model_plan(model *m, int max_batch, int image_size, const model_plan_options *opt,
               char *err, size_t errlen);
// 1 when the plan keeps each conv's col matrix from forward to backward (keep_cols).
int model_kept_cols(const model *m);
// The largest batch size up to max_batch whose plan (training, or forward_only) fits the
// device (0: none).
int model_largest_batch(model *m, int max_batch, int image_size, int forward_only);
// Accepts a zeroed or half-built model.
void model_free(model *m);
// Bytes the model and its plan (training, or forward_only) for (batch, size) take on a device
// with unlimited memory; 0 when the image is too small.
size_t model_plan_bytes(const model_arch *a, int batch, int image_size, int forward_only);

// torchvision's default initialisation from `seed`: convs kaiming_normal_(fan_out, relu),
// batch norm weight 1 bias 0 (running 0 / 1), Linear U(-1/sqrt(in), 1/sqrt(in)).
// 0, or -1 when the host has no memory for the staging copy.
int model_init_weights(model *m, uint64_t seed);
// Re-initialise only the classifier stage (the seed's "modify the last layer").
int model_init_head(model *m, uint64_t seed);

// Forward of a batch already in m->x (and m->labels for training). train: batch norms use
// batch statistics (except frozen stages / bn_eval) and update running statistics.
void model_forward(model *m, int n, int train);
// Loss (mean cross-entropy) and its gradient from m->logits; value stays on the device.
void model_loss(model *m, int n);
// Backward from m->dlogits into the gradient arena (frozen parameters get none).
void model_backward(model *m, int n);
// 1 when every trainable gradient is finite.
int model_grads_finite(model *m);
// 1 when every parameter and batch-norm running statistic is finite.
int model_params_finite(model *m);
// Values per channel the deepest batch norm trained on a batch of n images sees (PyTorch
// refuses to train a batch norm on 1); 0 when there is none. Needs a plan.
long model_bn_values(const model *m, int n);

// --freeze's stage names: none stem layer1 layer2 layer3 layer4 backbone -> -1 0 1 2 3 4
// MODEL_FREEZE_BACKBONE; -2 for another name. A model freezes stages 0..freeze, never its
// classifier (its last stage). A description has at most MODEL_FREEZE_BACKBONE + 1 stages
// before its classifier (model_init refuses more), so "backbone" is every stage before it,
// whatever the network, and a freeze of MODEL_FREEZE_BACKBONE leaves no batch norm training.
enum { MODEL_FREEZE_BACKBONE = 4 };
int model_freeze_from_name(const char *s);
// 1 when stage `stage` of m is frozen.
int model_stage_frozen(const model *m, int stage);
int model_param_trainable(const model *m, int i);
// The trainable parameters form one suffix of the arena (stages in order): its first float.
size_t model_first_trainable(const model *m);

// Checkpoints: the state_dict (torchvision names) to and from a ckpt.
int model_to_ckpt(model *m, ckpt *c, const char *prefix);
// Loads weights as PyTorch's load_state_dict does: strips "state_dict.", "model." and
// "module." prefixes; with strict, a missing or unexpected key is an error (the first line
// names the first of each and the counts, the next lines list them), as strict=True is;
// without, missing parameters keep their values and unexpected keys are ignored, and on
// success err holds a warning naming them ("" when there is none). A shape mismatch is
// always an error naming the key and both shapes, except a classifier of another number of
// classes, which is re-initialised from head_seed (*head_replaced = 1). A missing
// num_batches_tracked (older files) counts as 0 and is never an error.
int model_from_ckpt(model *m, const ckpt *c, const char *prefix, int strict, uint64_t head_seed,
                    int *head_replaced, const char *fname, char *err, size_t errlen);

#endif
