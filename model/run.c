// Forward, loss and backward by walking the node list. The same walks plan the memory
// (model/plan.c): while planning they launch nothing and record when each buffer is used, so
// the plan and the run cannot disagree on what lives when.
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct walk {
    model *m;
    act_plan *p;
    int n, t;                      // batch size, the time of the node being walked
} walk;

static dten P(const model *m, int i) {  // a parameter's tensor in its arena
    const model_param *p = &m->params[i];
    dten t = { (p->kind == PARAM_BN_MEAN || p->kind == PARAM_BN_VAR) ? m->arena_buffers
                                                                    : m->arena_params, p->off };
    return t;
}

static dten G(const model *m, int i) {  // a parameter's gradient, or none when frozen
    if (i < 0 || !model_param_trainable(m, i)) return DTEN_NONE;
    dten t = { m->arena_grads, m->params[i].off };
    return t;
}

static size_t numel(const walk *w, const node *nd) {
    return (size_t)nd->c * w->n * nd->h * nd->w;
}

static size_t plan_numel(const walk *w, int i) {
    const node *nd = &w->m->desc.nodes[i];
    return (size_t)nd->c * w->p->batch * nd->h * nd->w;
}

// Buffer *id at this time: created while planning (sized `floats`), its tensor when running.
static dten use(walk *w, int *id, size_t floats) {
    int i = plan_use(w->p, id, floats, w->t);
    return w->p->planning ? DTEN_NONE : w->p->bufs[i].dt;
}

static dten value(walk *w, int i) {  // node i's output
    return use(w, &w->p->val[i], plan_numel(w, i));
}

// The node whose value a unit writes: a relu run inside node i, or i itself.
static int out_of(const act_plan *p, int i) { return p->fused[i] >= 0 ? p->fused[i] : i; }

static void label(walk *w, const node *nd) {
    if (!w->p->planning && nd->name[0]) clrt_profile_layer(w->m->rt, nd->name);
}

static void conv_shape_of(const model *m, const node *nd, conv_shape *s, int n) {
    const node *in = &m->desc.nodes[nd->in[0]];
    conv_shape_init(s, n, in->c, in->h, in->w, nd->out, nd->k, nd->stride, nd->pad);
}

static int bn_batch_stats(const model *m, const node *nd, int train) {
    return train && !m->bn_eval && !model_stage_frozen(m, nd->stage);
}

// ---- forward ----

static void conv_forward(walk *w, int i) {
    model *m = w->m;
    act_plan *p = w->p;
    const node *nd = &m->desc.nodes[i];
    conv_shape s;
    conv_shape_of(m, nd, &s, p->planning ? p->batch : w->n);
    dten in = value(w, nd->in[0]), out = value(w, i);
    dten work = use(w, &p->work_f[i], conv_workspace_floats(&s));
    if (p->planning) return;
    // Training with a workspace per conv: the forward's col matrix serves the weight gradient.
    p->col_ready[i] = p->keep_cols && p->fwd_train;
    if (p->col_ready[i]) op_conv2d_forward_col(m->ops, out, in, P(m, nd->param[0]), &s, work);
    else op_conv2d_forward(m->ops, out, in, P(m, nd->param[0]), &s, work);
}

static void bn_forward(walk *w, int i, int train) {
    model *m = w->m;
    act_plan *p = w->p;
    const node *nd = &m->desc.nodes[i];
    int relu = p->fused[i] >= 0, stats = bn_batch_stats(m, nd, train);
    int cm = w->n * nd->h * nd->w;
    dten in = value(w, nd->in[0]), out = value(w, out_of(p, i));
    const int *q = nd->param;
    if (stats || (p->planning && p->training)) {
        dten mean = use(w, &p->aux0[i], (size_t)nd->c), invstd = use(w, &p->aux1[i], (size_t)nd->c);
        if (p->planning) return;
        (relu ? op_bn_relu_forward_train : op_bn_forward_train)(
            m->ops, out, mean, invstd, P(m, q[2]), P(m, q[3]), in, P(m, q[0]), P(m, q[1]), nd->c,
            cm, MODEL_BN_MOMENTUM, MODEL_BN_EPS);
        m->bn_count[nd->bn]++;  // num_batches_tracked
    } else if (!p->planning) {
        (relu ? op_bn_relu_forward_eval : op_bn_forward_eval)(
            m->ops, out, in, P(m, q[0]), P(m, q[1]), P(m, q[2]), P(m, q[3]), nd->c, cm,
            MODEL_BN_EPS);
    }
}

