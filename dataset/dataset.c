#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "common/check.h"
#include "dataset/dataset.h"
#include "dataset/dataset_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define DS_PATH_MAX 4096
#define CIFAR_SIDE 32
#define CIFAR_RECORD (1 + 3 * CIFAR_SIDE * CIFAR_SIDE)  // label byte, then R, G, B planes
#define CIFAR_TRAIN_FILES 5
#define IDX_MAX_SIDE 4096
#define IDX_MAGIC_IMAGES 0x00000803u  // ubyte data, 3 dims
#define IDX_MAGIC_LABELS 0x00000801u  // ubyte data, 1 dim
#define META_MAX_BYTES (64 * 1024)

static const char *const cifar_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                            "dog", "frog", "horse", "ship", "truck"};
static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                              "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                              "Ankle boot"};

static int ds_join(char *out, const char *dir, const char *name, char *err, size_t errlen)
{
    int n = snprintf(out, DS_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= DS_PATH_MAX) return util_error(err, errlen, "%s: path too long", dir);
    return 0;
}

static int ds_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ds_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ds_file_size(const char *path, size_t *size, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) return util_error(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return util_error(err, errlen, "%s: not a regular file", path);
    if ((unsigned long long)st.st_size > SIZE_MAX / 2)
        return util_error(err, errlen, "%s: file too large", path);
    *size = (size_t)st.st_size;
    return 0;
}

static int ds_split_alloc(dataset_split *s, int n, int c, int h, int w)
{
    s->n = n; s->c = c; s->h = h; s->w = w;
    s->pixels = malloc((size_t)n * c * h * w);
    s->labels = malloc((size_t)n);
    return !s->pixels || !s->labels;
}

static void ds_split_free(dataset_split *s)
{
    free(s->pixels);
    free(s->labels);
    folder_list_free(s->files);
    free(s->files);
    memset(s, 0, sizeof(*s));
}

int dataset_label(const dataset_split *s, int i)
{
    return s->files ? s->files->labels[i] : s->labels[i];
}

void dataset_path(const dataset_split *s, int i, char *buf, size_t len)
{
    if (s->files) folder_path(s->files, i, buf, len);
    else if (len) buf[0] = '\0';
}

int dataset_read(const dataset_split *s, int i, image *img, char *err, size_t errlen)
{
    if (s->files) {
        char path[DS_PATH_MAX];
        if (folder_path(s->files, i, path, sizeof(path)) >= (int)sizeof(path))
            return util_error(err, errlen, "%s: path too long", s->files->root);
        return image_decode(path, img, err, errlen);
    }
    size_t bytes = (size_t)s->c * s->h * s->w;
    if (bytes > img->cap) {
        uint8_t *p = realloc(img->pixels, bytes);
        if (!p) return util_error(err, errlen, "out of memory for a %dx%d image", s->w, s->h);
        img->pixels = p;
        img->cap = bytes;
    }
    img->c = s->c; img->h = s->h; img->w = s->w;
    memcpy(img->pixels, s->pixels + (size_t)i * bytes, bytes);
    return 0;
}

void dataset_free(dataset *d)
{
    if (!d) return;
    ds_split_free(&d->train);
    ds_split_free(&d->test);
    if (d->class_names)
        for (int i = 0; i < d->num_classes; i++) free(d->class_names[i]);
    free(d->class_names);
    memset(d, 0, sizeof(*d));
}

static int ds_set_names(dataset *d, int n, const char *const *names)
{
    d->class_names = calloc((size_t)n, sizeof(char *));
    if (!d->class_names) return 1;
    d->num_classes = n;
    for (int i = 0; i < n; i++) {
        char digits[16];
        snprintf(digits, sizeof(digits), "%d", i);
        d->class_names[i] = strdup(names ? names[i] : digits);
        if (!d->class_names[i]) return 1;
    }
    return 0;
}

// ---- CIFAR-10 binary ----

// Reads `nrec` 3073-byte records of `path` into s starting at image `first`.
static int cifar_read_file(dataset_split *s, int first, int nrec, const char *path,
                           char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return util_error(err, errlen, "%s: %s", path, strerror(errno));
    uint8_t rec[CIFAR_RECORD];
    for (int r = 0; r < nrec; r++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            fclose(f);
            return util_error(err, errlen, "%s: short read at record %d", path, r);
        }
        if (rec[0] > 9) {
            fclose(f);
            return util_error(err, errlen, "%s: label %d out of range at record %d (expected 0-9)",
                            path, rec[0], r);
        }
        s->labels[first + r] = rec[0];
        memcpy(s->pixels + (size_t)(first + r) * (CIFAR_RECORD - 1), rec + 1, CIFAR_RECORD - 1);
    }
    int extra = fgetc(f);
    fclose(f);
    if (extra != EOF) return util_error(err, errlen, "%s: file grew while reading", path);
    return 0;
}

