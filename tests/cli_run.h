// Running ./cltrain as a subprocess in the CLI and fault tests (test_cli.c, test_faults.c):
// small generated data sets, captured stdout/stderr, and the checks every bad input must pass.
#ifndef CLTRAIN_CLI_RUN_H
#define CLTRAIN_CLI_RUN_H

#include <stddef.h>
#include <sys/types.h>

// The binary under test: $CLTRAIN_BIN (make test-asan sets build-asan/cltrain), else ./cltrain.
const char *cli_bin(void);

// A fresh folder under /tmp (malloc'd path; the caller frees it).
char *cli_tmpdir(void);
// Removes folder `dir` and everything in it, then frees the path (NULL is fine).
void cli_rmtree(char *dir);
// `dir/name` into a static rotating buffer (valid for the next 7 calls).
const char *cli_path(const char *dir, const char *name);

// A CIFAR-10 binary file of n records (label i % 10, deterministic pixels).
void cli_write_cifar(const char *dir, const char *name, int n, unsigned seed);
// A folder holding data_batch_1.bin (ntrain) and test_batch.bin (ntest).
char *cli_cifar_dir(int ntrain, int ntest);
// Writes n bytes to dir/name.
void cli_write_file(const char *dir, const char *name, const void *data, size_t n);
// dir/name: a 48x48 JPEG with its header intact and its data cut (the first 60% of its bytes),
// which an image folder's open keeps and its decode refuses ("image file is truncated").
void cli_write_cut_jpeg(const char *dir, const char *name);
// Reads a whole file (malloc'd, NUL-terminated; *n its size); NULL if it cannot be read.
char *cli_read_file(const char *path, size_t *n);
int cli_exists(const char *path);
// Entries of dir whose name contains `part` (e.g. ".tmp.").
int cli_count_entries(const char *dir, const char *part);
// Occurrences of `part` in s (e.g. a message in a command's stderr).
int cli_count(const char *s, const char *part);

// The report's HTML (cltrain report): every element closed in order (void elements br, img,
// meta, link, input, hr need no end tag; "<x .../>" closes itself), attribute values quoted,
// no stray '<'. 0, or -1 with the first problem (and its offset) in msg.
int cli_html_balanced(const char *html, char *msg, size_t len);
// The value of attribute `name` of the tag that starts at `tag` ("<rect ..."), malloc'd; NULL
// when the tag has none.
char *cli_html_attr(const char *tag, const char *name);
// The PNG screenshot at `path` is not blank: the standard deviation of its first plane is
// above 10 (of 255), written to *sd. 0, or -1 with a message.
int cli_png_not_blank(const char *path, double *sd, char *msg, size_t len);

typedef struct cli_result {
    int status;        // exit status; 128 + signal when killed; 124 when timed out
    char *out, *err;   // stdout, stderr (malloc'd, NUL-terminated)
} cli_result;

// Runs `cltrain <args>` (args is a shell word list) with a time limit; env is a prefix
// of VAR=value words ("" for none). Never hangs: `timeout` kills it after `seconds`.
cli_result cli_run(int seconds, const char *env, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cli_result_free(cli_result *r);

// The contract for a bad input: exit status `status`, no crash or sanitizer report, exactly
// one "cltrain: error:" line on stderr, and that line contains each of the NULL-terminated
// strings that follow (the file or flag and what is wrong); no training happened.
void cli_expect_error(const cli_result *r, int status, const char *what, ...);
// Usage errors, one run each: `cltrain PREFIX ARGS` must fail with exit 2 and one error line
// holding msg (cli_expect_error).
typedef struct cli_usage_case { const char *args, *msg; } cli_usage_case;
void cli_expect_usage_errors(const char *prefix, const cli_usage_case *cases, size_t n);

// Starts cltrain in the background with stdout/stderr to files in dir (out.txt, err.txt);
// argv is NULL-terminated (without the binary). Returns the pid.
pid_t cli_spawn(const char *dir, const char *const *argv);
// Waits up to `seconds` for pid; returns the status as cli_result.status does, or -1 after
// killing it when it did not end in time.
int cli_wait(pid_t pid, double seconds);
double cli_now(void);
void cli_sleep(double seconds);

#endif