void model_walk_forward(model *m, int n, int train) {
    act_plan *p = m->plan;
    walk w = { m, p, n, 0 };
    if (!p->planning) p->fwd_train = train;
    for (int i = 0; i < m->desc.nnodes; i++) {
        const node *nd = &m->desc.nodes[i];
        if (p->absorbed[i]) continue;
        w.t = i;
        label(&w, nd);
        switch (nd->kind) {
        case NODE_INPUT: value(&w, 0); break;
        case NODE_CONV: conv_forward(&w, i); break;
        case NODE_BN: bn_forward(&w, i, train); break;
        case NODE_ACT: {
            dten in = value(&w, nd->in[0]), out = value(&w, i);
            if (p->planning) break;
            if (nd->act == ACT_RELU) op_relu_forward(m->ops, out, in, numel(&w, nd));
            else op_act_forward(m->ops, (op_act)nd->act, out, in, numel(&w, nd));
            break;
        }
        case NODE_ADD: {
            dten a = value(&w, nd->in[0]), b = value(&w, nd->in[1]);
            dten out = value(&w, out_of(p, i));
            if (!p->planning)
                (p->fused[i] >= 0 ? op_add_relu : op_add)(m->ops, out, a, b, numel(&w, nd));
            break;
        }
        case NODE_MUL: {  // in[0] (C, N, H, W) scaled by in[1] (C, N, 1, 1)
            dten x = value(&w, nd->in[0]), s = value(&w, nd->in[1]), out = value(&w, i);
            if (!p->planning)
                op_channel_scale_forward(m->ops, out, x, s, nd->c * n, nd->h * nd->w);
            break;
        }
        case NODE_MAXPOOL: {
            const node *src = &m->desc.nodes[nd->in[0]];
            dten in = value(&w, nd->in[0]), out = value(&w, i);
            dten argmax = use(&w, &p->aux0[i], plan_numel(&w, i));
            pool_shape ps;
            pool_shape_init(&ps, n, src->c, src->h, src->w, nd->k, nd->stride, nd->pad);
            if (!p->planning) op_maxpool_forward(m->ops, out, argmax, in, &ps);
            break;
        }
        case NODE_GAP: {
            const node *src = &m->desc.nodes[nd->in[0]];
            dten in = value(&w, nd->in[0]), out = value(&w, i);
            if (!p->planning) op_avgpool_forward(m->ops, out, in, src->c, n, src->h * src->w);
            break;
        }
        case NODE_FLATTEN:  // the same buffer as its input
            p->val[i] = p->val[nd->in[0]];
            value(&w, i);
            break;
        case NODE_LINEAR: {
            const node *src = &m->desc.nodes[nd->in[0]];
            dten in = value(&w, nd->in[0]), out = value(&w, i);
            if (!p->planning)
                op_linear_forward(m->ops, out, in, P(m, nd->param[0]), P(m, nd->param[1]), nd->out,
                                  src->c, n);
            break;
        }
        default:  // model_plan refuses the kinds without kernels
            break;
        }
    }
}

// ---- backward ----

// The gradient of node v's output as it stands (its buffer id; the node's producer reads it).
static dten grad_in(walk *w, int v) {
    return use(w, &w->p->gcur[v], 0);
}

// Where a computed contribution to the gradient of node v's output goes (DTEN_NONE when
// nothing wants it); slot: which input of the walking node v is (its own scratch).
static dten contrib_dest(walk *w, int node_i, int slot, int v) {
    act_plan *p = w->p;
    if (v < 0 || !p->needs[v]) return DTEN_NONE;
    if (p->gstate[v] == GRAD_NONE) return use(w, &p->grad[v], plan_numel(w, v));
    return use(w, &p->tmp[2 * node_i + slot], plan_numel(w, v));
}

