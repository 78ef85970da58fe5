// clrt: the OpenCL runtime of cltrain — device discovery and choice, context, one in-order
// queue, the kernel program (embedded .cl sources, or CLTRAIN_KERNEL_DIR) with its on-disk
// binary cache, kernel handles, buffers, and the error-checking macros of the hot path.
#ifndef CLTRAIN_CLRT_H
#define CLTRAIN_CLRT_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

// One OpenCL device as `cltrain devices` lists it.
typedef struct clrt_devinfo {
    int platform, device;          // P:D
    cl_platform_id platform_id;
    cl_device_id device_id;
    char name[256], platform_name[256], vendor[256];
    char driver[128], version[128], c_version[128];
    cl_device_type type;
    cl_uint compute_units;
    cl_ulong global_mem, max_alloc, local_mem;
    size_t max_work_group;
    cl_uint base_addr_align_bits;
    int fp16;
} clrt_devinfo;

// Enumerate every device of every platform. Returns 0 and a malloc'd list (possibly with
// *n == 0), or non-zero with a message (no platform at all: names the package to install).
int clrt_list_devices(clrt_devinfo **list, int *n, char *err, size_t errlen);
// Pick a device from SPEC: "P:D", a plain index into the list, "gpu", "cpu", or a
// case-insensitive substring of the device or platform name. NULL/"" = first GPU, else the
// first device. Returns the list index, or -1 when nothing matches (pure: no OpenCL calls).
int clrt_select_device(const clrt_devinfo *list, int n, const char *spec);
// The devices of a group name, in list order (`cltrain devices`' order): "all-gpus" every GPU
// of every platform, "all" every device. Writes up to cap list indices into idx; returns how
// many match (0: none), or -1 when name is no group (pure).
int clrt_device_group(const clrt_devinfo *list, int n, const char *name, int *idx, int cap);
const char *clrt_device_type_name(cl_device_type t);
void clrt_print_devices(FILE *f, const clrt_devinfo *list, int n);

typedef struct clrt_kernel_entry {
    char name[64];
    cl_kernel k;
} clrt_kernel_entry;

// One profiled command (bench --profile): the op (kernel or CLBlast routine), the model layer
// it belonged to, and its event; for a call that enqueues several kernels (CLBlast's indirect
// GEMM: copies, the kernel, the copy back) also a marker enqueued before it (begin).
typedef struct clrt_prof_rec {
    char op[40], layer[40];
    cl_event ev, begin;
} clrt_prof_rec;

typedef struct clrt {
    clrt_devinfo dev;
    cl_context ctx;
    cl_command_queue queue;        // one in-order queue (CLBlast takes no wait lists)
    cl_program program;            // every .cl source of cl/, built as one program
    char build_options[512];
    int cache_hit;                 // 1 when the program came from the binary cache
    char cache_path[1024];         // the cache file used or written ("" when disabled)
    char cache_dir[1024];          // clrt_options.cache_dir ("" when disabled)
    char *build_log;               // the compiler's log of a build from source when not empty
                                   // (warnings; printed to stderr as well), else NULL
    clrt_kernel_entry *kernels;    // kernel handles, created on first use
    int nkernels, capkernels;
    int profiling;                 // queue created with CL_QUEUE_PROFILING_ENABLE
    int prof_on;                   // record events now (profiling and not paused)
    char prof_layer[40];           // the layer being run, for the per-layer table
    clrt_prof_rec *prof;
    int nprof, capprof;
} clrt;

// What the runtime is told; it reads no configuration from the environment (the command layer
// fills these from CLTRAIN_DEVICE, CLTRAIN_KERNEL_DIR, CLTRAIN_NO_CACHE, XDG_CACHE_HOME:
// host/cli/startup.c). clrt_list_devices only unsets an empty POCL_CACHE_DIR, and reads
// POCL_CACHE_DIR, XDG_CACHE_HOME and HOME to word its message when no device shows up.
typedef struct clrt_options {
    const char *device_spec;       // NULL or "": the default rule (first GPU, else first device)
    int profiling;
    int quiet;                     // do not print the chosen device to stderr
    const char *kernel_dir;        // read the .cl sources from this folder (NULL or "": the
                                   // embedded copies)
    const char *cache_dir;         // the program binary cache's folder (NULL or "": no cache)
} clrt_options;

// Choose the device, create context and queue, build (or load from cache) the program.
// Returns 0, or an exit status (2 bad SPEC / no platform, 1 otherwise) with a message in err.
// A SPEC that matches nothing also prints the device list to stderr.
int clrt_init(clrt *rt, const clrt_options *opt, char *err, size_t errlen);
void clrt_free(clrt *rt);          // accepts a zeroed or half-built struct

// The kernel named `name` (created once, then cached). Exits with a message if unknown.
cl_kernel clrt_kernel(clrt *rt, const char *name);

// Device buffers. clrt_alloc_buf: a buffer of `bytes` (0 counts as 4) for `what` in *out;
// 0, or nonzero with *out NULL and one line in err naming what, the size and the device's
// memory (no advice: the caller knows which of its options sets the size).
int clrt_alloc_buf(clrt *rt, cl_mem *out, size_t bytes, const char *what, char *err,
                   size_t errlen);
