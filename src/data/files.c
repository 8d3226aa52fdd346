/* Reading a dataset's files (files.h): through zlib, so that .gz and plain
 * files read alike, or sealed, opened and checked for their role. */
#include "data/files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Doubles a read buffer, refusing past max. */
static am_status grow_buf(uint8_t **b, size_t *cap, size_t max, const char *path) {
    if (*cap > max) return am_fail(AM_EFORMAT, "%s: larger than %zu MiB", path, max >> 20);
    uint8_t *nb = realloc(*b, *cap * 2);
    if (!nb) return am_fail(AM_ENOMEM, "%s: out of memory", path);
    *b = nb;
    *cap *= 2;
    return AM_OK;
}

/* gzip data in memory (a sealed .gz file, once opened). */
static am_status gunzip_mem(const uint8_t *in, size_t n, size_t max, const char *path, uint8_t **buf, size_t *out_n) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return am_fail(AM_ENOMEM, "%s: zlib failed to start", path);
    size_t cap = n * 4 + 4096, len = 0;
    uint8_t *b = malloc(cap);
    am_status st = b ? AM_OK : am_fail(AM_ENOMEM, "%s: out of memory", path);
    z.next_in = (uint8_t *)in;
    z.avail_in = n > UINT32_MAX ? UINT32_MAX : (unsigned)n;
    int r = Z_OK;
    while (st == AM_OK && r != Z_STREAM_END) {
        if (len == cap && (st = grow_buf(&b, &cap, max, path)) != AM_OK) break;
        z.next_out = b + len;
        size_t room = cap - len > UINT32_MAX ? UINT32_MAX : cap - len;
        z.avail_out = (unsigned)room;
        r = inflate(&z, Z_NO_FLUSH);
        len += room - z.avail_out;
        if (r != Z_OK && r != Z_STREAM_END) st = am_fail(AM_EFORMAT, "%s: %s", path, z.msg ? z.msg : "bad gzip data");
        else if (r == Z_OK && z.avail_in == 0 && z.avail_out != 0) st = am_fail(AM_EFORMAT, "%s: gzip data truncated", path);
    }
    inflateEnd(&z);
    if (st == AM_OK && len > max) st = am_fail(AM_EFORMAT, "%s: larger than %zu MiB", path, max >> 20);
    if (st != AM_OK) {
        free(b);
        return st;
    }
    *buf = b;
    *out_n = len;
    return AM_OK;
}

/* A sealed file: read whole, opened with the process-wide key, gunzipped
 * if what was sealed was a .gz file; *id says what it is. */
static am_status read_sealed(const char *path, size_t max, am_seal_id *id, uint8_t **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return am_fail(AM_EIO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > max + (max >> 4) + 4096) {
        fclose(f);
        return am_fail(AM_EFORMAT, "%s: not a regular file of at most %zu MiB", path, max >> 20);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *raw = malloc(len ? len : 1);
    size_t got = raw ? fread(raw, 1, len, f) : 0;
    fclose(f);
    if (!raw || got != len) {
        free(raw);
        return am_fail(raw ? AM_EIO : AM_ENOMEM, "%s: read failed", path);
    }
    uint8_t *plain;
    size_t pn;
    am_status st = am_unseal_current(raw, len, path, id, &plain, &pn);
    free(raw);
    AM_TRY(st);
    if (pn >= 2 && plain[0] == 0x1f && plain[1] == 0x8b) {
        st = gunzip_mem(plain, pn, max, path, buf, n);
        free(plain);
    } else if (pn > max) {
        free(plain);
        st = am_fail(AM_EFORMAT, "%s: larger than %zu MiB", path, max >> 20);
    } else {
        *buf = plain, *n = pn;
    }
    return st;
}

/* The first bytes of a file say whether it is sealed (1), not (0), or
 * cannot be read (-1). */
static int is_sealed_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint8_t head[8];
    size_t h = fread(head, 1, sizeof head, f);
    fclose(f);
    return am_is_sealed(head, h);
}

/* zlib's message, without the path it starts with (said once, by us). */
static const char *unprefixed(const char *msg, const char *path) {
    size_t n = strlen(path);
    return !strncmp(msg, path, n) && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

am_status am_read_data_file(const char *path, am_seal_role role, uint64_t index, am_data_check *chk, uint8_t **buf,
                            size_t *n) {
    *buf = NULL;
    *n = 0;
    int sealed = is_sealed_file(path);
    if (sealed < 0) return am_fail(AM_EIO, "%s: cannot open (%s)", path, strerror(errno));
    if (chk->files && (sealed != 0) != (chk->sealed != 0))
        return am_fail(AM_EFORMAT, "%s: %s, but the split's other files are %s: seal them all, or none", path,
                       sealed ? "sealed" : "not sealed", sealed ? "not" : "sealed");
    if (!sealed) {
        AM_TRY(am_read_file(path, AM_MAX_DATA_FILE, buf, n));
        chk->files++;
        return AM_OK;
    }
    am_seal_id id;
    AM_TRY(read_sealed(path, AM_MAX_DATA_FILE, &id, buf, n));
    am_status st = AM_OK;
    if (id.role != role || id.index != index)
        st = am_fail(AM_EFORMAT, "%s: sealed as %s%s, but read as %s: a file in the wrong place", path,
                     am_seal_role_name(id.role), id.index ? " (a numbered batch)" : "", am_seal_role_name(role));
    else if (chk->sealed && memcmp(id.id, chk->id, sizeof id.id))
        st = am_fail(AM_EFORMAT, "%s: sealed with another dataset than the split's other files", path);
    if (st != AM_OK) {
        free(*buf);
        *buf = NULL;
        return st;
    }
    memcpy(chk->id, id.id, sizeof id.id);
    chk->files++;
    chk->sealed++;
    return AM_OK;
}

am_status am_read_file(const char *path, size_t max, uint8_t **buf, size_t *n) {
    *buf = NULL;
    *n = 0;
    if (is_sealed_file(path) == 1)
        return am_fail(AM_EINVAL, "%s is sealed: open it as part of a dataset (am_dataset_load), which checks its role", path);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return am_fail(AM_EIO, "%s: cannot open (%s)", path, errno ? strerror(errno) : "zlib");
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    am_status st = b ? AM_OK : am_fail(AM_ENOMEM, "%s: out of memory", path);
    while (st == AM_OK) {
        if (len == cap && (st = grow_buf(&b, &cap, max, path)) != AM_OK) break;
        size_t want = cap - len > (1u << 30) ? (1u << 30) : cap - len;
        int got = gzread(f, b + len, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            st = am_fail(zerr == Z_ERRNO ? AM_EIO : AM_EFORMAT, "%s: %s", path,
                         zerr == Z_ERRNO ? strerror(errno) : unprefixed(msg, path));
            break;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    /* A .gz stream that simply stops is not an error to gzread: ask. */
    if (st == AM_OK) {
        int zerr;
        const char *msg = gzerror(f, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END) st = am_fail(AM_EFORMAT, "%s: %s", path, unprefixed(msg, path));
    }
    gzclose(f);
    if (st == AM_OK && len > max) st = am_fail(AM_EFORMAT, "%s: larger than %zu MiB", path, max >> 20);
    if (st != AM_OK) {
        free(b);
        return st;
    }
    *buf = b;
    *n = len;
    return AM_OK;
}

