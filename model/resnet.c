// The torchvision ResNet family (resnet18, 34, 50, 101, 152) written as node lists, and
// recognising one in a checkpoint.
#define _POSIX_C_SOURCE 200809L
#include "model/model_internal.h"

#include <stdio.h>
#include <string.h>

enum { LAYERS = 4 };

// torchvision.models.resnet: _resnet(block, layers) for each depth.
typedef struct family_member {
    const char *arch;
    int bottleneck;                // Bottleneck v1.5 (expansion 4), else BasicBlock
    int blocks[LAYERS];
} family_member;

static const family_member family[] = {
    { "resnet18", 0, { 2, 2, 2, 2 } },
    { "resnet34", 0, { 3, 4, 6, 3 } },
    { "resnet50", 1, { 3, 4, 6, 3 } },
    { "resnet101", 1, { 3, 4, 23, 3 } },
    { "resnet152", 1, { 3, 8, 36, 3 } },
};
enum { FAMILY_SIZE = sizeof family / sizeof family[0] };
static const int widths[LAYERS] = { 64, 128, 256, 512 };

const char resnet_arch_list[] = "resnet18|resnet34|resnet50|resnet101|resnet152";

typedef struct builder {
    model_desc *d;
    int stage, failed;
} builder;

static int add(builder *b, node n) {
    n.stage = b->stage;
    int i = model_desc_add(b->d, &n);
    if (i < 0) b->failed = 1;
    return i < 0 ? 0 : i;
}

static int conv(builder *b, int in, const char *name, int out, int k, int stride, int pad) {
    node n = { .kind = NODE_CONV, .in = { in, -1 }, .out = out, .k = k, .stride = stride,
               .pad = pad };
    snprintf(n.name, sizeof n.name, "%s", name);
    return add(b, n);
}

static int bn(builder *b, int in, const char *name) {
    node n = { .kind = NODE_BN, .in = { in, -1 } };
    snprintf(n.name, sizeof n.name, "%s", name);
    return add(b, n);
}

static int op(builder *b, node_kind kind, int in0, int in1, const char *name) {
    node n = { .kind = kind, .in = { in0, in1 }, .act = ACT_RELU };
    snprintf(n.name, sizeof n.name, "%s", name);
    return add(b, n);
}

// One block of layer s (1-based), j-th in its layer: torchvision's BasicBlock (3x3 stride,
// 3x3) or Bottleneck (1x1, 3x3 stride as v1.5, 1x1 to planes * 4), a downsample (1x1 conv
// stride, bn) when the shape changes; each bn but the last followed by a relu; the shortcut
// added before the final relu.
static int block(builder *b, int in, int cin, int s, int j, int stride, int bottle, int *cout) {
    int planes = widths[s - 1], nconv = bottle ? 3 : 2, x = in;
    *cout = planes * (bottle ? 4 : 1);
    char pre[32], name[64];
    snprintf(pre, sizeof pre, "layer%d.%d", s, j);
    for (int i = 0; i < nconv; i++) {
        int k = bottle && i != 1 ? 1 : 3, st = (bottle ? i == 1 : i == 0) ? stride : 1;
        snprintf(name, sizeof name, "%s.conv%d", pre, i + 1);
        x = conv(b, x, name, i == nconv - 1 ? *cout : planes, k, st, k / 2);
        snprintf(name, sizeof name, "%s.bn%d", pre, i + 1);
        x = bn(b, x, name);
        snprintf(name, sizeof name, "%s.relu", pre);
        if (i < nconv - 1) x = op(b, NODE_ACT, x, -1, name);
    }
    int shortcut = in;
    if (stride != 1 || cin != *cout) {
        snprintf(name, sizeof name, "%s.downsample.0", pre);
        shortcut = conv(b, in, name, *cout, 1, stride, 0);
        snprintf(name, sizeof name, "%s.downsample.1", pre);
        shortcut = bn(b, shortcut, name);
    }
    snprintf(name, sizeof name, "%s.relu", pre);
    return op(b, NODE_ACT, op(b, NODE_ADD, x, shortcut, ""), -1, name);
}