// Concatenates the records of paths[0..count) into one split (file order kept).
static int cifar_read_split(dataset_split *s, char (*paths)[DS_PATH_MAX], int count,
                            char *err, size_t errlen)
{
    int nrec[CIFAR_TRAIN_FILES + 1], total = 0;
    for (int i = 0; i < count; i++) {
        size_t size;
        if (ds_file_size(paths[i], &size, err, errlen)) return 1;
        if (size == 0) return util_error(err, errlen, "%s: empty file", paths[i]);
        if (size % CIFAR_RECORD != 0)
            return util_error(err, errlen, "%s: size %zu is not a multiple of the %d-byte CIFAR-10 "
                            "record", paths[i], size, CIFAR_RECORD);
        if (size / CIFAR_RECORD > (size_t)(INT_MAX - total))
            return util_error(err, errlen, "%s: too many records", paths[i]);
        nrec[i] = (int)(size / CIFAR_RECORD);
        total += nrec[i];
    }
    if ((size_t)total > SIZE_MAX / (CIFAR_RECORD - 1) || ds_split_alloc(s, total, 3, 32, 32))
        return util_error(err, errlen, "%s: out of memory for %d images", paths[0], total);
    for (int i = 0, first = 0; i < count; first += nrec[i], i++)
        if (cifar_read_file(s, first, nrec[i], paths[i], err, errlen)) return 1;
    return 0;
}

// batches.meta.txt: one class name a line, whitespace trimmed, empty lines skipped.
static int cifar_read_meta(dataset *d, const char *path, char *err, size_t errlen)
{
    size_t size;
    if (ds_file_size(path, &size, err, errlen)) return 1;
    if (size > META_MAX_BYTES)
        return util_error(err, errlen, "%s: %zu bytes is too large for a class list", path, size);
    char *buf = malloc(META_MAX_BYTES + 1);
    FILE *f = fopen(path, "rb");
    if (!f || !buf) {
        if (f) fclose(f);
        free(buf);
        return util_error(err, errlen, "%s: %s", path, f ? "out of memory" : strerror(errno));
    }
    size_t len = fread(buf, 1, META_MAX_BYTES, f);
    fclose(f);
    buf[len] = '\0';
    const char *names[10];
    int count = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        while (*line && isspace((unsigned char)*line)) line++;
        char *end = line + strlen(line);
        while (end > line && isspace((unsigned char)end[-1])) *--end = '\0';
        if (!*line) continue;
        if (count < 10) names[count] = line;
        count++;
    }
    int rc = count != 10 ? util_error(err, errlen, "%s: %d class names (expected 10)", path, count)
             : ds_set_names(d, 10, names) ? util_error(err, errlen, "%s: out of memory", path) : 0;
    free(buf);
    return rc;
}

static int cifar_open(dataset *d, const char *dir, char *err, size_t errlen)
{
    char base[DS_PATH_MAX], paths[CIFAR_TRAIN_FILES][DS_PATH_MAX], meta[DS_PATH_MAX];
    if (ds_join(base, dir, "cifar-10-batches-bin", err, errlen)) return 1;
    if (ds_join(paths[0], dir, "data_batch_1.bin", err, errlen)) return 1;
    if (ds_is_file(paths[0]) || !ds_is_dir(base)) snprintf(base, sizeof(base), "%s", dir);
    int count = 0;
    for (; count < CIFAR_TRAIN_FILES; count++) {
        char name[32];
        snprintf(name, sizeof(name), "data_batch_%d.bin", count + 1);
        if (ds_join(paths[count], base, name, err, errlen)) return 1;
        if (!ds_is_file(paths[count])) break;
    }
    if (count == 0) return util_error(err, errlen, "%s: No such file or directory", paths[0]);
    if (cifar_read_split(&d->train, paths, count, err, errlen)) return 1;
    if (ds_join(paths[0], base, "test_batch.bin", err, errlen)) return 1;
    if (cifar_read_split(&d->test, paths, 1, err, errlen)) return 1;
    if (ds_join(meta, base, "batches.meta.txt", err, errlen)) return 1;
    if (ds_is_file(meta)) return cifar_read_meta(d, meta, err, errlen);
    return ds_set_names(d, 10, cifar_names) ? util_error(err, errlen, "%s: out of memory", dir) : 0;
}

