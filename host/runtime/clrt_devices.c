// Device discovery, the SPEC rule of --device / CLTRAIN_DEVICE, and `cltrain devices`.
#define _POSIX_C_SOURCE 200809L
#include "host/runtime/clrt.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static void dev_str(cl_device_id d, cl_device_info what, char *out, size_t len) {
    out[0] = 0;
    if (clGetDeviceInfo(d, what, len, out, NULL) != CL_SUCCESS) snprintf(out, len, "?");
    out[len - 1] = 0;
}

static int has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

static void fill_info(clrt_devinfo *d) {
    cl_device_id id = d->device_id;
    dev_str(id, CL_DEVICE_NAME, d->name, sizeof d->name);
    dev_str(id, CL_DEVICE_VENDOR, d->vendor, sizeof d->vendor);
    dev_str(id, CL_DRIVER_VERSION, d->driver, sizeof d->driver);
    dev_str(id, CL_DEVICE_VERSION, d->version, sizeof d->version);
    dev_str(id, CL_DEVICE_OPENCL_C_VERSION, d->c_version, sizeof d->c_version);
    clGetDeviceInfo(id, CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof d->compute_units,
                    &d->compute_units, NULL);
    clGetDeviceInfo(id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->global_mem, &d->global_mem, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof d->max_alloc, &d->max_alloc, NULL);
    clGetDeviceInfo(id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof d->local_mem, &d->local_mem, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_work_group,
                    &d->max_work_group, NULL);
    clGetDeviceInfo(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof d->base_addr_align_bits,
                    &d->base_addr_align_bits, NULL);
    char ext[8192];
    dev_str(id, CL_DEVICE_EXTENSIONS, ext, sizeof ext);
    d->fp16 = has_word(ext, "cl_khr_fp16");
}

// Can `path` (which does not exist) be made: is its parent a writable folder?
static int base_parent_writable(const char *path) {
    char parent[600];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash) return access(".", W_OK) == 0;
    if (slash == parent) slash[1] = 0;
    else *slash = 0;
    struct stat st;
    return stat(parent, &st) == 0 && S_ISDIR(st.st_mode) && access(parent, W_OK) == 0;
}

// pocl keeps its kernel cache under $POCL_CACHE_DIR, else $XDG_CACHE_HOME/pocl, else
// ~/.cache/pocl, and reports no device at all when that folder cannot be made: then say so
// rather than "install a driver".
static void pocl_cache_hint(char *hint, size_t len) {
    const char *var = "XDG_CACHE_HOME", *base = getenv("XDG_CACHE_HOME");
    char home[600];
    if (getenv("POCL_CACHE_DIR") && *getenv("POCL_CACHE_DIR")) {
        var = "POCL_CACHE_DIR";
        base = getenv("POCL_CACHE_DIR");
    } else if (!base || !*base) {
        const char *h = getenv("HOME");
        snprintf(home, sizeof home, "%s/.cache", h ? h : "");
        var = "HOME";
        base = h ? home : NULL;
    }
    struct stat st;
    if (base && (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) != 0) &&
        !(stat(base, &st) != 0 && errno == ENOENT && base_parent_writable(base))) {
        snprintf(hint, len, "%s gives %.600s, which is not a writable folder, and pocl needs one "
                            "for its kernel cache (or install another driver)", var, base);
        return;
    }
    snprintf(hint, len, "install a driver, e.g. 'apt-get install pocl-opencl-icd' for the CPU");
}

