// Batch norm over channel-major activations: channel ch is the contiguous block
// in[ch*m .. ch*m + m) with m = N*H*W. Per-channel reductions run one work-group per channel;
// the local size is a power of two chosen by the host, `scratch` holds one float per work item.
// Each work item sums a fixed strided subset, then a fixed tree combines the partial sums, so
// results are identical run after run.
//
// The bounds check of these kernels never returns before a barrier: every work item must
// reach every barrier, and pocl miscompiles a kernel that returns early (even uniformly, for
// a whole work-group) ahead of one. An out-of-range group scans nothing and writes nothing.

// Sum of `partial` over the work-group (a power of two), the same in every work item.
static float bn_group_sum(__local float *scratch, float partial) {
    int lid = get_local_id(0);
    scratch[lid] = partial;
    for (int span = get_local_size(0) / 2; span > 0; span /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < span) scratch[lid] += scratch[lid + span];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // scratch is reused by the next call
    return total;
}

// Training-mode statistics of one channel per work-group: save_mean, save_invstd (C) and,
// when update_running, the running statistics (C) with momentum.
__kernel void bn_stats_train(__global float *save_mean, ulong smo,
                             __global float *save_invstd, ulong sio,
                             __global float *running_mean, ulong rmo,
                             __global float *running_var, ulong rvo,
                             __global const float *in, ulong ino, int c, int m,
                             float momentum, float eps, int update_running,
                             __local float *scratch) {
    int ch = get_group_id(0);
    int valid = ch < c, len = valid ? m : 0;    // bounds check (see above)
    int lid = get_local_id(0), l = get_local_size(0);
    __global const float *x = in + ino + (size_t)ch * m;
    // Two passes (mean, then squared deviations), as PyTorch's CPU batch norm.
    float s = 0.0f;
    for (int i = lid; i < len; i += l) s += x[i];
    float mean = bn_group_sum(scratch, s) / m;
    float q = 0.0f;
    for (int i = lid; i < len; i += l) {
        float d = x[i] - mean;
        q += d * d;
    }
    float var_sum = bn_group_sum(scratch, q);
    if (lid != 0 || !valid) return;
    // PyTorch normalises with the biased variance: invstd = 1 / sqrt(var_sum / m + eps).
    save_mean[smo + ch] = mean;
    save_invstd[sio + ch] = 1.0f / sqrt(var_sum / m + eps);
    if (update_running) {
        // PyTorch: running = momentum * batch + (1 - momentum) * running, with the UNBIASED
        // variance var_sum / (m - 1) for running_var.
        running_mean[rmo + ch] = momentum * mean + (1.0f - momentum) * running_mean[rmo + ch];
        running_var[rvo + ch] = momentum * (var_sum / (m - 1)) +
                                (1.0f - momentum) * running_var[rvo + ch];
    }
}

// out = (x - mean) * invstd * gamma + beta, written as PyTorch's CPU kernel does:
// alpha = invstd * gamma, out = x * alpha + (beta - mean * alpha). `stat` holds invstd
// (training) or, when stat_is_var, the running variance (eval: invstd = 1/sqrt(var + eps)).
__kernel void bn_apply(__global float *out, ulong outo, __global const float *in, ulong ino,
                       __global const float *mean, ulong mo, __global const float *stat,
                       ulong so, __global const float *gamma, ulong go,
                       __global const float *beta, ulong bo, int c, int m, int stat_is_var,
                       float eps) {
    int gid = get_global_id(0);
    if (gid >= c * m) return;
    int ch = gid / m;
    float st = stat[so + ch];
    float invstd = stat_is_var ? 1.0f / sqrt(st + eps) : st;
    float alpha = invstd * gamma[go + ch];
    float shift = beta[bo + ch] - mean[mo + ch] * alpha;
    out[outo + gid] = in[ino + gid] * alpha + shift;
}

// Backward of one channel per work-group (PyTorch's batch_norm_backward_cpu):
//   dotp = sum(dout * (x - mean)), sum = sum(dout)
//   dgamma = dotp * invstd, dbeta = sum
//   train: din = (dout - sum/m - (x - mean) * dotp * invstd^2 / m) * invstd * gamma
//   eval:  din = dout * invstd * gamma  (mean and invstd are the running statistics)
// In training mode mean/stat are save_mean/save_invstd; in eval mode running_mean/running_var.
// `want` bits: 1 din, 2 dgamma, 4 dbeta; skipped outputs are never touched.
__kernel void bn_backward(__global float *din, ulong dio, __global float *dgamma, ulong dgo,
                          __global float *dbeta, ulong dbo, __global const float *dout,
                          ulong doo, __global const float *in, ulong ino,
                          __global const float *gamma, ulong go, __global const float *mean,
                          ulong mo, __global const float *stat, ulong so, int c, int m,
                          int train, float eps, int want, __local float *scratch) {
    int ch = get_group_id(0);
    int valid = ch < c, len = valid ? m : 0;    // bounds check (see above)
    int lid = get_local_id(0), l = get_local_size(0);
    size_t base = (size_t)(valid ? ch : 0) * m;
    __global const float *x = in + ino + base;
    __global const float *dy = dout + doo + base;
    float mu = mean[mo + (valid ? ch : 0)];
    float st = stat[so + (valid ? ch : 0)];
    float invstd = train ? st : 1.0f / sqrt(st + eps);
    // The sums, even when only an eval-mode din is wanted: no barrier under a condition.
    float s = 0.0f, d = 0.0f;
    for (int i = lid; i < len; i += l) {
        s += dy[i];
        d += dy[i] * (x[i] - mu);
    }
    float sum = bn_group_sum(scratch, s);
    float dotp = bn_group_sum(scratch, d);
    if (!valid) return;
    if (lid == 0 && (want & 2)) dgamma[dgo + ch] = dotp * invstd;
    if (lid == 0 && (want & 4)) dbeta[dbo + ch] = sum;
    if (!(want & 1)) return;
    __global float *dx = din + dio + base;
    float g = gamma[go + ch];
    if (train) {
        float k = dotp * invstd * invstd / m;
        float grad_mean = sum / m;
        for (int i = lid; i < m; i += l)
            dx[i] = (dy[i] - grad_mean - (x[i] - mu) * k) * invstd * g;
    } else {
        for (int i = lid; i < m; i += l) dx[i] = dy[i] * invstd * g;
    }
}
