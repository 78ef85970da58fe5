// The runtime: context, in-order queue, program, kernel handles, buffers and launches.
#define _POSIX_C_SOURCE 200809L
#include "host/runtime/clrt.h"

#include <stdlib.h>
#include <string.h>

// clrt_program.c
int clrt_build_program(clrt *rt, const char *kernel_dir, char *err, size_t errlen);

int clrt_init(clrt *rt, const clrt_options *opt, char *err, size_t errlen) {
    memset(rt, 0, sizeof *rt);
    clrt_devinfo *list = NULL;
    int n = 0;
    int rc = clrt_list_devices(&list, &n, err, errlen);
    if (rc != 0) return rc;
    const char *spec = opt ? opt->device_spec : NULL;
    int idx = clrt_select_device(list, n, spec);
    if (idx < 0) {
        snprintf(err, errlen, "no OpenCL device matches '%s' (use P:D, an index, gpu, cpu or "
                              "part of a name; see the list above)", spec ? spec : "");
        fprintf(stderr, "Available OpenCL devices:\n");
        clrt_print_devices(stderr, list, n);
        free(list);
        return 2;
    }
    rt->dev = list[idx];
    free(list);
    if (!opt || !opt->quiet)
        fprintf(stderr, "cltrain: device %d:%d %s (%s, driver %s)\n", rt->dev.platform,
                rt->dev.device, rt->dev.name, rt->dev.platform_name, rt->dev.driver);

    cl_int e;
    cl_context_properties props[] = { CL_CONTEXT_PLATFORM,
                                      (cl_context_properties)rt->dev.platform_id, 0 };
    rt->ctx = clCreateContext(props, 1, &rt->dev.device_id, NULL, NULL, &e);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "clCreateContext on %s: %s", rt->dev.name, clrt_error_name(e));
        clrt_free(rt);
        return 1;
    }
    rt->profiling = opt ? opt->profiling : 0;
    cl_command_queue_properties qp = rt->profiling ? CL_QUEUE_PROFILING_ENABLE : 0;
    rt->queue = clCreateCommandQueue(rt->ctx, rt->dev.device_id, qp, &e);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "clCreateCommandQueue on %s: %s", rt->dev.name,
                 clrt_error_name(e));
        clrt_free(rt);
        return 1;
    }
    // Device-specific constants the kernels may use.
    snprintf(rt->build_options, sizeof rt->build_options,
             "-cl-std=CL1.2 -DCLTRAIN_MAX_WG=%zu -DCLTRAIN_LOCAL_MEM=%lu",
             rt->dev.max_work_group, (unsigned long)rt->dev.local_mem);
    if (opt && opt->cache_dir) snprintf(rt->cache_dir, sizeof rt->cache_dir, "%s", opt->cache_dir);
    if (clrt_build_program(rt, opt ? opt->kernel_dir : NULL, err, errlen) != 0) {
        clrt_free(rt);
        return 1;
    }
    return 0;
}

void clrt_free(clrt *rt) {
    if (!rt) return;
    for (int i = 0; i < rt->nprof; i++)
        if (rt->prof[i].ev) clReleaseEvent(rt->prof[i].ev);
    free(rt->prof);
    for (int i = 0; i < rt->nkernels; i++)
        if (rt->kernels[i].k) clReleaseKernel(rt->kernels[i].k);
    free(rt->kernels);
    free(rt->build_log);
    if (rt->program) clReleaseProgram(rt->program);
    if (rt->queue) clReleaseCommandQueue(rt->queue);
    if (rt->ctx) clReleaseContext(rt->ctx);
    memset(rt, 0, sizeof *rt);
}

