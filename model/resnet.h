// The torchvision ResNet family (resnet18, 34, 50, 101, 152) from one architecture config: the
// parameter table (state_dict names, order and shapes), initialisation, the activation plan,
// forward and backward as straight lists of op calls, SGD, freezing, and the conversion to
// and from checkpoints. Every table is sized from the config; nothing below depends on depth.
#ifndef CLTRAIN_RESNET_H
#define CLTRAIN_RESNET_H

#include "host/ops/ops.h"
#include "model/ckpt.h"

#include <stdint.h>

// Stages: 0 the stem (conv1, bn1), 1..RESNET_LAYERS the residual layers, then fc.
enum { RESNET_LAYERS = 4, RESNET_STAGE_FC = RESNET_LAYERS + 1, RESNET_MAX_BLOCK_CONVS = 3 };
// torchvision's BatchNorm2d defaults.
#define RESNET_BN_EPS 1e-5f
#define RESNET_BN_MOMENTUM 0.1f

typedef enum {
    RESNET_BASIC,       // BasicBlock: 3x3 (stride), 3x3; expansion 1
    RESNET_BOTTLENECK,  // Bottleneck v1.5: 1x1, 3x3 (stride, as torchvision), 1x1; expansion 4
} resnet_block_kind;

// The architecture: everything that differs between the family's members.
typedef struct resnet_config {
    char arch[16];                 // "resnet18", ...
    resnet_block_kind block;
    int blocks[RESNET_LAYERS];     // blocks per layer, e.g. {2, 2, 2, 2}
    int widths[RESNET_LAYERS];     // planes per layer: {64, 128, 256, 512}
    int stem_width;                // conv1's outputs: 64
    int num_classes;               // fc's outputs
} resnet_config;

// "resnet18|resnet34|resnet50|resnet101|resnet152" (for usage texts).
extern const char resnet_arch_list[];
// torchvision's config for `arch` with `num_classes` outputs. 0, or nonzero with a message.
int resnet_config_named(resnet_config *cfg, const char *arch, int num_classes, char *err,
                        size_t errlen);
// The config whose keys and shapes a checkpoint holds (under `base`, "" or NULL for the top
// level; "module."-style prefixes are found as resnet_from_ckpt finds them); num_classes is
// set from fc.weight. Returns 0; 1 when the file holds no ResNet (no conv1.weight), 2 when its
// layout is none of the family's (both with a message naming `fname`).
int resnet_config_from_ckpt(resnet_config *cfg, const ckpt *c, const char *base,
                            const char *fname, char *err, size_t errlen);
// The key prefix under `base` ("" or NULL: the top level) that a file's weights use: base
// followed by "", "module.", "state_dict.", "model." or a combination. 0, or -1 when no
// conv1.weight is found.
int resnet_ckpt_prefix(const ckpt *c, const char *base, char *out, size_t len);
int resnet_expansion(const resnet_config *cfg);      // 1 or 4
int resnet_features(const resnet_config *cfg);       // fc's inputs: widths[last] * expansion

typedef enum {
    RP_CONV,      // weight (O, C, KH, KW), trainable
    RP_BN_W,      // BatchNorm weight (C), trainable
    RP_BN_B,      // BatchNorm bias (C), trainable
    RP_BN_MEAN,   // running_mean (C), buffer
    RP_BN_VAR,    // running_var (C), buffer
    RP_BN_COUNT,  // num_batches_tracked (), int64 kept on the host
    RP_FC_W,      // (K, features), trainable
    RP_FC_B,      // (K), trainable
} resnet_param_kind;

// One state_dict entry.
typedef struct resnet_param {
    char name[96];                 // torchvision's name, e.g. "layer2.0.downsample.1.weight"
    resnet_param_kind kind;
    int ndim, shape[4];
    size_t numel;
    size_t off;                    // floats into the params arena (trainable) or buffers arena
    int stage;                     // 0..RESNET_STAGE_FC
} resnet_param;

typedef struct resnet_conv {
    int w;                         // parameter index
    int cin, cout, k, stride, pad;
    int stage;
    int ih, iw, oh, ow;            // spatial size in and out (set by resnet_plan)
    char label[64];                // module name for profiles, e.g. "layer1.0.conv1"
} resnet_conv;

