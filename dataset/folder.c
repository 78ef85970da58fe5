#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "common/check.h"
#include "dataset/folder.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FOLDER_PATH_MAX 4096
#define FOLDER_MAX_DEPTH 256

// A growable array of strings.
typedef struct strvec { char **v; int n, cap; } strvec;

static int strvec_push(strvec *s, const char *str)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, sizeof(char *) * (size_t)cap);
        if (!v) return 1;
        s->v = v;
        s->cap = cap;
    }
    return (s->v[s->n] = strdup(str)) == NULL ? 1 : (s->n++, 0);
}

static void strvec_free(strvec *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

// Python sorts str by code point; UTF-8 bytes compared unsigned sort the same way.
static int strvec_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strvec_sort(strvec *s) { if (s->n > 1) qsort(s->v, (size_t)s->n, sizeof(char *), strvec_cmp); }

// torchvision.datasets.folder.IMG_EXTENSIONS, matched on the lower-cased name.
static int folder_is_image(const char *name)
{
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif",
                                      ".tiff", ".webp"};
    size_t n = strlen(name);
    for (size_t e = 0; e < sizeof(ext) / sizeof(ext[0]); e++) {
        size_t k = strlen(ext[e]), i = 0;
        if (k > n) continue;
        while (i < k && tolower((unsigned char)name[n - k + i]) == ext[e][i]) i++;
        if (i == k) return 1;
    }
    return 0;
}

static int folder_join(char *out, const char *a, const char *b, char *err, size_t errlen)
{
    int n = snprintf(out, FOLDER_PATH_MAX, "%s/%s", a, b);
    return n < 0 || n >= FOLDER_PATH_MAX ? util_error(err, errlen, "%s/%s: path too long", a, b)
                                         : 0;
}

// Entries of `dir` (not . and ..), split into sub-folders (stat follows links, as is_dir()) and
// the rest. Either vector may be NULL.
static int folder_scan(const char *dir, strvec *dirs, strvec *files, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) return util_error(err, errlen, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    char path[FOLDER_PATH_MAX];
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (folder_join(path, dir, e->d_name, err, errlen)) { rc = 1; break; }
        struct stat st;
        int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        strvec *to = is_dir ? dirs : files;
        if (to && strvec_push(to, e->d_name))
            rc = util_error(err, errlen, "%s: out of memory", dir);
    }
    closedir(d);
    return rc;
}

int folder_find_classes(const char *root, char ***names, int *n, char *err, size_t errlen)
{
    strvec dirs = {0};
    *names = NULL;
    *n = 0;
    if (folder_scan(root, &dirs, NULL, err, errlen)) {
        strvec_free(&dirs);
        return 1;
    }
    if (dirs.n == 0) {
        strvec_free(&dirs);
        return util_error(err, errlen, "%s: Couldn't find any class folder", root);
    }
    strvec_sort(&dirs);
    *names = dirs.v;
    *n = dirs.n;
    return 0;
}

void folder_free_classes(char **names, int n)
{
    strvec s = {names, n, n};
    strvec_free(&s);
}

// ---- the list ----

static int folder_add(folder_list *l, const char *rel, int32_t label)
{
    size_t len = strlen(rel) + 1;
    while (l->names_len + len > l->names_cap) {
        size_t cap = l->names_cap ? l->names_cap * 2 : 4096;
        char *p = realloc(l->names, cap);
        if (!p) return 1;
        l->names = p;
        l->names_cap = cap;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        size_t *o = realloc(l->offsets, sizeof(size_t) * (size_t)cap);
        if (o) l->offsets = o;
        int32_t *lb = realloc(l->labels, sizeof(int32_t) * (size_t)cap);
        if (lb) l->labels = lb;
        if (!o || !lb) return 1;
        l->cap = cap;
    }
    memcpy(l->names + l->names_len, rel, len);
    l->offsets[l->n] = l->names_len;
    l->labels[l->n++] = label;
    l->names_len += len;
    return 0;
}

// Every folder under root/rel (rel included), as relative paths, recursively with symlinks
// followed; a folder whose (device, inode) is one of its ancestors' is a loop: an error.
typedef struct folder_walk { dev_t dev[FOLDER_MAX_DEPTH]; ino_t ino[FOLDER_MAX_DEPTH]; int depth; }
    folder_walk;

