/* asymml log: prints a run's log, opening its sealed records with the key
 * (the format: cli/runlog.c). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml log [--key KEYFILE] LOGFILE\n"
    "Print a run's log (train --log): each sealed record opened and checked with the key;\n"
    "a plain log as it is.\n";

static const cli_opt opts[] = {{"key", "KEYFILE", 1, 0, "the key the run was given"}, {NULL, NULL, 0, 0, NULL}};

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    (void)o;
    *(const char **)ctx = arg;
    return 0;
}

/* Prints the records of a sealed log held in buf. */
static int print_sealed(const char *path, const uint8_t *buf, size_t n) {
    size_t off = 0;
    long rec = 0;
    while (off < n) {
        if (n - off < 4) return die(EXIT_RUNTIME, "%s: truncated after record %ld", path, rec);
        size_t len = (size_t)buf[off] | (size_t)buf[off + 1] << 8 | (size_t)buf[off + 2] << 16 | (size_t)buf[off + 3] << 24;
        off += 4;
        if (len > n - off) return die(EXIT_RUNTIME, "%s: truncated in record %ld", path, rec + 1);
        am_seal_id id;
        uint8_t *p;
        size_t pn;
        if (am_unseal_current(buf + off, len, path, &id, &p, &pn) != AM_OK) return lib_fail("log");
        int ok = id.role == AM_SEAL_LOG;
        if (ok) fwrite(p, 1, pn, stdout);
        sodium_memzero(p, pn);
        free(p);
        if (!ok) return die(EXIT_RUNTIME, "%s: record %ld is a sealed %s, not a log line", path, rec + 1,
                            am_seal_role_name(id.role));
        off += len;
        rec++;
    }
    return 0;
}

int cmd_log(int argc, char **argv) {
    const char *keyf = NULL;
    const cli_opt *const tables[] = {opts, NULL};
    int rest, rc = cli_parse("log", usage, argc, argv, tables, handle, &keyf, NULL, &rest);
    if (rc) return rc < 0 ? 0 : rc;
    if (rest != argc - 1) return die(EXIT_USAGE, "log: give one LOGFILE (see asymml log --help)");
    const char *path = argv[rest];
    FILE *f = fopen(path, "rb");
    if (!f) return die(EXIT_RUNTIME, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) return die(EXIT_RUNTIME, "%s: out of memory", path);
    if (n && buf[0] == '{') {
        fwrite(buf, 1, n, stdout);
        free(buf);
        return 0;
    }
    if (!keyf) {
        free(buf);
        return die(EXIT_USAGE, "%s is sealed: give the run's key (--key FILE)", path);
    }
    cli_mode m;
    cli_mode_init(&m);
    m.key = keyf;
    rc = tee_begin(&m);
    if (!rc) rc = print_sealed(path, buf, n);
    free(buf);
    return rc;
}
