// SGD with momentum, PyTorch's torch.optim.SGD (dampening 0, no Nesterov), one item per
// parameter:
//   g = grad + weight_decay * p
//   buf = first_step ? g : momentum * buf + g      (momentum != 0; PyTorch clones g first)
//   p = p - lr * (momentum != 0 ? buf : g)
//
// With `guarded`, guard[go_] is the step's guard (1: the loss and every gradient are finite):
// the update is skipped whole when it is not 1, so a non-finite step leaves the weights and
// momentum as they were. (Testing the written weights here too, with an atomic clear, cost
// more than all_finite's separate pass: pocl no longer vectorises the update.)
__kernel void sgd_step(__global float *params, ulong po, __global const float *grads, ulong go,
                       __global float *bufs, ulong bo, int n, float lr, float momentum,
                       float weight_decay, int first_step, __global const int *guard,
                       ulong go_, int guarded) {
    int i = get_global_id(0);
    if (i >= n || (guarded && guard[go_] != 1)) return;
    float p = params[po + i];
    float g = grads[go + i];
    if (weight_decay != 0.0f) g = g + weight_decay * p;
    if (momentum != 0.0f) {
        float b = first_step ? g : momentum * bufs[bo + i] + g;
        bufs[bo + i] = b;
        g = b;
    }
    params[po + i] = p - lr * g;
}

// Weight decay per float: with `has_sel`, sel[so + i] is 1 for a batch-norm weight or bias
// (torchvision references' --norm-weight-decay) and takes norm_decay instead of decay.
#define OPTIM_DECAY(sel, so, i) ((has_sel && sel[so + i]) ? norm_decay : decay)

// torch.optim.SGD with momentum (dampening 0), Nesterov and a decay per float:
//   g = grad + wd * p; buf = first_step ? g : momentum * buf + g  (torch clones g first)
//   g = nesterov ? g + momentum * buf : buf;  p = p - lr * g
// sgd_step's float operations when nesterov is 0 and every float takes `decay`.
__kernel void sgd_step_ex(__global float *params, ulong po, __global const float *grads,
                          ulong go, __global float *bufs, ulong bo, __global const uchar *sel,
                          ulong so, __global const int *guard, ulong go_, int n, float lr,
                          float momentum, float decay, float norm_decay, int first_step,
                          int nesterov, int has_sel, int guarded) {
    int i = get_global_id(0);
    if (i >= n || (guarded && guard[go_] != 1)) return;
    float p = params[po + i];
    float g = grads[go + i];
    float wd = OPTIM_DECAY(sel, so, i);
    if (wd != 0.0f) g = g + wd * p;
    if (momentum != 0.0f) {
        float b = first_step ? g : momentum * bufs[bo + i] + g;
        bufs[bo + i] = b;
        g = nesterov ? g + momentum * b : b;
    }
    params[po + i] = p - lr * g;
}

// torch.optim.Adam / AdamW (_single_tensor_adam(w), amsgrad off), in torch's float order:
//   AdamW (decoupled): p = p * (1 - lr * wd)       (the factor is the host's double, rounded)
//   Adam: g = grad + wd * p                        (L2, when wd != 0)
//   m = m * beta1 + (1 - beta1) * g;  v = v * beta2 + ((1 - beta2) * g) * g
//   p = p + (-step_size * m) / (sqrt(v) / sqrt(bias_correction2) + eps)  (addcdiv_)
// with step_size = lr / (1 - beta1^step), both corrections in double on the host.
__kernel void adam_step(__global float *params, ulong po, __global const float *grads,
                        ulong go, __global float *exp_avg, ulong mo, __global float *exp_avg_sq,
                        ulong vo, __global const uchar *sel, ulong so, __global const int *guard,
                        ulong go_, int n, float beta1, float one_minus_beta1, float beta2,
                        float one_minus_beta2, float neg_step_size, float bc2_sqrt, float eps,
                        float decay, float norm_decay, float factor, float norm_factor,
                        int decoupled, int has_sel, int guarded) {
    int i = get_global_id(0);
    if (i >= n || (guarded && guard[go_] != 1)) return;
    float p = params[po + i];
    float g = grads[go + i];
    if (decoupled) {
        p = p * ((has_sel && sel[so + i]) ? norm_factor : factor);
    } else {
        float wd = OPTIM_DECAY(sel, so, i);
        if (wd != 0.0f) g = g + wd * p;
    }
    float m = exp_avg[mo + i] * beta1;
    m = m + one_minus_beta1 * g;
    float v = exp_avg_sq[vo + i] * beta2;
    v = v + one_minus_beta2 * g * g;
    exp_avg[mo + i] = m;
    exp_avg_sq[vo + i] = v;
    float denom = sqrt(v) / bc2_sqrt + eps;
    params[po + i] = p + neg_step_size * m / denom;
}

// Partial sums of squares of x (n), one per work-group (a fixed grid: the same order every
// run). chunk 0: item j of the grid adds x[j], x[j + grid], ... (GPUs: coalesced); chunk > 0:
// item j adds its contiguous run x[j * chunk, (j + 1) * chunk) (CPUs: one stream per item).
// Then the group's tree sum into partial.
__kernel void sumsq_partial(__global float *partial, ulong pto, __global const float *x,
                            ulong xo, int n, __local float *scratch, int chunk) {
    size_t l = get_local_id(0), L = get_local_size(0), grid = get_global_size(0);
    size_t g = get_global_id(0), lo = chunk ? g * (size_t)chunk : g;
    size_t hi = chunk ? min(lo + (size_t)chunk, (size_t)n) : (size_t)n, step = chunk ? 1 : grid;
    float s = 0.0f;
    for (size_t j = lo; j < hi; j += step) {
        float v = x[xo + j];
        s = s + v * v;
    }
    scratch[l] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t h = L / 2; h > 0; h /= 2) {
        if (l < h) scratch[l] = scratch[l] + scratch[l + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) partial[pto + get_group_id(0)] = scratch[0];
}

// torch.nn.utils.clip_grad_norm_'s coefficient from the partial sums (in order):
// out[0] = total_norm = sqrt(sum), out[1] = min(max_norm / (total_norm + 1e-6), 1).
__kernel void clip_coef(__global float *out, ulong oo, __global const float *partial, ulong pto,
                        int groups, float max_norm) {
    if (get_global_id(0) != 0) return;
    float s = 0.0f;
    for (int g = 0; g < groups; g++) s = s + partial[pto + g];
    float norm = sqrt(s);
    float coef = max_norm / (norm + 1e-6f);
    out[oo] = norm;
    out[oo + 1] = coef < 1.0f ? coef : 1.0f;
}

// x = x * s[so] (clip_grad_norm_'s g.mul_(clip_coef_clamped): always, even at 1).
__kernel void scale_by(__global float *x, ulong xo, __global const float *s, ulong so, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    x[xo + i] = x[xo + i] * s[so];
}

// Gradient accumulation over micro-batches: mode 0 acc = grad, 1 acc = acc + grad,
// 2 grad = (acc + grad) * scale (the last micro-batch: the mean into the gradient arena).
__kernel void grad_accumulate(__global float *acc, ulong ao, __global float *grad, ulong go,
                              int n, int mode, float scale) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = grad[go + i];
    if (mode == 0) acc[ao + i] = g;
    else if (mode == 1) acc[ao + i] = acc[ao + i] + g;
    else grad[go + i] = (acc[ao + i] + g) * scale;
}
