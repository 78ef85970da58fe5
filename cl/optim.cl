// SGD with momentum, PyTorch's torch.optim.SGD (dampening 0, no Nesterov), one item per
// parameter:
//   g = grad + weight_decay * p
//   buf = first_step ? g : momentum * buf + g      (momentum != 0; PyTorch clones g first)
//   p = p - lr * (momentum != 0 ? buf : g)
//
// With `checked`, flags[fo] is the step's guard (1: the loss and every gradient are finite)
// and flags[fo + 1] the weights' flag: the update is skipped whole when the guard is not 1
// (so a non-finite step leaves the weights and momentum as they were), and the weights' flag
// is cleared when a written weight is not finite (cl/elementwise.cl all_finite's test).
__kernel void sgd_step(__global float *params, ulong po, __global const float *grads, ulong go,
                       __global float *bufs, ulong bo, int n, float lr, float momentum,
                       float weight_decay, int first_step, __global int *flags, ulong fo,
                       int checked) {
    int i = get_global_id(0);
    if (i >= n || (checked && flags[fo] != 1)) return;
    float p = params[po + i];
    float g = grads[go + i];
    if (weight_decay != 0.0f) g = g + weight_decay * p;
    if (momentum != 0.0f) {
        float b = first_step ? g : momentum * bufs[bo + i] + g;
        bufs[bo + i] = b;
        g = b;
    }
    float q = p - lr * g;
    params[po + i] = q;
    if (checked && (as_uint(q) & 0x7f800000u) == 0x7f800000u) atomic_and(flags + fo + 1, 0);
}
