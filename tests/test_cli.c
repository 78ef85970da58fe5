// Hostile input through the real command line: every bad checkpoint, data set, flag or output
// path ends in one "cltrain: error:" line naming the file or flag and what is wrong, exit
// status 1 (bad data) or 2 (bad usage), no crash, no hang, no training and no output file.
// Plus in-process regressions for what the fuzzers (tests/fuzz/) found.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_options.h"
#include "model/ckpt.h"
#include "tests/cli_run.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Small, fast runs: 32x32 images, batch 8, one step.
#define TINY "--image-size 32 --batch-size 8 --max-steps 1 --test-limit 8"

// ---- checkpoints ----

// good.pth (model weights) and state.pth (a training state) from one real one-step run.
static void make_model_files(const char *data, const char *dir) {
    cli_result r = cli_run(180, "", "train --data %s " TINY " --freeze backbone --save %s "
                                    "--checkpoint %s", data, cli_path(dir, "good.pth"),
                           cli_path(dir, "state.pth"));
    cr_assert_eq(r.status, 0, "making the model files failed:\n%s", r.err);
    cli_result_free(&r);
}

// Replaces entry `name` by a zero tensor of another shape (or dtype).
static void reshape(ckpt *c, const char *name, ckpt_dtype dtype, int ndim, const int64_t *shape) {
    int i = ckpt_find(c, name);
    cr_assert_geq(i, 0, "no '%s' to change", name);
    ckpt_entry *e = &c->e[i];
    e->dtype = dtype;
    e->ndim = ndim;
    e->numel = ckpt_numel(ndim, shape);
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    free(e->data);
    e->data = calloc((size_t)e->numel + 1, 8);
    cr_assert_not_null(e->data);
}

static void rename_entry(ckpt *c, const char *from, const char *to) {
    int i = ckpt_find(c, from);
    cr_assert_geq(i, 0, "no '%s' to rename", from);
    free(c->e[i].name);
    c->e[i].name = strdup(to);
}

static void set_int(ckpt *c, const char *name, int64_t v) {
    int i = ckpt_find(c, name);
    cr_assert(i >= 0 && c->e[i].kind == CKPT_INT, "no int '%s'", name);
    c->e[i].ival = v;
}

typedef void (*ckpt_edit)(ckpt *c);

// dir/dst = dir/src after edit.
static void write_variant(const char *dir, const char *src, const char *dst, ckpt_edit edit) {
    ckpt c;
    ckpt_init(&c);
    char err[1024];
    cr_assert_eq(ckpt_read(&c, cli_path(dir, src), err, sizeof err), 0, "%s", err);
    edit(&c);
    cr_assert_eq(ckpt_write(&c, cli_path(dir, dst), err, sizeof err), 0, "%s", err);
    ckpt_free(&c);
}

// A CIFAR-style ResNet (3x3 stem): another architecture with the same key names.
static void edit_cifar_stem(ckpt *c) {
    reshape(c, "conv1.weight", CKPT_F32, 4, (int64_t[]){ 64, 3, 3, 3 });
}
// ResNet50's first block conv is 1x1: the shapes stop matching at layer1.
static void edit_bottleneck(ckpt *c) {
    reshape(c, "layer1.0.conv1.weight", CKPT_F32, 4, (int64_t[]){ 64, 64, 1, 1 });
}
static void edit_bn_shape(ckpt *c) {
    reshape(c, "layer3.1.bn2.running_var", CKPT_F32, 1, (int64_t[]){ 128 });
}
static void edit_fc_in(ckpt *c) { reshape(c, "fc.weight", CKPT_F32, 2, (int64_t[]){ 10, 256 }); }
static void edit_int_weight(ckpt *c) {
    reshape(c, "layer2.0.conv2.weight", CKPT_I64, 4, (int64_t[]){ 128, 128, 3, 3 });
}
static void edit_missing(ckpt *c) { rename_entry(c, "layer4.1.bn2.bias", "layer4.1.bn2.bias_"); }
static void edit_extra(ckpt *c) {
    rename_entry(c, "layer4.1.bn2.num_batches_tracked", "layer5.0.x");
}

