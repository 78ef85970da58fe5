// libFuzzer target: ckpt_read on a .pth-named file (zip + pickle, legacy format detection,
// safetensors by header). Any input must give 0 or -1 with a message, never a crash.
#include "model/ckpt.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4096], err[1024] = "";
    fuzz_write("in.pth", data, size, path);
    ckpt c;
    ckpt_init(&c);
    int rc = ckpt_read(&c, path, err, sizeof err);
    if (rc != 0 && (c.n != 0 || !err[0])) abort();  // failure: empty ckpt and a message
    for (int i = 0; i < c.n; i++)                   // touch every tensor byte (ASan checks)
        if (c.e[i].kind == CKPT_TENSOR) {
            volatile uint8_t sink = 0;
            const uint8_t *p = c.e[i].data;
            size_t n = (size_t)c.e[i].numel * (c.e[i].dtype == CKPT_F32 ? 4 : 8);
            for (size_t k = 0; k < n; k += 61) sink ^= p[k];
            (void)sink;
        }
    ckpt_free(&c);
    return 0;
}