typedef struct resnet_bn {
    int w, b, mean, var, count;    // parameter indices
    int c, stage;
    char label[64];
} resnet_bn;

// One residual block: conv j feeds bn j; every bn but the last is followed by a relu; the
// shortcut (the input, or downsample conv + bn) is added before the final relu.
typedef struct resnet_block {
    int nconv;                            // 2 BasicBlock, 3 Bottleneck
    int conv[RESNET_MAX_BLOCK_CONVS];     // indices into convs[]
    int bn[RESNET_MAX_BLOCK_CONVS];       // indices into bns[]
    int convd, bnd;                       // downsample (-1: none)
    int cin, cout, stride, stage;
    int in_stage;                         // stage of the layer that produced the input
    int h, w, oh, ow;                     // spatial size in and out (set by resnet_plan)
} resnet_block;

// Activations saved by the forward pass for backward, each its own buffer, (C, N, H, W).
typedef struct resnet_block_act {
    dten c[RESNET_MAX_BLOCK_CONVS];       // conv j's output
    dten r[RESNET_MAX_BLOCK_CONVS - 1];   // relu(bn j (c[j])) for j < nconv - 1
    dten cd;                              // downsample conv output
    dten out;                             // block output relu(bn_last + shortcut)
    dten mean[RESNET_MAX_BLOCK_CONVS], invstd[RESNET_MAX_BLOCK_CONVS];  // (C) saved by bn j
    dten md, sd;                          // downsample bn's
} resnet_block_act;

// How the plan may use memory (handed down by the command layer).
typedef struct resnet_plan_options {
    int keep_cols;   // -1: a workspace per conv when memory allows (resnet_plan); 0: never
} resnet_plan_options;

typedef struct resnet {
    clrt *rt;
    resnet_config cfg;
    int num_classes, features;     // fc is (num_classes, features)
    resnet_param *params;          // (nparams) state_dict order
    int nparams;
    resnet_conv *convs;            // (nconvs): conv1, then each block's convs, downsample last
    int nconvs;
    resnet_bn *bns;                // (nbns), parallel to convs
    int nbns;
    resnet_block *blk;             // (nblocks)
    int nblocks;
    int fc_w, fc_b;                // parameter indices of fc
    size_t n_param_floats;         // trainable parameters in state_dict order
    size_t n_buffer_floats;        // running means and variances
    int64_t *bn_count;             // (nbns) num_batches_tracked

    // Device arenas: params, grads and momentum share offsets.
    cl_mem arena_params, arena_grads, arena_momentum, arena_buffers;
    int momentum_ready;            // SGD has taken its first step (buf = grad then)

    // Training set-up.
    int freeze;                    // stages 0..freeze are frozen (-1 none)
    int bn_eval;                   // all batch norms in eval mode
    float label_smoothing;         // resnet_loss: CrossEntropyLoss(label_smoothing=...)

    // Activation plan for batch <= max_batch at image size S.
    int max_batch, image_size;
    dten x;                        // (3, B, S, S) input
    dten labels;                   // (B) int32
    int stem_h, stem_w, pool_h, pool_w;
    dten stem_c, stem_r, stem_pool, stem_argmax, stem_m, stem_s;
    resnet_block_act *blocks;      // (nblocks)
    dten pooled;                   // (features, B)
    dten logits, dlogits;          // (K, B)
    dten losses, loss_mean;        // (B), (1)
    dten dpooled;                  // (features, B)
    dten g[4];                     // gradient scratch, each the largest activation
    dten work;                     // conv workspace (largest im2col), shared by all convs
    // Or, where memory allows (resnet_plan), one workspace per conv that keeps the forward's
    // col matrix for the weight gradient (no second im2col); col_ready: it holds it now.
    int keep_cols;
    dten *conv_work;               // (nconvs)
    int *col_ready;                // (nconvs)
    int fwd_train;                 // the last resnet_forward was in training mode
    dten flag;                     // (1) int32 for op_all_finite
    size_t device_bytes;           // everything allocated on the device

    // Optional: resnet_backward calls grads_ready(grads_ready_ctx, off) as the gradients
    // complete, tail first (fc, each block from the last, the stem): once the op calls
    // enqueued so far have run, every gradient from float `off` of the arena to its end is
    // final. Data-parallel replicas start reading a bucket there (DDP's overlap).
    void (*grads_ready)(void *ctx, size_t off);
    void *grads_ready_ctx;
} resnet;

