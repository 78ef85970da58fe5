// The activation launchers: one kernel per direction (cl/act.cl), the kind an argument.
#include "host/ops/ops_internal.h"

// cl/act.cl switches on these values.
_Static_assert(OP_ACT_RELU == 0 && OP_ACT_RELU6 == 1 && OP_ACT_HARDSWISH == 2 &&
                   OP_ACT_HARDSIGMOID == 3 && OP_ACT_SILU == 4 && OP_ACT_SIGMOID == 5,
               "op_act values are cl/act.cl's kind numbers");

// kernel(t0, t0_off, ..., n, kind) over n work items.
static void act_launch(ops_ctx *ops, const char *name, const char *op, op_act kind, size_t n,
                       const dten *ts, cl_uint count) {
    OPS_REQUIRE((int)kind >= 0 && kind <= OP_ACT_SIGMOID, op, "unknown activation %d", (int)kind);
    int ni = ops_int(n, op, "n");
    for (cl_uint i = 0; i < count; i++) OPS_REQUIRE(ops_has(ts[i]), op, "missing buffer");
    cl_kernel k = ops_kernel_ten(ops->rt, name, ts, count);
    int ki = (int)kind;
    CLRT_ARG(k, 2 * count, ni);
    CLRT_ARG(k, 2 * count + 1, ki);
    clrt_launch1d(ops->rt, k, n);
}

void op_act_forward(ops_ctx *ops, op_act kind, dten out, dten in, size_t n) {
    act_launch(ops, "act_forward", "op_act_forward", kind, n, (dten[]){out, in}, 2);
}

void op_act_backward(ops_ctx *ops, op_act kind, dten din, dten dout, dten in, size_t n) {
    act_launch(ops, "act_backward", "op_act_backward", kind, n, (dten[]){din, dout, in}, 3);
}
