// Batches of float images in the model's channel-major layout (3, B, S, S), decoded and
// transformed by a pool of worker threads a few batches ahead of the caller.
//
// Deterministic without hidden RNG state: the epoch order is a Fisher-Yates shuffle driven by a
// counter-based hash of (seed, epoch), and an image's augmentation by a hash of (seed, epoch,
// image index). Workers fill the images of a batch in any order, each into its own slot, so the
// batch at step t is the same for any number of workers, and loader_start_epoch(l, e, k) yields
// exactly batches k, k+1, ... of epoch e of an uninterrupted run (resume). One consumer thread
// calls _start_epoch, _next and _free. With skip_bad, an image that fails to decode is left out
// of its batch, which is that much shorter, as PyTorch users get from a collate_fn that drops
// the samples that failed to load; the others keep their own draws, and which files fail does
// not depend on who decodes them, so the batch is still the same for any number of workers.
#ifndef CLTRAIN_LOADER_H
#define CLTRAIN_LOADER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset/dataset.h"
#include "dataset/transform.h"

#define LOADER_MAX_WORKERS 64

typedef enum loader_augment {
    LOADER_AUGMENT_NONE = 0,
    LOADER_AUGMENT_FLIP_CROP = 1,  // RandomCrop(padding=4) + RandomHorizontalFlip, then resize
    LOADER_AUGMENT_RRC_FLIP = 2,   // RandomResizedCrop(S) + RandomHorizontalFlip
} loader_augment;

typedef struct loader_config {
    int batch_size, image_size;  // B (max), S: every image ends (S, S)
    int normalize;               // 0 none, 1 ImageNet mean/std
    int augment;                 // loader_augment
    int shuffle;                 // 1 = new permutation each epoch; 0 = file order
    uint64_t seed;
    int limit;                   // use only the first `limit` images (0 = all)
    int resize;                  // 0: Resize((S, S)); N: Resize(N) + CenterCrop(S) (no augment)
    int workers;                 // decode threads; 0 = the number of cores
    int prefetch;                // batches prepared ahead; 0 = 2
    int pad_to;                  // 0/1: none; W: the epoch's order is padded to a multiple of
                                 // W by repeating its first positions (DistributedSampler)
    int skip_bad;                // 1: an image that fails to decode is left out of its batch
    uint8_t *failed;             // (split n) or NULL: 1 for a file found bad with skip_bad, set
                                 // by loader_next_ex; shared by a split's loaders (each file is
                                 // reported once) and never decoded again once set
    void (*warn)(void *ctx, const char *msg);  // skip_bad: called by loader_next_ex once for
    void *warn_ctx;                            // each file newly found bad; may be NULL
} loader_config;

// An image of a slot's batch that failed to decode, and why.
typedef struct loader_fail {
    int pos;
    char msg[512];
} loader_fail;

// One prefetch slot: a batch being filled or waiting for loader_next.
typedef struct loader_slot {
    float *x;                    // (3, B, S, S)
    int32_t *y;                  // (B)
    uint8_t *bad;                // (B) 1: the image at this position failed (left out)
    int batch, count, done;      // which batch, its images, images finished
    loader_fail *fails;          // (nfails) the failures decoded in this batch, with messages
    int nfails, fails_cap;       // (a file known bad is skipped without one)
} loader_slot;

typedef struct loader_worker {
    struct loader *l;
    pthread_t thread;
    int started;
    image img;                   // decoded source (c, h, w)
    uint8_t *crop;               // flip-crop augmented source (c, h, w)
    size_t crop_cap;
    uint8_t *out;                // (3, S, S) transformed
    transform_scratch scratch;
} loader_worker;

typedef struct loader {
    const dataset_split *split;  // borrowed; must outlive the loader
    loader_config cfg;
    int n;                       // distinct images per epoch (limit applied)
    int total;                   // positions per epoch: n padded to a multiple of pad_to
    int batches;                 // per epoch: ceil(total / batch_size)
    size_t batch_floats;         // 3 * batch_size * S * S
    int nworkers, nslots;
    int *perm;                   // (total) image index at each epoch position
    uint8_t *own_failed;         // (n) cfg.failed when the caller gave none (skip_bad)
    loader_slot *slots;          // (nslots) batch b lives in slots[b % nslots]
    loader_worker *workers;      // (nworkers)

    // Guarded by mu.
    int started, epoch;
    int next_batch, next_pos;    // the next image to hand to a worker
    int consumed;                // next batch loader_next hands out
    int busy;                    // workers inside an image
    int quit;
    char error[512];             // the message of the last loader_next that returned -1
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int have_mu, have_cv;
} loader;

// Validates the config against the split, allocates everything and starts the workers (idle
// until loader_start_epoch). Returns 0, or nonzero with a one-line message in err.
int  loader_init(loader *l, const dataset_split *split, const loader_config *cfg, char *err,
                 size_t errlen);
// ceil(total / batch_size): the last partial batch is kept, as torch DataLoader(drop_last=False).
int  loader_batches_per_epoch(const loader *l);
// Starts epoch `epoch` (from 0) at batch `first_batch` (resume); drops any batch in flight.
// Safe at any time, including mid-epoch.
void loader_start_epoch(loader *l, int epoch, int first_batch);
// Copies the next batch into x (3, B, S, S), labels (B) and index (B; may be NULL: each image's
// index in the split), packed with B = *n (B <= batch_size; the buffers must hold batch_size
// images). Returns 1 for a batch, 0 at the end of the epoch or before any loader_start_epoch,
// -1 when an image of the batch failed to decode (l->error names the file; the first failing
// image of the batch). With skip_bad no image fails the batch: each one that fails is left out
// (cfg.warn names each file the first time), and *n may be 0 when all of them did; the batch
// still counts as one of loader_batches_per_epoch. Blocks (no busy wait) until ready.
int  loader_next_ex(loader *l, float *x, int32_t *labels, int *index, int *n);
// loader_next_ex for callers that need no positions: the count (>= 1), 0 at the end of the
// epoch, -1 on a failed image. A batch that skip_bad emptied is passed over.
int  loader_next(loader *l, float *x, int32_t *labels);
// Stops the workers (even mid-epoch) and frees everything. Accepts a zeroed or half-built loader.
void loader_free(loader *l);

#endif