cl_kernel clrt_kernel(clrt *rt, const char *name) {
    for (int i = 0; i < rt->nkernels; i++)
        if (strcmp(rt->kernels[i].name, name) == 0) return rt->kernels[i].k;
    if (rt->nkernels == rt->capkernels) {
        int cap = rt->capkernels ? 2 * rt->capkernels : 32;
        clrt_kernel_entry *nk = realloc(rt->kernels, (size_t)cap * sizeof *nk);
        if (!nk) { fprintf(stderr, "cltrain: error: out of host memory\n"); exit(1); }
        rt->kernels = nk;
        rt->capkernels = cap;
    }
    cl_int e;
    cl_kernel k = clCreateKernel(rt->program, name, &e);
    if (e != CL_SUCCESS) {
        fprintf(stderr, "cltrain: error: kernel '%s': %s\n", name, clrt_error_name(e));
        exit(1);
    }
    clrt_kernel_entry *ent = &rt->kernels[rt->nkernels++];
    snprintf(ent->name, sizeof ent->name, "%s", name);
    ent->k = k;
    return k;
}

int clrt_alloc_buf(clrt *rt, cl_mem *out, size_t bytes, const char *what, char *err,
                   size_t errlen) {
    const double mib = 1024.0 * 1024.0;
    *out = NULL;
    if (bytes == 0) bytes = 4;
    if (bytes > rt->dev.max_alloc) {
        snprintf(err, errlen, "%s needs %.1f MiB in one buffer but %s allows at most %.1f MiB "
                              "per buffer (%.0f MiB in all)", what, bytes / mib, rt->dev.name,
                 rt->dev.max_alloc / mib, rt->dev.global_mem / mib);
        return 1;
    }
    cl_int e;
    cl_mem m = clCreateBuffer(rt->ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "allocating %.1f MiB for %s on %s (%.0f MiB in all): %s",
                 bytes / mib, what, rt->dev.name, rt->dev.global_mem / mib, clrt_error_name(e));
        return 1;
    }
    *out = m;
    return 0;
}

cl_mem clrt_alloc(clrt *rt, size_t bytes, const char *what) {
    cl_mem m;
    char err[1024];
    if (clrt_alloc_buf(rt, &m, bytes, what, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        exit(1);
    }
    return m;
}

void clrt_write(clrt *rt, cl_mem m, size_t off, const void *src, size_t bytes) {
    if (bytes)
        CL_CHECK(clEnqueueWriteBuffer(rt->queue, m, CL_TRUE, off, bytes, src, 0, NULL, NULL));
}

void clrt_read(clrt *rt, cl_mem m, size_t off, void *dst, size_t bytes) {
    if (bytes)
        CL_CHECK(clEnqueueReadBuffer(rt->queue, m, CL_TRUE, off, bytes, dst, 0, NULL, NULL));
}

void clrt_read_async(clrt *rt, cl_mem m, size_t off, void *dst, size_t bytes, cl_event *ev) {
    CL_CHECK(clEnqueueReadBuffer(rt->queue, m, CL_FALSE, off, bytes, dst, 0, NULL, ev));
}

void clrt_write_async(clrt *rt, cl_mem m, size_t off, const void *src, size_t bytes) {
    if (bytes)
        CL_CHECK(clEnqueueWriteBuffer(rt->queue, m, CL_FALSE, off, bytes, src, 0, NULL, NULL));
}

void clrt_wait(cl_event ev) {
    CL_CHECK(clWaitForEvents(1, &ev));
    CL_CHECK(clReleaseEvent(ev));
}

int clrt_event_done(cl_event ev) {
    cl_int st;
    CL_CHECK(clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL));
    if (st < 0) CL_CHECK(st);  // the command failed: as clWaitForEvents would report it
    return st == CL_COMPLETE;
}

void clrt_flush(clrt *rt) { CL_CHECK(clFlush(rt->queue)); }

void clrt_fill_zero(clrt *rt, cl_mem m, size_t off, size_t bytes) {
    if (!bytes) return;
    // bytes must be a multiple of 4 (floats and int32 only).
    cl_uint zero = 0;
    CL_CHECK(clEnqueueFillBuffer(rt->queue, m, &zero, sizeof zero, off, bytes, 0, NULL, NULL));
}

