// Image classification data sets held in memory as uint8: CIFAR-10 binary and IDX (MNIST /
// Fashion-MNIST, raw or gzipped). Files are checked against their real length before use.
#ifndef CLTRAIN_DATASET_H
#define CLTRAIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct dataset_split {
    int n;              // images
    int c, h, w;        // 3 for CIFAR, 1 for IDX (gray; replicated to 3 channels by the loader)
    uint8_t *pixels;    // (n, c, h, w) planar, row-major
    uint8_t *labels;    // (n)
} dataset_split;

typedef struct dataset {
    dataset_split train, test;
    int num_classes;      // 10 for cifar10; idx: max label + 1 over both splits (at least 2)
    char **class_names;   // (num_classes) NUL-terminated names
    char format[16];      // "cifar10" or "idx"
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

// Accepts a zeroed or half-built dataset.
void dataset_free(dataset *d);

#endif
