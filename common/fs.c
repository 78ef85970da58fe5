// One mkdir -p and one atomic write: see fs.h.
#define _POSIX_C_SOURCE 200809L
#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

int util_mkdir_p(const char *dir) {
    char tmp[4096];
    if (!dir || !*dir) return 0;
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return (mkdir(tmp, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

int util_mkdir_parent(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp) return 0;
    *slash = 0;
    return util_mkdir_p(tmp);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

// The folder of path ("." for a bare name), malloc'd.
static char *dir_name(const char *path) {
    size_t dirlen = (size_t)(base_name(path) - path);
    char *dir = malloc(dirlen + 2);
    if (!dir) return NULL;
    if (dirlen) snprintf(dir, dirlen + 1, "%s", path);
    else strcpy(dir, ".");
    return dir;
}

// A kill -9 during a write leaves "<dir>/.<base>.tmp.<pid>" behind. Remove those whose writer
// no longer exists, so that repeated crashes never pile temp files up next to the target.
static void remove_stale_temps(const char *path) {
    const char *base = base_name(path);
    size_t plen = strlen(base) + 6;
    char *dir = dir_name(path), *prefix = malloc(plen + 1);
    if (prefix) snprintf(prefix, plen + 1, ".%s.tmp.", base);
    DIR *d = dir && prefix ? opendir(dir) : NULL;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strncmp(de->d_name, prefix, plen) != 0) continue;
        char *end = NULL;
        long pid = strtol(de->d_name + plen, &end, 10);
        if (!end || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d) closedir(d);
    free(dir);
    free(prefix);
}

static int fsync_dir(const char *path) {
    char *dir = dir_name(path);
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void release(util_atomic_file *a) {
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->f = NULL;
}

int util_atomic_open(util_atomic_file *a, const char *path, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    const char *base = base_name(path);
    if (!*base) {
        snprintf(err, errlen, "%s: not a file name", path);
        return -1;
    }
    size_t dirlen = (size_t)(base - path), n = strlen(path) + 32;
    a->path = strdup(path);
    a->tmp = malloc(n);
    if (!a->path || !a->tmp) {
        release(a);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(a->tmp, n, "%.*s.%s.tmp.%ld", (int)dirlen, path, base, (long)getpid());
    remove_stale_temps(path);
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0 && !(a->f = fdopen(fd, "wb"))) close(fd);
    if (!a->f) {
        snprintf(err, errlen, "cannot create %s: %s", a->tmp, strerror(errno));
        if (fd >= 0) unlink(a->tmp);
        release(a);
        return -1;
    }
    return 0;
}

int util_atomic_commit(util_atomic_file *a, char *err, size_t errlen) {
    if (!a->f) {
        snprintf(err, errlen, "%s: not open for writing", a->path ? a->path : "?");
        release(a);
        return -1;
    }
    int rc = 0;
    if (ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", a->path, strerror(errno));
        rc = -1;
    }
    if (fclose(a->f) != 0 && rc == 0) {
        snprintf(err, errlen, "cannot write %s: %s", a->path, strerror(errno));
        rc = -1;
    }
    a->f = NULL;
    if (rc == 0 && rename(a->tmp, a->path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", a->tmp, a->path, strerror(errno));
        rc = -1;
    }
    if (rc != 0) unlink(a->tmp);   // leaves the old target intact
    // A rename not yet on disk could be lost in a crash; fsync the folder.
    if (rc == 0 && fsync_dir(a->path) != 0) {
        snprintf(err, errlen, "%s: fsync of its folder failed: %s", a->path, strerror(errno));
        rc = -1;
    }
    release(a);
    return rc;
}

void util_atomic_abort(util_atomic_file *a) {
    if (a->f) {
        fclose(a->f);
        unlink(a->tmp);
    }
    release(a);
}
