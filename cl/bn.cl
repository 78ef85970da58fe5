// Batch norm over channel-major activations: channel ch is the contiguous block
// in[ch*m .. ch*m + m) with m = N*H*W.
//
// The reducing kernels (training forward, backward) run one work-group per channel (local
// size chosen by the host). Work item j owns a fixed set of the channel's 16-float vectors
// (the last item also takes the m % 16 tail) and reads them with explicit float16 loads: a
// CPU device does not vectorise a loop that runs inside one work item. On a CPU
// (interleave 0) the set is a contiguous run, [j*per, j*per + per), so each item reads one
// stream; on a GPU (interleave 1) it is j, j + l, j + 2l, ..., so at each step the group's
// items read neighbouring vectors (coalesced). Partial results meet in a fixed order, so
// results are identical run after run on a device.
//
// The bounds check of these kernels never returns before a barrier: every work item must
// reach every barrier, and pocl miscompiles a kernel that returns early (even uniformly, for
// a whole work-group) ahead of one. An out-of-range group scans nothing and writes nothing.

#define BN_V 16          // floats per vector load
#define BN_BLOCK 64      // vectors per statistics block (4 KiB: both passes stay in L1)

// PyTorch's relu (clamp_min(x, 0)) on 16 lanes: negatives become 0; NaN and -0 pass.
static float16 bn_relu16(float16 v) { return select(v, (float16)0.0f, v < 0.0f); }

