// The kernel program: sources (embedded or $CLTRAIN_KERNEL_DIR), the persistent binary cache,
// and the build with its log.
#define _POSIX_C_SOURCE 200809L
#include "host/runtime/clrt.h"
#include "common/fs.h"
#include "common/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

extern const char *const cl_source_names[];
extern const char *const cl_source_texts[];
extern const size_t cl_source_count;

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len >= 0 && len < (64L << 20) && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)len + 1);
            if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) { free(buf); buf = NULL; }
            if (buf) buf[len] = 0;
        }
    }
    fclose(f);
    return buf;
}

int clrt_kernel_sources(const char *dir, char ***texts, size_t *count, char *err,
                        size_t errlen) {
    char **t = calloc(cl_source_count ? cl_source_count : 1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of host memory"); return 1; }
    for (size_t i = 0; i < cl_source_count; i++) {
        if (dir && *dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, cl_source_names[i]);
            t[i] = read_text_file(path);
            if (!t[i]) {
                snprintf(err, errlen, "kernel folder: cannot read %s: %s", path,
                         strerror(errno ? errno : ENOENT));
                clrt_free_sources(t, i);
                return 1;
            }
        } else {
            t[i] = strdup(cl_source_texts[i]);
            if (!t[i]) { clrt_free_sources(t, i); snprintf(err, errlen, "out of memory"); return 1; }
        }
        // Name the file in build logs: one program holds every source.
        size_t len = strlen(t[i]) + strlen(cl_source_names[i]) + 32;
        char *named = malloc(len);
        if (!named) { clrt_free_sources(t, i + 1); snprintf(err, errlen, "out of memory"); return 1; }
        snprintf(named, len, "#line 1 \"%s\"\n%s", cl_source_names[i], t[i]);
        free(t[i]);
        t[i] = named;
    }
    *texts = t;
    *count = cl_source_count;
    return 0;
}

void clrt_free_sources(char **texts, size_t count) {
    if (!texts) return;
    for (size_t i = 0; i < count; i++) free(texts[i]);
    free(texts);
}

// ---- cache ----

// 128 bits of key: two streams of the one hash (common/hash.h) from different starts.
typedef struct hash128 { uint64_t a, b; } hash128;

static void hash_str(hash128 *h, const char *s) {
    h->a = util_hash_str(h->a, s);
    h->b = util_hash_str(h->b, s);
}

void clrt_cache_key(const clrt_devinfo *d, char **texts, size_t count, const char *options,
                    char out_hex[33]) {
    hash128 h = { UTIL_HASH_INIT, 0x84222325cbf29ce4ULL };
    hash_str(&h, "cltrain-kernel-cache-v2");
    hash_str(&h, d->name);
    hash_str(&h, d->vendor);
    hash_str(&h, d->driver);
    hash_str(&h, d->version);
    hash_str(&h, d->platform_name);
    for (size_t i = 0; i < count; i++) hash_str(&h, texts[i]);
    hash_str(&h, options);
    snprintf(out_hex, 33, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
}

// Cache file: "CLTRKC01" | key (32 hex chars) | u64 size | u32 crc32 | binary.
static const char cache_magic[8] = { 'C', 'L', 'T', 'R', 'K', 'C', '0', '1' };

static unsigned char *cache_load(const char *path, const char key[33], size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *bin = NULL;
    char magic[8], k[32];
    uint64_t n = 0;
    uint32_t crc = 0;
    if (fread(magic, 1, 8, f) == 8 && memcmp(magic, cache_magic, 8) == 0 &&
        fread(k, 1, 32, f) == 32 && memcmp(k, key, 32) == 0 && fread(&n, 8, 1, f) == 1 &&
        fread(&crc, 4, 1, f) == 1 && n > 0 && n < (1ULL << 30)) {
        bin = malloc((size_t)n);
        if (bin && (fread(bin, 1, (size_t)n, f) != n || fgetc(f) != EOF ||
                    crc32(0L, bin, (uInt)n) != crc)) {
            free(bin);
            bin = NULL;
        }
    }
    fclose(f);
    if (bin) *size = (size_t)n;
    return bin;
}

// Atomic (common/fs.h), so concurrent processes share it.
static void cache_store(const char *dir, const char *path, const char key[33],
                        const unsigned char *bin, size_t n) {
    if (util_mkdir_p(dir) != 0) {
        fprintf(stderr, "cltrain: warning: kernel cache folder %s not usable (%s); "
                        "continuing without the cache\n", dir, strerror(errno));
        return;
    }
    util_atomic_file a;
    char err[2400];
    if (util_atomic_open(&a, path, err, sizeof err) == 0) {
        FILE *f = a.f;
        uint64_t n64 = n;
        uint32_t crc = (uint32_t)crc32(0L, bin, (uInt)n);
        int ok = fwrite(cache_magic, 1, 8, f) == 8 && fwrite(key, 1, 32, f) == 32 &&
                 fwrite(&n64, 8, 1, f) == 1 && fwrite(&crc, 4, 1, f) == 1 &&
                 fwrite(bin, 1, n, f) == n;
        if (ok && util_atomic_commit(&a, err, sizeof err) == 0) return;
        if (!ok) snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(errno));
        util_atomic_abort(&a);
    }
    fprintf(stderr, "cltrain: warning: kernel cache: %s; continuing without the cache\n", err);
}