Test(cli, checkpoint_files_hostile, .timeout = 240) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    static const unsigned char junk[] = "PK\3\4 this is not really a zip at all";
    cli_write_file(dir, "empty.pth", "", 0);
    cli_write_file(dir, "junk.pth", junk, sizeof junk);
    unsigned char rnd[4096];
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)(i * 2654435761u >> 13);
    cli_write_file(dir, "random.pth", rnd, sizeof rnd);
    cli_write_file(dir, "random.safetensors", rnd, sizeof rnd);
    size_t n = 0;
    char *small = cli_read_file("tests/fixtures/ckpt_small.pth", &n);
    cr_assert_not_null(small);
    cli_write_file(dir, "cut_head.pth", small, 100);
    cli_write_file(dir, "cut_half.pth", small, n / 2);
    cli_write_file(dir, "cut_tail.pth", small, n - 1);
    free(small);
    static const struct { const char *file, *msg; } bad[] = {
        { "empty.pth", "file is empty" },
        { "random.pth", "not a PyTorch zip checkpoint or a safetensors file" },
        { "random.safetensors", "random.safetensors" },
        { "junk.pth", "not a readable zip" },
        { "cut_head.pth", "not a readable zip" },
        { "cut_half.pth", "not a readable zip" },
        { "cut_tail.pth", "not a readable zip" },
        { "no-such.pth", "No such file" },
        { ".", "not a regular file" },
        { "tests/fixtures/ckpt_legacy.pth", "legacy (non-zip) PyTorch format" },
        { "tests/fixtures/ckpt_evil.pth", "'os system' is not allowed" },
        { "tests/fixtures/ckpt_small.pth", "no ResNet weights found" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char file[1024];
        const char *f = bad[i].file;
        snprintf(file, sizeof file, "%s", !strcmp(f, ".") ? dir
                                          : !strncmp(f, "tests/", 6) ? f : cli_path(dir, f));
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        cli_result r = cli_run(60, "", "train --data %s " TINY " --weights %s --save %s", data,
                               file, cli_path(dir, "out.pth"));
        cli_expect_error(&r, 1, file, base, bad[i].msg, NULL);
        cli_result_free(&r);
        r = cli_run(60, "", "eval --data %s --image-size 32 --batch-size 8 --weights %s "
                            "--predictions %s", data, file, cli_path(dir, "p.csv"));
        cli_expect_error(&r, 1, file, base, bad[i].msg, NULL);
        cli_result_free(&r);
        r = cli_run(60, "", "train --data %s --resume %s --checkpoint %s", data, file,
                    cli_path(dir, "ck.pth"));
        cli_expect_error(&r, 1, file, base, NULL);
        cli_result_free(&r);
    }
    cr_expect(!cli_exists(cli_path(dir, "out.pth")) && !cli_exists(cli_path(dir, "p.csv")) &&
              !cli_exists(cli_path(dir, "ck.pth")), "no output file after a failure");
    cr_expect_eq(cli_count_entries(dir, ".tmp"), 0, "no temp file left behind");
    cli_rmtree(data);
    cli_rmtree(dir);
}

Test(cli, checkpoint_wrong_architecture_and_shape, .timeout = 240) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    make_model_files(data, dir);
    static const struct { const char *file; ckpt_edit edit; const char *key, *msg; } bad[] = {
        { "cifar_stem.pth", edit_cifar_stem, "'conv1.weight'",
          "shape [64, 3, 3, 3], resnet18 needs [64, 3, 7, 7]" },
        { "cifar_stem.safetensors", edit_cifar_stem, "'conv1.weight'", "[64, 3, 3, 3]" },
        { "bottleneck.pth", edit_bottleneck, "'layer1.0.conv1.weight'", "[64, 64, 1, 1]" },
        { "bn.pth", edit_bn_shape, "'layer3.1.bn2.running_var'",
          "shape [128], resnet18 needs [256]" },
        { "fc_in.pth", edit_fc_in, "'fc.weight'", "[10, 256]" },
        { "int.pth", edit_int_weight, "'layer2.0.conv2.weight'", "of integers" },
        { "missing.pth", edit_missing, "missing 'layer4.1.bn2.bias' (1 key)",
          "unexpected 'layer4.1.bn2.bias_' (1 key)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_variant(dir, "good.pth", bad[i].file, bad[i].edit);
        cli_result r = cli_run(60, "", "train --data %s " TINY " --weights %s --save %s", data,
                               cli_path(dir, bad[i].file), cli_path(dir, "out.pth"));
        cli_expect_error(&r, 1, bad[i].file, bad[i].file, bad[i].key, bad[i].msg, NULL);
        cli_result_free(&r);
        r = cli_run(60, "", "eval --data %s --image-size 32 --batch-size 8 --weights %s "
                            "--predictions %s", data, cli_path(dir, bad[i].file),
                    cli_path(dir, "p.csv"));
        cli_expect_error(&r, 1, bad[i].file, bad[i].file, bad[i].key, bad[i].msg, NULL);
        cli_result_free(&r);
        unlink(cli_path(dir, bad[i].file));
    }
    // Keys resnet18 lacks (e.g. a deeper ResNet's): an error as load_state_dict(strict=True)
    // gives; --strict (the default) is still accepted.
    write_variant(dir, "good.pth", "extra.pth", edit_extra);
    cli_result r = cli_run(60, "", "eval --data %s --image-size 32 --batch-size 8 --weights %s "
                                   "--strict", data, cli_path(dir, "extra.pth"));
    cli_expect_error(&r, 1, "extra keys", "extra.pth", "does not fit resnet18",
                     "unexpected 'layer5.0.x' (1 key)", NULL);
    cli_result_free(&r);
    cr_expect(!cli_exists(cli_path(dir, "out.pth")) && !cli_exists(cli_path(dir, "p.csv")),
              "no output file after a failure");
    cr_expect_eq(cli_count_entries(dir, ".tmp"), 0, "no temp file left behind");
    cli_rmtree(data);
    cli_rmtree(dir);
}