// Builds the parameter table of `cfg` and allocates the parameter arenas.
// Returns 0, or nonzero with a message.
int resnet_init(resnet *m, clrt *rt, const resnet_config *cfg, char *err, size_t errlen);
// Plans and allocates activations for batches up to max_batch at image_size (any size whose
// layer4 is at least 1x1). opt may be NULL (defaults). Returns 0, or nonzero with a message:
// RESNET_PLAN_NO_FIT when the plan does not fit the device (checked before anything is
// allocated; resnet_largest_batch says what does).
enum { RESNET_PLAN_NO_FIT = 3 };
int resnet_plan(resnet *m, int max_batch, int image_size, const resnet_plan_options *opt,
                char *err, size_t errlen);
// The largest batch size up to max_batch whose plan fits the device at image_size (0: none).
int resnet_largest_batch(resnet *m, int max_batch, int image_size);
// Accepts a zeroed or half-built model.
void resnet_free(resnet *m);

// torchvision's default initialisation from `seed`: convs kaiming_normal_(fan_out, relu),
// batch norm weight 1 bias 0 (running 0 / 1), Linear U(-1/sqrt(features), 1/sqrt(features)).
// 0, or -1 when the host has no memory for the staging copy.
int resnet_init_weights(resnet *m, uint64_t seed);
// Re-initialise only fc (the seed's "modify the last layer").
int resnet_init_fc(resnet *m, uint64_t seed);

// Bytes the model and its activation plan for (batch, size) take on the device; 0 when the
// image is too small for the architecture.
size_t resnet_plan_bytes(const resnet_config *cfg, int batch, int image_size);
// Spatial size (h*w) of the last layer's output at image_size (0: too small).
int resnet_final_hw(const resnet *m);

// Forward of a batch already in m->x (and m->labels for training). train: batch norms use
// batch statistics (except frozen stages / bn_eval) and update running statistics.
void resnet_forward(resnet *m, int n, int train);
// Loss (mean cross-entropy) and its gradient from m->logits; value stays on the device.
void resnet_loss(resnet *m, int n);
// Backward from m->dlogits into m->grads (frozen parameters get none).
void resnet_backward(resnet *m, int n);
// One SGD step on the trainable parameters.
void resnet_sgd(resnet *m, float lr, float momentum, float weight_decay);
// The same, guarded (op_sgd_step_guarded): nothing is written unless guard (one int32) is 1.
void resnet_sgd_guarded(resnet *m, float lr, float momentum, float weight_decay, dten guard);
// 1 when every trainable gradient is finite.
int resnet_grads_finite(resnet *m);
// 1 when every parameter and batch-norm running statistic is finite (checked after each
// update: a finite gradient times a large lr can still overflow, and that must not be saved).
int resnet_params_finite(resnet *m);

// Stage names for --freeze: none stem layer1 layer2 layer3 layer4 backbone -> -1 0 1 2 3 4 4.
int resnet_freeze_from_name(const char *s);
int resnet_param_trainable(const resnet *m, int i);

// Checkpoints: the state_dict (torchvision names) to and from a ckpt.
int resnet_to_ckpt(resnet *m, ckpt *c, const char *prefix);
// Loads weights as PyTorch's load_state_dict does: strips "state_dict.", "model." and
// "module." prefixes; with strict, a missing or unexpected key is an error (the first line
// names the first of each and the counts, the next lines list them), as strict=True is;
// without, missing parameters keep their values and unexpected keys are ignored, and on
// success err holds a warning naming them ("" when there is none). A shape mismatch is
// always an error naming the key and both shapes, except an fc of another number of classes,
// which is re-initialised from fc_seed (*fc_replaced = 1). A missing num_batches_tracked
// (older files) counts as 0 and is never an error.
int resnet_from_ckpt(resnet *m, const ckpt *c, const char *prefix, int strict, uint64_t fc_seed,
                     int *fc_replaced, const char *fname, char *err, size_t errlen);

#endif
