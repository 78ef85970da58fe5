// See fuzz_util.h.
#define _POSIX_C_SOURCE 200809L
#include "tests/fuzz/fuzz_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void remove_dir(void) {
    static const char *names[] = { "in.pth", "in.safetensors", "data_batch_1.bin",
                                   "test_batch.bin", "batches.meta.txt",
                                   "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) fuzz_remove(names[i]);
    rmdir(dir);
}

const char *fuzz_dir(void) {
    if (dir[0]) return dir;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/cltrain-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("fuzz: mkdtemp");
        exit(1);
    }
    atexit(remove_dir);
    return dir;
}

void fuzz_write(const char *name, const uint8_t *data, size_t size, char *path) {
    snprintf(path, 4096, "%s/%s", fuzz_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t done = 0;
    while (fd >= 0 && done < size) {
        ssize_t k = write(fd, data + done, size - done);
        if (k <= 0) break;
        done += (size_t)k;
    }
    if (fd < 0 || done != size || close(fd) != 0) {
        perror(path);
        exit(1);
    }
}

void fuzz_remove(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    unlink(path);
}
