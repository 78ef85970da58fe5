// The activations of MobileNet and EfficientNet (host/ops/ops_act.c), forward and backward,
// one kernel per direction with the kind as an argument. `kind` is the op_act of
// host/ops/ops.h: 0 relu, 1 relu6, 2 hardswish, 3 hardsigmoid, 4 silu, 5 sigmoid.
// Every formula is PyTorch 1.13's CPU kernel (aten/src/ATen/native/cpu/Activation.cpp), in
// the same order of operations, so the piecewise-linear kinds agree with it bit for bit.
// The clamps are written as comparisons, not fmin/fmax, so that NaN passes as in PyTorch.

// std::min(std::max(x, 0), 6) as PyTorch evaluates it: NaN passes.
static float act_clamp06(float x) {
    float t = x < 0.0f ? 0.0f : x;
    return 6.0f < t ? 6.0f : t;
}

// 1 / (1 + exp(-x)): PyTorch's sigmoid (and the sigmoid inside its silu backward).
static float act_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

static float act_fwd(float x, int kind) {
    switch (kind) {
    case 0: return x < 0.0f ? 0.0f : x;                 // relu: clamp_min(x, 0)
    case 1: return act_clamp06(x);                      // relu6: hardtanh(x, 0, 6)
    case 2: return x * act_clamp06(x + 3.0f) / 6.0f;    // hardswish: x * min(max(x+3,0),6) / 6
    case 3: return act_clamp06(x + 3.0f) / 6.0f;        // hardsigmoid: min(max(x+3,0),6) / 6
    case 4: return x / (1.0f + exp(-x));                // silu: x / (1 + exp(-x))
    default: return act_sigmoid(x);                     // sigmoid: 1 / (1 + exp(-x))
    }
}

// dout * f'(x), from the forward INPUT x.
static float act_bwd(float g, float x, int kind) {
    switch (kind) {
    case 0: return x <= 0.0f ? 0.0f : g;                // threshold_backward: x <= 0 gives 0
    case 1: return (x <= 0.0f || x >= 6.0f) ? 0.0f : g; // hardtanh_backward: 0 at x <= 0, >= 6
    // hardswish_backward, its scalar path (and CUDA's): x = 3 takes dout * 1.5; 1.13's AVX
    // path alone gives dout there (x >= 3), see tools/make_fixtures.py, make_act.
    case 2:
        if (x < -3.0f) return 0.0f;
        if (x <= 3.0f) return g * (x / 3.0f + 0.5f);
        return g;
    case 3:                                             // hardsigmoid_backward: open (-3, 3)
        return (x > -3.0f && x < 3.0f) ? g * (1.0f / 6.0f) : 0.0f;
    case 4: {                                           // silu_backward
        float s = act_sigmoid(x);
        return g * s * (1.0f + x * (1.0f - s));
    }
    default: {                                          // sigmoid_backward on s = sigmoid(x)
        float s = act_sigmoid(x);
        return g * (1.0f - s) * s;
    }
    }
}

__kernel void act_forward(__global float *out, ulong outo, __global const float *in, ulong ino,
                          int n, int kind) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[outo + i] = act_fwd(in[ino + i], kind);
}

// Each item reads its elements before writing, so din may alias dout (or in).
__kernel void act_backward(__global float *din, ulong dio, __global const float *dout,
                           ulong doo, __global const float *in, ulong ino, int n, int kind) {
    int i = get_global_id(0);
    if (i >= n) return;
    din[dio + i] = act_bwd(dout[doo + i], in[ino + i], kind);
}
