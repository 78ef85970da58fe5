// libFuzzer target: the safetensors reader, through ckpt_read on a .safetensors file.
#include "model/ckpt.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4096], err[1024] = "";
    fuzz_write("in.safetensors", data, size, path);
    ckpt c;
    ckpt_init(&c);
    int rc = safetensors_read(&c, path, "in.safetensors", err, sizeof err);
    if (rc != 0 && !err[0]) abort();  // every failure says why
    ckpt_free(&c);
    ckpt_init(&c);
    rc = ckpt_read(&c, path, err, sizeof err);
    if (rc != 0 && (c.n != 0 || !err[0])) abort();
    ckpt_free(&c);
    return 0;
}
