// libFuzzer target: dataset_open on a CIFAR-10 folder. The first input byte picks the role
// of the rest: even: both data_batch_1.bin and test_batch.bin; odd: batches.meta.txt next to
// two valid one-record batch files.
#include "dataset/dataset.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char path[4096], err[1024] = "";
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        static uint8_t rec[3073];
        rec[0] = 3;
        fuzz_write("data_batch_1.bin", rec, sizeof rec, path);
        fuzz_write("test_batch.bin", rec, sizeof rec, path);
        fuzz_write("batches.meta.txt", rest, n, path);
    } else {
        fuzz_remove("batches.meta.txt");
        fuzz_write("data_batch_1.bin", rest, n, path);
        fuzz_write("test_batch.bin", rest, n, path);
    }
    dataset d;
    memset(&d, 0, sizeof d);
    int rc = dataset_open(&d, fuzz_dir(), (data[0] & 2) ? "auto" : "cifar10", err, sizeof err);
    if (rc != 0 && !err[0]) abort();
    if (rc == 0) {  // every label in range, every name a string
        for (int i = 0; i < d.train.n; i++)
            if (d.train.labels[i] >= d.num_classes) abort();
        for (int i = 0; i < d.num_classes; i++)
            if (!d.class_names[i] || !d.class_names[i][0]) abort();
    }
    dataset_free(&d);
    return 0;
}
