// The one string hash of cltrain (cache keys, tuning file names): 64-bit FNV-1a. Stable
// across runs and machines, so a key names the same file everywhere; not cryptographic.
#ifndef CLTRAIN_COMMON_HASH_H
#define CLTRAIN_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define UTIL_HASH_INIT 0xcbf29ce484222325ULL   // FNV-1a's offset basis

// h extended by n bytes of data.
uint64_t util_hash_bytes(uint64_t h, const void *data, size_t n);
// h extended by the string s and its NUL (the NUL separates fields: "ab","c" != "a","bc").
uint64_t util_hash_str(uint64_t h, const char *s);

#endif
