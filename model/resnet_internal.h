// What model/resnet*.c share and nothing else uses.
#ifndef CLTRAIN_RESNET_INTERNAL_H
#define CLTRAIN_RESNET_INTERNAL_H

#include "model/resnet.h"

// The tables alone (no device): zeroes m first. 0, or nonzero with a message (then
// resnet_table_free still has to run).
int resnet_table_build(resnet *m, const resnet_config *cfg, char *err, size_t errlen);
void resnet_table_free(resnet *m);

#endif