// The compiler's log of p's build, without trailing white space; NULL when empty.
static char *build_log(clrt *rt, cl_program p) {
    size_t len = 0;
    if (clGetProgramBuildInfo(p, rt->dev.device_id, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) !=
            CL_SUCCESS || len == 0)
        return NULL;
    char *log = malloc(len + 1);
    if (!log) return NULL;
    log[0] = 0;
    clGetProgramBuildInfo(p, rt->dev.device_id, CL_PROGRAM_BUILD_LOG, len, log, NULL);
    log[len] = 0;
    while (len > 0 && (log[len - 1] == 0 || strchr(" \t\r\n", log[len - 1]))) log[--len] = 0;
    if (len == 0) { free(log); return NULL; }
    return log;
}

static void print_build_log(const char *log) {
    fprintf(stderr, "---- build log ----\n%s\n-------------------\n", log ? log : "");
}

// The .cl files a build log mentions (each source starts with a #line naming its file, so
// the compiler's messages say file:line): "gemm_packed.cl, conv.cl", or "the kernels".
static void log_files(const char *log, char *out, size_t len) {
    out[0] = 0;
    for (size_t i = 0; i < cl_source_count; i++) {
        if (!strstr(log, cl_source_names[i])) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? ", " : "", cl_source_names[i]);
    }
    if (!out[0]) snprintf(out, len, "the kernels");
}

static cl_program from_binary(clrt *rt, const unsigned char *bin, size_t n) {
    cl_int rc, status;
    cl_program p = clCreateProgramWithBinary(rt->ctx, 1, &rt->dev.device_id, &n, &bin, &status,
                                             &rc);
    if (rc != CL_SUCCESS || status != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return NULL;
    }
    if (clBuildProgram(p, 1, &rt->dev.device_id, rt->build_options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

static unsigned char *program_binary(clrt *rt, cl_program p, size_t *n) {
    cl_uint ndev = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL) != CL_SUCCESS ||
        ndev != 1)
        return NULL;
    (void)rt;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof *n, n, NULL) != CL_SUCCESS || !*n)
        return NULL;
    unsigned char *bin = malloc(*n);
    if (bin && clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        bin = NULL;
    }
    return bin;
}

// Build the program: from the cache when a valid entry exists, else from source (then cache).
int clrt_build_program(clrt *rt, const char *kernel_dir, char *err, size_t errlen) {
    char **texts = NULL;
    size_t count = 0;
    if (clrt_kernel_sources(kernel_dir, &texts, &count, err, errlen) != 0) return 1;
    char key[33];
    const char *dir = rt->cache_dir;
    clrt_cache_key(&rt->dev, texts, count, rt->build_options, key);
    rt->cache_path[0] = 0;
    if (dir[0]) snprintf(rt->cache_path, sizeof rt->cache_path, "%.980s/%s.bin", dir, key);

    if (rt->cache_path[0]) {
        size_t n = 0;
        unsigned char *bin = cache_load(rt->cache_path, key, &n);
        if (bin) {
            rt->program = from_binary(rt, bin, n);
            free(bin);
            if (rt->program) {
                rt->cache_hit = 1;
                clrt_free_sources(texts, count);
                return 0;
            }
        }
    }
    cl_int rc;
    rt->program = clCreateProgramWithSource(rt->ctx, (cl_uint)count, (const char **)texts,
                                            NULL, &rc);
    clrt_free_sources(texts, count);
    if (rc != CL_SUCCESS) {
        snprintf(err, errlen, "clCreateProgramWithSource: %s", clrt_error_name(rc));
        return 1;
    }
    rc = clBuildProgram(rt->program, 1, &rt->dev.device_id, rt->build_options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "cltrain: kernel build failed on %s (%s) with options \"%s\"\n",
                rt->dev.name, rt->dev.platform_name, rt->build_options);
        char *log = build_log(rt, rt->program);
        print_build_log(log);
        free(log);
        snprintf(err, errlen, "clBuildProgram: %s", clrt_error_name(rc));
        return 1;
    }
    // A build that succeeds with a log (warnings: e.g. a loop the compiler was asked to
    // unroll and could not) is still worth showing: the log names file:line. Kept in
    // rt->build_log for `cltrain selftest --strict` and the tests.
    rt->build_log = build_log(rt, rt->program);
    if (rt->build_log) {
        char files[512];
        log_files(rt->build_log, files, sizeof files);
        fprintf(stderr, "cltrain: warning: the OpenCL compiler reported on %s (%s, options "
                        "\"%s\"):\n", files, rt->dev.name, rt->build_options);
        print_build_log(rt->build_log);
    }
    if (rt->cache_path[0]) {
        size_t n = 0;
        unsigned char *bin = program_binary(rt, rt->program, &n);
        if (bin) cache_store(dir, rt->cache_path, key, bin, n);
        free(bin);
    }
    return 0;
}
