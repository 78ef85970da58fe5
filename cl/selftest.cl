// A trivial kernel for the start-up self-test and the runtime's round-trip test:
// y[i] = a * x[i] + b. SELFTEST_B lets a test tell an overridden source (CLTRAIN_KERNEL_DIR)
// from the embedded one.
#ifndef SELFTEST_B
#define SELFTEST_B 0.0f
#endif

__kernel void selftest_axpb(__global float *y, ulong yo, __global const float *x, ulong xo,
                            float a, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    y[yo + i] = a * x[xo + i] + SELFTEST_B;
}
