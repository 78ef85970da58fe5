// Names of OpenCL and CLBlast status codes, and the exits of the hot-path checks.
#include "host/runtime/clrt.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct code_name { int code; const char *name; } code_name;

#define N(x) { x, #x }
static const code_name cl_names[] = {
    N(CL_SUCCESS), N(CL_DEVICE_NOT_FOUND), N(CL_DEVICE_NOT_AVAILABLE),
    N(CL_COMPILER_NOT_AVAILABLE), N(CL_MEM_OBJECT_ALLOCATION_FAILURE), N(CL_OUT_OF_RESOURCES),
    N(CL_OUT_OF_HOST_MEMORY), N(CL_PROFILING_INFO_NOT_AVAILABLE), N(CL_MEM_COPY_OVERLAP),
    N(CL_IMAGE_FORMAT_MISMATCH), N(CL_IMAGE_FORMAT_NOT_SUPPORTED), N(CL_BUILD_PROGRAM_FAILURE),
    N(CL_MAP_FAILURE), N(CL_MISALIGNED_SUB_BUFFER_OFFSET),
    N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST), N(CL_COMPILE_PROGRAM_FAILURE),
    N(CL_LINKER_NOT_AVAILABLE), N(CL_LINK_PROGRAM_FAILURE), N(CL_DEVICE_PARTITION_FAILED),
    N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE), N(CL_INVALID_VALUE), N(CL_INVALID_DEVICE_TYPE),
    N(CL_INVALID_PLATFORM), N(CL_INVALID_DEVICE), N(CL_INVALID_CONTEXT),
    N(CL_INVALID_QUEUE_PROPERTIES), N(CL_INVALID_COMMAND_QUEUE), N(CL_INVALID_HOST_PTR),
    N(CL_INVALID_MEM_OBJECT), N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR), N(CL_INVALID_IMAGE_SIZE),
    N(CL_INVALID_SAMPLER), N(CL_INVALID_BINARY), N(CL_INVALID_BUILD_OPTIONS),
    N(CL_INVALID_PROGRAM), N(CL_INVALID_PROGRAM_EXECUTABLE), N(CL_INVALID_KERNEL_NAME),
    N(CL_INVALID_KERNEL_DEFINITION), N(CL_INVALID_KERNEL), N(CL_INVALID_ARG_INDEX),
    N(CL_INVALID_ARG_VALUE), N(CL_INVALID_ARG_SIZE), N(CL_INVALID_KERNEL_ARGS),
    N(CL_INVALID_WORK_DIMENSION), N(CL_INVALID_WORK_GROUP_SIZE), N(CL_INVALID_WORK_ITEM_SIZE),
    N(CL_INVALID_GLOBAL_OFFSET), N(CL_INVALID_EVENT_WAIT_LIST), N(CL_INVALID_EVENT),
    N(CL_INVALID_OPERATION), N(CL_INVALID_GL_OBJECT), N(CL_INVALID_BUFFER_SIZE),
    N(CL_INVALID_MIP_LEVEL), N(CL_INVALID_GLOBAL_WORK_SIZE), N(CL_INVALID_PROPERTY),
    N(CL_INVALID_IMAGE_DESCRIPTOR), N(CL_INVALID_COMPILER_OPTIONS), N(CL_INVALID_LINKER_OPTIONS),
    N(CL_INVALID_DEVICE_PARTITION_COUNT),
    { -1001, "CL_PLATFORM_NOT_FOUND_KHR" },
};
#undef N

// CLBlast's own codes (clblast_c.h); the OpenCL ones it shares are named above.
static const code_name clblast_names[] = {
    { -1024, "CLBlastNotImplemented" }, { -1022, "CLBlastInvalidMatrixA" },
    { -1021, "CLBlastInvalidMatrixB" }, { -1020, "CLBlastInvalidMatrixC" },
    { -1019, "CLBlastInvalidVectorX" }, { -1018, "CLBlastInvalidVectorY" },
    { -1017, "CLBlastInvalidDimension" }, { -1016, "CLBlastInvalidLeadDimA" },
    { -1015, "CLBlastInvalidLeadDimB" }, { -1014, "CLBlastInvalidLeadDimC" },
    { -1013, "CLBlastInvalidIncrementX" }, { -1012, "CLBlastInvalidIncrementY" },
    { -1011, "CLBlastInsufficientMemoryA" }, { -1010, "CLBlastInsufficientMemoryB" },
    { -1009, "CLBlastInsufficientMemoryC" }, { -1008, "CLBlastInsufficientMemoryX" },
    { -1007, "CLBlastInsufficientMemoryY" }, { -2050, "CLBlastInsufficientMemoryTemp" },
    { -2049, "CLBlastInvalidBatchCount" }, { -2048, "CLBlastInvalidOverrideKernel" },
    { -2047, "CLBlastMissingOverrideParameter" }, { -2046, "CLBlastInvalidLocalMemUsage" },
    { -2045, "CLBlastNoHalfPrecision" }, { -2044, "CLBlastNoDoublePrecision" },
    { -2043, "CLBlastInvalidVectorScalar" }, { -2042, "CLBlastInsufficientMemoryScalar" },
    { -2041, "CLBlastDatabaseError" }, { -2040, "CLBlastUnknownError" },
    { -2039, "CLBlastUnexpectedError" },
};

static const char *lookup(const code_name *t, size_t n, int code) {
    for (size_t i = 0; i < n; i++)
        if (t[i].code == code) return t[i].name;
    return NULL;
}

const char *clrt_error_name(cl_int code) {
    const char *s = lookup(cl_names, sizeof cl_names / sizeof cl_names[0], code);
    return s ? s : "unknown OpenCL error";
}

const char *clrt_clblast_error_name(int code) {
    const char *s = lookup(clblast_names, sizeof clblast_names / sizeof clblast_names[0], code);
    if (s) return s;
    s = lookup(cl_names, sizeof cl_names / sizeof cl_names[0], code);
    return s ? s : "unknown CLBlast error";
}

void clrt_die_cl(cl_int code, const char *call, const char *file, int line) {
    fprintf(stderr, "cltrain: error: %s failed at %s:%d: %s (%d)\n", call, file, line,
            clrt_error_name(code), (int)code);
    if (code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_RESOURCES)
        fprintf(stderr, "cltrain: the device ran out of memory or resources\n");
    exit(1);
}

void clrt_die_clblast(int code, const char *call, const char *file, int line) {
    fprintf(stderr, "cltrain: error: %s failed at %s:%d: %s (%d)\n", call, file, line,
            clrt_clblast_error_name(code), code);
    exit(1);
}
