// Shared by the libFuzzer targets: the readers under test take paths, so each input is
// written to a file in a per-process scratch folder (tmpfs when /dev/shm exists).
#ifndef CLTRAIN_FUZZ_UTIL_H
#define CLTRAIN_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

// A fresh per-process folder, created on first use; exits the fuzzer when it cannot be made.
const char *fuzz_dir(void);
// Writes data to <fuzz_dir>/<name> (replacing it); fills path (4096 bytes). Exits on failure.
void fuzz_write(const char *name, const uint8_t *data, size_t size, char *path);
// Removes <fuzz_dir>/<name> if present.
void fuzz_remove(const char *name);

#endif
