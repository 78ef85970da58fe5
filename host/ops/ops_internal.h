// Helpers shared by the ops launchers (host/ops_*.c); not part of the ops API.
#ifndef CLTRAIN_OPS_INTERNAL_H
#define CLTRAIN_OPS_INTERNAL_H

#include "host/ops/ops.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

// Misuse of an op is a bug in the caller: say which op and why, then exit.
static inline void ops_fail(const char *op, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cltrain: %s: ", op);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

#define OPS_REQUIRE(cond, op, ...)                  \
    do {                                            \
        if (!(cond)) ops_fail((op), __VA_ARGS__);   \
    } while (0)

static inline int ops_has(dten t) { return t.mem != NULL; }

// A count that kernels index with int: must be positive and below 2^31.
static inline int ops_int(size_t n, const char *op, const char *what) {
    OPS_REQUIRE(n > 0 && n <= (size_t)INT_MAX, op, "%s = %zu is outside 1..%d", what, n,
                INT_MAX);
    return (int)n;
}

// Set a kernel's (pointer, ulong offset) argument pair at `i`, `i + 1`.
static inline void ops_arg_ten(cl_kernel k, cl_uint i, dten t) {
    cl_ulong off = t.off;
    CLRT_ARG(k, i, t.mem);
    CLRT_ARG(k, i + 1, off);
}

// The kernel `name` with its leading arguments set to the (pointer, ulong offset) pairs of
// ts[0..count), in order: the scalars that follow start at argument 2 * count.
static inline cl_kernel ops_kernel_ten(clrt *rt, const char *name, const dten *ts,
                                       cl_uint count) {
    cl_kernel k = clrt_kernel(rt, name);
    for (cl_uint i = 0; i < count; i++) ops_arg_ten(k, 2 * i, ts[i]);
    return k;
}

// The element-wise shape, kernel(t0, t0_off, ..., n) over n work items: n checked as an int
// count, every tensor of ts[0..count) required.
static inline void ops_launch_ew(clrt *rt, const char *name, const char *op, size_t n,
                                 const dten *ts, cl_uint count) {
    int ni = ops_int(n, op, "n");
    for (cl_uint i = 0; i < count; i++) OPS_REQUIRE(ops_has(ts[i]), op, "missing buffer");
    cl_kernel k = ops_kernel_ten(rt, name, ts, count);
    CLRT_ARG(k, 2 * count, ni);
    clrt_launch1d(rt, k, n);
}

// Work-group size for a one-group-per-reduction kernel: the largest power of two within
// `cap`, the kernel's and the device's limits, and the device's local memory for
// `local_bytes_per_item` bytes of scratch per work item. It depends on nothing that changes
// between launches, so reductions keep their order run after run.
static inline size_t ops_group_size(clrt *rt, cl_kernel k, size_t cap,
                                    size_t local_bytes_per_item) {
    size_t kwg = 0;
    CL_CHECK(clGetKernelWorkGroupInfo(k, rt->dev.device_id, CL_KERNEL_WORK_GROUP_SIZE,
                                      sizeof kwg, &kwg, NULL));
    if (kwg > rt->dev.max_work_group) kwg = rt->dev.max_work_group;
    if (kwg > cap) kwg = cap;
    size_t l = 1;
    while (l * 2 <= kwg && (cl_ulong)(l * 2 * local_bytes_per_item) <= rt->dev.local_mem) l *= 2;
    return l;
}

// Size the __local pointer argument `arg` to `bytes`, then check the kernel's whole local
// memory use against the device.
static inline void ops_set_local(clrt *rt, cl_kernel k, cl_uint arg, size_t bytes,
                                 const char *op) {
    cl_ulong used = 0;
    CL_CHECK(clSetKernelArg(k, arg, bytes, NULL));
    CL_CHECK(clGetKernelWorkGroupInfo(k, rt->dev.device_id, CL_KERNEL_LOCAL_MEM_SIZE,
                                      sizeof used, &used, NULL));
    OPS_REQUIRE(used <= rt->dev.local_mem, op,
                "needs %lu bytes of local memory; the device has %lu", (unsigned long)used,
                (unsigned long)rt->dev.local_mem);
}

// Largest work-group size of a reduction kernel; 256 keeps a tree short on every device.
#define OPS_REDUCE_CAP 256

// A performance switch of the context's configuration (ops_ctx.cfg, ops.h): 0 or 1, or -1
// (the launcher's own rule). Read at each call, so a test or a comparison can flip it.
#define OPS_SWITCH(ops, field) ((ops)->cfg.field)

#endif