// ---- training states (--resume) ----

static void edit_not_state(ckpt *c) {
    int i = ckpt_find(c, "cltrain.format");
    cr_assert_geq(i, 0);
    free(c->e[i].sval);
    c->e[i].sval = strdup("cltrain-training-state-0");
}
static void set_format(ckpt *c, const char *format) {
    int i = ckpt_find(c, "cltrain.format");
    cr_assert_geq(i, 0);
    free(c->e[i].sval);
    c->e[i].sval = strdup(format);
}
static void edit_newer(ckpt *c) { set_format(c, "cltrain-training-state-4"); }
// What cltrain wrote before the state recorded the data set (format version 1).
static void edit_version1(ckpt *c) {
    set_format(c, "cltrain-training-state-1");
    rename_entry(c, "args.dataset", "unused.dataset");
    rename_entry(c, "args.data", "unused.data");
}
static void edit_negative_batch(ckpt *c) { set_int(c, "args.batch-size", -8); }
static void edit_huge_image(ckpt *c) { set_int(c, "args.image-size", 100000); }
static void edit_bad_freeze(ckpt *c) { set_int(c, "args.freeze", 99); }
static void edit_negative_epoch(ckpt *c) { set_int(c, "epoch", -1); }
static void edit_no_step(ckpt *c) { rename_entry(c, "global_step", "global_step_"); }
static void edit_momentum(ckpt *c) {
    reshape(c, "optimizer.momentum.fc.weight", CKPT_F32, 2, (int64_t[]){ 10, 256 });
}
static void edit_model(ckpt *c) {
    reshape(c, "model.layer1.0.conv1.weight", CKPT_F32, 4, (int64_t[]){ 64, 64, 1, 1 });
}

Test(cli, resume_hostile, .timeout = 240) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    make_model_files(data, dir);
    static const struct { const char *file; ckpt_edit edit; const char *msg; } bad[] = {
        { "other.pth", edit_not_state, "not a cltrain training state" },
        { "newer.pth", edit_newer, "version 4 is newer than this cltrain reads" },
        { "batch.pth", edit_negative_batch, "args.batch-size" },
        { "image.pth", edit_huge_image, "args.image-size" },
        { "freeze.pth", edit_bad_freeze, "args.freeze" },
        { "epoch.pth", edit_negative_epoch, "damaged" },
        { "step.pth", edit_no_step, "damaged" },
        { "momentum.pth", edit_momentum, "optimizer.momentum.fc.weight" },
        { "model.pth", edit_model, "'layer1.0.conv1.weight' has shape [64, 64, 1, 1]" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_variant(dir, "state.pth", bad[i].file, bad[i].edit);
        cli_result r = cli_run(60, "", "train --data %s --resume %s --checkpoint %s", data,
                               cli_path(dir, bad[i].file), cli_path(dir, "ck.pth"));
        cli_expect_error(&r, 1, bad[i].file, bad[i].file, bad[i].msg, NULL);
        cli_result_free(&r);
        unlink(cli_path(dir, bad[i].file));
    }
    // Model weights are not a training state; flags may not contradict the saved state.
    cli_result r = cli_run(60, "", "train --data %s --resume %s", data, cli_path(dir, "good.pth"));
    cli_expect_error(&r, 1, "weights as state", "good.pth", "use --weights", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "train --data %s --resume %s --batch-size 16", data,
                cli_path(dir, "state.pth"));
    cli_expect_error(&r, 2, "contradicting flag", "--batch-size 16", "8", "state.pth", NULL);
    cli_result_free(&r);
    // Another data set than the one the state was saved for.
    char *other = cli_cifar_dir(24, 8);
    r = cli_run(60, "", "train --data %s --resume %s", other, cli_path(dir, "state.pth"));
    cli_expect_error(&r, 1, "other data", "state.pth", "16 training images", "24", NULL);
    cli_result_free(&r);
    cr_expect(!cli_exists(cli_path(dir, "ck.pth")), "no checkpoint after a failure");
    cli_rmtree(other);
    cli_rmtree(data);
    cli_rmtree(dir);
}

