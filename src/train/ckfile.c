/* Checkpoint files (asymml/train.h, "checkpoint files and directories"):
 * one file written atomically (a new temporary file of a unique name,
 * O_EXCL and O_NOFOLLOW, fsync, rename, fsync of the directory) and read
 * whole, relative to its directory's descriptor; and the same by path. */
#define _GNU_SOURCE
#include "ckfile.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int am_ckfile_name(const char *s, int *step) {
    if (strncmp(s, "ckpt-", 5)) return 0;
    for (int i = 5; i < 15; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    if (strcmp(s + 15, ".amck")) return 0;
    long long v = strtoll(s + 5, NULL, 10);
    if (v > INT_MAX) return 0; /* no step of a run */
    if (step) *step = (int)v;
    return 1;
}

int am_checkpoint_name_step(const char *name) {
    int step;
    return name && am_ckfile_name(name, &step) ? step : -1;
}

am_status am_ckfile_write(int dir_fd, const char *dir, const char *name, const uint8_t *buf, size_t n) {
    char tmp[300];
    if (strlen(name) > 200 || strchr(name, '/')) return am_fail(AM_EINVAL, "checkpoint: bad file name '%s'", name);
    if (sodium_init() < 0) return am_fail(AM_EIO, "checkpoint: libsodium failed to initialize");
    snprintf(tmp, sizeof tmp, ".%s.tmp-%08x", name, randombytes_random());
    int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return am_fail(AM_EIO, "%s/%s: cannot create (%s)", dir, tmp, strerror(errno));
    size_t off = 0;
    int err = 0;
    while (off < n && !err) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) err = w < 0 ? errno : ENOSPC;
        else off += (size_t)w;
    }
    if (!err && fsync(fd)) err = errno;
    if (close(fd) && !err) err = errno;
    if (err) {
        unlinkat(dir_fd, tmp, 0);
        return am_fail(AM_EIO, "%s/%s: write failed (%s)", dir, name, strerror(err));
    }
    if (renameat(dir_fd, tmp, dir_fd, name)) {
        int e = errno;
        unlinkat(dir_fd, tmp, 0);
        return am_fail(AM_EIO, "%s/%s: cannot rename into place (%s)", dir, name, strerror(e));
    }
    if (fsync(dir_fd)) return am_fail(AM_EIO, "%s: fsync failed (%s)", dir, strerror(errno));
    return AM_OK;
}

am_status am_ckfile_slurp(int dir_fd, const char *dir, const char *name, uint8_t **out, size_t *out_n) {
    int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return am_fail(AM_EIO, "%s/%s: cannot open (%s)", dir, name, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return am_fail(AM_EIO, "%s/%s: not a regular file", dir, name);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    while (buf && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) return am_fail(AM_ENOMEM, "%s/%s: cannot hold %zu MiB", dir, name, n >> 20);
    if (got != n) {
        free(buf);
        return am_fail(AM_EIO, "%s/%s: read failed", dir, name);
    }
    *out = buf;
    *out_n = n;
    return AM_OK;
}

am_status am_ckfile_read(int dir_fd, const char *dir, const char *name, am_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    uint8_t *buf;
    size_t n;
    am_status st = am_ckfile_slurp(dir_fd, dir, name, &buf, &n);
    if (st != AM_OK) return st;
    st = am_checkpoint_parse(buf, n, ck);
    free(buf);
    if (st != AM_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", am_last_error());
        return am_fail(st, "%s/%s: %s", dir, name, msg);
    }
    /* A checkpoint renamed to another step's name is not that step's. */
    int step;
    if (am_ckfile_name(name, &step) && step != ck->global_step) {
        step = ck->global_step;
        am_checkpoint_free(ck);
        return am_fail(AM_EFORMAT, "%s/%s: holds step %d, not the step its name says", dir, name, step);
    }
    return AM_OK;
}

/* The directory and the file name of a path. */
static am_status split_path(const char *path, am_ckdir *d, const char **name) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    *name = slash ? slash + 1 : path;
    if (!**name) return am_fail(AM_EINVAL, "%s: not a file name", path);
    AM_TRY(am_ckdir_open(dir, AM_CKDIR_READ, d));
    if (slash == path) d->path[0] = 0; /* "/name", not "//name", in messages */
    return AM_OK;
}

am_status am_checkpoint_write(const char *path, const am_checkpoint *ck) {
    if (!path || !ck) return am_fail(AM_EINVAL, "checkpoint: NULL argument");
    am_ckdir d;
    const char *name;
    AM_TRY(split_path(path, &d, &name));
    uint8_t *buf;
    size_t n;
    am_status st = am_checkpoint_encode(ck, &buf, &n);
    if (st == AM_OK) {
        st = am_ckfile_write(d.fd, d.path, name, buf, n);
        free(buf);
    }
    am_ckdir_close(&d);
    return st;
}

am_status am_checkpoint_read(const char *path, am_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    if (!path) return am_fail(AM_EINVAL, "checkpoint: NULL path");
    am_ckdir d;
    const char *name;
    AM_TRY(split_path(path, &d, &name));
    am_status st = am_ckfile_read(d.fd, d.path, name, ck);
    am_ckdir_close(&d);
    return st;
}

am_status am_checkpoint_load(const char *p, am_checkpoint *ck, char *used, size_t cap, char *skipped, size_t scap) {
    memset(ck, 0, sizeof *ck);
    if (skipped && scap) *skipped = 0;
    struct stat sb;
    if (!p) return am_fail(AM_EINVAL, "checkpoint: NULL path");
    if (stat(p, &sb) || !S_ISDIR(sb.st_mode)) {
        if (used) snprintf(used, cap, "%s", p);
        return am_checkpoint_read(p, ck);
    }
    am_ckdir d;
    char name[64];
    AM_TRY(am_ckdir_open(p, AM_CKDIR_READ, &d));
    am_status st = am_ckdir_load(&d, ck, name, sizeof name, skipped, scap);
    if (st == AM_OK && used) snprintf(used, cap, "%s/%s", p, name);
    am_ckdir_close(&d);
    return st;
}
