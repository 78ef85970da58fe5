// Image folders as torchvision's ImageFolder lists them: classes are the sorted sub-folders of
// the root (index = position), samples are walked class by class, directories in sorted path
// order (sorted(os.walk(..., followlinks=True))), files sorted within each, kept when the
// lower-cased name ends with one of IMG_EXTENSIONS. Only paths and labels are held in memory.
#ifndef CLTRAIN_FOLDER_H
#define CLTRAIN_FOLDER_H

#include <stddef.h>
#include <stdint.h>

typedef struct folder_list {
    char *root;          // the split's folder (e.g. DIR/train); sample paths are relative to it
    char *names;         // arena of NUL-terminated relative paths "class/sub/file.jpg"
    size_t names_len, names_cap;
    size_t *offsets;     // (n) start of each sample's path in names
    int32_t *labels;     // (n) class index
    int n, cap;
} folder_list;

// The sorted names of the sub-folders of root (symlinks followed), as find_classes. Returns 0,
// or nonzero with a message (no class folder at all is an error). *names: *n strdup'd strings.
int  folder_find_classes(const char *root, char ***names, int *n, char *err, size_t errlen);
void folder_free_classes(char **names, int n);

// Lists the samples of root/<class> for every class in `classes` that exists under root, with
// the label of its position in `classes`. `want_all`: every class must exist (train); else
// classes may be missing (val). A class folder without any image is an error naming it, and so
// is a symlink that loops back to a folder being walked. Returns 0 or nonzero with a message.
int  folder_list_init(folder_list *l, const char *root, char *const *classes, int nclasses,
                      int want_all, char *err, size_t errlen);

// The path of sample i as ImageFolder.samples[i][0] spells it (root/class/...); returns the
// length, as snprintf.
int  folder_path(const folder_list *l, int i, char *buf, size_t len);

// Keeps the samples whose keep[i] is nonzero, in order (keep: (n)). Returns 0 or 1 (memory).
int  folder_list_filter(folder_list *dst, const folder_list *src, const uint8_t *keep);

// Accepts a zeroed or half-built list.
void folder_list_free(folder_list *l);

#endif