int clrt_list_devices(clrt_devinfo **list, int *n, char *err, size_t errlen) {
    *list = NULL;
    *n = 0;
    // pocl 3.1 aborts on an empty POCL_CACHE_DIR (an assertion); unset means its default.
    const char *pcd = getenv("POCL_CACHE_DIR");
    if (pcd && !*pcd) unsetenv("POCL_CACHE_DIR");
    cl_uint np = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &np);
    if (rc != CL_SUCCESS || np == 0) {
        snprintf(err, errlen,
                 "no OpenCL platform found (%s): install an OpenCL driver, e.g. "
                 "'apt-get install pocl-opencl-icd' for the CPU, or your GPU vendor's ICD",
                 rc == CL_SUCCESS ? "0 platforms" : clrt_error_name(rc));
        return 2;
    }
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats) { snprintf(err, errlen, "out of host memory"); return 1; }
    clGetPlatformIDs(np, plats, NULL);
    int cap = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS) continue;
        cl_device_id *ids = calloc(nd ? nd : 1, sizeof *ids);
        if (!ids) continue;
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL);
        char pname[256] = "?";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = 0;
        for (cl_uint d = 0; d < nd; d++) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 8;
                clrt_devinfo *nl = realloc(*list, (size_t)cap * sizeof *nl);
                if (!nl) break;
                *list = nl;
            }
            clrt_devinfo *di = &(*list)[(*n)++];
            memset(di, 0, sizeof *di);
            di->platform = (int)p;
            di->device = (int)d;
            di->platform_id = plats[p];
            di->device_id = ids[d];
            snprintf(di->platform_name, sizeof di->platform_name, "%s", pname);
            fill_info(di);
        }
        free(ids);
    }
    free(plats);
    if (*n == 0) {
        char hint[1400];
        pocl_cache_hint(hint, sizeof hint);
        snprintf(err, errlen, "OpenCL platforms found but no device: %s", hint);
        return 2;
    }
    return 0;
}

static int parse_int(const char *s, int *out) {
    if (!*s) return 0;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p)) return 0;
        v = v * 10 + (*p - '0');
        if (v > 1000000) return 0;
    }
    *out = (int)v;
    return 1;
}

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0) return 1;
    return 0;
}

static int first_of_type(const clrt_devinfo *list, int n, cl_device_type t) {
    for (int i = 0; i < n; i++)
        if (list[i].type & t) return i;
    return -1;
}

int clrt_select_device(const clrt_devinfo *list, int n, const char *spec) {
    if (n <= 0) return -1;
    if (!spec || !*spec) {
        int g = first_of_type(list, n, CL_DEVICE_TYPE_GPU);
        return g >= 0 ? g : 0;
    }
    const char *colon = strchr(spec, ':');
    if (colon) {
        char a[32];
        size_t la = (size_t)(colon - spec);
        int p, d;
        if (la < sizeof a) {
            memcpy(a, spec, la);
            a[la] = 0;
            if (parse_int(a, &p) && parse_int(colon + 1, &d)) {
                for (int i = 0; i < n; i++)
                    if (list[i].platform == p && list[i].device == d) return i;
                return -1;
            }
        }
    }
    int idx;
    if (parse_int(spec, &idx)) return idx < n ? idx : -1;
    if (strcasecmp(spec, "gpu") == 0) return first_of_type(list, n, CL_DEVICE_TYPE_GPU);
    if (strcasecmp(spec, "cpu") == 0) return first_of_type(list, n, CL_DEVICE_TYPE_CPU);
    for (int i = 0; i < n; i++)
        if (contains_ci(list[i].name, spec) || contains_ci(list[i].platform_name, spec))
            return i;
    return -1;
}

int clrt_device_group(const clrt_devinfo *list, int n, const char *name, int *idx, int cap) {
    int gpus = strcasecmp(name, "all-gpus") == 0;
    if (!gpus && strcasecmp(name, "all") != 0) return -1;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!gpus || (list[i].type & CL_DEVICE_TYPE_GPU)) {
            if (k < cap) idx[k] = i;
            k++;
        }
    return k;
}

const char *clrt_device_type_name(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "ACCELERATOR";
    return "OTHER";
}

void clrt_print_devices(FILE *f, const clrt_devinfo *list, int n) {
    const double mib = 1024.0 * 1024.0;
    for (int i = 0; i < n; i++) {
        const clrt_devinfo *d = &list[i];
        fprintf(f, "%d:%d  %s\n", d->platform, d->device, d->name);
        fprintf(f, "     platform: %s   vendor: %s   type: %s\n", d->platform_name, d->vendor,
                clrt_device_type_name(d->type));
        fprintf(f, "     driver: %s   %s   compute units: %u\n", d->driver, d->c_version,
                d->compute_units);
        fprintf(f, "     global memory: %.0f MiB   max allocation: %.0f MiB   local memory: "
                   "%.0f KiB   fp16: %s\n",
                d->global_mem / mib, d->max_alloc / mib, d->local_mem / 1024.0,
                d->fp16 ? "yes" : "no");
    }
}
