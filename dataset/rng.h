// The counter-based generator every random draw in dataset/ comes from: a draw is a hash of
// (tag, seed, a, b), so nothing carries state between draws (resume and any thread count give
// the same numbers).
#ifndef CLTRAIN_RNG_H
#define CLTRAIN_RNG_H

#include <stdint.h>

// splitmix64's finaliser: a bijective 64-bit mix.
static inline uint64_t rng_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t rng_hash(uint64_t tag, uint64_t seed, uint64_t a, uint64_t b)
{
    return rng_mix(rng_mix(rng_mix(tag ^ seed) ^ a) ^ b);
}

// Uniform in [0, n) from the top 32 bits (multiply-shift; bias < n / 2^32).
static inline int rng_below(uint64_t r, int n)
{
    return (int)(((r >> 32) * (uint64_t)n) >> 32);
}

// Uniform double in [0, 1) from the top 53 bits.
static inline double rng_unit(uint64_t r)
{
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

#endif
