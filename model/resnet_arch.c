// The family's configs (torchvision's resnet18..resnet152) and recognising one in a checkpoint.
#define _POSIX_C_SOURCE 200809L
#include "model/resnet.h"

#include <stdio.h>
#include <string.h>

// torchvision.models.resnet: _resnet(block, layers) for each depth.
static const resnet_config family[] = {
    { "resnet18", RESNET_BASIC, { 2, 2, 2, 2 }, { 64, 128, 256, 512 }, 64, 1000 },
    { "resnet34", RESNET_BASIC, { 3, 4, 6, 3 }, { 64, 128, 256, 512 }, 64, 1000 },
    { "resnet50", RESNET_BOTTLENECK, { 3, 4, 6, 3 }, { 64, 128, 256, 512 }, 64, 1000 },
    { "resnet101", RESNET_BOTTLENECK, { 3, 4, 23, 3 }, { 64, 128, 256, 512 }, 64, 1000 },
    { "resnet152", RESNET_BOTTLENECK, { 3, 8, 36, 3 }, { 64, 128, 256, 512 }, 64, 1000 },
};
enum { FAMILY_SIZE = sizeof family / sizeof family[0] };

const char resnet_arch_list[] = "resnet18|resnet34|resnet50|resnet101|resnet152";

int resnet_expansion(const resnet_config *cfg) { return cfg->block == RESNET_BOTTLENECK ? 4 : 1; }

int resnet_features(const resnet_config *cfg) {
    return cfg->widths[RESNET_LAYERS - 1] * resnet_expansion(cfg);
}

int resnet_config_named(resnet_config *cfg, const char *arch, int num_classes, char *err,
                        size_t errlen) {
    for (int i = 0; i < FAMILY_SIZE; i++) {
        if (arch && !strcmp(arch, family[i].arch)) {
            *cfg = family[i];
            cfg->num_classes = num_classes;
            return 0;
        }
    }
    snprintf(err, errlen, "unknown architecture '%s' (expected %s)", arch ? arch : "",
             resnet_arch_list);
    return 1;
}

int resnet_ckpt_prefix(const ckpt *c, const char *base, char *out, size_t len) {
    static const char *cands[] = { "", "module.", "state_dict.", "state_dict.module.",
                                   "model.", "model.module.", NULL };
    for (int i = 0; cands[i]; i++) {
        char key[192];
        snprintf(key, sizeof key, "%s%sconv1.weight", base ? base : "", cands[i]);
        if (ckpt_find(c, key) >= 0) {
            snprintf(out, len, "%s%s", base ? base : "", cands[i]);
            return 0;
        }
    }
    return -1;
}

static int has_key(const ckpt *c, const char *prefix, const char *fmt, int a, int b) {
    char name[64], key[256];
    snprintf(name, sizeof name, fmt, a, b);
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return ckpt_find(c, key) >= 0;
}

int resnet_config_from_ckpt(resnet_config *cfg, const ckpt *c, const char *base,
                            const char *fname, char *err, size_t errlen) {
    char prefix[192];
    if (resnet_ckpt_prefix(c, base, prefix, sizeof prefix) != 0) {
        snprintf(err, errlen, "%s: no ResNet weights found (no 'conv1.weight' key)", fname);
        return 1;
    }
    int bottleneck = has_key(c, prefix, "layer1.0.conv3.weight", 0, 0), blocks[RESNET_LAYERS];
    for (int s = 0; s < RESNET_LAYERS; s++) {
        blocks[s] = 0;
        while (blocks[s] < 1000 && has_key(c, prefix, "layer%d.%d.conv1.weight", s + 1, blocks[s]))
            blocks[s]++;
    }
    char key[256];
    snprintf(key, sizeof key, "%sfc.weight", prefix);
    int fc = ckpt_find(c, key);
    int classes = fc >= 0 && c->e[fc].kind == CKPT_TENSOR && c->e[fc].ndim == 2
                      ? (int)c->e[fc].shape[0] : 1000;
    for (int i = 0; i < FAMILY_SIZE; i++) {
        int same = (family[i].block == RESNET_BOTTLENECK) == bottleneck;
        for (int s = 0; same && s < RESNET_LAYERS; s++) same = family[i].blocks[s] == blocks[s];
        if (same) {
            *cfg = family[i];
            cfg->num_classes = classes;
            return 0;
        }
    }
    snprintf(err, errlen, "%s: holds a ResNet with %s blocks [%d, %d, %d, %d], which is none of "
                          "%s", fname, bottleneck ? "Bottleneck" : "BasicBlock", blocks[0],
             blocks[1], blocks[2], blocks[3], resnet_arch_list);
    return 2;
}
