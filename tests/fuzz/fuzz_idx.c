// libFuzzer target: dataset_open on an IDX (MNIST) folder. The first input byte picks which of
// the four files gets the rest of the input (raw or gzip: zlib reads both); the other three
// are valid files for 2 images of 3x3 with labels 0 and 1.
#include "dataset/dataset.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[4] = { "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                      "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const uint8_t images[16 + 18] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3,
                                             1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                             15, 16, 17, 18 };
    static const uint8_t labels[8 + 2] = { 0, 0, 8, 1, 0, 0, 0, 2, 0, 1 };
    char path[4096], err[1024] = "";
    int which = data[0] & 3;
    for (int i = 0; i < 4; i++) {
        if (i == which) fuzz_write(names[i], data + 1, size - 1, path);
        else if (i & 1) fuzz_write(names[i], labels, sizeof labels, path);
        else fuzz_write(names[i], images, sizeof images, path);
    }
    dataset d;
    memset(&d, 0, sizeof d);
    int rc = dataset_open(&d, fuzz_dir(), (data[0] & 4) ? "auto" : "idx", err, sizeof err);
    if (rc != 0 && !err[0]) abort();
    if (rc == 0) {
        if (d.num_classes < 2 || d.train.n < 1 || d.test.n < 1) abort();
        for (int i = 0; i < d.test.n; i++)
            if (d.test.labels[i] >= d.num_classes) abort();
        volatile uint8_t sink = 0;  // every pixel readable
        size_t np = (size_t)d.train.n * d.train.c * d.train.h * d.train.w;
        for (size_t k = 0; k < np; k += 7) sink ^= d.train.pixels[k];
        (void)sink;
    }
    dataset_free(&d);
    return 0;
}
