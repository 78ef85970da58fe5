// libFuzzer target: the safe pickle interpreter on data.pkl bytes directly (a zip's CRC would
// stop most mutations before they reach it). Storage records are served from memory: a key
// starting with 'm' is missing, one starting with 's' is short (half the bytes), any other
// has the bytes asked for (capped, as a real record is by its size).
#include "model/pickle.h"

#include <stdlib.h>
#include <string.h>

static int fetch(void *ctx, const char *key, uint64_t want, uint8_t **bytes, size_t *nbytes,
                 char *err, size_t errlen) {
    (void)ctx;
    if (key[0] == 'm') return ckpt_errf(err, errlen, "record 'data/%s' is missing", key);
    uint64_t n = want > (1u << 16) ? (1u << 16) : want;
    if (key[0] == 's') n /= 2;
    *bytes = malloc((size_t)n + 1);
    if (!*bytes) return ckpt_errf(err, errlen, "out of memory");
    for (uint64_t i = 0; i < n; i++) (*bytes)[i] = (uint8_t)(i * 37 + 11);
    *nbytes = (size_t)n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // A copy of exactly `size` bytes, so ASan sees any read past the end.
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    char err[1024] = "";
    ckpt c;
    ckpt_init(&c);
    int rc = pickle_read_state_dict(&c, buf, size, fetch, NULL, "fuzz.pkl", err, sizeof err);
    if (rc != 0 && !err[0]) abort();
    ckpt_free(&c);
    free(buf);
    return 0;
}
