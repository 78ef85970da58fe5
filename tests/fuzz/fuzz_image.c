// libFuzzer target: the image reading path (format sniffing, header probe, JPEG/PNG/BMP/PPM
// decode) from memory and through a file, as a folder's files are read. Checks that a failure
// always says why, naming the input, and that a success agrees with the probe.
#include "dataset/image.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdlib.h>
#include <string.h>

static void check(int probe_rc, const image_info *info, int rc, const image *img,
                  const char *err, const char *name)
{
    if (rc != 0) {
        if (!err[0] || !strstr(err, name) || strchr(err, '\n')) abort();
        return;
    }
    if (probe_rc != 0 || img->w != info->w || img->h != info->h) abort();
    if ((img->c != 1 && img->c != 3) || !img->pixels) abort();
    if ((long long)img->w * img->h > IMAGE_MAX_PIXELS) abort();
    volatile uint8_t sink = img->pixels[(size_t)img->c * img->h * img->w - 1];  // in bounds
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static image img;  // reused like a loader worker's buffer
    char err[1024] = "", path[4096];
    image_info info;
    int prc = image_probe_mem(data, size, "mem", &info, err, sizeof err);
    int rc = image_decode_mem(data, size, "mem", &img, err, sizeof err);
    check(prc, &info, rc, &img, err, "mem");
    fuzz_write("input.img", data, size, path);
    err[0] = '\0';
    prc = image_probe(path, &info, err, sizeof err);
    rc = image_decode(path, &img, err, sizeof err);
    check(prc, &info, rc, &img, err, path);
    return 0;
}
