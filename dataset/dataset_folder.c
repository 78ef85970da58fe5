// Image folders (torchvision ImageFolder) as a dataset: layout, val split, header checks.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "common/check.h"
#include "dataset/dataset_internal.h"
#include "dataset/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DF_PATH_MAX 4096
#define DF_TAG_VAL 0x76616c5f73706c74ull

static int df_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static folder_list *df_new_list(void) { return calloc(1, sizeof(folder_list)); }

static void df_set_split(dataset_split *s, folder_list *l)
{
    s->files = l;
    s->n = l->n;
    s->c = 3;
}

// Probes every file's header; bad ones fail the open or, with skip_bad, are warned about and
// dropped. *l may be replaced by its filtered copy.
static int df_check_files(dataset *d, folder_list **l, const dataset_options *o, char *err,
                          size_t errlen)
{
    folder_list *src = *l;
    uint8_t *keep = malloc(src->n ? (size_t)src->n : 1);
    if (!keep) return util_error(err, errlen, "%s: out of memory", src->root);
    char path[DF_PATH_MAX], msg[DF_PATH_MAX + 256];
    int bad = 0;
    for (int i = 0; i < src->n; i++) {
        image_info info;
        folder_path(src, i, path, sizeof(path));
        keep[i] = image_probe(path, &info, msg, sizeof(msg)) == 0;
        if (keep[i]) continue;
        if (!o->skip_bad) {
            free(keep);
            return util_error(err, errlen, "%s", msg);
        }
        bad++;
        if (o->warn) o->warn(o->warn_ctx, msg);
    }
    int rc = 0;
    if (bad) {
        folder_list *kept = df_new_list();
        rc = !kept || folder_list_filter(kept, src, keep);
        if (rc) {
            free(kept);
            rc = util_error(err, errlen, "%s: out of memory", src->root);
        } else {
            folder_list_free(src);
            free(src);
            *l = kept;
            d->skipped += bad;
        }
    }
    free(keep);
    if (rc == 0 && (*l)->n == 0)
        rc = util_error(err, errlen, "%s: no readable image files", (*l)->root);
    return rc;
}

// Stratified hold-out: in each class of m files, the round(F * m) (at least 1 and at most m - 1
// when m >= 2) with the smallest hash(seed, class, position in class) go to val.
static int df_val_split(const folder_list *all, double frac, uint64_t seed, folder_list *train,
                        folder_list *val, char *err, size_t errlen)
{
    uint8_t *is_val = calloc(all->n ? (size_t)all->n : 1, 1), *is_train = malloc(all->n + 1u);
    uint64_t *key = malloc(sizeof(uint64_t) * (all->n + 1u));
    int rc = !is_val || !is_train || !key;
    for (int start = 0, end; rc == 0 && start < all->n; start = end) {
        for (end = start; end < all->n && all->labels[end] == all->labels[start]; end++)
            key[end] = rng_hash(DF_TAG_VAL, seed, (uint64_t)all->labels[start],
                                (uint64_t)(end - start));
        int m = end - start, v = (int)floor(frac * m + 0.5);
        v = m < 2 ? 0 : v < 1 ? 1 : v > m - 1 ? m - 1 : v;
        for (int k = 0; k < v; k++) {  // v smallest keys, ties by position
            int best = -1;
            for (int i = start; i < end; i++)
                if (!is_val[i] && (best < 0 || key[i] < key[best])) best = i;
            is_val[best] = 1;
        }
    }
    for (int i = 0; rc == 0 && i < all->n; i++) is_train[i] = !is_val[i];
    rc = rc || folder_list_filter(train, all, is_train) || folder_list_filter(val, all, is_val);
    free(is_val); free(is_train); free(key);
    return rc ? util_error(err, errlen, "%s: out of memory", all->root) : 0;
}

// Every class of val_root must be one of train's.
static int df_check_val_classes(const char *val_root, char **classes, int n, char *err,
                                size_t errlen)
{
    char **vc;
    int vn;
    if (folder_find_classes(val_root, &vc, &vn, err, errlen)) return 1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < vn; i++) {
        int found = 0;
        for (int k = 0; k < n && !found; k++) found = strcmp(vc[i], classes[k]) == 0;
        if (!found)
            rc = util_error(err, errlen, "%s/%s: class not in the training folder", val_root, vc[i]);
    }
    folder_free_classes(vc, vn);
    return rc;
}

// The two lists: train/ + val/ (or test/), or one folder split by val_split.
static int df_lists(const char *dir, const dataset_options *o, char **classes, int n,
                    const char *train_root, folder_list *tr, folder_list *va, char *err,
                    size_t errlen)
{
    if (o->val_split > 0) {
        folder_list all;
        if (folder_list_init(&all, train_root, classes, n, 1, err, errlen)) return 1;
        int rc = df_val_split(&all, o->val_split, o->seed, tr, va, err, errlen);
        folder_list_free(&all);
        return rc;
    }
    char val_root[DF_PATH_MAX];
    snprintf(val_root, sizeof(val_root), "%s/val", dir);
    if (!df_is_dir(val_root)) snprintf(val_root, sizeof(val_root), "%s/test", dir);
    if (!df_is_dir(val_root))
        return util_error(err, errlen, "%s: no val/ or test/ folder next to train/ (or give "
                        "--val-split F)", dir);
    return folder_list_init(tr, train_root, classes, n, 1, err, errlen) ||
           df_check_val_classes(val_root, classes, n, err, errlen) ||
           folder_list_init(va, val_root, classes, n, 0, err, errlen);
}

int dataset_folder_open(dataset *d, const char *dir, const dataset_options *o, char *err,
                        size_t errlen)
{
    if (o->val_split < 0 || o->val_split >= 1)
        return util_error(err, errlen, "%s: val_split %g must be in (0, 1)", dir, o->val_split);
    char train_root[DF_PATH_MAX];
    snprintf(train_root, sizeof(train_root), "%s/train", dir);
    if (!df_is_dir(train_root)) {
        if (o->val_split <= 0)
            return util_error(err, errlen, "%s/train: not a folder (or give --val-split F to hold "
                            "out part of the class folders of %s)", dir, dir);
        snprintf(train_root, sizeof(train_root), "%s", dir);
    }
    char **classes;
    int n;
    if (folder_find_classes(train_root, &classes, &n, err, errlen)) return 1;
    d->class_names = classes;
    d->num_classes = n;
    folder_list *tr = df_new_list(), *va = df_new_list();
    if (!tr || !va) {
        free(tr); free(va);
        return util_error(err, errlen, "%s: out of memory", dir);
    }
    df_set_split(&d->train, tr);  // owned by d from here, freed by dataset_free
    df_set_split(&d->test, va);
    if (df_lists(dir, o, classes, n, train_root, tr, va, err, errlen) ||
        df_check_files(d, &d->train.files, o, err, errlen) ||
        df_check_files(d, &d->test.files, o, err, errlen))
        return 1;
    df_set_split(&d->train, d->train.files);
    df_set_split(&d->test, d->test.files);
    return 0;
}
