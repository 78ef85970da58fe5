// The progress bar under a real terminal: `script` (util-linux) runs cltrain on a
// pseudo-terminal, and what it wrote is replayed as a terminal shows it (carriage return,
// erase to end of line, newline). No line on screen may mix a printed line with the bar's text:
// the seed printed "[Epoch 1, Batch 2] loss: 2.407" over the bar and left
// "loss: 2.40763.7 img/s  ETA 0:06".
#define _POSIX_C_SOURCE 200809L
#include "tests/cli_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

// Replays terminal output: returns the screen's lines, '\n'-separated (malloc'd).
static char *screen_lines(const char *s) {
    size_t cap = strlen(s) + 2, used = 0;
    char *out = malloc(cap), line[4096];
    cr_assert_not_null(out);
    size_t len = 0, col = 0;
    for (const char *p = s;; p++) {
        if (!*p || *p == '\n') {
            memcpy(out + used, line, len);
            used += len;
            out[used++] = '\n';
            len = col = 0;
            if (!*p) break;
        } else if (*p == '\r') {
            col = 0;
        } else if (*p == '\033' && p[1] == '[') {  // CSI: parameters, then a final byte
            const char *q = p + 2;
            while (*q && (*q < 0x40 || *q > 0x7e)) q++;
            if (*q == 'K') len = col;               // erase to end of line
            p = *q ? q : q - 1;
        } else if (col < sizeof line) {
            line[col++] = *p;
            if (col > len) len = col;
        }
    }
    out[used] = 0;
    return out;
}

// Runs `cltrain <args>` on a pseudo-terminal; returns its exit status and the screen.
static int run_on_tty(char **screen, const char *args) {
    if (system("command -v script >/dev/null 2>&1") != 0)
        cr_skip_test("util-linux's script is not installed");
    char *dir = cli_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "script -qfec \"timeout -k 5 120 %s %s\" /dev/null >%s/tty "
             "2>&1 </dev/null", cli_bin(), args, dir);
    int st = system(cmd);
    char *raw = cli_read_file(cli_path(dir, "tty"), NULL);
    cr_assert_not_null(raw, "no terminal output from: %s", cmd);
    *screen = screen_lines(raw);
    free(raw);
    cli_rmtree(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void expect_no_line_mixing(const char *screen, const char *printed) {
    const char *p = screen;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char one[4096];
        snprintf(one, sizeof one, "%.*s", (int)n, p);
        cr_expect(!(strstr(one, printed) && strstr(one, "img/s")),
                  "a line mixes '%s' with the progress bar: '%s'\nscreen:\n%s", printed, one,
                  screen);
        p += n + (eol ? 1 : 0);
    }
}

Test(progress, lines_never_print_over_the_bar, .timeout = 240) {
    char *data = cli_cifar_dir(24, 8);
    char *screen = NULL;
    char args[1024];
    snprintf(args, sizeof args, "train --data %s --image-size 32 --batch-size 4 --lr 0.003 "
             "--epochs 2 --print-every 4 --test-limit 8", data);
    int rc = run_on_tty(&screen, args);
    cr_assert_eq(rc, 0, "training failed:\n%s", screen);
    // 6 batches an epoch: the line at batch 4 is printed while the bar is up, and the bar of
    // batch 6 stays on screen at the end of the epoch.
    cr_expect(strstr(screen, "[epoch 1] 6/6") && strstr(screen, "img/s"),
              "the bar was drawn on the terminal and kept at the end of the epoch:\n%s", screen);
    cr_expect(strstr(screen, "[Epoch 2, Batch 4] loss: ") != NULL, "%s", screen);
    cr_expect(strstr(screen, "Finished Training") != NULL, "%s", screen);
    expect_no_line_mixing(screen, "loss:");
    expect_no_line_mixing(screen, "Finished");
    expect_no_line_mixing(screen, "Accuracy");
    free(screen);
    // An error in the middle of an epoch (the loss diverges after a few steps) erases the bar
    // first: the error line stays whole.
    snprintf(args, sizeof args, "train --data %s --image-size 32 --batch-size 4 --lr 1e4 "
             "--momentum 0.99 --epochs 2 --print-every 1", data);
    rc = run_on_tty(&screen, args);
    cr_expect_eq(rc, 1, "a diverging run fails:\n%s", screen);
    cr_expect(strstr(screen, "cltrain: error: non-finite") != NULL, "%s", screen);
    expect_no_line_mixing(screen, "cltrain: error");
    expect_no_line_mixing(screen, "loss:");
    free(screen);
    cli_rmtree(data);
}
