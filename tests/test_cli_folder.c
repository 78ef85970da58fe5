// The commands on image folders: a bad file is one error line naming it (exit 1, nothing
// written), --skip-bad trains on the rest and says what it left out, --val-split reports its
// counts, and eval --predictions has a path column.
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/cli_run.h"

#define FOLDER_TINY "--image-size 32 --batch-size 2 --max-steps 1 --workers 2"

// A 3x2 PPM with pixels from `seed`.
static void clif_ppm(const char *dir, const char *name, int seed)
{
    char data[11 + 18];
    memcpy(data, "P6\n3 2\n255\n", 11);
    for (int i = 0; i < 18; i++) data[11 + i] = (char)(seed * 37 + i * 11);
    cli_write_file(dir, name, data, sizeof(data));
}

// DIR/train/{a,b}/ and DIR/val/{a,b}/ with two PPMs each (mkdir on the way).
static char *clif_folder(void)
{
    char *d = cli_tmpdir();
    const char *sub[] = {"train", "train/a", "train/b", "val", "val/a", "val/b"};
    for (int i = 0; i < 6; i++) mkdir(cli_path(d, sub[i]), 0755);
    clif_ppm(d, "train/a/1.ppm", 1);
    clif_ppm(d, "train/a/2 two.ppm", 2);
    clif_ppm(d, "train/b/3.ppm", 3);
    clif_ppm(d, "train/b/4.ppm", 4);
    clif_ppm(d, "val/a/5,five.ppm", 5);
    clif_ppm(d, "val/b/6.ppm", 6);
    return d;
}

Test(cli_folder, bad_file_is_named_or_skipped, .timeout = 180)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    cli_write_file(d, "train/b/bad.jpg", "not a jpeg", 10);
    cli_result r = cli_run(60, "", "train --data %s " FOLDER_TINY " --save %s", d,
                           cli_path(out, "m.pth"));
    cli_expect_error(&r, 1, "bad file", "train/b/bad.jpg", "not an image", NULL);
    cli_result_free(&r);
    cr_expect(!cli_exists(cli_path(out, "m.pth")), "no --save file after the error");
    r = cli_run(120, "", "train --data %s " FOLDER_TINY " --skip-bad --save %s", d,
                cli_path(out, "m.pth"));
    cr_assert_eq(r.status, 0, "--skip-bad: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "warning:"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "train/b/bad.jpg"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "1 bad files skipped"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "Accuracy of the network on the 2 test images"), "%s", r.out);
    const char *end = strstr(r.err, "--skip-bad: 1 bad files left out of this run");
    cr_expect(end && !strchr(strchr(end, '\n') + 1, '\n'), "the count ends the run: %s", r.err);
    cli_result_free(&r);
    r = cli_run(120, "", "eval --data %s --weights %s --image-size 32 --resize 40 "
                "--skip-bad --predictions %s", d, cli_path(out, "m.pth"),
                cli_path(out, "p.csv"));
    cr_assert_eq(r.status, 0, "eval: status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.out, "Accuracy of a "), "per-class names: %s", r.out);
    cr_expect_not_null(strstr(r.err, "--skip-bad: 1 bad files left out"), "%s", r.err);
    cli_result_free(&r);
    size_t n;
    char *csv = cli_read_file(cli_path(out, "p.csv"), &n);
    cr_assert_not_null(csv);
    cr_expect_eq(strncmp(csv, "index,path,label,pred,logit_0,logit_1\n", 38), 0, "%s", csv);
    cr_expect_not_null(strstr(csv, "\n0,\""), "%s", csv);
    cr_expect_not_null(strstr(csv, "val/a/5,five.ppm\",0,"), "quoted path: %s", csv);
    free(csv);
    cli_rmtree(out);
    cli_rmtree(d);
}

Test(cli_folder, val_split_reports_counts, .timeout = 120)
{
    char *d = clif_folder();
    cli_result r = cli_run(60, "", "train --data %s/train " FOLDER_TINY, d);
    cli_expect_error(&r, 1, "no train/", "/train:", "a folder of class folders needs --val-split",
                     NULL);
    cli_result_free(&r);
    r = cli_run(120, "", "train --data %s/train " FOLDER_TINY " --val-split 0.5 --seed 3", d);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cr_expect_not_null(strstr(r.err, "--val-split 0.5 (seed 3): 2 train, 2 val images"), "%s",
                       r.err);
    cli_result_free(&r);
    cli_rmtree(d);
}

// --resize is part of the training state: resuming without it keeps the saved value (the saved
// model's metadata says 40), and a different one is refused naming both.
Test(cli_folder, resume_keeps_resize, .timeout = 180)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    char state[512], model[512];
    snprintf(state, sizeof state, "%s", cli_path(out, "state.pth"));
    snprintf(model, sizeof model, "%s", cli_path(out, "m.pth"));
    cli_result r = cli_run(120, "", "train --data %s " FOLDER_TINY " --resize 40 --epochs 2 "
                           "--checkpoint %s", d, state);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cli_result_free(&r);
    r = cli_run(60, "", "train --data %s " FOLDER_TINY " --resize 36 --epochs 2 --resume %s", d,
                state);
    cli_expect_error(&r, 2, "--resize 36 contradicts", "state's 40", NULL);
    cli_result_free(&r);
    r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 2 --max-steps 2 "
                "--workers 2 --epochs 2 --resume %s --save %s", d, state, model);
    cr_assert_eq(r.status, 0, "status %d\n%s", r.status, r.err);
    cli_result_free(&r);
    size_t n;
    char path[600];
    snprintf(path, sizeof path, "%s.json", model);
    char *meta = cli_read_file(path, &n);
    cr_assert_not_null(meta, "no %s", path);
    cr_expect_not_null(strstr(meta, "\"resize\":40"), "%s", meta);
    free(meta);
    cli_rmtree(out);
    cli_rmtree(d);
}

// A file that passes the open's header check but is cut in its data: the run stops at that
// batch with one line naming it, after saving --checkpoint as SIGTERM does (exit 1).
Test(cli_folder, file_cut_mid_run_saves_state, .timeout = 180)
{
    char *d = clif_folder(), *out = cli_tmpdir();
    char cut[512], state[512], cmd[1200];
    snprintf(cut, sizeof cut, "%s", cli_path(d, "train/b/cut.jpg"));
    snprintf(state, sizeof state, "%s", cli_path(out, "state.pth"));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import sys; from PIL import Image; "
             "Image.new(\"RGB\", (40, 40), (9, 99, 199)).save(sys.argv[1], quality=90)' %s && "
             "truncate -s 300 %s", cut, cut);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cli_result r = cli_run(120, "", "train --data %s --image-size 32 --batch-size 3 --workers 2 "
                           "--no-shuffle --checkpoint %s", d, state);
    cli_expect_error(&r, 1, "train/b/cut.jpg", "truncated", "training state saved to", NULL);
    cr_expect(strstr(r.out, "Finished Training") == NULL, "%s", r.out);
    cli_result_free(&r);
    cr_expect(cli_exists(state), "no training state at %s", state);
    cli_rmtree(out);
    cli_rmtree(d);
}
