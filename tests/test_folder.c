// Tests for dataset/folder.c and dataset/dataset_folder.c: ImageFolder's sample order (checked
// against torchvision on a tree with awkward names), the layout errors, --val-split, --skip-bad.
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset/dataset.h"

#define FOLDER_TOOL "/usr/bin/python3 tools/torch_imagefolder.py"

static int tf_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void tf_rmtree(const char *dir) { nftw(dir, tf_rm, 16, FTW_DEPTH | FTW_PHYS); }

// mkdir -p of dir/rel's parent folders, then a 2x3 PPM (or `bytes` when given) at dir/rel.
static void tf_file(const char *dir, const char *rel, const char *bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    if (bytes) fputs(bytes, f);
    else fwrite("P6\n2 3\n255\n" "abcdefghijklmnopqr", 1, 11 + 18, f);
    fclose(f);
}

static void tf_tmpdir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/cltrain_folder_XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
}

// The tree: classes with sub-folders whose names sort differently as paths than depth-first
// ("a b" < "a/x"), upper-case extensions, UTF-8, spaces, a newline, ignored files, a hidden
// class folder and a symlinked one.
static void tf_make_tree(const char *dir)
{
    static const char *files[] = {
        "train/cat/z.PPM", "train/cat/a b.ppm", "train/cat/a/x.ppm", "train/cat/a b/y.ppm",
        "train/cat/a/c/w.ppm", "train/cat/caf\xc3\xa9 \xe2\x9c\x93.pgm", "train/cat/new\nline.ppm",
        "train/cat/B.Jpeg.ppm", "train/dog/d.ppm", "train/dog/sub/deep/d.ppm", "train/.hidden/h.ppm",
        "shared/s1.ppm", "shared/s0.ppm", "val/dog/v.ppm", "val/dog/u.ppm", NULL};
    for (int i = 0; files[i]; i++) tf_file(dir, files[i], NULL);
    tf_file(dir, "train/cat/notes.txt", "not an image");
    tf_file(dir, "train/cat/jpg", "no extension");
    char link[4096];
    snprintf(link, sizeof(link), "%s/train/linked", dir);
    cr_assert_eq(symlink("../shared", link), 0);
}

// Reads the tool's "path\0label\0" records and compares them with the split.
static void tf_compare_with_torchvision(const dataset_split *s, const char *root)
{
    char cmd[8800], out[4200];
    snprintf(out, sizeof(out), "%s.samples", root);
    snprintf(cmd, sizeof(cmd), "%s list '%s' '%s'", FOLDER_TOOL, root, out);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    FILE *f = fopen(out, "rb");
    cr_assert_not_null(f);
    char want[4096], label[32], got[4096];
    int i = 0;
    for (;; i++) {
        int c, k = 0;
        while ((c = fgetc(f)) != EOF && c != 0 && k < 4095) want[k++] = (char)c;
        if (c == EOF) break;
        want[k] = '\0';
        for (k = 0; (c = fgetc(f)) != EOF && c != 0 && k < 31;) label[k++] = (char)c;
        label[k] = '\0';
        cr_assert_lt(i, s->n, "torchvision lists more than our %d samples (next: %s)", s->n, want);
        dataset_path(s, i, got, sizeof(got));
        cr_expect_str_eq(got, want, "sample %d", i);
        cr_expect_eq(dataset_label(s, i), atoi(label), "sample %d (%s): label", i, want);
    }
    fclose(f);
    remove(out);
    cr_assert_eq(i, s->n, "torchvision lists %d samples, we list %d", i, s->n);
}