// After a contribution was written where contrib_dest said: the first one is the gradient
// (in its own buffer); a later one is added to what is there (into v's own buffer: a
// gradient passed on unchanged is shared and must not be written in place). Two terms, so the
// order they arrive in cannot change a bit.
static void contrib_done(walk *w, int node_i, int slot, int v) {
    act_plan *p = w->p;
    if (v < 0 || !p->needs[v]) return;
    if (p->gstate[v] == GRAD_NONE) {
        p->gstate[v] = GRAD_OWN;
        p->gcur[v] = p->grad[v];
        return;
    }
    dten cur = grad_in(w, v), t = use(w, &p->tmp[2 * node_i + slot], 0);
    dten own = use(w, &p->grad[v], plan_numel(w, v));
    if (!p->planning) op_add(w->m->ops, own, cur, t, numel(w, &w->m->desc.nodes[v]));
    p->gstate[v] = GRAD_OWN;
    p->gcur[v] = p->grad[v];
}

// A gradient passed to input v unchanged (add, flatten): shared while it is the only one.
static void contrib_pass(walk *w, int v, int gid) {
    act_plan *p = w->p;
    if (v < 0 || !p->needs[v]) return;
    if (p->gstate[v] == GRAD_NONE) {
        p->gstate[v] = GRAD_ALIAS;
        p->gcur[v] = gid;
        plan_use(p, &p->gcur[v], 0, w->t);
        return;
    }
    dten cur = grad_in(w, v), g = use(w, &gid, 0);
    dten own = use(w, &p->grad[v], plan_numel(w, v));
    if (!p->planning) op_add(w->m->ops, own, cur, g, numel(w, &w->m->desc.nodes[v]));
    p->gstate[v] = GRAD_OWN;
    p->gcur[v] = p->grad[v];
}

static int has_trainable(const model *m, const node *nd) {
    for (int k = 0; k < 5; k++)
        if (nd->param[k] >= 0 && model_param_trainable(m, nd->param[k])) return 1;
    return 0;
}

// What the walk treats as trainable: while planning, every node with parameters (a plan
// serves any freezing; param[0], a conv's, linear's or batch norm's weight, is trainable).
static int trains(const walk *w, const node *nd) {
    return w->p->planning ? nd->param[0] >= 0 : has_trainable(w->m, nd);
}

static void conv_backward(walk *w, int i, int gid) {
    model *m = w->m;
    act_plan *p = w->p;
    const node *nd = &m->desc.nodes[i];
    int v = nd->in[0];
    dten dw = w->p->planning ? DTEN_NONE : G(m, nd->param[0]);
    int wants_dw = w->p->planning ? 1 : dw.mem != NULL;
    if (!wants_dw && !(v >= 0 && p->needs[v])) return;
    conv_shape s;
    conv_shape_of(m, nd, &s, p->planning ? p->batch : w->n);
    dten dout = use(w, &gid, 0), in = value(w, v);
    dten work = use(w, p->keep_cols ? &p->work_f[i] : &p->work_b[i], conv_workspace_floats(&s));
    dten din = contrib_dest(w, i, 0, v);
    if (!p->planning) {
        if (din.mem || dw.mem) {
            if (p->col_ready[i])  // this step's forward left the col matrix of `in` there
                op_conv2d_backward_col(m->ops, din, dw, dout, in, P(m, nd->param[0]), &s, work);
            else
                op_conv2d_backward(m->ops, din, dw, dout, in, P(m, nd->param[0]), &s, work);
        }
        p->col_ready[i] = 0;  // the data gradient overwrote it
    }
    contrib_done(w, i, 0, v);
}

static void bn_backward(walk *w, int i, int gid) {
    model *m = w->m;
    act_plan *p = w->p;
    const node *nd = &m->desc.nodes[i];
    int v = nd->in[0], relu = p->fused[i] >= 0, cm = w->n * nd->h * nd->w;
    const int *q = nd->param;
    dten dout = use(w, &gid, 0), in = value(w, v);
    dten out = relu ? value(w, p->fused[i]) : DTEN_NONE;
    dten din = contrib_dest(w, i, 0, v);
    if (p->planning) {
        use(w, &p->aux0[i], (size_t)nd->c);
        use(w, &p->aux1[i], (size_t)nd->c);
    } else if (bn_batch_stats(m, nd, 1)) {
        dten mean = use(w, &p->aux0[i], 0), invstd = use(w, &p->aux1[i], 0);
        if (relu)
            op_bn_relu_backward_train(m->ops, din, G(m, q[0]), G(m, q[1]), dout, out, in,
                                      P(m, q[0]), mean, invstd, nd->c, cm);
        else
            op_bn_backward_train(m->ops, din, G(m, q[0]), G(m, q[1]), dout, in, P(m, q[0]), mean,
                                 invstd, nd->c, cm);
    } else if (relu) {
        op_bn_relu_backward_eval(m->ops, din, G(m, q[0]), G(m, q[1]), dout, out, in, P(m, q[0]),
                                 P(m, q[2]), P(m, q[3]), nd->c, cm, MODEL_BN_EPS);
    } else {
        op_bn_backward_eval(m->ops, din, G(m, q[0]), G(m, q[1]), dout, in, P(m, q[0]), P(m, q[2]),
                            P(m, q[3]), nd->c, cm, MODEL_BN_EPS);
    }
    contrib_done(w, i, 0, v);
}

