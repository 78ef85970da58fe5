// SGD with momentum, PyTorch's torch.optim.SGD (dampening 0, no Nesterov), one item per
// parameter:
//   g = grad + weight_decay * p
//   buf = first_step ? g : momentum * buf + g      (momentum != 0; PyTorch clones g first)
//   p = p - lr * (momentum != 0 ? buf : g)
__kernel void sgd_step(__global float *params, ulong po, __global const float *grads, ulong go,
                       __global float *bufs, ulong bo, int n, float lr, float momentum,
                       float weight_decay, int first_step) {
    int i = get_global_id(0);
    if (i >= n) return;
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