// Resuming by rerunning the command: flags that match the saved run are accepted and
// --weights is ignored with a note; a flag that contradicts it names the flag, the saved value
// and the given one (exit 2, before the device is opened).
Test(cli, resume_rerun_flags, .timeout = 240) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    make_model_files(data, dir);
    char state[512];  // cli_path's buffers are reused by cli_run
    snprintf(state, sizeof state, "%s", cli_path(dir, "state.pth"));
    static const struct { const char *flags, *given, *saved; } bad[] = {
        { "--batch-size 4", "--batch-size 4", "state's 8" },
        { "--seed 3", "--seed 3", "state's 0" },
        { "--lr 0.01", "--lr 0.01", "state's 0.001" },
        { "--momentum 0.5", "--momentum 0.5", "state's 0.9" },
        { "--image-size 64", "--image-size 64", "state's 32" },
        { "--augment flip-crop", "--augment flip-crop", "state's none" },
        { "--freeze none", "--freeze none", "state's layer4" },
        { "--dataset idx", "--dataset idx", "state's cifar10" },
        { "--no-shuffle", "--no-shuffle", "which shuffles" },
        { "--arch resnet34", "--arch resnet34", "state's resnet18" },
        { "--resize 40", "--resize 40", "state's 0" },
        { "--val-split 0.5", "--val-split 0.5", "state's 0" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cli_result r = cli_run(60, "", "train --data %s " TINY " --freeze backbone %s --resume %s",
                               data, bad[i].flags, state);
        cli_expect_error(&r, 2, bad[i].flags, bad[i].given, "contradicts", bad[i].saved,
                         "state.pth", NULL);
        cli_result_free(&r);
    }
    // The command that wrote the state (make_model_files), --weights added, with --resume
    // appended and one more step allowed: accepted, and the state moves on.
    cli_result r = cli_run(120, "", "train --data %s " TINY " --freeze backbone --save %s "
                           "--checkpoint %s --weights %s --max-steps 2 --resume %s", data,
                           cli_path(dir, "good.pth"), state, cli_path(dir, "good.pth"), state);
    cr_expect_eq(r.status, 0, "the same command line with --resume failed:\n%s", r.err);
    cr_expect(strstr(r.err, "--weights ") && strstr(r.err, "is ignored"), "%s", r.err);
    cr_expect(!strstr(r.err, "cltrain: error"), "%s", r.err);
    cr_expect(strstr(r.out, "Finished Training") != NULL, "%s", r.out);
    cli_result_free(&r);
    // A version 1 state (no data set recorded) still resumes.
    write_variant(dir, "state.pth", "v1.pth", edit_version1);
    r = cli_run(120, "", "train --data %s " TINY " --max-steps 3 --resume %s", data,
                cli_path(dir, "v1.pth"));
    cr_expect_eq(r.status, 0, "a version 1 state does not resume:\n%s", r.err);
    cli_result_free(&r);
    // Fewer steps than are done already is a mistake, not a silent no-op.
    r = cli_run(60, "", "train --data %s " TINY " --resume %s", data, state);
    cli_expect_error(&r, 2, "fewer steps", "--max-steps 1", "the 2 steps", "state.pth", NULL);
    cli_result_free(&r);
    cli_rmtree(data);
    cli_rmtree(dir);
}

// ---- the ResNet family ----