// Gradients from float `off` of the arena to its end are final (model.h, grads_ready).
static void grads_ready(walk *w, size_t off) {
    if (!w->p->planning && w->m->grads_ready) w->m->grads_ready(w->m->grads_ready_ctx, off);
}

void model_walk_backward(model *m, int n) {
    act_plan *p = m->plan;
    walk w = { m, p, n, 0 };
    int N = m->desc.nnodes;
    // Which outputs want a gradient: those with something trainable at or before them.
    for (int i = 0; i < N; i++) {
        const node *nd = &m->desc.nodes[i];
        p->needs[i] = nd->kind != NODE_INPUT && trains(&w, nd);
        for (int k = 0; k < 2; k++)
            if (nd->in[k] >= 0 && p->needs[nd->in[k]]) p->needs[i] = 1;
        p->gstate[i] = GRAD_NONE;
        p->gcur[i] = -1;
    }
    for (int i = 0; i < N; i++)   // a fused relu's output is its unit's
        if (p->absorbed[i]) p->needs[i] = p->needs[m->desc.nodes[i].in[0]];
    // The head's output gradient is the loss's (dlogits: the last node's value's twin).
    p->gstate[N - 1] = GRAD_OWN;
    p->gcur[N - 1] = p->grad[N - 1];
    size_t ready = m->n_param_floats;
    for (int i = N - 1; i >= 0; i--) {
        const node *nd = &m->desc.nodes[i];
        int o = out_of(p, i);
        if (p->absorbed[i] || !p->needs[o]) continue;
        w.t = 2 * N - 1 - i;
        if (p->gstate[o] == GRAD_NONE) {
            fprintf(stderr, "cltrain: internal error: %s: node %d's gradient never arrived\n",
                    m->arch, o);
            abort();
        }
        label(&w, nd);
        int gid = p->gcur[o];
        switch (nd->kind) {
        case NODE_CONV: conv_backward(&w, i, gid); break;
        case NODE_BN: bn_backward(&w, i, gid); break;
        case NODE_ACT: {  // relu's gradient from its output, the others' from their input
            int v = nd->in[0], relu = nd->act == ACT_RELU;
            dten dout = use(&w, &gid, 0), x = relu ? value(&w, i) : value(&w, v);
            dten din = contrib_dest(&w, i, 0, v);
            if (!p->planning && din.mem) {
                if (relu) op_relu_backward(m->ops, din, dout, x, numel(&w, nd));
                else op_act_backward(m->ops, (op_act)nd->act, din, dout, x, numel(&w, nd));
            }
            contrib_done(&w, i, 0, v);
            break;
        }
        case NODE_ADD:
            if (p->fused[i] >= 0) {  // through the relu first: in place when not shared
                dten out = value(&w, o), dout = use(&w, &gid, 0);
                if (p->gstate[o] != GRAD_OWN) {
                    dten own = use(&w, &p->grad[o], plan_numel(&w, o));
                    if (!p->planning) op_relu_backward(m->ops, own, dout, out, numel(&w, nd));
                    p->gstate[o] = GRAD_OWN;
                    gid = p->gcur[o] = p->grad[o];
                } else if (!p->planning) {
                    op_relu_backward(m->ops, dout, dout, out, numel(&w, nd));
                }
            }
            contrib_pass(&w, nd->in[0], gid);
            contrib_pass(&w, nd->in[1], gid);
            break;
        case NODE_MUL: {
            int v0 = nd->in[0], v1 = nd->in[1];
            dten dout = use(&w, &gid, 0), x = value(&w, v0), s = value(&w, v1);
            dten dx = contrib_dest(&w, i, 0, v0), ds = contrib_dest(&w, i, 1, v1);
            if (!p->planning && (dx.mem || ds.mem))
                op_channel_scale_backward(m->ops, dx, ds, dout, x, s, nd->c * n, nd->h * nd->w);
            contrib_done(&w, i, 0, v0);
            contrib_done(&w, i, 1, v1);
            break;
        }
        case NODE_MAXPOOL: {
            const node *src = &m->desc.nodes[nd->in[0]];
            int v = nd->in[0];
            dten dout = use(&w, &gid, 0), argmax = use(&w, &p->aux0[i], 0);
            dten din = contrib_dest(&w, i, 0, v);
            pool_shape ps;
            pool_shape_init(&ps, n, src->c, src->h, src->w, nd->k, nd->stride, nd->pad);
            if (!p->planning && din.mem) op_maxpool_backward(m->ops, din, dout, argmax, &ps);
            contrib_done(&w, i, 0, v);
            break;
        }
        case NODE_GAP: {
            const node *src = &m->desc.nodes[nd->in[0]];
            int v = nd->in[0];
            dten dout = use(&w, &gid, 0), din = contrib_dest(&w, i, 0, v);
            if (!p->planning && din.mem)
                op_avgpool_backward(m->ops, din, dout, src->c, n, src->h * src->w);
            contrib_done(&w, i, 0, v);
            break;
        }
        case NODE_FLATTEN: contrib_pass(&w, nd->in[0], gid); break;
        case NODE_LINEAR: {
            const node *src = &m->desc.nodes[nd->in[0]];
            int v = nd->in[0];
            dten dout = use(&w, &gid, 0), in = value(&w, v), din = contrib_dest(&w, i, 0, v);
            if (!p->planning)
                op_linear_backward(m->ops, din, G(m, nd->param[0]), G(m, nd->param[1]), dout, in,
                                   P(m, nd->param[0]), nd->out, src->c, n);
            contrib_done(&w, i, 0, v);
            break;
        }
        default:
            break;
        }
        // Parameters come in node order: everything from this node's first one on is final.
        if (!p->planning && has_trainable(m, nd)) {
            for (int k = 0; k < 5; k++)
                if (nd->param[k] >= 0 && model_param_trainable(m, nd->param[k]) &&
                    m->params[nd->param[k]].off < ready)
                    ready = m->params[nd->param[k]].off;
            grads_ready(&w, ready);
        }
    }
}

