// libFuzzer target: cmd_parse_options for train, eval and bench. The first byte picks the
// command; the rest, split at NUL bytes, is argv[1..]. Run with -close_fd_mask=3 (it prints
// usage text).
#define _POSIX_C_SOURCE 200809L  // strdup
#include "host/cli/cmd_options.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    static const char *const cmds[3] = { "train", "eval", "bench" };
    cmd_kind kind = (cmd_kind)(data[0] % 3);
    // Each argument in its own allocation, so ASan catches a read past any of them.
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = strdup(cmds[kind]);
    size_t start = 1;
    for (size_t i = 1; i <= size && argc < MAX_ARGS; i++) {
        if (i < size && data[i]) continue;
        char *a = malloc(i - start + 1);
        if (!a) abort();
        memcpy(a, data + start, i - start);
        a[i - start] = 0;
        argv[argc++] = a;
        start = i + 1;
    }
    argv[argc] = NULL;
    char *copy[MAX_ARGS + 2];
    memcpy(copy, argv, sizeof copy);  // getopt may permute argv
    run_options o;
    run_options_defaults(&o);
    unsigned long long mask = 0;
    int rc = cmd_parse_options(argc, argv, &o, kind, "usage\n", &mask);
    if (rc != 0 && rc != -1 && rc != 2) abort();
    if (rc == 0) {  // what was accepted is in range
        if (o.batch_size < 1 || o.image_size < 1 || o.epochs < 1 || o.print_every < 1) abort();
        if (o.lr < 0 || o.momentum < 0 || o.momentum > 1) abort();
        if (o.optimizer < 0 || o.optimizer > 2 || !(o.beta1 >= 0 && o.beta1 < 1) ||
            !(o.beta2 >= 0 && o.beta2 < 1) || !(o.eps > 0) || o.accumulate < 1 ||
            o.clip_grad_norm < 0)
            abort();
        const char *strs[] = { o.device, o.data, o.dataset, o.weights, o.save, o.log,
                               o.checkpoint, o.resume, o.predictions };
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
            if (strs[i]) (void)strlen(strs[i]);
    }
    for (int i = 0; i < argc; i++) free(copy[i]);
    return 0;
}
