// Forward, loss, backward and SGD of any ResNet of the family: straight lists of op calls
// over the plan, walking the blocks the config made.
#include "model/resnet.h"

#include <string.h>

static dten P(const resnet *m, int i) {  // a parameter's tensor in its arena
    const resnet_param *p = &m->params[i];
    dten t = { (p->kind == RP_BN_MEAN || p->kind == RP_BN_VAR) ? m->arena_buffers : m->arena_params, p->off };
    return t;
}

int resnet_param_trainable(const resnet *m, int i) {
    const resnet_param *p = &m->params[i];
    if (p->kind == RP_BN_MEAN || p->kind == RP_BN_VAR || p->kind == RP_BN_COUNT) return 0;
    return p->stage > m->freeze;
}

static dten G(const resnet *m, int i) {  // a parameter's gradient, or none when frozen
    if (!resnet_param_trainable(m, i)) return DTEN_NONE;
    dten t = { m->arena_grads, m->params[i].off };
    return t;
}

// Batch statistics only in training, outside frozen stages, without --bn-eval (frozen parts
// behave as PyTorch users' model.eval() on them).
static int bn_uses_batch_stats(const resnet *m, const resnet_bn *b, int train) {
    return train && !m->bn_eval && b->stage > m->freeze;
}

static void conv_shape_of(const resnet_conv *c, conv_shape *s, int n) {
    conv_shape_init(s, n, c->cin, c->ih, c->iw, c->cout, c->k, c->stride, c->pad);
}

static void conv_fwd(resnet *m, int ci, dten out, dten in, int n) {
    const resnet_conv *c = &m->convs[ci];
    conv_shape s;
    clrt_profile_layer(m->rt, c->label);
    conv_shape_of(c, &s, n);
    // Training with a workspace per conv: the forward's col matrix serves the weight gradient.
    m->col_ready[ci] = m->keep_cols && m->fwd_train;
    if (m->col_ready[ci])
        op_conv2d_forward_col(m->rt, out, in, P(m, c->w), &s, m->conv_work[ci]);
    else
        op_conv2d_forward(m->rt, out, in, P(m, c->w), &s,
                          m->keep_cols ? m->conv_work[ci] : m->work);
}

static void conv_bwd(resnet *m, int ci, dten din, dten dout, dten in, int n) {
    const resnet_conv *c = &m->convs[ci];
    conv_shape s;
    conv_shape_of(c, &s, n);
    dten dw = G(m, c->w);
    if (!din.mem && !dw.mem) return;
    clrt_profile_layer(m->rt, c->label);
    if (m->col_ready[ci])   // this step's forward left the col matrix of `in` there
        op_conv2d_backward_col(m->rt, din, dw, dout, in, P(m, c->w), &s, m->conv_work[ci]);
    else
        op_conv2d_backward(m->rt, din, dw, dout, in, P(m, c->w), &s,
                           m->keep_cols ? m->conv_work[ci] : m->work);
    m->col_ready[ci] = 0;   // the data gradient overwrote it
}

// Batch norm of bns[bi], followed by the relu when `relu` (one fused op).
static void bn_fwd(resnet *m, int bi, dten out, dten in, dten mean, dten invstd, int cm,
                   int train, int relu) {
    resnet_bn *b = &m->bns[bi];
    clrt_profile_layer(m->rt, b->label);
    if (bn_uses_batch_stats(m, b, train)) {
        (relu ? op_bn_relu_forward_train : op_bn_forward_train)(
            m->rt, out, mean, invstd, P(m, b->mean), P(m, b->var), in, P(m, b->w),
            P(m, b->b), b->c, cm, RESNET_BN_MOMENTUM, RESNET_BN_EPS);
        m->bn_count[bi]++;  // num_batches_tracked
    } else {
        (relu ? op_bn_relu_forward_eval : op_bn_forward_eval)(
            m->rt, out, in, P(m, b->w), P(m, b->b), P(m, b->mean), P(m, b->var), b->c, cm,
            RESNET_BN_EPS);
    }
}

// Gradient of bns[bi]; with a relu output `relu_out` (not DTEN_NONE), dout is the gradient
// of that relu's output and the relu's backward is fused in.
static void bn_bwd(resnet *m, int bi, dten din, dten dout, dten relu_out, dten in, dten mean,
                   dten invstd, int cm) {
    resnet_bn *b = &m->bns[bi];
    clrt_profile_layer(m->rt, b->label);
    int relu = relu_out.mem != NULL;
    if (bn_uses_batch_stats(m, b, 1)) {
        if (relu)
            op_bn_relu_backward_train(m->rt, din, G(m, b->w), G(m, b->b), dout, relu_out, in,
                                      P(m, b->w), mean, invstd, b->c, cm);
        else
            op_bn_backward_train(m->rt, din, G(m, b->w), G(m, b->b), dout, in, P(m, b->w),
                                 mean, invstd, b->c, cm);
    } else if (relu) {
        op_bn_relu_backward_eval(m->rt, din, G(m, b->w), G(m, b->b), dout, relu_out, in,
                                 P(m, b->w), P(m, b->mean), P(m, b->var), b->c, cm,
                                 RESNET_BN_EPS);
    } else {
        op_bn_backward_eval(m->rt, din, G(m, b->w), G(m, b->b), dout, in, P(m, b->w),
                            P(m, b->mean), P(m, b->var), b->c, cm, RESNET_BN_EPS);
    }
}