static int folder_collect_dirs(const char *root, const char *rel, folder_walk *w, strvec *out,
                               char *err, size_t errlen)
{
    char path[FOLDER_PATH_MAX], child[FOLDER_PATH_MAX];
    struct stat st;
    if (folder_join(path, root, rel, err, errlen)) return 1;
    if (stat(path, &st) != 0) return util_error(err, errlen, "%s: %s", path, strerror(errno));
    for (int i = 0; i < w->depth; i++)
        if (w->dev[i] == st.st_dev && w->ino[i] == st.st_ino)
            return util_error(err, errlen, "%s: symlink loop (a folder that contains itself)",
                                path);
    if (w->depth == FOLDER_MAX_DEPTH)
        return util_error(err, errlen, "%s: folders nested too deep", path);
    if (strvec_push(out, rel)) return util_error(err, errlen, "%s: out of memory", path);
    strvec subs = {0};
    int rc = folder_scan(path, &subs, NULL, err, errlen);
    w->dev[w->depth] = st.st_dev;
    w->ino[w->depth++] = st.st_ino;
    for (int i = 0; rc == 0 && i < subs.n; i++)
        rc = folder_join(child, rel, subs.v[i], err, errlen) ||
             folder_collect_dirs(root, child, w, out, err, errlen);
    w->depth--;
    strvec_free(&subs);
    return rc;
}

// One class: folders in sorted path order, then each folder's image files sorted.
static int folder_add_class(folder_list *l, const char *cls, int32_t label, char *err,
                            size_t errlen)
{
    strvec dirs = {0};
    folder_walk w = {.depth = 0};
    int rc = folder_collect_dirs(l->root, cls, &w, &dirs, err, errlen), before = l->n;
    strvec_sort(&dirs);
    char path[FOLDER_PATH_MAX], rel[FOLDER_PATH_MAX];
    for (int d = 0; rc == 0 && d < dirs.n; d++) {
        strvec files = {0};
        rc = folder_join(path, l->root, dirs.v[d], err, errlen) ||
             folder_scan(path, NULL, &files, err, errlen);
        strvec_sort(&files);
        for (int f = 0; rc == 0 && f < files.n; f++) {
            if (!folder_is_image(files.v[f])) continue;
            rc = folder_join(rel, dirs.v[d], files.v[f], err, errlen);
            if (rc == 0 && folder_add(l, rel, label))
                rc = util_error(err, errlen, "%s: out of memory", path);
        }
        strvec_free(&files);
    }
    strvec_free(&dirs);
    if (rc == 0 && l->n == before)
        rc = util_error(err, errlen, "%s/%s: class folder without image files (torchvision: "
                          "Found no valid file for the classes %s)", l->root, cls, cls);
    return rc;
}

int folder_list_init(folder_list *l, const char *root, char *const *classes, int nclasses,
                     int want_all, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    char path[FOLDER_PATH_MAX];
    if (!(l->root = strdup(root))) return util_error(err, errlen, "%s: out of memory", root);
    for (int c = 0; c < nclasses; c++) {
        struct stat st;
        if (folder_join(path, root, classes[c], err, errlen)) goto fail;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            if (!want_all) continue;
            util_error(err, errlen, "%s: class folder missing", path);
            goto fail;
        }
        if (folder_add_class(l, classes[c], c, err, errlen)) goto fail;
    }
    return 0;
fail:
    folder_list_free(l);
    return 1;
}

int folder_path(const folder_list *l, int i, char *buf, size_t len)
{
    return snprintf(buf, len, "%s/%s", l->root, l->names + l->offsets[i]);
}

int folder_list_filter(folder_list *dst, const folder_list *src, const uint8_t *keep)
{
    memset(dst, 0, sizeof(*dst));
    if (!(dst->root = strdup(src->root))) return 1;
    for (int i = 0; i < src->n; i++)
        if (keep[i] && folder_add(dst, src->names + src->offsets[i], src->labels[i])) {
            folder_list_free(dst);
            return 1;
        }
    return 0;
}

void folder_list_free(folder_list *l)
{
    if (!l) return;
    free(l->root); free(l->names); free(l->offsets); free(l->labels);
    memset(l, 0, sizeof(*l));
}
