// The model set-up of every command: see setup.h.
#define _POSIX_C_SOURCE 200809L
#include "host/train/setup.h"
#include "host/train/session.h"

#include <stdio.h>
#include <string.h>

// The config a checkpoint holds (base "model." for a training state); a file with no ResNet at
// all gets resnet18, so that loading it names the problem after the device checks.
static int arch_of(model_arch *cfg, const ckpt *c, const char *fname, int num_classes,
                   char *err, size_t errlen) {
    const char *base = ckpt_find(c, "model.conv1.weight") >= 0 ? "model." : NULL;
    int rc = model_arch_from_ckpt(cfg, c, base, fname, err, errlen);
    if (rc == 1) return model_arch_named(cfg, "resnet18", num_classes, err, errlen);
    cfg->num_classes = num_classes;
    return rc ? 1 : 0;
}

// The architecture of the run with K outputs: the training state's (where --arch may only
// repeat it: 2, a usage error naming both), else the weights file's (unless --arch names
// one), else --arch, else resnet18. 0, or nonzero with a message.
static int setup_arch(model_arch *cfg, const setup_spec *s, char *err, size_t errlen) {
    if (s->from_state && s->from) {  // the state holds its model; --arch may only repeat it
        if (arch_of(cfg, s->from, s->from_path, s->num_classes, err, errlen) != 0) return 1;
        if (s->arch && strcmp(s->arch, cfg->arch)) {
            snprintf(err, errlen, "--arch %s contradicts the saved training state's %s in %s",
                     s->arch, cfg->arch, s->from_path);
            return 2;
        }
        return 0;
    }
    if (s->arch || !s->from)
        return model_arch_named(cfg, s->arch ? s->arch : "resnet18", s->num_classes, err,
                                   errlen);
    return arch_of(cfg, s->from, s->from_path, s->num_classes, err, errlen);
}

static void setup_note(const setup_spec *s, const char *line) {
    if (s->note) s->note(s->note_ctx, line);
}

// Loads the weights file into m (fc replaced, with a note, when its size differs). 0 or status.
static int setup_load_weights(model *m, const setup_spec *s, char *err, size_t errlen) {
    // A cltrain training state keeps the model under "model.".
    const char *base = ckpt_find(s->weights, "model.conv1.weight") >= 0 ? "model." : NULL;
    int replaced = 0;
    int rc = model_from_ckpt(m, s->weights, base, s->strict, s->seed + 1, &replaced,
                              s->weights_path, err, errlen);
    char line[4096];
    if (rc == 0 && err[0]) {
        snprintf(line, sizeof line, "cltrain: warning: %.4000s\n", err);
        setup_note(s, line);
    }
    if (rc == 0 && replaced) {
        snprintf(line, sizeof line, "cltrain: %.3000s: fc has another number of classes; "
                 "replaced by a freshly initialised fc with %d outputs\n", s->weights_path,
                 m->num_classes);
        setup_note(s, line);
    }
    return rc;
}

int setup_model(model *m, ops_ctx *ops, const setup_spec *s, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    model_arch cfg;
    int rc = setup_arch(&cfg, s, err, errlen);
    if (rc == 0) rc = model_init_arch(m, ops, &cfg, err, errlen);
    if (rc == 0) rc = session_plan(m, s->batch, s->image_size, s->forward_only, err, errlen);
    if (rc == 0 && s->after_plan) rc = s->after_plan(s->after_plan_ctx, m, err, errlen);
    if (rc) return rc;
    m->freeze = s->freeze;
    m->bn_eval = s->bn_eval;
    m->label_smoothing = s->label_smoothing;
    if (s->init_weights) model_init_weights(m, s->seed);
    return s->weights ? setup_load_weights(m, s, err, errlen) : 0;
}
