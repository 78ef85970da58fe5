// Batches of float images in the model's channel-major layout (3, B, S, S), prepared on one
// background thread while the caller consumes the previous batch.
//
// Deterministic without hidden RNG state: the epoch order is a Fisher-Yates shuffle driven by a
// counter-based hash of (seed, epoch), and an image's augmentation by a hash of (seed, epoch,
// image index). So loader_start_epoch(l, e, k) yields exactly batches k, k+1, ... of epoch e of an
// uninterrupted run (resume). One consumer thread calls _start_epoch, _next and _free.
#ifndef CLTRAIN_LOADER_H
#define CLTRAIN_LOADER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset/dataset.h"
#include "dataset/transform.h"

typedef struct loader_config {
    int batch_size, image_size;  // B (max), S: images are resized to (S, S)
    int normalize;               // 0 none, 1 ImageNet mean/std
    int augment;                 // 0 none, 1 flip-crop (RandomCrop(padding=4) + horizontal flip)
    int shuffle;                 // 1 = new permutation each epoch; 0 = file order
    uint64_t seed;
    int limit;                   // use only the first `limit` images (0 = all)
} loader_config;

typedef struct loader {
    const dataset_split *split;  // borrowed; must outlive the loader
    loader_config cfg;
    int n;                       // images per epoch (limit applied)
    int batches;                 // per epoch: ceil(n / batch_size)
    size_t batch_floats;         // 3 * batch_size * S * S

    // Owned by the worker thread.
    int *perm;                   // (n) image index at each epoch position
    int perm_epoch;              // epoch `perm` was built for, -1 none
    transform_resize resize;     // (h, w) -> (S, S)
    uint8_t *crop;               // (c, h, w) augmented source image
    uint8_t *resized;            // (c, S, S)
    float *work_x;               // (3, B, S, S) batch being prepared
    int32_t *work_y;             // (B)

    // Shared; guarded by mu.
    float *ready_x;              // (3, B, S, S) finished batch waiting for loader_next
    int32_t *ready_y;            // (B)
    int ready_count;             // images in ready_x
    int ready_full;
    uint64_t gen;                // bumped by every loader_start_epoch; stale work is dropped
    int started;                 // an epoch has been started
    int epoch;
    int next_batch;              // next batch the worker prepares
    int consumed;                // next batch loader_next hands out
    int quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int have_mu, have_cv, have_thread;
} loader;

// Validates the config against the split, allocates everything and starts the worker (idle until
// loader_start_epoch). Returns 0, or nonzero with a one-line message in err.
int  loader_init(loader *l, const dataset_split *split, const loader_config *cfg, char *err,
                 size_t errlen);
// ceil(n / batch_size): the last partial batch is kept, as torch DataLoader(drop_last=False).
int  loader_batches_per_epoch(const loader *l);
// Starts epoch `epoch` (from 0) at batch `first_batch` (resume); drops any batch in flight.
// Safe at any time, including mid-epoch.
void loader_start_epoch(loader *l, int epoch, int first_batch);
// Copies the next batch into x (3, B, S, S) and labels (B), packed with B = the returned count
// (B <= batch_size; the buffers must hold batch_size images). Returns 0 at the end of the epoch
// or before any loader_start_epoch. Blocks (no busy wait) until the worker has the batch ready.
int  loader_next(loader *l, float *x, int32_t *labels);
// Stops the worker (even mid-epoch) and frees everything. Accepts a zeroed or half-built loader.
void loader_free(loader *l);

#endif