// --arch trains another depth and saves it (safetensors here); eval finds the architecture in
// the file; strict loading refuses it under another --arch, --non-strict loads what fits.
Test(cli, family_arch_and_strict_loading, .timeout = 300) {
    char *data = cli_cifar_dir(16, 8), *dir = cli_tmpdir();
    char r34[512];
    snprintf(r34, sizeof r34, "%s", cli_path(dir, "r34.safetensors"));
    cli_result r = cli_run(180, "", "train --data %s " TINY " --arch resnet34 --save %s", data,
                           r34);
    cr_assert_eq(r.status, 0, "train --arch resnet34:\n%s", r.err);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --image-size 32 --batch-size 8 --test-limit 8 "
                         "--weights %s", data, r34);
    cr_expect_eq(r.status, 0, "eval of resnet34 weights without --arch:\n%s", r.err);
    cr_expect(strstr(r.out, "Accuracy") != NULL, "%s", r.out);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --image-size 32 --batch-size 8 --test-limit 8 "
                         "--arch resnet18 --weights %s", data, r34);
    cli_expect_error(&r, 1, "resnet34 into resnet18", "r34.safetensors", "does not fit resnet18",
                     "unexpected 'layer1.2.conv1.weight' (96 keys)", NULL);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --image-size 32 --batch-size 8 --test-limit 8 "
                         "--arch resnet18 --non-strict --weights %s", data, r34);
    cr_expect_eq(r.status, 0, "--non-strict:\n%s", r.err);
    cr_expect(strstr(r.err, "warning") && strstr(r.err, "partial load into resnet18"), "%s",
              r.err);
    cli_result_free(&r);
    r = cli_run(60, "", "train --data %s " TINY " --arch resnet19", data);
    cli_expect_error(&r, 2, "--arch resnet19", "--arch", "resnet19", "resnet152", NULL);
    cli_result_free(&r);
    r = cli_run(180, "", "bench --arch resnet50 --image-size 32 --batch-size 2 --steps 1");
    cr_expect_eq(r.status, 0, "bench --arch resnet50:\n%s", r.err);
    cr_expect(strstr(r.out, "\"arch\":\"resnet50\"") != NULL, "%s", r.out);
    cli_result_free(&r);
    cli_rmtree(data);
    cli_rmtree(dir);
}

// ---- data sets ----

static void idx_file(const char *dir, const char *name, int magic, int ndim, const int *dims,
                     int payload) {
    unsigned char buf[4 + 12 + 4096] = { 0, 0, 8, (unsigned char)magic };
    size_t n = 4;
    for (int i = 0; i < ndim; i++, n += 4)
        for (int b = 0; b < 4; b++) buf[n + b] = (unsigned char)(dims[i] >> (24 - 8 * b));
    for (int i = 0; i < payload; i++) buf[n++] = (unsigned char)(i % 10);
    cli_write_file(dir, name, buf, n);
}

static char *idx_dir(int train_magic, int train_payload, int nlabels) {
    char *d = cli_tmpdir();
    idx_file(d, "train-images-idx3-ubyte", train_magic, 3, (int[]){ 4, 8, 8 }, train_payload);
    idx_file(d, "train-labels-idx1-ubyte", 1, 1, (int[]){ nlabels }, nlabels);
    idx_file(d, "t10k-images-idx3-ubyte", 3, 3, (int[]){ 2, 8, 8 }, 128);
    idx_file(d, "t10k-labels-idx1-ubyte", 1, 1, (int[]){ 2 }, 2);
    return d;
}

static void expect_data_error(const char *data, const char *what, const char *file,
                              const char *msg) {
    char *out = cli_tmpdir();
    cli_result r = cli_run(60, "", "train --data %s " TINY " --save %s", data,
                           cli_path(out, "m.pth"));
    cli_expect_error(&r, 1, what, file, msg, NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "eval --data %s --weights tests/fixtures/ckpt_small.pth", data);
    cli_expect_error(&r, 1, what, file, msg, NULL);
    cli_result_free(&r);
    cr_expect(!cli_exists(cli_path(out, "m.pth")), "%s: no --save file", what);
    cli_rmtree(out);
}

