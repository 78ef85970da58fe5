// ResNet18 exactly as torchvision builds it: the parameter table (state_dict names, order and
// shapes), initialisation, forward and backward as straight lists of op calls, SGD, freezing,
// and the conversion to and from checkpoints.
#ifndef CLTRAIN_RESNET_H
#define CLTRAIN_RESNET_H

#include "host/ops/ops.h"
#include "model/ckpt.h"

#include <stdint.h>

enum { RESNET_STAGES = 6 };
// torchvision's BatchNorm2d defaults.
#define RESNET_BN_EPS 1e-5f
#define RESNET_BN_MOMENTUM 0.1f  // 0 stem (conv1, bn1), 1..4 layer1..layer4, 5 fc

typedef enum {
    RP_CONV,      // weight (O, C, KH, KW), trainable
    RP_BN_W,      // BatchNorm weight (C), trainable
    RP_BN_B,      // BatchNorm bias (C), trainable
    RP_BN_MEAN,   // running_mean (C), buffer
    RP_BN_VAR,    // running_var (C), buffer
    RP_BN_COUNT,  // num_batches_tracked (), int64 kept on the host
    RP_FC_W,      // (K, 512), trainable
    RP_FC_B,      // (K), trainable
} resnet_param_kind;

// One state_dict entry.
typedef struct resnet_param {
    char name[48];                 // torchvision's name, e.g. "layer2.0.downsample.1.weight"
    resnet_param_kind kind;
    int ndim, shape[4];
    size_t numel;
    size_t off;                    // floats into the params arena (trainable) or buffers arena
    int stage;                     // 0..5
} resnet_param;

typedef struct resnet_conv {
    int w;                         // parameter index
    int cin, cout, k, stride, pad;
    int stage;
} resnet_conv;

typedef struct resnet_bn {
    int w, b, mean, var, count;    // parameter indices
    int c, stage;
} resnet_bn;

// One BasicBlock: conv indices into convs[], bn indices into bns[] (-1: no downsample).
typedef struct resnet_block {
    int conv1, bn1, conv2, bn2, convd, bnd;
    int cin, cout, stride, stage;
    int h, w, oh, ow;              // spatial size in and out (set by resnet_plan)
} resnet_block;

// Activations saved by the forward pass for backward, each its own buffer, (C, N, H, W).
typedef struct resnet_block_act {
    dten c1, r1, c2, cd, out;      // conv1 out, relu(bn1) out, conv2 out, downsample conv out,
                                   // block output (relu(bn2 + shortcut))
    dten m1, s1, m2, s2, md, sd;   // batch-norm saved mean and 1/std (C)
} resnet_block_act;

typedef struct resnet {
    clrt *rt;
    int num_classes;
    resnet_param params[128];
    int nparams;                   // 122
    resnet_conv convs[20];
    int nconvs;
    resnet_bn bns[20];
    int nbns;
    resnet_block blk[8];
    size_t n_param_floats;         // trainable parameters in state_dict order
    size_t n_buffer_floats;        // running means and variances
    int64_t bn_count[20];          // num_batches_tracked per batch norm

    // Device arenas: params, grads and momentum share offsets.
    cl_mem arena_params, arena_grads, arena_momentum, arena_buffers;
    int momentum_ready;            // SGD has taken its first step (buf = grad then)

    // Training set-up.
    int freeze;                    // stages 0..freeze are frozen (-1 none)
    int bn_eval;                   // all batch norms in eval mode

    // Activation plan for batch <= max_batch at image size S.
    int max_batch, image_size;
    dten x;                        // (3, B, S, S) input
    dten labels;                   // (B) int32
    int stem_h, stem_w, pool_h, pool_w;
    dten stem_c, stem_r, stem_pool, stem_argmax, stem_m, stem_s;
    resnet_block_act blocks[8];
    dten pooled;                   // (512, B)
    dten logits, dlogits;          // (K, B)
    dten losses, loss_mean;        // (B), (1)
    dten dpooled;                  // (512, B)
    dten g[4];                     // gradient scratch, each the largest activation
    dten work;                     // conv workspace (largest im2col), shared by all convs
    // Or, where memory allows (resnet_plan), one workspace per conv that keeps the forward's
    // col matrix for the weight gradient (no second im2col); col_ready: it holds it now.
    int keep_cols;
    dten conv_work[20];
    int col_ready[20];
    int fwd_train;                 // the last resnet_forward was in training mode
    dten flag;                     // (1) int32 for op_all_finite
    size_t device_bytes;           // everything allocated on the device
} resnet;

// Builds the parameter table for `num_classes` outputs and allocates the parameter arenas.
// Returns 0, or nonzero with a message.
int resnet_init(resnet *m, clrt *rt, int num_classes, char *err, size_t errlen);
// Plans and allocates activations for batches up to max_batch at image_size (>= 32 is not
// required; any size whose layer4 is at least 1x1). Returns 0 or nonzero with a message.
int resnet_plan(resnet *m, int max_batch, int image_size, char *err, size_t errlen);
void resnet_free(resnet *m);

// torchvision's default initialisation from `seed`: convs kaiming_normal_(fan_out, relu),
// batch norm weight 1 bias 0 (running 0 / 1), Linear weight and bias U(-1/sqrt(512), 1/sqrt(512)).
void resnet_init_weights(resnet *m, uint64_t seed);
// Re-initialise only fc (the seed's "modify the last layer").
void resnet_init_fc(resnet *m, uint64_t seed);

// Bytes the activation plan for (batch, size) would take on the device (for limit checks).
size_t resnet_plan_bytes(int num_classes, int batch, int image_size);

// Forward of a batch already in m->x (and m->labels for training). train: batch norms use
// batch statistics (except frozen stages / bn_eval) and update running statistics.
void resnet_forward(resnet *m, int n, int train);
// Loss (mean cross-entropy) and its gradient from m->logits; value stays on the device.
void resnet_loss(resnet *m, int n);
// Backward from m->dlogits into m->grads (frozen parameters get none).
void resnet_backward(resnet *m, int n);
// One SGD step on the trainable parameters.
void resnet_sgd(resnet *m, float lr, float momentum, float weight_decay);
// 1 when every trainable gradient is finite.
int resnet_grads_finite(resnet *m);
// 1 when every parameter and batch-norm running statistic is finite (checked after each
// update: a finite gradient times a large lr can still overflow, and that must not be saved).
int resnet_params_finite(resnet *m);

// Stage names for --freeze: none stem layer1 layer2 layer3 layer4 backbone -> -1 0 1 2 3 4 4.
int resnet_freeze_from_name(const char *s);
int resnet_param_trainable(const resnet *m, int i);

// Checkpoints: the state_dict (122 entries, torchvision names) to and from a ckpt.
int resnet_to_ckpt(resnet *m, ckpt *c, const char *prefix);
// Loads weights: strips "state_dict.", "model." and "module." prefixes; a missing parameter or
// a shape mismatch is an error naming the key and both shapes, except an fc of another size,
// which is re-initialised from fc_seed with a message (*fc_replaced = 1). Unknown keys are
// warnings (errors with strict). Missing num_batches_tracked counts as 0.
int resnet_from_ckpt(resnet *m, const ckpt *c, const char *prefix, int strict, uint64_t fc_seed,
                     int *fc_replaced, const char *fname, char *err, size_t errlen);

#endif
