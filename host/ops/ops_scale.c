// Channel scale, forward and backward (cl/scale.cl): squeeze-and-excitation's gate.
#include "host/ops/ops_internal.h"

void op_channel_scale_forward(ops_ctx *ops, dten out, dten x, dten s, int cn, int hw) {
    clrt *rt = ops->rt;
    const char *op = "op_channel_scale_forward";
    OPS_REQUIRE(cn > 0 && hw > 0, op, "bad sizes cn=%d hw=%d", cn, hw);
    OPS_REQUIRE(ops_has(out) && ops_has(x) && ops_has(s), op, "missing buffer");
    int n = ops_int((size_t)cn * hw, op, "C*N*H*W");
    cl_kernel k = ops_kernel_ten(rt, "channel_scale", (dten[]){ out, x, s }, 3);
    CLRT_ARG(k, 6, n);
    CLRT_ARG(k, 7, hw);
    clrt_launch1d(rt, k, (size_t)n);
}

void op_channel_scale_backward(ops_ctx *ops, dten dx, dten ds, dten dout, dten x, dten s, int cn,
                               int hw) {
    clrt *rt = ops->rt;
    const char *op = "op_channel_scale_backward";
    OPS_REQUIRE(cn > 0 && hw > 0, op, "bad sizes cn=%d hw=%d", cn, hw);
    OPS_REQUIRE(ops_has(dout), op, "missing buffer");
    if (ops_has(ds)) {  // first: dx may overwrite dout
        OPS_REQUIRE(ops_has(x), op, "the scale's gradient needs x");
        cl_kernel k = ops_kernel_ten(rt, "channel_scale_grad", (dten[]){ ds, dout, x }, 3);
        CLRT_ARG(k, 6, cn);
        CLRT_ARG(k, 7, hw);
        clrt_launch1d(rt, k, (size_t)cn);
    }
    if (ops_has(dx)) op_channel_scale_forward(ops, dx, dout, s, cn, hw);
}