Test(cli, data_sets_hostile, .timeout = 120) {
    char *d = cli_cifar_dir(4, 2);
    unsigned char rec[3073 + 5] = { 3 };
    cli_write_file(d, "data_batch_1.bin", rec, 3073 * 1 + 5);  // not a whole record
    expect_data_error(d, "wrong size", "data_batch_1.bin", "not a multiple of the 3073-byte");
    rec[0] = 10;
    cli_write_file(d, "data_batch_1.bin", rec, 3073);  // label 10
    expect_data_error(d, "label", "data_batch_1.bin", "label 10 out of range at record 0");
    rec[0] = 1;
    cli_write_file(d, "data_batch_1.bin", rec, 3073);
    cli_write_file(d, "test_batch.bin", "", 0);
    expect_data_error(d, "empty file", "test_batch.bin", "empty file");
    unlink(cli_path(d, "test_batch.bin"));
    expect_data_error(d, "missing test split", "test_batch.bin", "No such file");
    cli_write_file(d, "batches.meta.txt", "cat\ndog\n", 8);
    cli_write_cifar(d, "test_batch.bin", 2, 3);
    expect_data_error(d, "class names", "batches.meta.txt", "2 class names (expected 10)");
    unlink(cli_path(d, "batches.meta.txt"));
    unlink(cli_path(d, "data_batch_1.bin"));
    unlink(cli_path(d, "test_batch.bin"));
    expect_data_error(d, "empty folder", d, "no CIFAR-10 (data_batch_1.bin) or IDX");
    rmdir(d);
    expect_data_error(d, "missing folder", d, "No such file or directory");
    cli_rmtree(d);
    expect_data_error("tests/fixtures/ckpt_small.pth", "not a folder", "ckpt_small.pth",
                      "not a directory");

    d = idx_dir(2, 256, 4);
    expect_data_error(d, "idx magic", "train-images-idx3-ubyte", "bad magic 0x00000802");
    cli_rmtree(d);
    d = idx_dir(3, 100, 4);
    expect_data_error(d, "idx truncated", "train-images-idx3-ubyte", "truncated");
    cli_rmtree(d);
    d = idx_dir(3, 256, 3);
    expect_data_error(d, "idx counts", "train-labels-idx1-ubyte", "3 labels but");
    cli_rmtree(d);
    d = idx_dir(3, 256, 4);
    cli_write_file(d, "t10k-labels-idx1-ubyte.gz", "\x1f\x8b\x08\0garbage", 11);
    unlink(cli_path(d, "t10k-labels-idx1-ubyte"));
    expect_data_error(d, "idx bad gzip", "t10k-labels-idx1-ubyte.gz", "gzip");
    unlink(cli_path(d, "t10k-images-idx3-ubyte"));
    expect_data_error(d, "idx missing file", "t10k-images-idx3-ubyte", "No such file");
    cli_rmtree(d);
}

// ---- flags ----

