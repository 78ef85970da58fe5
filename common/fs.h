// Files: one mkdir -p and one atomic write for every part of cltrain (the checkpoints, the
// training state, tuning files, the kernel cache, prediction CSVs). Plain POSIX, no OpenCL.
// The functions of common/ carry the prefix util_ (common/ is the lowest layer: DESIGN.md).
#ifndef CLTRAIN_COMMON_FS_H
#define CLTRAIN_COMMON_FS_H

#include <stddef.h>
#include <stdio.h>

// Create the folder `dir` and its missing parents (mode 0755); an existing folder is fine.
// 0, or -1 with errno set.
int util_mkdir_p(const char *dir);
// The same for the folder that holds the file `path` (nothing to do for a bare name).
int util_mkdir_parent(const char *path);

// A file being written atomically: the content goes to a temp file "<dir>/.<base>.tmp.<pid>"
// beside the target (one filesystem, so rename() is atomic), which util_atomic_commit flushes,
// fsyncs, renames over the target and makes durable (fsync of the folder). On any failure the
// target is untouched and the temp file removed. Readers never see a half-written file.
typedef struct util_atomic_file {
    FILE *f;                       // write the content here
    char *path, *tmp;              // the target and the temp file (malloc'd)
} util_atomic_file;

// Create the temp file for `path` (exclusively; temp files that writers killed earlier left
// beside it are removed first). 0, or -1 with a one-line message naming path in err.
int util_atomic_open(util_atomic_file *a, const char *path, char *err, size_t errlen);
// Finish: flush, fsync, close, rename over the target, fsync its folder. Releases a whatever
// the result. 0, or -1 with a message naming the target.
int util_atomic_commit(util_atomic_file *a, char *err, size_t errlen);
// Give up: close and remove the temp file. Accepts a zeroed or already released struct.
void util_atomic_abort(util_atomic_file *a);

#endif
