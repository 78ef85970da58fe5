// The model set-up every command runs on an initialised runtime, written once: the
// architecture (from --arch, the weights file or the training state), model_init, the plan
// for the batch and image size, the starting weights (seeded initialisation, then a weights
// file with fc re-initialised when its size differs). The command layer fills a setup_spec
// from its flags; nothing here reads options, files or the environment, or prints.
#ifndef CLTRAIN_SETUP_H
#define CLTRAIN_SETUP_H

#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct setup_spec {
    const char *arch;              // --arch; NULL: what `from` holds, else resnet18
    const ckpt *from;              // the file the architecture comes from (NULL: none)
    const char *from_path;         // its name, for messages
    int from_state;                // from is a training state: arch may only repeat it
    int num_classes;               // K
    int batch, image_size;         // the plan: largest batch, S
    int forward_only;              // a plan for evaluation alone (eval, predict: less memory)
    // After the plan, before the weights: checks that need the planned model (may be NULL).
    // 0, or an exit category with the message in err.
    int (*after_plan)(void *ctx, model *m, char *err, size_t errlen);
    void *after_plan_ctx;
    int freeze, bn_eval;           // the model's fields, set before the weights (-1, 0: none)
    float label_smoothing;
    int init_weights;              // model_init_weights(seed) first
    uint64_t seed;                 // for it; the replaced fc takes seed + 1
    const ckpt *weights;           // then load these (NULL: none); base "model." for a
                                   // training state
    const char *weights_path;      // its name, for messages
    int strict;                    // load_state_dict(strict=...)
    // Lines for the user (a non-strict load's warning, a replaced fc), newline-terminated.
    void (*note)(void *ctx, const char *line);
    void *note_ctx;
} setup_spec;

// The chain above into m (zeroed first; model_free it whatever the result) with ops. 0, or an
// exit category (1 data or device, 2 usage: --arch contradicting a training state) with the
// message in err.
int setup_model(model *m, ops_ctx *ops, const setup_spec *s, char *err, size_t errlen);

#endif
