// 64-bit FNV-1a: see hash.h.
#include "common/hash.h"

#include <string.h>

uint64_t util_hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t util_hash_str(uint64_t h, const char *s) { return util_hash_bytes(h, s, strlen(s) + 1); }
