// The link between processes: see comm.h.
#include "host/train/comm.h"

#include <stdio.h>
#include <string.h>

#ifdef CLTRAIN_MPI
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>

int comm_built_with_mpi(void) { return 1; }

int comm_init(comm *c, int launched, int *argc, char ***argv, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->size = 1;
    (void)err; (void)errlen;
    if (!launched) return 0;
    MPI_Init(argc, argv);
    c->active = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &c->local_rank);
    MPI_Comm_free(&local);
    return 0;
}

void comm_free(comm *c) {
    comm_wait_sums(c);
    free(c->reqs);
    c->reqs = NULL;
    c->capreq = 0;
    if (c->active) MPI_Finalize();
    c->active = 0;
}

// MPI counts are int: large buffers go in chunks.
#define COMM_CHUNK ((size_t)1 << 28)

void comm_sum_floats(comm *c, float *buf, size_t n) {
    if (c->size <= 1) return;
    for (size_t i = 0; i < n; i += COMM_CHUNK) {
        size_t k = n - i < COMM_CHUNK ? n - i : COMM_CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

int comm_isum_floats(comm *c, float *buf, size_t n) {
    if (c->size <= 1) return 0;
    for (size_t i = 0; i < n; i += COMM_CHUNK) {
        size_t k = n - i < COMM_CHUNK ? n - i : COMM_CHUNK;
        if (c->nreq == c->capreq) {
            int cap = c->capreq ? 2 * c->capreq : 64;
            MPI_Request *r = realloc(c->reqs, (size_t)cap * sizeof *r);
            if (!r) return -1;
            c->reqs = r;
            c->capreq = cap;
        }
        MPI_Iallreduce(MPI_IN_PLACE, buf + i, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                       (MPI_Request *)c->reqs + c->nreq++);
    }
    return 0;
}

void comm_progress(comm *c) {
    int done;
    if (c->nreq) MPI_Testall(c->nreq, c->reqs, &done, MPI_STATUSES_IGNORE);
}

void comm_wait_sums(comm *c) {
    if (c->nreq) MPI_Waitall(c->nreq, c->reqs, MPI_STATUSES_IGNORE);
    c->nreq = 0;
}

void comm_broadcast(comm *c, void *buf, size_t bytes, int root) {
    if (c->size <= 1) return;
    for (size_t i = 0; i < bytes; i += COMM_CHUNK) {
        size_t k = bytes - i < COMM_CHUNK ? bytes - i : COMM_CHUNK;
        MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
    }
}

int comm_max_int(comm *c, int v, int *who) {
    if (who) *who = c->rank;
    if (c->size <= 1) return v;
    struct { int v, rank; } in = { v, c->rank }, out;
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);  // lowest rank on ties
    if (who) *who = out.rank;
    return out.v;
}

void comm_abort(comm *c, int code) {
    if (c->active) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else  // built without MPI: one process

#include <stdlib.h>

int comm_built_with_mpi(void) { return 0; }

int comm_init(comm *c, int launched, int *argc, char ***argv, char *err, size_t errlen) {
    (void)argc; (void)argv;
    memset(c, 0, sizeof *c);
    c->size = 1;
    if (launched) {
        snprintf(err, errlen, "started by an MPI launcher, but this cltrain was built without "
                 "MPI (install libopenmpi-dev and rebuild with 'make MPI=1')");
        return 1;
    }
    return 0;
}

void comm_free(comm *c) { (void)c; }
void comm_sum_floats(comm *c, float *buf, size_t n) { (void)c; (void)buf; (void)n; }
int comm_isum_floats(comm *c, float *buf, size_t n) {
    (void)c; (void)buf; (void)n;
    return 0;
}
void comm_progress(comm *c) { (void)c; }
void comm_wait_sums(comm *c) { (void)c; }
void comm_broadcast(comm *c, void *buf, size_t bytes, int root) {
    (void)c; (void)buf; (void)bytes; (void)root;
}
int comm_max_int(comm *c, int v, int *who) {
    if (who) *who = c->rank;
    return v;
}
void comm_abort(comm *c, int code) { (void)c; exit(code); }

#endif
