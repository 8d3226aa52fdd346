/* Checkpoint files and directories (asymml/train.h, "checkpoint files and
 * directories"): written atomically (a new temporary file, O_EXCL and
 * O_NOFOLLOW, fsync, rename, fsync of the directory), read whole, listed
 * and pruned, all relative to the directory's descriptor. */
#define _GNU_SOURCE
#include "asymml/seal.h"
#include "asymml/train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_ckpt_name(const char *s) {
    if (strncmp(s, "ckpt-", 5)) return 0;
    for (int i = 5; i < 15; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return !strcmp(s + 15, ".amck");
}

/* Writes buf to a new file in dir_fd and renames it to name. */
static am_status write_atomic(int dir_fd, const char *dir, const char *name, const uint8_t *buf, size_t n) {
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
        return am_fail(AM_EIO, "%s/%s: write failed (%s); no earlier checkpoint was touched", dir, name, strerror(err));
    }
    if (renameat(dir_fd, tmp, dir_fd, name)) {
        int e = errno;
        unlinkat(dir_fd, tmp, 0);
        return am_fail(AM_EIO, "%s/%s: cannot rename into place (%s)", dir, name, strerror(e));
    }
    if (fsync(dir_fd)) return am_fail(AM_EIO, "%s: fsync failed (%s)", dir, strerror(errno));
    return AM_OK;
}

static am_status read_at(int dir_fd, const char *dir, const char *name, am_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
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
    am_status st = got == n ? am_checkpoint_parse(buf, n, ck) : am_fail(AM_EIO, "%s/%s: read failed", dir, name);
    free(buf);
    if (st != AM_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", am_last_error());
        return am_fail(st, "%s/%s: %s", dir, name, msg);
    }
    return AM_OK;
}

am_status am_ckdir_open(const char *dir, int create, am_ckdir *d) {
    memset(d, 0, sizeof *d);
    d->fd = -1;
    if (!dir || !*dir) return am_fail(AM_EINVAL, "checkpoint directory: empty path");
    if (strlen(dir) >= sizeof d->path) return am_fail(AM_EINVAL, "checkpoint directory: path too long");
    if (create && mkdir(dir, 0700) && errno != EEXIST)
        return am_fail(AM_EIO, "%s: cannot create directory (%s)", dir, strerror(errno));
    d->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->fd < 0) return am_fail(AM_EIO, "%s: %s", dir, errno == ENOTDIR ? "not a directory" : strerror(errno));
    snprintf(d->path, sizeof d->path, "%s", dir);
    if (create) {
        char p[64];
        snprintf(p, sizeof p, ".asymml-write-test-%08x", randombytes_random());
        int fd = openat(d->fd, p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            am_ckdir_close(d);
            return am_fail(AM_EIO, "%s: not writable (%s)", dir, strerror(e));
        }
        close(fd);
        unlinkat(d->fd, p, 0);
    }
    return AM_OK;
}

void am_ckdir_close(am_ckdir *d) {
    if (d && d->fd >= 0) close(d->fd);
    if (d) d->fd = -1;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

/* Sorted checkpoint names (oldest first); *names is malloc'ed. */
static am_status list(const am_ckdir *d, char ***names, int *count) {
    *names = NULL;
    *count = 0;
    int fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dh = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dh) {
        int e = errno;
        if (fd >= 0) close(fd);
        return am_fail(AM_EIO, "%s: cannot list (%s)", d->path, strerror(e));
    }
    struct dirent *e;
    int cap = 0;
    am_status st = AM_OK;
    while ((e = readdir(dh))) {
        if (!is_ckpt_name(e->d_name)) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(*names, sizeof(char *) * (size_t)cap);
            if (!nn) {
                st = am_fail(AM_ENOMEM, "out of memory");
                break;
            }
            *names = nn;
        }
        if (!((*names)[*count] = strdup(e->d_name))) {
            st = am_fail(AM_ENOMEM, "out of memory");
            break;
        }
        (*count)++;
    }
    closedir(dh);
    if (*names) qsort(*names, (size_t)*count, sizeof(char *), cmp_names);
    return st;
}

am_status am_ckdir_latest(const am_ckdir *d, char *name, size_t cap) {
    char **names;
    int count;
    AM_TRY(list(d, &names, &count));
    am_status st = count ? AM_OK : am_fail(AM_EIO, "%s: no checkpoint (ckpt-*.amck) in this directory", d->path);
    if (st == AM_OK && snprintf(name, cap, "%s", names[count - 1]) >= (int)cap) st = am_fail(AM_EINVAL, "name too long");
    free_names(names, count);
    return st;
}

am_status am_ckdir_prune(const am_ckdir *d, int keep) {
    if (keep < 1) return am_fail(AM_EINVAL, "checkpoint: keep %d, must be at least 1", keep);
    char **names;
    int count;
    AM_TRY(list(d, &names, &count));
    am_status st = AM_OK;
    for (int i = 0; i + keep < count; i++)
        if (unlinkat(d->fd, names[i], 0) && errno != ENOENT && st == AM_OK)
            st = am_fail(AM_EIO, "%s/%s: cannot delete (%s)", d->path, names[i], strerror(errno));
    free_names(names, count);
    return st;
}

am_status am_ckdir_save(const am_ckdir *d, const am_checkpoint *ck, int keep, char *name, size_t cap) {
    char nm[32];
    snprintf(nm, sizeof nm, "ckpt-%010d.amck", ck->global_step);
    uint8_t *buf;
    size_t n;
    AM_TRY(am_checkpoint_encode(ck, &buf, &n));
    am_status st = write_atomic(d->fd, d->path, nm, buf, n);
    free(buf);
    AM_TRY(st);
    if (name) snprintf(name, cap, "%s", nm);
    return am_ckdir_prune(d, keep);
}

am_status am_ckdir_read(const am_ckdir *d, const char *name, am_checkpoint *ck) {
    AM_TRY(read_at(d->fd, d->path, name, ck));
    /* A checkpoint renamed to another step's name is not that step's. */
    if (is_ckpt_name(name) && atoi(name + 5) != ck->global_step) {
        int step = ck->global_step;
        am_checkpoint_free(ck);
        return am_fail(AM_EFORMAT, "%s/%s: holds step %d, not the step its name says", d->path, name, step);
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
    return am_ckdir_open(dir, 0, d);
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
        st = write_atomic(d.fd, d.path, name, buf, n);
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
    am_status st = am_ckdir_read(&d, name, ck);
    am_ckdir_close(&d);
    return st;
}

am_status am_checkpoint_load(const char *p, am_checkpoint *ck, char *used, size_t cap) {
    memset(ck, 0, sizeof *ck);
    struct stat sb;
    if (!p) return am_fail(AM_EINVAL, "checkpoint: NULL path");
    if (stat(p, &sb) || !S_ISDIR(sb.st_mode)) {
        if (used) snprintf(used, cap, "%s", p);
        return am_checkpoint_read(p, ck);
    }
    am_ckdir d;
    char name[64];
    AM_TRY(am_ckdir_open(p, 0, &d));
    am_status st = am_ckdir_latest(&d, name, sizeof name);
    if (st == AM_OK) st = am_ckdir_read(&d, name, ck);
    if (st == AM_OK && used) snprintf(used, cap, "%s/%s", p, name);
    am_ckdir_close(&d);
    return st;
}
