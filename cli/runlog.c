/* The run's log: one JSON object a line (per-step loss and accuracy, the
 * plan, each epoch's figures). Created with mode 0600 and appended to,
 * never through a symbolic link. With a key set each line is a sealed
 * record (the run's log role, asymml/seal.h): a u32 length, little-endian,
 * then the sealed bytes; `asymml log --key K FILE` prints them. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

struct cli_log {
    int fd, err, sealed;
    uint8_t run_id[AM_SEAL_ID_BYTES];
    uint64_t index;
};

int cli_log_open(const char *path, const uint8_t *run_id, cli_log **out) {
    *out = NULL;
    cli_log *l = calloc(1, sizeof *l);
    if (!l) return die(EXIT_RUNTIME, "out of memory");
    l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    struct stat sb;
    if (l->fd < 0 || fstat(l->fd, &sb) || !S_ISREG(sb.st_mode) || ((sb.st_mode & 077) && fchmod(l->fd, 0600))) {
        int e = errno;
        if (l->fd >= 0) close(l->fd);
        free(l);
        return die(EXIT_RUNTIME, "%s: cannot open for writing (%s)", path, strerror(e));
    }
    l->sealed = am_seal_have_key();
    if (run_id) memcpy(l->run_id, run_id, sizeof l->run_id);
    *out = l;
    return 0;
}

static void put(cli_log *l, const void *p, size_t n) {
    const char *c = p;
    while (n && !l->err) {
        ssize_t w = write(l->fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) l->err = w < 0 ? errno : ENOSPC;
        else c += w, n -= (size_t)w;
    }
}

void cli_log_line(cli_log *l, const char *fmt, ...) {
    if (!l) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (!l->sealed) {
        put(l, line, (size_t)n);
        return;
    }
    am_seal_id id = {AM_SEAL_LOG, {0}, l->index++};
    memcpy(id.id, l->run_id, sizeof id.id);
    uint8_t *s;
    size_t sn;
    if (am_seal_current(&id, (const uint8_t *)line, (size_t)n, &s, &sn) != AM_OK) {
        l->err = ENOMEM;
        return;
    }
    uint8_t len[4] = {(uint8_t)sn, (uint8_t)(sn >> 8), (uint8_t)(sn >> 16), (uint8_t)(sn >> 24)};
    put(l, len, 4);
    put(l, s, sn);
    free(s);
}

int cli_log_close(cli_log *l, const char *path) {
    if (!l) return 0;
    int err = l->err;
    if (close(l->fd) && !err) err = errno;
    free(l);
    return err ? die(EXIT_RUNTIME, "%s: write failed (%s)", path, strerror(err)) : 0;
}