// Block i's forward: conv j -> bn j (+ relu but for the last) ... + shortcut -> relu.
static void block_forward(resnet *m, int i, dten in, int n, int train) {
    const resnet_block *b = &m->blk[i];
    resnet_block_act *a = &m->blocks[i];
    dten x = in;
    for (int j = 0; j < b->nconv; j++) {
        const resnet_conv *c = &m->convs[b->conv[j]];
        int last = j == b->nconv - 1, cm = n * c->oh * c->ow;
        conv_fwd(m, b->conv[j], a->c[j], x, n);
        bn_fwd(m, b->bn[j], last ? a->out : a->r[j], a->c[j], a->mean[j], a->invstd[j], cm,
               train, !last);
        if (!last) x = a->r[j];
    }
    int cm = n * b->oh * b->ow;
    dten shortcut = in;
    if (b->convd >= 0) {
        conv_fwd(m, b->convd, a->cd, in, n);
        bn_fwd(m, b->bnd, m->g[0], a->cd, a->md, a->sd, cm, train, 0);
        shortcut = m->g[0];
    }
    op_add_relu(m->rt, a->out, a->out, shortcut, (size_t)b->cout * cm);
}

void resnet_forward(resnet *m, int n, int train) {
    m->fwd_train = train;
    int h = m->stem_h, w = m->stem_w, C0 = m->convs[0].cout;
    conv_fwd(m, 0, m->stem_c, m->x, n);
    bn_fwd(m, 0, m->stem_r, m->stem_c, m->stem_m, m->stem_s, n * h * w, train, 1);
    pool_shape ps;
    pool_shape_init(&ps, n, C0, h, w, 3, 2, 1);
    op_maxpool_forward(m->rt, m->stem_pool, m->stem_argmax, m->stem_r, &ps);
    dten in = m->stem_pool;
    for (int i = 0; i < m->nblocks; i++) {
        block_forward(m, i, in, n, train);
        in = m->blocks[i].out;
    }
    clrt_profile_layer(m->rt, "avgpool+fc");
    op_avgpool_forward(m->rt, m->pooled, in, m->features, n, resnet_final_hw(m));
    op_linear_forward(m->rt, m->logits, m->pooled, P(m, m->fc_w), P(m, m->fc_b),
                      m->num_classes, m->features, n);
}

void resnet_loss(resnet *m, int n) {
    clrt_profile_layer(m->rt, "loss");
    op_xent_smooth_forward_backward(m->rt, m->loss_mean, m->losses, m->dlogits, m->logits,
                                    m->labels, m->num_classes, n, m->label_smoothing);
}

// Does anything below block i need its input gradient?
static int block_needs_din(const resnet *m, int i) { return m->blk[i].in_stage > m->freeze; }

// Gradient of block i: dout (overwritten) -> din; t1, t2 scratch. Walks the convs backwards:
// bn j's backward (through its relu but for the last) into t1, conv j's into t2 (or din).
static void block_backward(resnet *m, int i, dten dout, dten din, dten t1, dten t2, int n) {
    const resnet_block *b = &m->blk[i];
    resnet_block_act *a = &m->blocks[i];
    dten in = i == 0 ? m->stem_pool : m->blocks[i - 1].out;
    int cm = n * b->oh * b->ow, need = block_needs_din(m, i);
    size_t act = (size_t)b->cout * cm, act_in = (size_t)b->cin * n * b->h * b->w;
    op_relu_backward(m->rt, dout, dout, a->out, act);              // through the final relu
    dten g = dout;                                                 // gradient of bn j's output
    for (int j = b->nconv - 1; j >= 0; j--) {
        const resnet_conv *c = &m->convs[b->conv[j]];
        int last = j == b->nconv - 1, cmj = n * c->oh * c->ow;
        bn_bwd(m, b->bn[j], t1, g, last ? DTEN_NONE : a->r[j], a->c[j], a->mean[j],
               a->invstd[j], cmj);
        if (j > 0) {
            conv_bwd(m, b->conv[j], t2, t1, a->r[j - 1], n);
            g = t2;
        } else {
            conv_bwd(m, b->conv[0], need ? din : DTEN_NONE, t1, in, n);
        }
    }
    if (b->convd >= 0) {
        bn_bwd(m, b->bnd, t1, dout, DTEN_NONE, a->cd, a->md, a->sd, cm);
        conv_bwd(m, b->convd, need ? t2 : DTEN_NONE, t1, in, n);
        if (need) op_add(m->rt, din, din, t2, act_in);
    } else if (need) {
        op_add(m->rt, din, din, dout, act_in);
    }
}

