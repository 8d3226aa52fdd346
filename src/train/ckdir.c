/* Checkpoint directories (asymml/train.h, "checkpoint files and
 * directories"): one run's, held by one process at a time (a lock on the
 * directory),
 * listed, pruned by run, loaded newest first past damaged files, and
 * cleared for a new run by moving the old files aside, all relative to the
 * directory's descriptor. One file's writing and reading is ckfile.c's. */
#define _GNU_SOURCE
#include "ckfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_NAME ".asymml-lock"

/* The directory's entries, from its own descriptor (NULL, errno set, if not). */
static DIR *entries(const am_ckdir *d) {
    int fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dh = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dh && fd >= 0) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return dh;
}

static am_status none(const am_ckdir *d) {
    return am_fail(AM_EIO, "%s: no checkpoint (ckpt-*.amck) in this directory (a run saves its first at the end of its "
                           "first epoch, or after --save-every steps)", d->path);
}

/* Temporary files a writer left when it was stopped mid-save (.NAME.tmp-X):
 * never a checkpoint, and no other writer is here (the lock is ours). */
static void sweep(const am_ckdir *d) {
    DIR *dh = entries(d);
    if (!dh) return;
    struct dirent *e;
    while ((e = readdir(dh)))
        if (!strncmp(e->d_name, ".ckpt-", 6) && strstr(e->d_name, ".amck.tmp-")) unlinkat(d->fd, e->d_name, 0);
    closedir(dh);
}

/* The directory for this process: an exclusive flock on the directory
 * itself (which no one can delete from under it, as one could a lock
 * file), and its holder's pid in DIR/.asymml-lock, for whoever is refused. */
static am_status take(am_ckdir *d) {
    if (flock(d->fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        if (e != EWOULDBLOCK) return am_fail(AM_EIO, "%s: cannot lock (%s)", d->path, strerror(e));
        char b[24] = "";
        int fd = openat(d->fd, LOCK_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t k = fd >= 0 ? pread(fd, b, sizeof b - 1, 0) : 0;
        if (fd >= 0) close(fd);
        long pid = k > 0 ? atol(b) : 0;
        if (pid > 0)
            return am_fail(AM_EIO, "%s is in use by another asymml run (pid %ld): a checkpoint directory holds one run",
                           d->path, pid);
        return am_fail(AM_EIO, "%s is in use by another asymml run: a checkpoint directory holds one run", d->path);
    }
    char b[24];
    int len = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    int fd = openat(d->fd, LOCK_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, b, (size_t)len) != len) {
        int e = errno;
        if (fd >= 0) close(fd);
        return am_fail(AM_EIO, "%s/%s: cannot write (%s)", d->path, LOCK_NAME, strerror(e));
    }
    close(fd);
    sweep(d);
    return AM_OK;
}

static am_status writable(const am_ckdir *d) {
    char p[64];
    snprintf(p, sizeof p, ".asymml-write-test-%08x", randombytes_random());
    int fd = openat(d->fd, p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return am_fail(AM_EIO, "%s: not writable (%s)", d->path, strerror(errno));
    close(fd);
    unlinkat(d->fd, p, 0);
    return AM_OK;
}

am_status am_ckdir_open(const char *dir, int flags, am_ckdir *d) {
    memset(d, 0, sizeof *d);
    d->fd = -1;
    if (!dir || !*dir) return am_fail(AM_EINVAL, "checkpoint directory: empty path");
    if (strlen(dir) >= sizeof d->path) return am_fail(AM_EINVAL, "checkpoint directory: path too long");
    if (sodium_init() < 0) return am_fail(AM_EIO, "checkpoint: libsodium failed to initialize");
    const int write = flags & AM_CKDIR_WRITE;
    if (write && mkdir(dir, 0700) && errno != EEXIST)
        return am_fail(AM_EIO, "%s: cannot create directory (%s)", dir, strerror(errno));
    d->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->fd < 0) return am_fail(AM_EIO, "%s: %s", dir, errno == ENOTDIR ? "not a directory" : strerror(errno));
    snprintf(d->path, sizeof d->path, "%s", dir);
    am_status st = write ? writable(d) : AM_OK;
    if (st == AM_OK && write) st = take(d);
    if (st != AM_OK) am_ckdir_close(d);
    return st;
}

int am_ckdir_busy(const am_ckdir *d) {
    if (flock(d->fd, LOCK_SH | LOCK_NB)) return errno == EWOULDBLOCK;
    flock(d->fd, LOCK_UN);
    return 0;
}

void am_ckdir_close(am_ckdir *d) {
    if (!d) return;
    if (d->fd >= 0) close(d->fd); /* and the lock with it */
    d->fd = -1;
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
    DIR *dh = entries(d);
    if (!dh) return am_fail(AM_EIO, "%s: cannot list (%s)", d->path, strerror(errno));
    struct dirent *e;
    int cap = 0;
    am_status st = AM_OK;
    while ((e = readdir(dh)) && st == AM_OK) {
        if (!am_ckfile_name(e->d_name, NULL)) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(*names, sizeof(char *) * (size_t)cap);
            if (!nn) st = am_fail(AM_ENOMEM, "out of memory");
            else *names = nn;
        }
        if (st == AM_OK && !((*names)[*count] = strdup(e->d_name))) st = am_fail(AM_ENOMEM, "out of memory");
        if (st == AM_OK) (*count)++;
    }
    closedir(dh);
    if (*names) qsort(*names, (size_t)*count, sizeof(char *), cmp_names);
    return st;
}

