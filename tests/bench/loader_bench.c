// The image-folder loader alone: decode + transform + ToTensor + Normalize throughput over the
// train split of DIR, for tools/bench_loader.py (which runs torchvision's DataLoader beside it).
//   loader_bench DIR WORKERS AUGMENT(none|rrc-flip) RESIZE IMAGE_SIZE BATCH EPOCHS
// Prints "images N seconds T images_per_s R" (the first epoch included: no warm-up to hide).
#define _POSIX_C_SOURCE 200809L
#include "dataset/dataset.h"
#include "dataset/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: loader_bench DIR WORKERS none|rrc-flip RESIZE SIZE BATCH EPOCHS\n");
        return 2;
    }
    char err[1024];
    dataset d;
    if (dataset_open(&d, argv[1], "folder", err, sizeof(err))) {
        fprintf(stderr, "loader_bench: %s\n", err);
        return 1;
    }
    int rrc = strcmp(argv[3], "rrc-flip") == 0, epochs = atoi(argv[7]);
    loader_config c = {.batch_size = atoi(argv[6]), .image_size = atoi(argv[5]),
                       .normalize = 1, .shuffle = 1, .seed = 1, .workers = atoi(argv[2]),
                       .augment = rrc ? LOADER_AUGMENT_RRC_FLIP : LOADER_AUGMENT_NONE,
                       .resize = rrc ? 0 : atoi(argv[4])};
    loader l;
    if (loader_init(&l, &d.train, &c, err, sizeof(err))) {
        fprintf(stderr, "loader_bench: %s\n", err);
        dataset_free(&d);
        return 1;
    }
    float *x = malloc(sizeof(float) * l.batch_floats);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)c.batch_size);
    long images = 0;
    int n = 0;
    double t0 = now();
    for (int e = 0; e < epochs && n >= 0; e++) {
        loader_start_epoch(&l, e, 0);
        while ((n = loader_next(&l, x, y)) > 0) images += n;
    }
    double t = now() - t0;
    if (n < 0) fprintf(stderr, "loader_bench: %s\n", l.error);
    else printf("images %ld seconds %.3f images_per_s %.1f\n", images, t, images / t);
    free(x);
    free(y);
    loader_free(&l);
    dataset_free(&d);
    return n < 0;
}
