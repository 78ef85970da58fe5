// cltrain: fine-tune and evaluate torchvision's ResNets on any OpenCL device.
#include "host/cli/cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    { "devices", cmd_devices, "list OpenCL platforms and devices" },
    { "train", cmd_train, "fine-tune a ResNet on a data set, then evaluate it" },
    { "eval", cmd_eval, "evaluate weights on a data set's test split" },
    { "predict", cmd_predict, "top-K classes of image files with weights saved by train" },
    { "report", cmd_report, "an HTML page of a training log: curves, confusion matrix, worst mistakes" },
    { "bench", cmd_bench, "time training and evaluation steps on synthetic data" },
    { "selftest", cmd_selftest, "build the kernels and run a round trip on the device" },
    { "tune", cmd_tune, "tune the GEMMs (CLBlast parameters) for a device; stored per device" },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: cltrain COMMAND [options]   (cltrain COMMAND --help for its options)\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nenvironment:\n"
               "  CLTRAIN_DEVICE      default for --device (P:D, index, gpu, cpu, name part)\n"
               "  CLTRAIN_KERNEL_DIR  read the .cl kernel sources from this folder\n"
               "  CLTRAIN_NO_CACHE=1  do not use the kernel binary cache\n"
               "  XDG_CACHE_HOME      the cache lives in $XDG_CACHE_HOME/cltrain "
               "(default ~/.cache/cltrain)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cltrain: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