/* The run a file in d says it is of (0), or -1 when it does not say. */
static int run_of(const am_ckdir *d, const char *name, uint8_t id[AM_RUN_ID_BYTES]) {
    int fd = openat(d->fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    am_status st = am_checkpoint_peek_run(fd, id);
    close(fd);
    return st == AM_OK ? 0 : -1;
}

am_status am_ckdir_latest(const am_ckdir *d, char *name, size_t cap) {
    char **names;
    int count;
    AM_TRY(list(d, &names, &count));
    am_status st = count ? AM_OK : none(d);
    if (st == AM_OK && snprintf(name, cap, "%s", names[count - 1]) >= (int)cap) st = am_fail(AM_EINVAL, "name too long");
    free_names(names, count);
    return st;
}

/* Whether name reads whole (its checksum or seal verified). */
static int reads(const am_ckdir *d, const char *name) {
    am_checkpoint ck;
    if (am_ckfile_read(d->fd, d->path, name, &ck) != AM_OK) return 0;
    am_checkpoint_free(&ck);
    return 1;
}

/* Whose a file is, trusted only as far as it goes: 0 with id when it says
 * and reads whole, or says this run's (run); -1 when it cannot be known. */
static int owner(const am_ckdir *d, const char *name, const uint8_t *run, uint8_t id[AM_RUN_ID_BYTES]) {
    if (run_of(d, name, id)) return -1;
    if (run && !memcmp(id, run, AM_RUN_ID_BYTES)) return 0;
    return reads(d, name) ? 0 : -1;
}

am_status am_ckdir_newer(const am_ckdir *d, const uint8_t run[AM_RUN_ID_BYTES], int step, char *name, size_t cap) {
    char **names;
    int count;
    AM_TRY(list(d, &names, &count));
    if (cap) *name = 0;
    uint8_t id[AM_RUN_ID_BYTES];
    for (int i = count - 1, s; i >= 0; i--)
        if (am_ckfile_name(names[i], &s) && s > step && (owner(d, names[i], run, id) || !memcmp(id, run, sizeof id))) {
            snprintf(name, cap, "%s", names[i]);
            break;
        }
    free_names(names, count);
    return AM_OK;
}

/* The run's checkpoints up to step `upto`, all but the newest keep. */
static am_status prune(const am_ckdir *d, const uint8_t run[AM_RUN_ID_BYTES], int keep, int upto) {
    if (keep < 1) return am_fail(AM_EINVAL, "checkpoint: keep %d, must be at least 1", keep);
    char **names;
    int count;
    AM_TRY(list(d, &names, &count));
    am_status st = AM_OK;
    uint8_t id[AM_RUN_ID_BYTES];
    /* Newest first: the run's own beyond the newest keep go; what is of
     * another run, or does not say, stays, and so does what is named after
     * a later step (a damaged file a resume passed over must not take the
     * place of the checkpoint just saved). */
    for (int i = count - 1, mine = 0, s; i >= 0; i--) {
        if (!am_ckfile_name(names[i], &s) || s > upto || run_of(d, names[i], id) || memcmp(id, run, sizeof id) ||
            ++mine <= keep)
            continue;
        if (unlinkat(d->fd, names[i], 0) && errno != ENOENT && st == AM_OK)
            st = am_fail(AM_EIO, "%s/%s: cannot delete (%s)", d->path, names[i], strerror(errno));
    }
    free_names(names, count);
    return st;
}

am_status am_ckdir_prune(const am_ckdir *d, const uint8_t run[AM_RUN_ID_BYTES], int keep) {
    return prune(d, run, keep, INT_MAX);
}

am_status am_ckdir_save(const am_ckdir *d, const am_checkpoint *ck, int keep, char *name, size_t cap) {
    char nm[32];
    snprintf(nm, sizeof nm, "ckpt-%010d.amck", ck->global_step);
    uint8_t *buf;
    size_t n;
    AM_TRY(am_checkpoint_encode(ck, &buf, &n));
    am_status st = am_ckfile_write(d->fd, d->path, nm, buf, n);
    free(buf);
    if (st != AM_OK) { /* what is still there, said only when something is */
        char msg[512], **names;
        int count;
        snprintf(msg, sizeof msg, "%s", am_last_error());
        if (list(d, &names, &count) != AM_OK) count = 0;
        free_names(names, count);
        return count ? am_fail(st, "%s; the %d checkpoint%s already there %s untouched", msg, count, count == 1 ? "" : "s",
                               count == 1 ? "is" : "are")
                     : am_fail(st, "%s", msg);
    }
    if (name) snprintf(name, cap, "%s", nm);
    return prune(d, ck->bind.run_id, keep, ck->global_step);
}

am_status am_ckdir_read(const am_ckdir *d, const char *name, am_checkpoint *ck) {
    return am_ckfile_read(d->fd, d->path, name, ck);
}

am_status am_ckdir_load(const am_ckdir *d, am_checkpoint *ck, char *name, size_t cap, char *skipped, size_t scap) {
    memset(ck, 0, sizeof *ck);
    if (skipped && scap) *skipped = 0;
    char **names;
    int count;
    AM_TRY(list(d, &names, &count));
    am_status st = count ? AM_EIO : none(d);
    char first[600] = "";
    size_t len = 0;
    for (int i = count - 1; i >= 0 && st != AM_OK; i--) {
        st = am_ckfile_read(d->fd, d->path, names[i], ck);
        if (st == AM_OK) {
            snprintf(name, cap, "%s", names[i]);
            break;
        }
        if (st == AM_EINVAL) { /* not damage: a sealed file without the key; the older ones are sealed too */
            free_names(names, count);
            return st;
        }
        if (!*first) snprintf(first, sizeof first, "%s", am_last_error());
        if (skipped && len + 2 < scap)
            len += (size_t)snprintf(skipped + len, scap - len, "%s%s", len ? "; " : "", am_last_error());
    }
    if (st != AM_OK && count) st = am_fail(st, "%s: none of its %d checkpoints could be read; the newest: %s", d->path,
                                           count, first);
    free_names(names, count);
    return st;
}

/* Moves name into d's folder sub, never over a file there; the folder,
 * with d's path, into where when it is not there yet. */
static am_status set_aside(const am_ckdir *d, const char *name, const char *sub, char *where, size_t cap) {
    if (mkdirat(d->fd, sub, 0700) && errno != EEXIST)
        return am_fail(AM_EIO, "%s/%s: cannot create (%s)", d->path, sub, strerror(errno));
    int sfd = openat(d->fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0) return am_fail(AM_EIO, "%s/%s: cannot open (%s)", d->path, sub, strerror(errno));
    int rc = renameat2(d->fd, name, sfd, name, RENAME_NOREPLACE), e = errno;
    if (!rc) fsync(sfd);
    close(sfd);
    if (rc) return am_fail(AM_EIO, "%s/%s: cannot move into %s/ (%s); nothing was deleted", d->path, name, sub,
                           e == EEXIST ? "a file of that name is there" : strerror(e));
    char folder[4200];
    snprintf(folder, sizeof folder, "%s/%s/", d->path, sub);
    if (!strstr(where, folder) && strlen(where) + strlen(folder) + 4 < cap)
        snprintf(where + strlen(where), cap - strlen(where), "%s%s", *where ? ", " : "", folder);
    return AM_OK;
}

/* The folder for a file of run id (NULL: it does not say). */
static void folder_of(const uint8_t *id, char *sub, size_t cap) {
    char hex[17];
    if (!id) {
        snprintf(sub, cap, "run-unknown");
        return;
    }
    sodium_bin2hex(hex, sizeof hex, id, 8);
    snprintf(sub, cap, "run-%s", hex);
}

am_status am_ckdir_claim(const am_ckdir *d, int move_aside, char *where, size_t cap, int *moved) {
    char **names;
    int count;
    *moved = 0;
    if (cap) *where = 0;
    AM_TRY(list(d, &names, &count));
    am_status st = AM_OK;
    if (count && !move_aside)
        st = am_fail(AM_EINVAL, "%s holds %d checkpoint%s of another run (the newest: %s): resume it (--resume %s), "
                     "or give --new-run to move them aside", d->path, count, count == 1 ? "" : "s", names[count - 1], d->path);
    /* A file that does not say whose it is goes with the newest run that
     * does (a directory holds one run): a resume of that folder then
     * passes over it, and counts it. */
    uint8_t id[AM_RUN_ID_BYTES], newest[AM_RUN_ID_BYTES];
    int have = 0;
    for (int i = count - 1; move_aside && i >= 0 && !have; i--) have = !owner(d, names[i], NULL, newest);
    for (int i = 0; move_aside && i < count && st == AM_OK; i++) {
        char sub[40];
        int says = !owner(d, names[i], have ? newest : NULL, id);
        folder_of(says ? id : have ? newest : NULL, sub, sizeof sub);
        if ((st = set_aside(d, names[i], sub, where, cap)) == AM_OK) (*moved)++;
    }
    if (*moved && fsync(d->fd) && st == AM_OK) st = am_fail(AM_EIO, "%s: fsync failed (%s)", d->path, strerror(errno));
    free_names(names, count);
    return st;
}