// The 16 lanes summed in a fixed tree order.
static float bn_hsum16(float16 v) {
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

// Item j's vectors of a channel of nvec whole vectors: *v0 + i * *step for i < *cnt; and
// whether it also owns the scalar tail (the last item does).
static int bn_item_vectors(int j, int nvec, int interleave, int *v0, int *step, int *cnt) {
    int l = get_local_size(0);
    if (interleave) {
        *v0 = j;
        *step = l;
        *cnt = j < nvec ? (nvec - j + l - 1) / l : 0;
    } else {
        int per = (nvec + l - 1) / l;
        int a = min(j * per, nvec);
        *v0 = a;
        *step = 1;
        *cnt = min(a + per, nvec) - a;
    }
    return j == l - 1;
}

// How many of the channel's len values item j owns.
static int bn_item_count(int j, int len, int interleave) {
    int nvec = len / BN_V, v0, step, cnt;
    int tail = bn_item_vectors(j, nvec, interleave, &v0, &step, &cnt);
    return cnt * BN_V + (tail ? len - nvec * BN_V : 0);
}

// Chan et al.'s merge of the statistics (count nb, mean mb, sum of squared deviations m2b)
// of one block into a running (n, mean, m2).
static void bn_merge(int *n, float *mean, float *m2, int nb, float mb, float m2b) {
    if (nb == 0) return;
    int nn = *n + nb;
    float d = mb - *mean;
    *mean += d * ((float)nb / (float)nn);
    *m2 += m2b + d * d * ((float)*n * (float)nb / (float)nn);
    *n = nn;
}

// Training mode, one channel per work-group: the batch statistics in one pass over memory,
// then out = x * alpha + shift with alpha = invstd * gamma, shift = beta - mean * alpha (as
// PyTorch's CPU kernel writes it), followed by the relu when `relu` (BasicBlock's bn1, the
// stem: PyTorch's relu on the batch-norm output, fused). Saves mean and invstd (C) for
// backward and, when update_running, moves the running statistics with momentum.
//
// Statistics: PyTorch's CPU path takes the mean, then the sum of squared deviations from it.
// Here each 4 KiB block gets exactly that (two passes over L1-resident data), and blocks
// then items are merged with Chan's formula in a fixed order: the same accuracy (no
// sum-of-squares cancellation, checked at a mean of 50 by the tests) from one pass over
// memory. `scratch` holds 2 floats per work item plus 2.
__kernel void bn_forward_train(__global float *out, ulong outo,
                               __global float *save_mean, ulong smo,
                               __global float *save_invstd, ulong sio,
                               __global float *running_mean, ulong rmo,
                               __global float *running_var, ulong rvo,
                               __global const float *in, ulong ino,
                               __global const float *gamma, ulong go,
                               __global const float *beta, ulong bo, int c, int m,
                               float momentum, float eps, int update_running, int relu,
                               int interleave, __local float *scratch) {
    int ch = get_group_id(0);
    int valid = ch < c, len = valid ? m : 0;    // bounds check (see above)
    int lid = get_local_id(0), l = get_local_size(0);
    size_t base = (size_t)(valid ? ch : 0) * m;
    __global const float *x = in + ino + base;
    int nvec = len / BN_V, v0, step, cnt;
    int tail = bn_item_vectors(lid, nvec, interleave, &v0, &step, &cnt);

    // This item's vectors, block by block: block mean, then squared deviations from it.
    int n = 0;
    float mean = 0.0f, m2 = 0.0f;
    for (int b0 = 0; b0 < cnt; b0 += BN_BLOCK) {
        int b1 = min(b0 + BN_BLOCK, cnt), nb = (b1 - b0) * BN_V;
        float16 s = 0.0f;
        for (int i = b0; i < b1; i++) s += vload16(v0 + i * step, x);
        float mb = bn_hsum16(s) / nb;
        float16 q = 0.0f;
        for (int i = b0; i < b1; i++) {
            float16 d = vload16(v0 + i * step, x) - mb;
            q += d * d;
        }
        bn_merge(&n, &mean, &m2, nb, mb, bn_hsum16(q));
    }
    if (tail && len > nvec * BN_V) {
        int t0 = nvec * BN_V, nb = len - t0;
        float s = 0.0f, q = 0.0f;
        for (int i = t0; i < len; i++) s += x[i];
        float mb = s / nb;
        for (int i = t0; i < len; i++) q += (x[i] - mb) * (x[i] - mb);
        bn_merge(&n, &mean, &m2, nb, mb, q);
    }
    scratch[2 * lid] = mean;
    scratch[2 * lid + 1] = m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        int tn = 0;
        float tmean = 0.0f, tm2 = 0.0f;
        for (int j = 0; j < l; j++)
            bn_merge(&tn, &tmean, &tm2, bn_item_count(j, len, interleave), scratch[2 * j],
                     scratch[2 * j + 1]);
        // PyTorch normalises with the biased variance: invstd = 1 / sqrt(var_sum / m + eps).
        float invstd = 1.0f / sqrt(tm2 / m + eps);
        scratch[2 * l] = tmean;
        scratch[2 * l + 1] = invstd;
        if (valid) {
            save_mean[smo + ch] = tmean;
            save_invstd[sio + ch] = invstd;
            if (update_running) {
                // PyTorch: running = momentum * batch + (1 - momentum) * running, with the
                // UNBIASED variance var_sum / (m - 1) for running_var.
                running_mean[rmo + ch] =
                    momentum * tmean + (1.0f - momentum) * running_mean[rmo + ch];
                running_var[rvo + ch] = momentum * (tm2 / (m - 1)) +
                                        (1.0f - momentum) * running_var[rvo + ch];
            }
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float bmean = scratch[2 * l], invstd = scratch[2 * l + 1];
    if (!valid) return;   // after the last barrier
    float alpha = invstd * gamma[go + ch];
    float shift = beta[bo + ch] - bmean * alpha;
    __global float *y = out + outo + base;
    for (int i = 0; i < cnt; i++) {
        int v = v0 + i * step;
        float16 r = vload16(v, x) * alpha + shift;
        vstore16(relu ? bn_relu16(r) : r, v, y);
    }
    if (tail) {
        for (int i = nvec * BN_V; i < len; i++) {
            float r = x[i] * alpha + shift;
            y[i] = relu && r < 0.0f ? 0.0f : r;
        }
    }
}

// Eval mode: out = x * alpha + shift with the running statistics (alpha = gamma /
// sqrt(running_var + eps), shift = beta - running_mean * alpha), then the relu when `relu`.
// Range (M, C): item (i, ch) writes element i of channel ch.
// (restrict: lets the compiler hoist the per-channel loads and the sqrt out of pocl's
// work-item loop instead of redoing them for every element.)
__kernel void bn_forward_eval(__global float *restrict out, ulong outo,
                              __global const float *restrict in, ulong ino,
                              __global const float *restrict gamma, ulong go,
                              __global const float *restrict beta, ulong bo,
                              __global const float *restrict running_mean, ulong rmo,
                              __global const float *restrict running_var, ulong rvo, int c,
                              int m, float eps, int relu) {
    int i = get_global_id(0), ch = get_global_id(1);
    if (i >= m || ch >= c) return;
    float alpha = 1.0f / sqrt(running_var[rvo + ch] + eps) * gamma[go + ch];
    float shift = beta[bo + ch] - running_mean[rmo + ch] * alpha;
    size_t at = (size_t)ch * m + i;
    float r = in[ino + at] * alpha + shift;
    out[outo + at] = relu && r < 0.0f ? 0.0f : r;
}

// Backward of one channel per work-group (PyTorch's batch_norm_backward_cpu):
//   dotp = sum(dy * (x - mean)), sum = sum(dy)
//   dgamma = dotp * invstd, dbeta = sum
//   train: din = (dy - sum/m - (x - mean) * dotp * invstd^2 / m) * invstd * gamma
//   eval:  din = dy * invstd * gamma  (mean and invstd are the running statistics)
// dy is dout, or with `relu` the gradient through the relu that followed the batch norm:
// dy = y <= 0 ? 0 : dout where y is that relu's output (PyTorch's threshold_backward).
// In training mode mean/stat are save_mean/save_invstd; in eval mode running_mean and
// running_var. `want` bits: 1 din, 2 dgamma, 4 dbeta; skipped outputs are never touched.
// `scratch` holds 2 floats per work item plus 2.
__kernel void bn_backward(__global float *din, ulong dio, __global float *dgamma, ulong dgo,
                          __global float *dbeta, ulong dbo, __global const float *dout,
                          ulong doo, __global const float *in, ulong ino,
                          __global const float *yrelu, ulong yo,
                          __global const float *gamma, ulong go, __global const float *mean,
                          ulong mo, __global const float *stat, ulong so, int c, int m,
                          int train, float eps, int want, int relu, int interleave,
                          __local float *scratch) {
    int ch = get_group_id(0);
    int valid = ch < c, len = valid ? m : 0;    // bounds check (see above)
    int lid = get_local_id(0), l = get_local_size(0);
    size_t base = (size_t)(valid ? ch : 0) * m;
    __global const float *x = in + ino + base;
    __global const float *dy = dout + doo + base;
    __global const float *yr = yrelu + yo + (relu ? base : 0);
    float mu = mean[mo + (valid ? ch : 0)];
    float st = stat[so + (valid ? ch : 0)];
    float invstd = train ? st : 1.0f / sqrt(st + eps);
    int nvec = len / BN_V, v0, step, cnt;
    int tail = bn_item_vectors(lid, nvec, interleave, &v0, &step, &cnt);
    // The sums, even when only an eval-mode din is wanted: no barrier under a condition.
    float16 s16 = 0.0f, d16 = 0.0f;
    for (int i = 0; i < cnt; i++) {
        int v = v0 + i * step;
        float16 g = vload16(v, dy);
        if (relu) g = select(g, (float16)0.0f, vload16(v, yr) <= 0.0f);
        s16 += g;
        d16 += g * (vload16(v, x) - mu);
    }
    float s = bn_hsum16(s16), d = bn_hsum16(d16);
    if (tail) {
        for (int i = nvec * BN_V; i < len; i++) {
            float g = relu && yr[i] <= 0.0f ? 0.0f : dy[i];
            s += g;
            d += g * (x[i] - mu);
        }
    }
    scratch[2 * lid] = s;
    scratch[2 * lid + 1] = d;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        float ts = 0.0f, td = 0.0f;
        for (int j = 0; j < l; j++) {
            ts += scratch[2 * j];
            td += scratch[2 * j + 1];
        }
        scratch[2 * l] = ts;
        scratch[2 * l + 1] = td;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float sum = scratch[2 * l], dotp = scratch[2 * l + 1];
    if (!valid) return;   // after the last barrier
    if (lid == 0 && (want & 2)) dgamma[dgo + ch] = dotp * invstd;
    if (lid == 0 && (want & 4)) dbeta[dbo + ch] = sum;
    if (!(want & 1)) return;
    __global float *dx = din + dio + base;
    float w = gamma[go + ch];
    // The products in PyTorch's order: (...) * invstd * w.
    float k = dotp * invstd * invstd / m;
    float grad_mean = sum / m;
    for (int i = 0; i < cnt; i++) {
        int v = v0 + i * step;
        float16 g = vload16(v, dy);
        if (relu) g = select(g, (float16)0.0f, vload16(v, yr) <= 0.0f);
        if (train) g = g - grad_mean - (vload16(v, x) - mu) * k;
        vstore16(g * invstd * w, v, dx);
    }
    if (tail) {
        for (int i = nvec * BN_V; i < len; i++) {
            float g = relu && yr[i] <= 0.0f ? 0.0f : dy[i];
            if (train) g = g - grad_mean - (x[i] - mu) * k;
            dx[i] = g * invstd * w;
        }
    }
}