// DEPRECATED for set-up paths (use clrt_alloc_buf and return the error): the same, but prints
// the message and exits. Kept only for model/'s calls until they are converted.
cl_mem clrt_alloc(clrt *rt, size_t bytes, const char *what);
void clrt_write(clrt *rt, cl_mem m, size_t off_bytes, const void *src, size_t bytes);
void clrt_read(clrt *rt, cl_mem m, size_t off_bytes, void *dst, size_t bytes);
// Non-blocking forms: dst/src must stay untouched until *ev completes (clrt_wait).
void clrt_read_async(clrt *rt, cl_mem m, size_t off_bytes, void *dst, size_t bytes,
                     cl_event *ev);
void clrt_write_async(clrt *rt, cl_mem m, size_t off_bytes, const void *src, size_t bytes);
// Waits for ev and releases it; submits what is queued so far (clFlush) without waiting.
void clrt_wait(cl_event ev);
// 1 when ev's command has completed (it stays held: clrt_wait releases it).
int clrt_event_done(cl_event ev);
void clrt_flush(clrt *rt);
void clrt_fill_zero(clrt *rt, cl_mem m, size_t off_bytes, size_t bytes);
// The same with one int32 value repeated (bytes a multiple of 4), enqueued without a wait.
void clrt_fill_int(clrt *rt, cl_mem m, size_t off_bytes, size_t bytes, cl_int value);
// Device-side copy, enqueued (no wait): dst[dst_off..] = src[src_off..], offsets in bytes.
void clrt_copy(clrt *rt, cl_mem dst, size_t dst_off, cl_mem src, size_t src_off, size_t bytes);
void clrt_finish(clrt *rt);

// Host memory for transfers: a CL_MEM_ALLOC_HOST_PTR buffer mapped once (pinned memory, the
// fast path for clEnqueueWriteBuffer/ReadBuffer on discrete GPUs); plain malloc when the
// device cannot map one. Exits with a message when neither works.
typedef struct clrt_host_buf {
    cl_mem mem;                    // NULL when ptr came from malloc
    void *ptr;
    size_t bytes;
} clrt_host_buf;
void *clrt_host_alloc(clrt *rt, clrt_host_buf *b, size_t bytes);
void clrt_host_free(clrt *rt, clrt_host_buf *b);   // accepts a zeroed struct

// Launch a 1-D kernel over n work items (global size rounded up to the work-group size the
// kernel prefers; kernels start with a bounds check).
void clrt_launch1d(clrt *rt, cl_kernel k, size_t n);
// Launch with an explicit local size (global rounded up to a multiple of it), 1-3 dims.
void clrt_launch(clrt *rt, cl_kernel k, int dims, const size_t *global, const size_t *local);

// Profiling (queue created with opt->profiling): an event slot to pass to an enqueue
// (kernel launch or CLBlast call) for `op`, or NULL when not recording.
cl_event *clrt_profile_event(clrt *rt, const char *op);
// The same for a call that may enqueue several commands and sets its event on the last one:
// the time runs from the end of a marker enqueued now (the previous command's end on the
// in-order queue) to the end of that event.
cl_event *clrt_profile_span(clrt *rt, const char *op);
void clrt_profile_layer(clrt *rt, const char *layer);   // label for the following commands
void clrt_profile_start(clrt *rt);                      // start recording (clears)
// Waits, then prints time per op type and per layer (ms per call of the measured region,
// divided by `steps`) and releases the events.
void clrt_profile_report(clrt *rt, FILE *f, int steps);

// Kernel sources: the embedded copies, or (dir not NULL or "") the files of that folder.
int clrt_kernel_sources(const char *dir, char ***texts, size_t *count, char *err,
                        size_t errlen);
void clrt_free_sources(char **texts, size_t count);

// The cache file name for a key text (device identity + sources + options); exposed for tests.
void clrt_cache_key(const clrt_devinfo *d, char **texts, size_t count, const char *options,
                    char out_hex[33]);

// Names of errors: CL_OUT_OF_RESOURCES, not -5; CLBlast's own codes too.
const char *clrt_error_name(cl_int code);
const char *clrt_clblast_error_name(int code);

// Hot-path checks: print the call, file:line and the error's name, then exit(1).
void clrt_die_cl(cl_int code, const char *call, const char *file, int line);
void clrt_die_clblast(int code, const char *call, const char *file, int line);
#define CL_CHECK(call)                                                        \
    do {                                                                      \
        cl_int cl_check_err_ = (call);                                        \
        if (cl_check_err_ != CL_SUCCESS)                                      \
            clrt_die_cl(cl_check_err_, #call, __FILE__, __LINE__);            \
    } while (0)
#define CLBLAST_CHECK(call)                                                   \
    do {                                                                      \
        int clblast_check_err_ = (int)(call);                                 \
        if (clblast_check_err_ != 0)                                          \
            clrt_die_clblast(clblast_check_err_, #call, __FILE__, __LINE__);  \
    } while (0)

// Set kernel argument `i` by value.
#define CLRT_ARG(k, i, v) CL_CHECK(clSetKernelArg((k), (i), sizeof(v), &(v)))

#endif