// ---- IDX (MNIST / Fashion-MNIST), raw or gzipped ----

// Picks dir/name, else dir/name.gz.
static int idx_find(char *path, const char *dir, const char *name, char *err, size_t errlen)
{
    char gz[DS_PATH_MAX];
    if (ds_join(path, dir, name, err, errlen)) return 1;
    if (ds_is_file(path)) return 0;
    if (snprintf(gz, sizeof(gz), "%s.gz", path) >= (int)sizeof(gz))
        return util_error(err, errlen, "%s: path too long", dir);
    if (!ds_is_file(gz)) return util_error(err, errlen, "%s[.gz]: No such file or directory", path);
    memcpy(path, gz, sizeof(gz));
    return 0;
}

static uint32_t idx_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Reads exactly `total` bytes after the header, growing the buffer only as data arrives (a
// lying header cannot make us allocate more than the file really holds), then demands EOF.
static int idx_read_body(gzFile f, const char *path, size_t total, uint8_t **out,
                         char *err, size_t errlen)
{
    size_t cap = total < ((size_t)1 << 24) ? total : ((size_t)1 << 24), got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    while (buf && got < total) {
        if (got == cap) {
            cap = cap > total / 2 ? total : cap * 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        size_t want = cap - got < (1u << 30) ? cap - got : (1u << 30);
        int r = gzread(f, buf + got, (unsigned)want);
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (!buf) return util_error(err, errlen, "%s: out of memory for %zu bytes", path, total);
    uint8_t extra;
    int errnum = 0;
    const char *zmsg = gzerror(f, &errnum);
    const char *colon = zmsg ? strrchr(zmsg, ':') : NULL;  // zlib prefixes the path: drop it
    zmsg = colon && colon[1] == ' ' ? colon + 2 : zmsg ? zmsg : "";
    if (got < total) {
        free(buf);
        return util_error(err, errlen, "%s: truncated: header promises %zu data bytes, got %zu%s%s",
                        path, total, got, errnum ? ": " : "", errnum ? zmsg : "");
    }
    if (gzread(f, &extra, 1) > 0) {
        free(buf);
        return util_error(err, errlen, "%s: trailing bytes after the %zu data bytes", path, total);
    }
    *out = buf;
    return 0;
}

// One IDX file of ubyte data: checks the magic, reads `ndims` big-endian dimensions and the data.
static int idx_read(const char *path, uint32_t magic, int ndims, uint32_t *dims, uint8_t **data,
                    char *err, size_t errlen)
{
    gzFile f = gzopen(path, "rb");
    if (!f) return util_error(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(f, 1 << 17);
    uint8_t head[16];
    size_t hlen = 4 + 4 * (size_t)ndims;
    int r = gzread(f, head, (unsigned)hlen);
    if (r != (int)hlen) {
        int errnum = 0;
        const char *zmsg = gzerror(f, &errnum);  // a damaged .gz says so rather than "truncated"
        int rc = errnum ? util_error(err, errlen, "%s: not valid gzip data (%s)", path, zmsg)
                        : util_error(err, errlen, "%s: truncated IDX header (%d of %zu bytes)",
                                   path, r < 0 ? 0 : r, hlen);
        gzclose(f);
        return rc;
    }
    if (idx_be32(head) != magic) {
        gzclose(f);
        return util_error(err, errlen, "%s: bad magic 0x%08x (expected 0x%08x)", path,
                        idx_be32(head), magic);
    }
    size_t total = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = idx_be32(head + 4 + 4 * i);
        int bad = i == 0 ? dims[i] == 0 || dims[i] > INT_MAX
                         : dims[i] == 0 || dims[i] > IDX_MAX_SIDE;
        if (bad || dims[i] > SIZE_MAX / total) {
            gzclose(f);
            return util_error(err, errlen, "%s: bad dimension %d = %u", path, i, dims[i]);
        }
        total *= dims[i];
    }
    int rc = idx_read_body(f, path, total, data, err, errlen);
    gzclose(f);
    return rc;
}

// One split from its images file and labels file.
static int idx_read_split(dataset_split *s, const char *dir, const char *images,
                          const char *labels, char *err, size_t errlen)
{
    char ipath[DS_PATH_MAX], lpath[DS_PATH_MAX];
    uint32_t idims[3], ldims[1];
    if (idx_find(ipath, dir, images, err, errlen) || idx_find(lpath, dir, labels, err, errlen))
        return 1;
    if (idx_read(ipath, IDX_MAGIC_IMAGES, 3, idims, &s->pixels, err, errlen)) return 1;
    s->n = (int)idims[0]; s->c = 1; s->h = (int)idims[1]; s->w = (int)idims[2];
    if (idx_read(lpath, IDX_MAGIC_LABELS, 1, ldims, &s->labels, err, errlen)) return 1;
    if (ldims[0] != idims[0])
        return util_error(err, errlen, "%s: %u labels but %s has %u images", lpath, ldims[0],
                        ipath, idims[0]);
    return 0;
}

// Case-insensitive search for "fashion" in the folder path.
static int idx_is_fashion(const char *dir)
{
    const char *word = "fashion";
    for (const char *p = dir; *p; p++) {
        size_t i = 0;
        while (word[i] && tolower((unsigned char)p[i]) == word[i]) i++;
        if (!word[i]) return 1;
    }
    return 0;
}

static int idx_open(dataset *d, const char *dir, char *err, size_t errlen)
{
    if (idx_read_split(&d->train, dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       err, errlen) ||
        idx_read_split(&d->test, dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                       err, errlen))
        return 1;
    if (d->test.h != d->train.h || d->test.w != d->train.w)
        return util_error(err, errlen, "%s: t10k images are %dx%d but train images are %dx%d", dir,
                        d->test.h, d->test.w, d->train.h, d->train.w);
    int max = 1;  // at least 2 classes
    for (int i = 0; i < d->train.n; i++) max = d->train.labels[i] > max ? d->train.labels[i] : max;
    for (int i = 0; i < d->test.n; i++) max = d->test.labels[i] > max ? d->test.labels[i] : max;
    int fashion = max + 1 == 10 && idx_is_fashion(dir);
    if (ds_set_names(d, max + 1, fashion ? fashion_names : NULL))
        return util_error(err, errlen, "%s: out of memory", dir);
    return 0;
}

// ---- detection ----

static int ds_detect(const char *dir, double val_split, const char **format, char *err,
                     size_t errlen)
{
    char a[DS_PATH_MAX], b[DS_PATH_MAX], c[DS_PATH_MAX], e[DS_PATH_MAX];
    if (ds_join(a, dir, "data_batch_1.bin", err, errlen) ||
        ds_join(b, dir, "cifar-10-batches-bin", err, errlen) ||
        ds_join(c, dir, "train-images-idx3-ubyte", err, errlen) ||
        ds_join(e, dir, "train-images-idx3-ubyte.gz", err, errlen))
        return 1;
    if (ds_is_file(a) || ds_is_dir(b)) *format = "cifar10";
    else if (ds_is_file(c) || ds_is_file(e)) *format = "idx";
    else if (ds_join(a, dir, "train", err, errlen) == 0 && (ds_is_dir(a) || val_split > 0))
        *format = "folder";
    else
        return util_error(err, errlen, "%s: no CIFAR-10 (data_batch_1.bin) or IDX "
                        "(train-images-idx3-ubyte[.gz]) files found, nor an image folder "
                        "(train/<class>/...; a folder of class folders needs --val-split)", dir);
    return 0;
}

int dataset_open(dataset *d, const char *dir, const char *format, char *err, size_t errlen)
{
    dataset_options o = {.format = format};
    return dataset_open_ex(d, dir, &o, err, errlen);
}

int dataset_open_ex(dataset *d, const char *dir, const dataset_options *opt, char *err,
                    size_t errlen)
{
    const char *format = opt->format;
    memset(d, 0, sizeof(*d));
    if (err && errlen) err[0] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0) return util_error(err, errlen, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return util_error(err, errlen, "%s: not a directory", dir);
    if (!format || strcmp(format, "auto") == 0)
        if (ds_detect(dir, opt->val_split, &format, err, errlen)) return 1;
    int rc;
    if (strcmp(format, "cifar10") == 0) rc = cifar_open(d, dir, err, errlen);
    else if (strcmp(format, "idx") == 0) rc = idx_open(d, dir, err, errlen);
    else if (strcmp(format, "folder") == 0) rc = dataset_folder_open(d, dir, opt, err, errlen);
    else
        return util_error(err, errlen, "%s: unknown data set format '%s' (expected auto, cifar10, "
                        "idx or folder)", dir, format);
    if (rc) {
        dataset_free(d);
        return rc;
    }
    snprintf(d->format, sizeof(d->format), "%s", format);
    return 0;
}
