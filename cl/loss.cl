// Softmax cross-entropy fused with its gradient, PyTorch's CrossEntropyLoss (mean reduction).
// logits (K, N): sample i is column i (stride N). One work-group: item j handles samples
// j, j + L, ...; `scratch` (N floats) keeps every sample's loss for the mean, which one work
// item sums in sample order. `want` bits: 1 loss_mean, 2 losses, 4 dlogits.
// `smoothing` eps is CrossEntropyLoss(label_smoothing=eps): the target is (1 - eps) onehot +
// eps / K, so loss = (1 - eps) nll + eps / K * sum_j -log_softmax_j; eps = 0 takes the
// unsmoothed formulas (the same bits as before the option).
// A label outside [0, K) gives NaN for that sample's loss and gradient (PyTorch raises; the
// trainer's finiteness check catches it).
__kernel void xent_forward_backward(__global float *loss_mean, ulong lmo,
                                    __global float *losses, ulong lo,
                                    __global float *dlogits, ulong dlo,
                                    __global const float *logits, ulong zo,
                                    __global const int *labels, ulong yo, int k, int n,
                                    int want, __local float *scratch, float smoothing) {
    // Bounds check without a return before the barrier (pocl miscompiles that): only group 0
    // works.
    int valid = get_group_id(0) == 0, len = valid ? n : 0;
    int lid = get_local_id(0), l = get_local_size(0);
    __global const float *z = logits + zo;
    for (int i = lid; i < len; i += l) {
        int label = labels[yo + i];
        int bad = label < 0 || label >= k;
        int li = bad ? 0 : label;  // never read outside the column
        // log_softmax as PyTorch: z - max - log(sum(exp(z - max))).
        float mx = -INFINITY;
        for (int j = 0; j < k; j++) mx = fmax(mx, z[(size_t)j * n + i]);
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += exp(z[(size_t)j * n + i] - mx);
        float log_sum = log(sum);
        float loss = bad ? NAN : -(z[(size_t)li * n + i] - mx - log_sum);
        if (smoothing != 0.0f) {
            float sum_logp = 0.0f;
            for (int j = 0; j < k; j++) sum_logp += z[(size_t)j * n + i] - mx - log_sum;
            loss = (1.0f - smoothing) * loss + smoothing / k * -sum_logp;
        }
        scratch[i] = loss;
        if (want & 2) losses[lo + i] = loss;
        if (want & 4) {
            // d(mean loss)/dz = (softmax - onehot) / N, softmax = exp(log_softmax).
            for (int j = 0; j < k; j++) {
                float p = exp(z[(size_t)j * n + i] - mx - log_sum);
                float t = j == label ? 1.0f : 0.0f;
                if (smoothing != 0.0f) t = (1.0f - smoothing) * t + smoothing / k;
                float g = (p - t) / n;
                dlogits[dlo + (size_t)j * n + i] = bad ? NAN : g;
            }
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid != 0 || !valid || !(want & 1)) return;
    float total = 0.0f;
    for (int i = 0; i < n; i++) total += scratch[i];
    loss_mean[lmo] = total / n;
}