void clrt_fill_int(clrt *rt, cl_mem m, size_t off, size_t bytes, cl_int value) {
    if (bytes)
        CL_CHECK(clEnqueueFillBuffer(rt->queue, m, &value, sizeof value, off, bytes, 0, NULL,
                                     NULL));
}

void clrt_copy(clrt *rt, cl_mem dst, size_t dst_off, cl_mem src, size_t src_off,
               size_t bytes) {
    if (bytes)
        CL_CHECK(clEnqueueCopyBuffer(rt->queue, src, dst, src_off, dst_off, bytes, 0, NULL,
                                     NULL));
}

void clrt_finish(clrt *rt) { CL_CHECK(clFinish(rt->queue)); }

void *clrt_host_alloc(clrt *rt, clrt_host_buf *b, size_t bytes) {
    memset(b, 0, sizeof *b);
    b->bytes = bytes ? bytes : 4;
    cl_int e;
    b->mem = clCreateBuffer(rt->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, b->bytes, NULL, &e);
    if (e == CL_SUCCESS) {
        b->ptr = clEnqueueMapBuffer(rt->queue, b->mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                    b->bytes, 0, NULL, NULL, &e);
        if (e == CL_SUCCESS && b->ptr) return b->ptr;
        clReleaseMemObject(b->mem);
        b->mem = NULL;
    }
    b->ptr = malloc(b->bytes);
    if (!b->ptr) {
        fprintf(stderr, "cltrain: error: out of host memory (%.1f MiB)\n", b->bytes / 1048576.0);
        exit(1);
    }
    return b->ptr;
}

void clrt_host_free(clrt *rt, clrt_host_buf *b) {
    if (!b || !b->ptr) return;
    if (b->mem) {
        clEnqueueUnmapMemObject(rt->queue, b->mem, b->ptr, 0, NULL, NULL);
        clFinish(rt->queue);
        clReleaseMemObject(b->mem);
    } else {
        free(b->ptr);
    }
    memset(b, 0, sizeof *b);
}

// Local size for a 1-D launch: the kernel's preferred multiple, grown toward 256 while the
// kernel and device allow it.
static size_t local_size_1d(clrt *rt, cl_kernel k) {
    size_t kwg = 0, mult = 1;
    CL_CHECK(clGetKernelWorkGroupInfo(k, rt->dev.device_id, CL_KERNEL_WORK_GROUP_SIZE,
                                      sizeof kwg, &kwg, NULL));
    CL_CHECK(clGetKernelWorkGroupInfo(k, rt->dev.device_id,
                                      CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE, sizeof mult,
                                      &mult, NULL));
    if (kwg > rt->dev.max_work_group) kwg = rt->dev.max_work_group;
    if (mult == 0 || mult > kwg) mult = 1;
    size_t l = mult;
    while (l * 2 <= kwg && l * 2 <= 256) l *= 2;
    return l ? l : 1;
}

static cl_event *kernel_event(clrt *rt, cl_kernel k) {
    if (!rt->prof_on) return NULL;
    char name[40] = "?";
    clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    name[sizeof name - 1] = 0;
    return clrt_profile_event(rt, name);
}

void clrt_launch1d(clrt *rt, cl_kernel k, size_t n) {
    if (n == 0) return;
    size_t l = local_size_1d(rt, k);
    size_t g = (n + l - 1) / l * l;
    CL_CHECK(clEnqueueNDRangeKernel(rt->queue, k, 1, NULL, &g, &l, 0, NULL,
                                    kernel_event(rt, k)));
}

void clrt_launch(clrt *rt, cl_kernel k, int dims, const size_t *global, const size_t *local) {
    size_t g[3];
    for (int i = 0; i < dims; i++) {
        if (global[i] == 0) return;
        size_t l = local ? local[i] : 1;
        g[i] = (global[i] + l - 1) / l * l;
    }
    CL_CHECK(clEnqueueNDRangeKernel(rt->queue, k, (cl_uint)dims, NULL, g, local, 0, NULL,
                                    kernel_event(rt, k)));
}
