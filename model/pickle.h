// A safe reader for the pickle subset torch.save uses for state dicts, and a
// writer of that subset (what torch.load(weights_only=True) accepts).
#ifndef PICKLE_H
#define PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "model/ckpt.h"

// Fetches the raw bytes of storage record `key`: at most `want` bytes into a
// malloc'ed *bytes, *nbytes set to the count read (less than want only when the
// record is shorter). Returns 0, or -1 with one line in err.
typedef int (*pickle_fetch_fn)(void *ctx, const char *key, uint64_t want, uint8_t **bytes,
                               size_t *nbytes, char *err, size_t errlen);

// Runs the pickle in buf (never executing anything: only OrderedDict,
// _rebuild_tensor_v2, _rebuild_parameter and torch.*Storage globals exist) and
// appends its top-level dict, flattened with '.', to c. fname names the file in
// messages. Returns 0, or -1 with one line in err.
int pickle_read_state_dict(ckpt *c, const uint8_t *buf, size_t len, pickle_fetch_fn fetch,
                           void *ctx, const char *fname, char *err, size_t errlen);

// A growable byte buffer; oom sticks once an append fails.
typedef struct pickle_buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} pickle_buf;

void pickle_buf_init(pickle_buf *b);
void pickle_buf_free(pickle_buf *b);
void pickle_buf_put(pickle_buf *b, const void *data, size_t n);

// Protocol-2 pickle of c as a flat OrderedDict, as torch.save writes it; the
// i-th tensor entry gets storage key "i" (decimal). Returns 0 or -1 (out of memory).
int pickle_write_state_dict(const ckpt *c, pickle_buf *out);

#endif