int resnet_desc(model_desc *d, const char *arch, int num_classes, char *err, size_t errlen) {
    const family_member *f = NULL;
    for (int i = 0; i < FAMILY_SIZE && !f; i++)
        if (arch && !strcmp(arch, family[i].arch)) f = &family[i];
    if (!f) return 1;
    if (num_classes < 1 || num_classes > 100000) {
        snprintf(err, errlen, "number of classes %d out of range (1..100000)", num_classes);
        return 2;
    }
    int nodes = 8 + 1;
    for (int s = 0; s < LAYERS; s++) nodes += f->blocks[s] * (f->bottleneck ? 12 : 9);
    if (model_desc_init(d, f->arch, nodes) != 0) {
        snprintf(err, errlen, "out of host memory for the %s description", f->arch);
        return 2;
    }
    builder b = { d, model_desc_stage(d, "stem"), 0 };
    int x = conv(&b, 0, "conv1", 64, 7, 2, 3);
    x = op(&b, NODE_ACT, bn(&b, x, "bn1"), -1, "relu");
    node pool = { .kind = NODE_MAXPOOL, .in = { x, -1 }, .k = 3, .stride = 2, .pad = 1,
                  .name = "maxpool" };
    x = add(&b, pool);
    int c = 64;
    for (int s = 1; s <= LAYERS; s++) {
        char name[24];
        snprintf(name, sizeof name, "layer%d", s);
        b.stage = model_desc_stage(d, name);
        for (int j = 0; j < f->blocks[s - 1]; j++)
            x = block(&b, x, c, s, j, j == 0 && s > 1 ? 2 : 1, f->bottleneck, &c);
    }
    b.stage = model_desc_stage(d, "fc");
    x = op(&b, NODE_FLATTEN, op(&b, NODE_GAP, x, -1, "avgpool"), -1, "");
    node fc = { .kind = NODE_LINEAR, .in = { x, -1 }, .out = num_classes, .name = "fc" };
    add(&b, fc);
    d->num_classes = num_classes;
    if (b.failed) {
        snprintf(err, errlen, "%s: the description overflowed (a bug)", f->arch);
        model_desc_free(d);
        return 2;
    }
    return 0;
}

static int has_key(const ckpt *c, const char *prefix, const char *fmt, int a, int b) {
    char name[64], key[256];
    snprintf(name, sizeof name, fmt, a, b);
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return ckpt_find(c, key) >= 0;
}

int resnet_arch_from_ckpt(model_arch *a, const ckpt *c, const char *prefix, const char *fname,
                          char *err, size_t errlen) {
    if (!has_key(c, prefix, "conv1.weight", 0, 0)) {
        snprintf(err, errlen, "%s: no ResNet weights found (no 'conv1.weight' key)", fname);
        return 1;
    }
    int bottleneck = has_key(c, prefix, "layer1.0.conv3.weight", 0, 0), blocks[LAYERS];
    for (int s = 0; s < LAYERS; s++) {
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
        int same = family[i].bottleneck == bottleneck;
        for (int s = 0; same && s < LAYERS; s++) same = family[i].blocks[s] == blocks[s];
        if (same) {
            snprintf(a->arch, sizeof a->arch, "%s", family[i].arch);
            a->num_classes = classes;
            return 0;
        }
    }
    snprintf(err, errlen, "%s: holds a ResNet with %s blocks [%d, %d, %d, %d], which is none of "
                          "%s", fname, bottleneck ? "Bottleneck" : "BasicBlock", blocks[0],
             blocks[1], blocks[2], blocks[3], resnet_arch_list);
    return 2;
}

// ---- what model.h offers over every family (one today) ----

const char model_arch_list[] = "resnet18|resnet34|resnet50|resnet101|resnet152";

int model_desc_named(model_desc *d, const char *arch, int num_classes, char *err,
                     size_t errlen) {
    memset(d, 0, sizeof *d);
    int rc = resnet_desc(d, arch, num_classes, err, errlen);
    if (rc == 1)
        snprintf(err, errlen, "unknown architecture '%s' (expected %s)", arch ? arch : "",
                 model_arch_list);
    return rc;
}

int model_arch_named(model_arch *a, const char *arch, int num_classes, char *err,
                     size_t errlen) {
    model_desc d;
    int rc = model_desc_named(&d, arch, num_classes, err, errlen);
    model_desc_free(&d);
    if (rc == 0) {
        snprintf(a->arch, sizeof a->arch, "%s", arch);
        a->num_classes = num_classes;
    }
    return rc;
}

// The first parameter of each family, which model_ckpt_prefix looks for.
static const char *const first_keys[] = { "conv1.weight", NULL };

int model_ckpt_prefix(const ckpt *c, const char *base, char *out, size_t len) {
    static const char *cands[] = { "", "module.", "state_dict.", "state_dict.module.",
                                   "model.", "model.module.", NULL };
    for (int i = 0; cands[i]; i++) {
        for (int f = 0; first_keys[f]; f++) {
            char key[192];
            snprintf(key, sizeof key, "%s%s%s", base ? base : "", cands[i], first_keys[f]);
            if (ckpt_find(c, key) >= 0) {
                snprintf(out, len, "%s%s", base ? base : "", cands[i]);
                return 0;
            }
        }
    }
    return -1;
}

int model_arch_from_ckpt(model_arch *a, const ckpt *c, const char *base, const char *fname,
                         char *err, size_t errlen) {
    char prefix[192];
    if (model_ckpt_prefix(c, base, prefix, sizeof prefix) != 0) {
        snprintf(err, errlen, "%s: no ResNet weights found (no 'conv1.weight' key)", fname);
        return 1;
    }
    return resnet_arch_from_ckpt(a, c, prefix, fname, err, errlen);
}

int model_ckpt_classes(const ckpt *c, const char *base) {
    char prefix[192], key[256];
    if (model_ckpt_prefix(c, base, prefix, sizeof prefix) != 0) return 0;
    snprintf(key, sizeof key, "%sfc.weight", prefix);  // the ResNets' classifier
    int j = ckpt_find(c, key);
    return j >= 0 && c->e[j].kind == CKPT_TENSOR && c->e[j].ndim == 2 ? (int)c->e[j].shape[0] : 0;
}
