// See cli_run.h.
#define _XOPEN_SOURCE 700  // nftw
#include "tests/cli_run.h"
#include "dataset/image.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *cli_bin(void) {
    const char *b = getenv("CLTRAIN_BIN");
    return b && *b ? b : "./cltrain";
}

char *cli_tmpdir(void) {
    char tmpl[] = "/tmp/cltrain-cli-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d, "mkdtemp: %s", strerror(errno));
    return strdup(d);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void cli_rmtree(char *dir) {
    if (dir && !strncmp(dir, "/tmp/cltrain-cli-", 17))  // only what cli_tmpdir made
        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

const char *cli_path(const char *dir, const char *name) {
    static char buf[8][1024];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

void cli_write_file(const char *dir, const char *name, const void *data, size_t n) {
    FILE *f = fopen(cli_path(dir, name), "wb");
    cr_assert_not_null(f, "cannot create %s/%s", dir, name);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

void cli_write_cut_jpeg(const char *dir, const char *name) {
    char cmd[1400], path[1024];
    snprintf(path, sizeof path, "%s", cli_path(dir, name));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import os, sys; from PIL import Image; "
             "p = sys.argv[1]; Image.frombytes(\"RGB\", (48, 48), bytes((i * 37) %% 251 for i in "
             "range(48 * 48 * 3))).save(p, quality=90); os.truncate(p, os.path.getsize(p) * 6 // "
             "10)' '%s'", path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

void cli_write_cifar(const char *dir, const char *name, int n, unsigned seed) {
    unsigned char *buf = malloc((size_t)n * 3073 + 1);
    cr_assert_not_null(buf);
    unsigned s = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        unsigned char *rec = buf + (size_t)i * 3073;
        rec[0] = (unsigned char)(i % 10);
        for (int k = 1; k < 3073; k++) {
            s = s * 1103515245u + 12345u;
            rec[k] = (unsigned char)(s >> 16);
        }
    }
    cli_write_file(dir, name, buf, (size_t)n * 3073);
    free(buf);
}

char *cli_cifar_dir(int ntrain, int ntest) {
    char *d = cli_tmpdir();
    cli_write_cifar(d, "data_batch_1.bin", ntrain, 1);
    cli_write_cifar(d, "test_batch.bin", ntest, 2);
    return d;
}

char *cli_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    for (size_t k; b && (k = fread(b + len, 1, cap - len - 1, f)) > 0;) {
        len += k;
        if (cap - len < 2) {
            char *nb = realloc(b, cap * 2);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b) b[len] = 0;
    if (n) *n = len;
    return b;
}

int cli_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cli_count_entries(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, part)) n++;
    if (d) closedir(d);
    return n;
}

int cli_count(const char *s, const char *part) {
    int n = 0;
    for (const char *p = strstr(s, part); p; p = strstr(p + 1, part)) n++;
    return n;
}

static int status_of(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

cli_result cli_run(int seconds, const char *env, const char *fmt, ...) {
    char args[6000], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *dir = cli_tmpdir();
    snprintf(cmd, sizeof cmd, "%s timeout -k 5 %d %s %s >%s/out 2>%s/err </dev/null", env,
             seconds, cli_bin(), args, dir, dir);
    cli_result r = { status_of(system(cmd)), NULL, NULL };
    r.out = cli_read_file(cli_path(dir, "out"), NULL);
    r.err = cli_read_file(cli_path(dir, "err"), NULL);
    cr_assert(r.out && r.err, "cannot read the output of: %s", cmd);
    cli_rmtree(dir);
    return r;
}

void cli_result_free(cli_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

void cli_expect_error(const cli_result *r, int status, const char *what, ...) {
    cr_expect_eq(r->status, status, "%s: exit status %d, expected %d; stderr:\n%s", what,
                 r->status, status, r->err);
    cr_expect(!strstr(r->err, "Sanitizer") && !strstr(r->err, "runtime error"),
              "%s: sanitizer report:\n%s", what, r->err);
    cr_expect(!strstr(r->out, "Finished Training") && !strstr(r->out, "[Epoch"),
              "%s: training ran:\n%s", what, r->out);
    int lines = 0;
    const char *line = NULL;
    for (const char *p = r->err; (p = strstr(p, "cltrain: error:")); p++) {
        if (p != r->err && p[-1] != '\n') continue;
        if (!lines++) line = p;
    }
    cr_expect_eq(lines, 1, "%s: expected exactly one error line, got %d:\n%s", what, lines, r->err);
    if (!line) return;
    const char *eol = strchr(line, '\n');
    char one[2048];
    snprintf(one, sizeof one, "%.*s", eol ? (int)(eol - line) : (int)strlen(line), line);
    va_list ap;
    va_start(ap, what);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_expect(strstr(one, s) != NULL, "%s: the error line lacks '%s': %s", what, s, one);
    va_end(ap);
}

pid_t cli_spawn(const char *dir, const char *const *argv) {
    const char *full[64];
    int n = 0;
    full[n++] = cli_bin();
    for (; argv[n - 1] && n < 63; n++) full[n] = argv[n - 1];
    full[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, cli_path(dir, "out.txt"),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, cli_path(dir, "err.txt"),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, full[0], &fa, NULL, (char *const *)full, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", full[0], strerror(rc));
    return pid;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_sleep(double seconds) {
    struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int cli_wait(pid_t pid, double seconds) {
    double end = cli_now() + seconds;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return status_of(st);
        cr_assert_geq(r, 0, "waitpid: %s", strerror(errno));
        if (cli_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        cli_sleep(0.005);
    }
}

static int is_void_element(const char *name, size_t n) {
    static const char *v[] = { "br", "img", "meta", "link", "input", "hr" };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (strlen(v[i]) == n && !strncmp(v[i], name, n)) return 1;
    return 0;
}

int cli_html_balanced(const char *html, char *msg, size_t len) {
    const char *stack[256];
    size_t depth = 0, name_len[256];
    const char *p = html;
    if (!strncmp(p, "<!DOCTYPE html>", 15)) p += 15;
    for (; *p; p++) {
        if (*p == '>') { snprintf(msg, len, "stray '>' at %ld", (long)(p - html)); return -1; }
        if (*p != '<') continue;
        const char *t = p + 1;
        int closing = *t == '/';
        t += closing;
        const char *name = t;
        while (isalnum((unsigned char)*t)) t++;
        size_t n = (size_t)(t - name);
        if (!n) { snprintf(msg, len, "'<' without a tag name at %ld", (long)(p - html)); return -1; }
        while (*t && *t != '>') {  // attributes: name="value", quoted
            if (*t == '"') {
                const char *q = strchr(t + 1, '"');
                if (!q) { snprintf(msg, len, "unclosed quote at %ld", (long)(t - html)); return -1; }
                t = q;
            } else if (*t == '<' || *t == '\'') {
                snprintf(msg, len, "bad character in a tag at %ld", (long)(t - html));
                return -1;
            }
            t++;
        }
        if (!*t) { snprintf(msg, len, "unclosed tag at %ld", (long)(p - html)); return -1; }
        int self = t[-1] == '/';
        if (closing) {
            if (!depth || name_len[depth - 1] != n || strncmp(stack[depth - 1], name, n)) {
                snprintf(msg, len, "</%.*s> at %ld closes <%.*s>", (int)n, name, (long)(p - html),
                         depth ? (int)name_len[depth - 1] : 4, depth ? stack[depth - 1] : "none");
                return -1;
            }
            depth--;
        } else if (!self && !is_void_element(name, n)) {
            if (depth == 256) { snprintf(msg, len, "nested too deep"); return -1; }
            stack[depth] = name;
            name_len[depth++] = n;
        }
        p = t;
    }
    if (depth) {
        snprintf(msg, len, "<%.*s> is never closed", (int)name_len[depth - 1], stack[depth - 1]);
        return -1;
    }
    return 0;
}

char *cli_html_attr(const char *tag, const char *name) {
    const char *end = strchr(tag, '>');
    size_t n = strlen(name);
    for (const char *p = tag + 1; end && p < end; p++) {
        if (p[-1] != ' ' || strncmp(p, name, n) || p[n] != '=' || p[n + 1] != '"') continue;
        const char *v = p + n + 2, *q = strchr(v, '"');
        return q ? strndup(v, (size_t)(q - v)) : NULL;
    }
    return NULL;
}

int cli_png_not_blank(const char *path, double *sd, char *msg, size_t len) {
    image img = { 0 };
    if (image_decode(path, &img, msg, len)) return -1;
    double s = 0, s2 = 0, n = (double)img.h * img.w;
    for (long i = 0; i < (long)n; i++) {
        s += img.pixels[i];
        s2 += (double)img.pixels[i] * img.pixels[i];
    }
    image_free(&img);
    *sd = sqrt(fmax(0, s2 / n - (s / n) * (s / n)));
    if (*sd > 10) return 0;
    snprintf(msg, len, "%s: blank (standard deviation %.2f of 255)", path, *sd);
    return -1;
}

void cli_expect_usage_errors(const char *prefix, const cli_usage_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        cli_result r = cli_run(30, "", "%s%s", prefix, cases[i].args);
        cli_expect_error(&r, 2, cases[i].args, cases[i].msg, NULL);
        cli_result_free(&r);
    }
}
