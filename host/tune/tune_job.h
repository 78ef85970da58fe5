// The measuring half of `cltrain tune`, run in a child process per candidate: a candidate's
// parameters may make CLBlast's kernels compute wrong results or write outside their buffers
// (on pocl, device memory is host memory), so no candidate runs inside the searching process.
// Not part of the public API: host/tune/tune_search.c and host/tune/tune_job.c only.
#ifndef CLTRAIN_TUNE_JOB_H
#define CLTRAIN_TUNE_JOB_H

#include "host/tune/tune.h"

// What every measurement shares: the shapes and the reference points each is checked on.
// Shapes with calls == 0 are canaries: checked, not timed (the ms of timed shapes come back
// at their own index).
typedef struct tune_job {
    tune_shapes sh;          // own copy
    int reps, cpu_clock;
    int nsample;             // reference points per shape
    int *si, *sj;            // [shape * nsample + p]: row and column of point p
    double *ref, *tol;       // its expected value and tolerance
} tune_job;

// Copies the shapes and computes the reference points (in double, on the host).
int tune_job_init(tune_job *j, const tune_shapes *sh, int reps, int cpu_clock, char *err,
                  size_t errlen);
void tune_job_free(tune_job *j);
int tune_job_write(const tune_job *j, const char *path, char *err, size_t errlen);
int tune_job_read(tune_job *j, const char *path, char *err, size_t errlen);

// How to start a worker: this binary, the device as "P:D", a scratch folder.
typedef struct tune_runner {
    char exe[1024], device[32], dir[512], job_path[600];
    double timeout_s;        // a worker still running after this is killed (candidate lost)
} tune_runner;

// Measures configuration c (NULL: CLBlast as it comes) in a worker. Returns 0 with ms per
// shape and the step total, 2 when the total passed cap (too slow to finish), 1 when the
// worker failed, crashed, timed out or computed a wrong result (why says which).
int tune_job_measure(const tune_runner *r, const tune_job *j, const tune_config *c, double cap,
                     double *ms, double *total, char *why, size_t whylen);

#endif
