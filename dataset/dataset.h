// Image classification data sets: CIFAR-10 binary and IDX (MNIST / Fashion-MNIST, raw or
// gzipped) held in memory as uint8, and image folders (torchvision's ImageFolder layout) whose
// files are decoded on demand. Either way a split is a *source*: n images, dataset_label(i),
// dataset_read(i) -> a uint8 image of any size, so the loader sees no difference.
#ifndef CLTRAIN_DATASET_H
#define CLTRAIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "dataset/folder.h"
#include "dataset/image.h"

typedef struct dataset_split {
    int n;              // images
    int c, h, w;        // arrays: 3 for CIFAR, 1 for IDX (gray; replicated to 3 channels by the
                        // loader); folders: 3, 0, 0 (every file has its own size)
    uint8_t *pixels;    // arrays: (n, c, h, w) planar, row-major; NULL for folders
    uint8_t *labels;    // arrays: (n); NULL for folders (use dataset_label)
    folder_list *files; // folders: paths and labels, decoded on demand; NULL for arrays
} dataset_split;

// The label of image i (0 <= i < s->n).
int dataset_label(const dataset_split *s, int i);
// Image i as uint8 planes (c = 1 or 3, any size) into img (its buffer is reused). Thread-safe
// for distinct img. Returns 0, or nonzero with a one-line message naming the file.
int dataset_read(const dataset_split *s, int i, image *img, char *err, size_t errlen);
// The file of image i (ImageFolder.samples[i][0]) into buf; "" for in-memory arrays.
void dataset_path(const dataset_split *s, int i, char *buf, size_t len);

typedef struct dataset_options {
    const char *format;   // NULL or "auto", "cifar10", "idx", "folder"
    double val_split;     // folder: 0 = DIR/val or DIR/test; 0 < F < 1 = hold out F per class
    uint64_t seed;        // which files val_split holds out
    int skip_bad;         // folder: leave out files whose header is bad (warn names each)
    void (*warn)(void *ctx, const char *msg);  // one line per skipped file; may be NULL
    void *warn_ctx;
} dataset_options;

typedef struct dataset {
    dataset_split train, test;
    int num_classes;      // 10 for cifar10; idx: max label + 1 over both splits (at least 2)
    char **class_names;   // (num_classes) NUL-terminated names
    char format[16];      // "cifar10", "idx" or "folder"
    int skipped;          // folder with skip_bad: files left out
} dataset;

// Reads both splits of the data set in `dir`.
// format: NULL or "auto" (cifar10 if dir has data_batch_1.bin or cifar-10-batches-bin/, else idx
// if it has train-images-idx3-ubyte[.gz]), "cifar10" or "idx".
// cifar10: data_batch_1.bin, then _2.._5 up to the first one missing (train), test_batch.bin (test),
//   optional batches.meta.txt (class names, one a line; the standard names otherwise); the files
//   may also sit in dir/cifar-10-batches-bin/.
// idx: {train,t10k}-{images-idx3,labels-idx1}-ubyte, each raw or .gz (raw preferred when both).
//   Class names are Fashion-MNIST's when the path contains "fashion" and there are 10 classes,
//   else "0", "1", ...
// Returns 0, or nonzero with a one-line message naming the file in err (errlen bytes); on error
// *d is left freed (dataset_free on it is still safe).
int dataset_open(dataset *d, const char *dir, const char *format, char *err, size_t errlen);

// dataset_open with options. format "folder" (auto: when DIR/train/ is a folder, or DIR holds
// class folders and val_split is set): DIR/train/<class>/... and DIR/val/ (else DIR/test/) with
// the classes of train/ (a val/ class missing from train/ is an error), or with val_split the
// class folders of DIR/train/ (else DIR) split per class, deterministically from the seed. Every
// file's header (format, size) is checked here: a bad one is an error naming it, or with
// skip_bad a warning and left out (d->skipped counts them).
int dataset_open_ex(dataset *d, const char *dir, const dataset_options *opt, char *err,
                    size_t errlen);

// Accepts a zeroed or half-built dataset.
void dataset_free(dataset *d);

#endif