// ---- what model.h offers ----

static void require_plan(const model *m, int backward, int train) {
    if (m->plan && (m->plan->training || (!backward && !train))) return;
    fprintf(stderr, "cltrain: internal error: %s: %s without a %splan\n", m->arch,
            backward ? "backward" : train ? "a training forward" : "forward",
            m->plan ? "training " : "");
    abort();
}

void model_forward(model *m, int n, int train) {
    require_plan(m, 0, train);
    model_walk_forward(m, n, train);
}

void model_loss(model *m, int n) {
    clrt_profile_layer(m->rt, "loss");
    op_xent_smooth_forward_backward(m->ops, m->loss_mean, m->losses, m->dlogits, m->logits,
                                    m->labels, m->num_classes, n, m->label_smoothing);
}

void model_backward(model *m, int n) {
    require_plan(m, 1, 1);
    model_walk_backward(m, n);
}

int model_grads_finite(model *m) {
    size_t off = model_first_trainable(m);
    dten g = { m->arena_grads, off };
    return op_all_finite(m->ops, g, m->n_param_floats - off, m->flag);
}

int model_params_finite(model *m) {
    dten p = { m->arena_params, 0 }, b = { m->arena_buffers, 0 };
    return op_all_finite(m->ops, p, m->n_param_floats, m->flag) &&
           (!m->n_buffer_floats || op_all_finite(m->ops, b, m->n_buffer_floats, m->flag));
}

long model_bn_values(const model *m, int n) {
    for (int i = m->desc.nnodes - 1; i >= 0; i--) {
        const node *nd = &m->desc.nodes[i];
        if (nd->kind == NODE_BN) return (long)n * nd->h * nd->w;
    }
    return 0;
}
