// What `predict` needs from the training run besides the weights: the class names and the
// evaluation transform (image size, Resize(N)+CenterCrop, normalisation). Written by
// `train --save` where PyTorch does not look, so the file still loads with
// torch.load(weights_only=True) + load_state_dict(strict=True):
//   FILE.safetensors: the header's __metadata__ entry "cltrain.meta" (PyTorch's
//                     safetensors.torch.load_file ignores metadata);
//   FILE.pth:         a sidecar FILE.pth.json beside it, written atomically after the weights.
// Both hold the same JSON object, versioned:
//   {"format":"cltrain-meta","version":1,"arch":"resnet18","num_classes":C,
//    "classes":["name",...],"image_size":S,"resize":N,"normalize":"none"|"imagenet"}
#ifndef CLTRAIN_MODEL_META_H
#define CLTRAIN_MODEL_META_H

#include "model/ckpt.h"

#include <stddef.h>

#define MODEL_META_KEY "cltrain.meta"
#define MODEL_META_VERSION 1

typedef struct model_meta {
    char arch[32];
    int num_classes;
    char **classes;                // (num_classes) owned strings; NULL when not recorded
    int image_size, resize, normalize;  // normalize: 0 none, 1 imagenet
} model_meta;

void model_meta_free(model_meta *m);   // accepts a zeroed struct

// The JSON text of m (malloc'd), or NULL when out of memory.
char *model_meta_to_json(const model_meta *m);
// Parses the JSON text written by model_meta_to_json into a zeroed m. 0, or -1 with a message.
int model_meta_from_json(model_meta *m, const char *json, char *err, size_t errlen);

// The sidecar's name for weights file `path` ("PATH.json") into buf.
void model_meta_sidecar(const char *path, char *buf, size_t len);

// Records m for the weights about to be written to `path`: for .safetensors adds the string
// entry MODEL_META_KEY to c (before ckpt_write); for other names writes the sidecar
// atomically (call after ckpt_write succeeded). `after_write` says which call this is.
int model_meta_save(const model_meta *m, const char *path, ckpt *c, int after_write,
                    char *err, size_t errlen);

// Finds the metadata of weights file `path` (c: its entries, already read): the safetensors
// entry, else the sidecar. 1 found (m filled), 0 none (m zeroed), -1 a broken record (message).
int model_meta_load(model_meta *m, const char *path, const ckpt *c, char *err, size_t errlen);

#endif
