// Between dataset/dataset.c and dataset/dataset_folder.c.
#ifndef CLTRAIN_DATASET_INTERNAL_H
#define CLTRAIN_DATASET_INTERNAL_H

#include "dataset/dataset.h"

// The image-folder reader behind dataset_open_ex (format "folder"); fills d's splits and names.
int dataset_folder_open(dataset *d, const char *dir, const dataset_options *opt, char *err,
                        size_t errlen);

#endif