Test(cli, numeric_flags) {
    static const struct { const char *cmd, *flag, *value, *msg; } bad[] = {
        { "train", "--batch-size", "0", "between 1 and" },
        { "train", "--batch-size", "-8", "between 1 and" },
        { "train", "--batch-size", "eight", "expects an integer, got 'eight'" },
        { "train", "--batch-size", "8x", "expects an integer" },
        { "train", "--batch-size", "", "expects an integer" },
        { "train", "--batch-size", "99999999999999999999", "expects an integer" },
        { "train", "--image-size", "0", "between 1 and 4096" },
        { "train", "--image-size", "100000", "between 1 and 4096, got 100000" },
        { "train", "--epochs", "0", "between 1 and" },
        { "train", "--epochs", "-1", "between 1 and" },
        { "train", "--max-steps", "0", "between 1 and" },
        { "train", "--lr", "-0.1", "between 0 and" },
        { "train", "--lr", "nan", "expects a number, got 'nan'" },
        { "train", "--lr", "inf", "expects a number" },
        { "train", "--lr", "1e999", "expects a number" },
        { "train", "--lr", "fast", "expects a number" },
        { "train", "--momentum", "1.5", "between 0 and 1" },
        { "train", "--weight-decay", "-1", "between 0 and" },
        { "train", "--num-classes", "1", "between 2 and" },
        { "train", "--num-classes", "1000001", "between 2 and" },
        { "train", "--seed", "-1", "between 0 and" },
        { "train", "--train-limit", "0", "between 1 and" },
        { "train", "--test-limit", "-5", "between 1 and" },
        { "train", "--print-every", "0", "between 1 and" },
        { "train", "--checkpoint-every", "0", "between 1 and" },
        { "train", "--normalize", "imagenet2", "expects one of none|imagenet" },
        { "train", "--augment", "flip", "expects one of none|flip-crop" },
        { "train", "--dataset", "mnist", "expects one of auto|cifar10|idx" },
        { "train", "--freeze", "layer5", "--freeze expects one of" },
        { "eval", "--batch-size", "0", "between 1 and" },
        { "eval", "--image-size", "-224", "between 1 and 4096" },
        { "bench", "--steps", "0", "between 1 and" },
        { "bench", "--batch-size", "1e3", "expects an integer" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cli_result r = cli_run(30, "", "%s --data /nonexistent --weights x.pth %s '%s'",
                               bad[i].cmd, bad[i].flag, bad[i].value);
        if (!strcmp(bad[i].cmd, "bench")) {
            cli_result_free(&r);
            r = cli_run(30, "", "bench %s '%s'", bad[i].flag, bad[i].value);
        }
        char what[128];
        snprintf(what, sizeof what, "%s %s '%s'", bad[i].cmd, bad[i].flag, bad[i].value);
        cli_expect_error(&r, 2, what, bad[i].flag, bad[i].msg, NULL);
        cli_result_free(&r);
    }
}

Test(cli, usage_errors) {
    static const cli_usage_case bad[] = {
        { "train --image-size 32", "train needs --data DIR" },
        { "train --data", "--data needs a value" },
        { "train --data /tmp --bogus", "unknown option '--bogus'" },
        { "train --data /tmp -x", "unknown option '-x'" },
        { "train --data /tmp extra", "unexpected argument 'extra'" },
        { "train --data /tmp --predictions p.csv", "unknown option '--predictions'" },
        { "train --data /tmp --checkpoint-every 2", "--checkpoint-every needs --checkpoint" },
        { "eval --data /tmp", "eval needs --data and --weights" },
        { "eval --data /tmp --weights w.pth --lr 0.1", "unknown option '--lr'" },
        { "bench --data /tmp", "unknown option '--data'" },
        { "frobnicate", "unknown command 'frobnicate'" },
    };
    cli_expect_usage_errors("", bad, sizeof bad / sizeof bad[0]);
}

// pocl reports no device when its kernel cache folder cannot be made: the error names the
// variable and the folder instead of asking for a driver. (A machine with another OpenCL
// device lists that one: nothing to check there.)
Test(cli, unusable_cache_folder_named, .timeout = 60) {
    char *dir = cli_tmpdir();
    cli_write_file(dir, "file", "x", 1);
    char env[1200];
    snprintf(env, sizeof env, "XDG_CACHE_HOME=%s CLTRAIN_NO_CACHE=1", cli_path(dir, "file"));
    cli_result r = cli_run(30, env, "devices");
    if (r.status != 0 && !getenv("POCL_CACHE_DIR"))
        cli_expect_error(&r, 2, "devices with XDG_CACHE_HOME a file", "XDG_CACHE_HOME",
                         cli_path(dir, "file"), "not a writable folder", NULL);
    cli_result_free(&r);
    // An empty POCL_CACHE_DIR (pocl 3.1 aborts on it) means pocl's default: no crash.
    r = cli_run(30, "POCL_CACHE_DIR=", "devices");
    cr_expect(r.status == 0 || r.status == 2, "empty POCL_CACHE_DIR: status %d\n%s", r.status,
              r.err);
    cr_expect(!strstr(r.err, "Assertion"), "empty POCL_CACHE_DIR: %s", r.err);
    cli_result_free(&r);
    cli_rmtree(dir);
}

// A batch or image size the device cannot hold is refused before training, with the
// largest batch size that fits (computed for the device at hand, so only its form is checked).
Test(cli, too_big_for_the_device, .timeout = 120) {
    char *data = cli_cifar_dir(8, 8), *dir = cli_tmpdir();
    cli_result r = cli_run(60, "", "train --data %s --batch-size 100000 --max-steps 1 "
                                   "--save %s", data, cli_path(dir, "m.pth"));
    cli_expect_error(&r, 1, "batch 100000", "--batch-size 100000 at --image-size 224", "MiB",
                     "the largest batch size that fits is ", NULL);
    const char *fit = strstr(r.err, "fits is ");
    cr_expect(fit && atoi(fit + 8) >= 1 && atoi(fit + 8) < 100000, "a real batch size:\n%s",
              r.err);
    cli_result_free(&r);
    r = cli_run(60, "", "eval --data %s --weights tests/fixtures/ckpt_small.pth --num-classes 10 "
                        "--batch-size 100000", data);
    cli_expect_error(&r, 1, "eval batch 100000", "--batch-size 100000", "largest batch size", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "bench --batch-size 100000 --steps 1");
    cli_expect_error(&r, 1, "bench batch 100000", "--batch-size 100000", "largest batch size",
                     NULL);
    cli_result_free(&r);
    // Even one image of 4096x4096 needs ~62 GiB of activations on resnet152 (13 GiB on
    // resnet18); pocl reports a share of the memory free when it starts, so the test caps it.
    r = cli_run(60, "POCL_MEMORY_LIMIT=8", "train --data %s --batch-size 1 --image-size 4096 "
                "--arch resnet152 --max-steps 1", data);
    cli_expect_error(&r, 1, "image 4096", "--image-size 4096", "use a smaller --image-size", NULL);
    cli_result_free(&r);
    cr_expect(!cli_exists(cli_path(dir, "m.pth")));
    cli_rmtree(dir);
    cli_rmtree(data);
}

// A last batch of one 32x32 image would stop training mid-epoch in batch norm (PyTorch
// refuses it too): refused before the first step.
Test(cli, batch_of_one_refused_first, .timeout = 60) {
    char *data = cli_cifar_dir(9, 8);
    cli_result r = cli_run(60, "", "train --data %s --image-size 32 --batch-size 8", data);
    cli_expect_error(&r, 2, "9 images in 8s", "9 training images in batches of 8",
                     "--image-size 32", "--batch-size", NULL);
    cli_result_free(&r);
    r = cli_run(60, "", "train --data %s --image-size 32 --batch-size 1 --train-limit 4", data);
    cli_expect_error(&r, 2, "batch size 1", "4 training images in batches of 1", NULL);
    cli_result_free(&r);
    // Frozen (eval-mode) batch norms, or a larger image, train on one image fine.
    r = cli_run(60, "", "train --data %s --image-size 32 --batch-size 8 --freeze backbone "
                        "--epochs 1 --test-limit 8", data);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cli_result_free(&r);
    cli_rmtree(data);
}

// --save, --checkpoint and --log that cannot be written fail before any training step.
Test(cli, unwritable_outputs_fail_first, .timeout = 120) {
    char *data = cli_cifar_dir(8, 8), *dir = cli_tmpdir();
    cli_write_file(dir, "file", "x", 1);
    static const struct { const char *flag, *target, *msg; } bad[] = {
        { "--save", "missing/m.pth", "folder" },
        { "--save", "file/m.pth", "not writable" },
        { "--save", "sub/", "is a folder" },
        { "--save", ".", "is a folder" },
        { "--checkpoint", "missing/c.pth", "not writable" },
        { "--checkpoint", "sub", "is a folder" },
        { "--log", "missing/l.jsonl", "not writable" },
    };
    cr_assert_eq(mkdir(cli_path(dir, "sub"), 0755), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char target[1024];
        snprintf(target, sizeof target, "%s", cli_path(dir, bad[i].target));
        double t0 = cli_now();
        cli_result r = cli_run(60, "", "train --data %s " TINY " %s %s", data, bad[i].flag, target);
        cli_expect_error(&r, 1, target, bad[i].flag, bad[i].target, bad[i].msg, NULL);
        cr_expect(!strstr(r.err, "cltrain: device"), "%s failed only after opening the device",
                  target);
        cr_expect_lt(cli_now() - t0, 20.0);
        cli_result_free(&r);
    }
    cli_result r = cli_run(60, "", "eval --data %s --weights tests/fixtures/ckpt_small.pth "
                                   "--predictions %s", data, cli_path(dir, "sub"));
    cli_expect_error(&r, 1, "predictions", "--predictions", "is a folder", NULL);
    cli_result_free(&r);
    cr_expect_eq(cli_count_entries(dir, ".tmp"), 0, "no temp file left behind");
    cli_rmtree(data);
    cli_rmtree(dir);
}

// ---- fuzzer regressions (in process) ----

// getopt keeps a pointer into the previous argv after an error inside "-abc"; a second
// cmd_parse_options (the fuzzer, tests) then read freed memory. optind = 0 resets it.
Test(cli, parse_options_twice_after_short_cluster, .init = cr_redirect_stderr) {
    char a0[] = "train", a1[] = "-abc", b1[] = "--batch-size", b2[] = "8";
    char *first[] = { a0, a1, NULL };
    char *second[] = { a0, b1, b2, NULL };
    run_options o;
    run_options_defaults(&o);
    cr_expect_eq(cmd_parse_options(2, first, &o, CMD_TRAIN, NULL, NULL), CLI_EXIT_USAGE);
    memset(a1, 'Z', 4);  // what a freed and reused argv would hold
    run_options_defaults(&o);
    cr_expect_eq(cmd_parse_options(3, second, &o, CMD_TRAIN, NULL, NULL), 0);
    cr_expect_eq(o.batch_size, 8);
}
