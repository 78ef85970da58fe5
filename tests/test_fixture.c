// The fixture reader of tests/fixture.h (format checks, the message naming the tool that
// regenerates a bad file, layouts) and the C copy of the ResNet18 weight generator against
// the values numpy computed (tests/fixtures/resnet18_32x{2,8}.bin, tools/make_fixtures.py).
// No device needed.
// mkstemp (POSIX.1-2008) for the temporary damaged files.
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fixture.h"

static void load(fixture *f, const char *name)
{
    char err[1024];
    int rc = fixture_load_named(f, name, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
}

// Tensor `name` of dtype and ndim (ndim < 0: any), asserted present.
static const fixture_tensor *need(const fixture *f, const char *name, fixture_dtype dtype,
                                  int ndim)
{
    const fixture_tensor *t = fixture_get(f, name);
    cr_assert_not_null(t, "%s: no tensor %s (regenerate with tools/make_fixtures.py)",
                       f->path, name);
    cr_assert_eq(t->dtype, dtype, "%s: tensor %s has dtype %d, want %d", f->path, name,
                 (int)t->dtype, (int)dtype);
    cr_assert(ndim < 0 || t->ndim == ndim, "%s: tensor %s has %d dims, want %d", f->path,
              name, t->ndim, ndim);
    return t;
}

static const fixture_tensor *need_f32(const fixture *f, const char *name, int ndim)
{
    return need(f, name, FIXTURE_F32, ndim);
}

// Write `len` bytes of `data` to a fresh temporary file; returns its path in `path`.
static void write_temp(char *path, size_t pathlen, const void *data, size_t len)
{
    snprintf(path, pathlen, "/tmp/cltrain_fixture_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *len = (size_t)size;
    return buf;
}

// Load a damaged copy and expect a failure whose message contains `needle` and names the
// regenerating tool.
static void expect_load_fails(const void *data, size_t len, const char *needle)
{
    char path[64], err[1024] = "";
    write_temp(path, sizeof path, data, len);
    fixture f;
    int rc = fixture_load(&f, path, err, sizeof err);
    unlink(path);
    cr_expect_neq(rc, 0, "a damaged file (%s) loaded", needle);
    cr_expect(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err, needle);
    cr_expect(strstr(err, "tools/make_fixtures.py") != NULL,
              "message \"%s\" does not name tools/make_fixtures.py", err);
    cr_expect_eq(f.count, 0);
    fixture_free(&f);
}

Test(torch_fixture, reads_op_file)
{
    fixture f;
    load(&f, "op_conv2d.bin");
    const fixture_tensor *x = need(&f, "0.x", FIXTURE_F32, 4);
    cr_expect(x->dims[0] == 2 && x->dims[1] == 3 && x->dims[2] == 12 && x->dims[3] == 10);
    cr_expect_eq(x->numel, (size_t)(2 * 3 * 12 * 10));
    const fixture_tensor *cases = need(&f, "cases", FIXTURE_I32, 1);
    cr_expect_eq(cases->numel, 4u);
    cr_expect_null(fixture_get(&f, "no.such.tensor"));
    cr_expect_null(fixture_f32(cases), "dtype-checked accessor returned data");
    fixture_free(&f);
    fixture_free(&f);    // twice is harmless
}

Test(torch_fixture, rejects_damaged_files)
{
    char path[512];
    const char *dir = getenv("CLTRAIN_FIXTURES");
    snprintf(path, sizeof path, "%s/op_relu.bin", dir && *dir ? dir : "tests/fixtures");
    size_t len;
    unsigned char *buf = read_whole(path, &len);
    expect_load_fails(buf, len - 1, "bytes");               // truncated data
    expect_load_fails(buf, 30, "truncated");                // truncated header
    unsigned char *extra = malloc(len + 3);
    cr_assert_not_null(extra);
    memcpy(extra, buf, len);
    memset(extra + len, 0, 3);
    expect_load_fails(extra, len + 3, "trailing");
    free(extra);
    buf[4] = 2;                                             // a future version
    expect_load_fails(buf, len, "version 2");
    buf[0] = 'X';
    expect_load_fails(buf, len, "not a CLFX");
    free(buf);

    fixture f;
    char err[1024] = "";
    cr_expect_neq(fixture_load(&f, "/nonexistent/op_x.bin", err, sizeof err), 0);
    cr_expect(strstr(err, "tools/make_fixtures.py") != NULL, "%s", err);
    fixture_free(&f);
}

Test(torch_fixture, layouts)
{
    // (N, C, H, W) = (2, 3, 2, 1): element (n, c, h) = 100n + 10c + h.
    float nchw[12], cnhw[12], back[12];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 2; h++)
                nchw[(n * 3 + c) * 2 + h] = (float)(100 * n + 10 * c + h);
    fixture_nchw_to_cnhw(cnhw, nchw, 2, 3, 2, 1);
    for (int c = 0; c < 3; c++)
        for (int n = 0; n < 2; n++)
            for (int h = 0; h < 2; h++)
                cr_expect_eq(cnhw[(c * 2 + n) * 2 + h], (float)(100 * n + 10 * c + h));
    fixture_cnhw_to_nchw(back, cnhw, 2, 3, 2, 1);
    cr_expect_arr_eq(back, nchw, sizeof nchw);
    // (N, K) = (2, 3) -> (K, N)
    float nk[6] = {0, 1, 2, 10, 11, 12}, kn[6], nk2[6];
    fixture_transpose(kn, nk, 2, 3);
    float want[6] = {0, 10, 1, 11, 2, 12};
    cr_expect_arr_eq(kn, want, sizeof kn);
    fixture_transpose(nk2, kn, 3, 2);
    cr_expect_arr_eq(nk2, nk, sizeof nk);
}

// ======================================================================== generator
Test(torch_resnet_gen, kinds_from_names)
{
    struct { const char *name; fixture_param_kind kind; } cases[] = {
        {"conv1.weight", FIXTURE_PARAM_CONV},
        {"bn1.weight", FIXTURE_PARAM_BN_WEIGHT},
        {"bn1.bias", FIXTURE_PARAM_BN_BIAS},
        {"bn1.running_mean", FIXTURE_PARAM_RUNNING_MEAN},
        {"layer1.0.bn2.running_var", FIXTURE_PARAM_RUNNING_VAR},
        {"layer1.0.bn2.num_batches_tracked", FIXTURE_PARAM_ZERO},
        {"layer3.1.conv2.weight", FIXTURE_PARAM_CONV},
        {"layer2.0.downsample.0.weight", FIXTURE_PARAM_CONV},
        {"layer2.0.downsample.1.weight", FIXTURE_PARAM_BN_WEIGHT},
        {"layer2.0.downsample.1.bias", FIXTURE_PARAM_BN_BIAS},
        {"fc.weight", FIXTURE_PARAM_FC},
        {"fc.bias", FIXTURE_PARAM_FC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(fixture_resnet_kind(cases[i].name), cases[i].kind, "%s", cases[i].name);
}

// Bit-exact: the generator is pure integer arithmetic plus one double expression rounded
// once to float, so any difference is a bug (or a compiler fusing a multiply-add).
static void expect_bits(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        if (a != b) {
            cr_expect_fail("%s: element %zu: C %.9g (0x%08x), numpy %.9g (0x%08x)", what, i,
                           got[i], a, want[i], b);
            return;
        }
    }
}

Test(torch_resnet_gen, matches_stored_values)
{
    fixture f;
    load(&f, "resnet18_32x2.bin");
    int checked = 0;
    for (int t = 0; t < f.count; t++) {
        const fixture_tensor *s = &f.tensors[t];
        if (strncmp(s->name, "gen.", 4) != 0)
            continue;
        const char *pname = s->name + 4;
        char idxname[160];
        snprintf(idxname, sizeof idxname, "genidx.%s", pname);
        const int64_t *idx = fixture_i64(need(&f, idxname, FIXTURE_I64, 1));
        cr_assert_not_null(fixture_f32(s));
        float got[64];
        cr_assert(s->numel <= 64);
        fixture_resnet_param(got, s->numel, (int)idx[0], fixture_resnet_kind(pname),
                             (int)idx[2], (uint64_t)idx[1]);
        expect_bits(s->name, got, fixture_f32(s), s->numel);
        checked++;
    }
    cr_expect_geq(checked, 8, "only %d generator samples in the fixture", checked);

    // The input images (t = 1000) are checked by fixture_contents_*; labels [3, 7].
    const int64_t *lab = fixture_i64(need(&f, "labels", FIXTURE_I64, 1));
    cr_expect(lab[0] == 3 && lab[1] == 7);
    const fixture_tensor *numel = need(&f, "state_dict.numel", FIXTURE_I64, 1);
    cr_expect_eq(numel->numel, 122u, "state_dict of resnet18 has 122 entries");
    fixture_free(&f);
}

// The stored tensors the model test relies on are present with PyTorch's shapes. Both files
// use the generated weights; resnet18_32x8.bin (batch 8) is the well-conditioned one for
// train-mode gradients (see tools/make_fixtures.py, make_resnet).
static void expect_resnet_contents(const char *file, int batch)
{
    fixture f;
    load(&f, file);
    const fixture_tensor *in = need_f32(&f, "input", 4);
    cr_expect(in->dims[0] == batch && in->dims[1] == 3 && in->dims[2] == 32 &&
              in->dims[3] == 32, "%s: input shape", file);
    float *x = malloc(in->numel * sizeof(float));
    cr_assert_not_null(x);
    fixture_resnet_param(x, in->numel, 1000, FIXTURE_PARAM_UNIFORM, 0, 0);
    expect_bits(file, x, fixture_f32(in), in->numel);
    free(x);
    const fixture_tensor *t = need_f32(&f, "logits", 2);
    cr_expect(t->dims[0] == batch && t->dims[1] == 10, "%s: logits shape", file);
    need_f32(&f, "eval_logits", 2);
    need_f32(&f, "loss", 1);
    cr_expect_eq(need(&f, "labels", FIXTURE_I64, 1)->numel, (size_t)batch);
    static const char *names[] = {
        "grad.conv1.weight", "grad.bn1.weight", "grad.bn1.bias",
        "grad.layer1.0.conv1.weight", "grad.layer1.0.bn1.weight", "grad.layer1.0.bn2.bias",
        "grad.layer2.0.conv1.weight", "grad.layer2.0.downsample.0.weight",
        "grad.layer2.0.downsample.1.weight", "grad.layer4.1.conv2.weight.head",
        "grad.layer4.1.bn2.weight", "grad.fc.weight", "grad.fc.bias",
        "gradnorm.layer4.1.conv2.weight",
        "after.bn1.running_mean", "after.bn1.running_var", "after.layer4.1.bn2.running_var",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        need_f32(&f, names[i], -1);
    fixture_free(&f);
}

Test(torch_resnet_gen, fixture_contents_32x2) { expect_resnet_contents("resnet18_32x2.bin", 2); }
Test(torch_resnet_gen, fixture_contents_32x8) { expect_resnet_contents("resnet18_32x8.bin", 8); }