// Gradients from float `off` to the arena's end are final (resnet.h, grads_ready).
static void grads_ready(resnet *m, size_t off) {
    if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, off);
}

// Block i's first parameter in the arena (state_dict order: its convs, bns and downsample).
static size_t block_first_off(const resnet *m, int i) {
    const resnet_block *b = &m->blk[i];
    size_t off = m->params[m->convs[b->conv[0]].w].off;
    for (int j = 0; j < b->nconv; j++) {
        size_t o[3] = { m->params[m->convs[b->conv[j]].w].off, m->params[m->bns[b->bn[j]].w].off,
                        m->params[m->bns[b->bn[j]].b].off };
        for (int k = 0; k < 3; k++) off = o[k] < off ? o[k] : off;
    }
    if (b->convd >= 0 && m->params[m->convs[b->convd].w].off < off)
        off = m->params[m->convs[b->convd].w].off;
    return off;
}

void resnet_backward(resnet *m, int n) {
    int K = m->num_classes, F = m->features;
    int need = m->freeze < RESNET_LAYERS;
    clrt_profile_layer(m->rt, "avgpool+fc");
    op_linear_backward(m->rt, need ? m->dpooled : DTEN_NONE, G(m, m->fc_w), G(m, m->fc_b),
                       m->dlogits, m->pooled, P(m, m->fc_w), K, F, n);
    grads_ready(m, m->params[m->fc_w].off < m->params[m->fc_b].off ? m->params[m->fc_w].off
                                                                   : m->params[m->fc_b].off);
    if (!need) return;
    op_avgpool_backward(m->rt, m->g[0], m->dpooled, F, n, resnet_final_hw(m));
    int cur = 0;
    for (int i = m->nblocks - 1; i >= 0; i--) {
        if (m->blk[i].stage <= m->freeze) return;
        block_backward(m, i, m->g[cur], m->g[1 - cur], m->g[2], m->g[3], n);
        grads_ready(m, block_first_off(m, i));
        if (!block_needs_din(m, i)) return;
        cur = 1 - cur;
    }
    // Stem: the gradient of the maxpool output is in g[cur].
    int h = m->stem_h, w = m->stem_w, cm = n * h * w;
    pool_shape ps;
    pool_shape_init(&ps, n, m->convs[0].cout, h, w, 3, 2, 1);
    op_maxpool_backward(m->rt, m->g[2], m->g[cur], m->stem_argmax, &ps);
    bn_bwd(m, 0, m->g[3], m->g[2], m->stem_r, m->stem_c, m->stem_m, m->stem_s, cm);
    conv_bwd(m, 0, DTEN_NONE, m->g[3], m->x, n);  // no input gradient
    grads_ready(m, 0);
}

// The trainable parameters form one contiguous suffix of the arena (stages are in order).
static size_t first_trainable_off(const resnet *m) {
    for (int i = 0; i < m->nparams; i++)
        if (resnet_param_trainable(m, i)) return m->params[i].off;
    return m->n_param_floats;
}

static void sgd(resnet *m, float lr, float momentum, float weight_decay, dten guard) {
    size_t off = first_trainable_off(m);
    clrt_profile_layer(m->rt, "sgd");
    dten p = { m->arena_params, off }, g = { m->arena_grads, off }, b = { m->arena_momentum, off };
    if (guard.mem)
        op_sgd_step_guarded(m->rt, p, g, b, m->n_param_floats - off, lr, momentum,
                            weight_decay, !m->momentum_ready, guard);
    else
        op_sgd_step(m->rt, p, g, b, m->n_param_floats - off, lr, momentum, weight_decay,
                    !m->momentum_ready);
    m->momentum_ready = 1;
}

void resnet_sgd(resnet *m, float lr, float momentum, float weight_decay) {
    sgd(m, lr, momentum, weight_decay, (dten){ 0 });
}

void resnet_sgd_guarded(resnet *m, float lr, float momentum, float weight_decay, dten guard) {
    sgd(m, lr, momentum, weight_decay, guard);
}

int resnet_grads_finite(resnet *m) {
    size_t off = first_trainable_off(m);
    dten g = { m->arena_grads, off };
    return op_all_finite(m->rt, g, m->n_param_floats - off, m->flag);
}

int resnet_params_finite(resnet *m) {
    dten p = { m->arena_params, 0 }, b = { m->arena_buffers, 0 };
    return op_all_finite(m->rt, p, m->n_param_floats, m->flag) &&
           (!m->n_buffer_floats || op_all_finite(m->rt, b, m->n_buffer_floats, m->flag));
}

int resnet_freeze_from_name(const char *s) {
    static const char *names[] = { "none", "stem", "layer1", "layer2", "layer3", "layer4",
                                   "backbone" };
    static const int value[] = { -1, 0, 1, 2, 3, 4, 4 };
    for (int i = 0; i < 7; i++)
        if (s && !strcmp(s, names[i])) return value[i];
    return -2;
}
