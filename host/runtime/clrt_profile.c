// Per-op and per-layer device time from OpenCL profiling events (cltrain bench --profile).
#define _POSIX_C_SOURCE 200809L
#include "host/runtime/clrt.h"

#include <stdlib.h>
#include <string.h>

cl_event *clrt_profile_event(clrt *rt, const char *op) {
    if (!rt->prof_on) return NULL;
    if (rt->nprof == rt->capprof) {
        int cap = rt->capprof ? 2 * rt->capprof : 1024;
        clrt_prof_rec *p = realloc(rt->prof, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        rt->prof = p;
        rt->capprof = cap;
    }
    clrt_prof_rec *r = &rt->prof[rt->nprof++];
    snprintf(r->op, sizeof r->op, "%s", op);
    snprintf(r->layer, sizeof r->layer, "%s", rt->prof_layer[0] ? rt->prof_layer : "-");
    r->ev = NULL;
    r->begin = NULL;
    return &r->ev;
}

cl_event *clrt_profile_span(clrt *rt, const char *op) {
    cl_event *ev = clrt_profile_event(rt, op);
    if (ev && clEnqueueMarkerWithWaitList(rt->queue, 0, NULL, &rt->prof[rt->nprof - 1].begin)
                  != CL_SUCCESS)
        rt->prof[rt->nprof - 1].begin = NULL;   // then: the last command's own time
    return ev;
}

void clrt_profile_layer(clrt *rt, const char *layer) {
    if (rt->prof_on) snprintf(rt->prof_layer, sizeof rt->prof_layer, "%s", layer);
}

static void release_all(clrt *rt) {
    for (int i = 0; i < rt->nprof; i++) {
        if (rt->prof[i].ev) clReleaseEvent(rt->prof[i].ev);
        if (rt->prof[i].begin) clReleaseEvent(rt->prof[i].begin);
    }
    rt->nprof = 0;
}

void clrt_profile_start(clrt *rt) {
    release_all(rt);
    rt->prof_on = rt->profiling;
    rt->prof_layer[0] = 0;
}

typedef struct prof_sum { const char *key; double ms; int calls; } prof_sum;

static int by_time(const void *a, const void *b) {
    double x = ((const prof_sum *)a)->ms, y = ((const prof_sum *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void table(FILE *f, const char *title, prof_sum *s, int n, double total, int steps) {
    qsort(s, (size_t)n, sizeof *s, by_time);
    fprintf(f, "%-28s %10s %7s %8s\n", title, "ms/step", "share", "calls");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-28s %10.2f %6.1f%% %8d\n", s[i].key, s[i].ms / steps,
                total > 0 ? 100.0 * s[i].ms / total : 0.0, s[i].calls / steps);
}

static int add(prof_sum *s, int n, const char *key, double ms) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].key, key)) { s[i].ms += ms; s[i].calls++; return n; }
    s[n].key = key;
    s[n].ms = ms;
    s[n].calls = 1;
    return n + 1;
}

void clrt_profile_report(clrt *rt, FILE *f, int steps) {
    if (!rt->profiling) return;
    CL_CHECK(clFinish(rt->queue));
    prof_sum *ops = calloc((size_t)rt->nprof + 1, sizeof *ops);
    prof_sum *layers = calloc((size_t)rt->nprof + 1, sizeof *layers);
    int nops = 0, nlayers = 0;
    double total = 0;
    for (int i = 0; ops && layers && i < rt->nprof; i++) {
        cl_ulong t0 = 0, t1 = 0;
        if (!rt->prof[i].ev) continue;
        if (rt->prof[i].begin)
            clGetEventProfilingInfo(rt->prof[i].begin, CL_PROFILING_COMMAND_END, sizeof t0, &t0,
                                    NULL);
        else
            clGetEventProfilingInfo(rt->prof[i].ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0,
                                    NULL);
        clGetEventProfilingInfo(rt->prof[i].ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        double ms = t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0;
        total += ms;
        nops = add(ops, nops, rt->prof[i].op, ms);
        nlayers = add(layers, nlayers, rt->prof[i].layer, ms);
    }
    if (steps < 1) steps = 1;
    fprintf(f, "device time %.2f ms/step over %d commands/step\n", total / steps,
            rt->nprof / steps);
    table(f, "op", ops, nops, total, steps);
    table(f, "layer", layers, nlayers, total, steps);
    free(ops);
    free(layers);
    rt->prof_on = 0;
    release_all(rt);
}