Test(folder, order_and_labels_match_torchvision)
{
    char dir[64], err[512] = "", root[4096];
    tf_tmpdir(dir, sizeof(dir));
    tf_make_tree(dir);
    dataset d;
    cr_assert_eq(dataset_open(&d, dir, "auto", err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(d.format, "folder");
    cr_assert_eq(d.num_classes, 4);
    cr_assert_str_eq(d.class_names[0], ".hidden");
    cr_assert_str_eq(d.class_names[3], "linked");
    cr_assert_eq(d.train.n, 13);
    snprintf(root, sizeof(root), "%s/train", dir);
    tf_compare_with_torchvision(&d.train, root);
    cr_assert_eq(d.test.n, 2);
    cr_assert_eq(dataset_label(&d.test, 0), 2, "val's dog keeps train's index");
    image img = {0};
    cr_assert_eq(dataset_read(&d.train, 5, &img, err, sizeof(err)), 0, "%s", err);
    cr_assert(img.c == 3 && img.w == 2 && img.h == 3 && img.pixels[0] == 'a' && img.pixels[6] == 'b');
    image_free(&img);
    dataset_free(&d);
    tf_rmtree(dir);
}

static void tf_expect_error(const char *dir, double val_split, const char *needle1,
                            const char *needle2)
{
    dataset d;
    char err[1024] = "";
    dataset_options o = {.format = "folder", .val_split = val_split};
    cr_assert_neq(dataset_open_ex(&d, dir, &o, err, sizeof(err)), 0, "expected an error (%s)",
                  needle1);
    cr_expect_not_null(strstr(err, needle1), "'%s' does not say '%s'", err, needle1);
    cr_expect_not_null(strstr(err, needle2), "'%s' does not say '%s'", err, needle2);
    cr_expect_null(strchr(err, '\n'), "'%s' is not one line", err);
    cr_expect_null(d.class_names);
}

Test(folder, layout_errors_name_the_folder)
{
    char dir[64], path[4096];
    tf_tmpdir(dir, sizeof(dir));
    tf_file(dir, "train/cat/a.ppm", NULL);
    tf_expect_error(dir, 0, "no val/ or test/", dir);
    tf_file(dir, "test/cow/a.ppm", NULL);
    tf_expect_error(dir, 0, "test/cow", "not in the training folder");
    snprintf(path, sizeof(path), "%s/test/cow/a.ppm", dir);
    remove(path);
    snprintf(path, sizeof(path), "%s/test/cow", dir);
    rmdir(path);
    tf_file(dir, "test/cat/a.ppm", NULL);
    tf_file(dir, "train/empty/readme.txt", "no images here");
    tf_expect_error(dir, 0, "train/empty", "Found no valid file for the classes empty");
    snprintf(path, sizeof(path), "%s/train/empty/loop", dir);
    cr_assert_eq(symlink("..", path), 0);
    tf_expect_error(dir, 0, "symlink loop", "train/empty");
    tf_rmtree(dir);
}

static void tf_warn(void *ctx, const char *msg)
{
    int *count = ctx;
    (*count)++;
    cr_expect_not_null(strstr(msg, "bad file.jpg"), "warning '%s'", msg);
}

Test(folder, bad_files_fail_or_are_skipped)
{
    char dir[64], err[1024] = "";
    tf_tmpdir(dir, sizeof(dir));
    tf_file(dir, "train/cat/a.ppm", NULL);
    tf_file(dir, "train/cat/bad file.jpg", "text, not a JPEG");
    tf_file(dir, "val/cat/b.ppm", NULL);
    tf_expect_error(dir, 0, "bad file.jpg", "not an image");
    int warnings = 0;
    dataset d;
    dataset_options o = {.skip_bad = 1, .warn = tf_warn, .warn_ctx = &warnings};
    cr_assert_eq(dataset_open_ex(&d, dir, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(warnings, 1);
    cr_assert_eq(d.skipped, 1);
    cr_assert_eq(d.train.n, 1);
    dataset_free(&d);
    tf_rmtree(dir);
}

// --val-split: per-class counts round(F * m), reproducible from the seed, a partition.
Test(folder, val_split_is_stratified_and_seeded)
{
    char dir[64], err[512] = "", rel[64];
    tf_tmpdir(dir, sizeof(dir));
    for (int i = 0; i < 10; i++) {
        snprintf(rel, sizeof(rel), "a/%02d.ppm", i);
        tf_file(dir, rel, NULL);
        if (i < 4) {
            snprintf(rel, sizeof(rel), "b/%02d.ppm", i);
            tf_file(dir, rel, NULL);
        }
    }
    tf_expect_error(dir, 0, "train: not a folder", "--val-split");
    dataset d1, d2, d3;
    dataset_options o = {.val_split = 0.3, .seed = 7};
    cr_assert_eq(dataset_open_ex(&d1, dir, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dataset_open_ex(&d2, dir, &o, err, sizeof(err)), 0, "%s", err);
    o.seed = 8;
    cr_assert_eq(dataset_open_ex(&d3, dir, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(d1.test.n, 3 + 1, "val holds round(0.3*10) + round(0.3*4)");
    cr_assert_eq(d1.train.n, 14 - 4);
    int differ = 0;
    char p1[4096], p2[4096];
    for (int i = 0; i < d1.test.n; i++) {
        dataset_path(&d1.test, i, p1, sizeof(p1));
        dataset_path(&d2.test, i, p2, sizeof(p2));
        cr_expect_str_eq(p1, p2, "same seed, same split");
        dataset_path(&d3.test, i, p2, sizeof(p2));
        differ |= strcmp(p1, p2) != 0;
        for (int j = 0; j < d1.train.n; j++) {
            dataset_path(&d1.train, j, p2, sizeof(p2));
            cr_expect_str_neq(p1, p2, "a file in both splits");
        }
    }
    cr_expect(differ, "seed 8 holds out the same files as seed 7");
    cr_expect_eq(dataset_label(&d1.test, 3), 1);
    dataset_free(&d1); dataset_free(&d2); dataset_free(&d3);
    tf_rmtree(dir);
}
