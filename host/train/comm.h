// The link between processes of one data-parallel run: MPI (Open MPI) when cltrain is built
// with it (make MPI=1, CLTRAIN_MPI defined), else a world of one process. Only this file's
// .c includes mpi.h; the training step calls these few collectives on host buffers.
#ifndef CLTRAIN_COMM_H
#define CLTRAIN_COMM_H

#include <stddef.h>

typedef struct comm {
    int rank, size;                // this process among `size` (0 of 1 without MPI)
    int local_rank;                // among the processes of this host (device choice)
    int active;                    // MPI was initialised here (comm_free finalises it)
    void *reqs;                    // the sums started by comm_isum_floats, not waited yet
    int nreq, capreq;
} comm;

// 1 when this binary was built with MPI.
int comm_built_with_mpi(void);

// launched: the command layer saw an MPI launcher's environment (mpirun sets
// OMPI_COMM_WORLD_SIZE); only then is MPI initialised, so a plain run never touches MPI.
// Returns 0, or nonzero with a message (launched under mpirun but built without MPI).
int comm_init(comm *c, int launched, int *argc, char ***argv, char *err, size_t errlen);
// Finalises MPI when comm_init started it. Accepts a zeroed struct.
void comm_free(comm *c);

// In place over all processes: the sum of n floats (MPI_Allreduce, MPI_SUM).
void comm_sum_floats(comm *c, float *buf, size_t n);
// The same without a wait (MPI_Iallreduce): buf must stay untouched until comm_wait_sums.
// Returns 0, or -1 when the host has no memory to track it.
int comm_isum_floats(comm *c, float *buf, size_t n);
// Lets the started sums move (MPI_Testall: Open MPI progresses them only inside its calls).
void comm_progress(comm *c);
// Waits for every started sum.
void comm_wait_sums(comm *c);
// Rank root's bytes to every process.
void comm_broadcast(comm *c, void *buf, size_t bytes, int root);
// Every process's value of v; returns the largest and, in *who, the lowest rank holding it
// (so every rank can name the failing one).
int comm_max_int(comm *c, int v, int *who);
// Ends every process of the run with `code` (MPI_Abort): for a failure that only this rank
// saw after the others entered a collective.
void comm_abort(comm *c, int code);

#endif
