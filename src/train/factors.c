/* Slalom's factor store on disk (asymml/factors.h): sealed files in one
 * locked folder, written atomically (ckfile.c), each batch's read once and
 * deleted, a counter that moves before anything is handed out. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asymml/factors.h"
#include "asymml/seal.h"
#include "train/ckfile.h"

#define MAGIC "AMFS"
/* 2: pads drawn a segment at a time (trusted/pads.c); 1's factors do not
 * unblind them. */
#define VERSION 2u
#define MAX_LAYERS 4096
#define HEAD_BYTES (4 + 4 + 8 + 4 + 4 + 32 + 32 + 8 + 8)

struct am_factor_store {
    char dir[4096];
    int fd; /* the folder, locked */
    uint8_t id[AM_SEAL_ID_BYTES], key[32], ident[32];
    uint64_t count, next;
    uint64_t dev, ino; /* the folder the store was made in: a copy elsewhere is refused */
    int batch, layers;
    size_t *lens;
    am_factor_src src;
};

static am_status put_sealed(am_factor_store *s, const char *name, am_seal_role role, uint64_t index, const void *p,
                            size_t n) {
    am_seal_id id = {role, {0}, index};
    memcpy(id.id, s->id, sizeof id.id);
    uint8_t *out;
    size_t on;
    AM_TRY(am_seal_current(&id, p, n, &out, &on));
    am_status st = am_ckfile_write(s->fd, s->dir, name, out, on);
    free(out);
    return st;
}

/* A file of the folder, whole, opened as what it must be. */
static am_status get_sealed(am_factor_store *s, const char *name, am_seal_role role, uint64_t index, int any_id,
                            uint8_t **out, size_t *n) {
    uint8_t *buf;
    size_t got;
    AM_TRY(am_ckfile_slurp(s->fd, s->dir, name, &buf, &got));
    char what[4400];
    snprintf(what, sizeof what, "%s/%s", s->dir, name);
    am_seal_id id;
    am_status rc = am_unseal_current(buf, got, what, &id, out, n);
    free(buf);
    AM_TRY(rc);
    if (id.role != role || id.index != index || (!any_id && memcmp(id.id, s->id, sizeof id.id))) {
        free(*out);
        return am_fail(AM_EFORMAT, "%s: a %s file of index %llu, not this store's %s of index %llu", what,
                       am_seal_role_name(id.role), (unsigned long long)id.index, am_seal_role_name(role),
                       (unsigned long long)index);
    }
    if (any_id) memcpy(s->id, id.id, sizeof s->id);
    return AM_OK;
}

static am_status lock_dir(am_factor_store *s, const char *dir) {
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->fd < 0) return am_fail(AM_EIO, "%s: cannot open the factor store (%s)", dir, strerror(errno));
    if (flock(s->fd, LOCK_EX | LOCK_NB))
        return am_fail(AM_EIO, "%s: the factor store is in use by another process", dir);
    return AM_OK;
}

am_status am_factors_create(const char *dir, uint64_t count, int batch, int layers, const size_t *lens,
                            const uint8_t ident[32], am_factor_store **out) {
    *out = NULL;
    if (!count || count > ((uint64_t)1 << 40) || batch < 1 || layers < 1 || layers > MAX_LAYERS)
        return am_fail(AM_EINVAL, "factors: bad store settings");
    if (!am_seal_have_key()) return am_fail(AM_EINVAL, "factors: the store is sealed: give the key (--key FILE)");
    if (sodium_init() < 0) return am_fail(AM_EIO, "factors: libsodium failed to initialize");
    if (mkdir(dir, 0700)) {
        const int e = errno;
        return am_fail(AM_EIO, "%s: cannot create the factor store (%s)%s", dir, strerror(e),
                       e == EEXIST ? ": a store is made once, never refilled or written over: give a new folder" : "");
    }
    am_factor_store *s = calloc(1, sizeof *s);
    size_t *l = malloc(sizeof(size_t) * (size_t)layers);
    if (!s || !l) return free(s), free(l), am_fail(AM_ENOMEM, "factors: out of memory");
    *s = (am_factor_store){.fd = -1, .count = count, .batch = batch, .layers = layers, .lens = l};
    memcpy(l, lens, sizeof(size_t) * (size_t)layers);
    memcpy(s->ident, ident, 32);
    randombytes_buf(s->id, sizeof s->id);
    randombytes_buf(s->key, sizeof s->key);
    am_status st = lock_dir(s, dir);
    if (st != AM_OK) am_factors_close(s);
    else *out = s;
    return st;
}

static void file_name(char *b, size_t n, uint64_t t, int ordinal) {
    snprintf(b, n, "f-%010llu-%04d.amfu", (unsigned long long)t, ordinal);
}

am_status am_factors_put(am_factor_store *s, uint64_t t, int ordinal, const int32_t *v) {
    if (t >= s->count || ordinal < 0 || ordinal >= s->layers) return am_fail(AM_EINVAL, "factors: no such set");
    char name[64];
    file_name(name, sizeof name, t, ordinal);
    am_seal_id id = {AM_SEAL_FACTORS, {0}, t * MAX_LAYERS + (uint64_t)ordinal};
    memcpy(id.id, s->id, sizeof id.id);
    uint8_t *out;
    size_t on;
    AM_TRY(am_factor_set_seal(NULL, &id, v, s->lens[ordinal], &out, &on));
    am_status st = am_ckfile_write(s->fd, s->dir, name, out, on);
    free(out);
    return st;
}

static am_status put_next(am_factor_store *s, uint64_t next) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(next >> (8 * i));
    return put_sealed(s, "next.amfn", AM_SEAL_FACTOR_NEXT, next, b, sizeof b);
}

am_status am_factors_finish(am_factor_store *s) {
    struct stat fs;
    if (fstat(s->fd, &fs)) return am_fail(AM_EIO, "%s: cannot stat the factor store (%s)", s->dir, strerror(errno));
    s->dev = (uint64_t)fs.st_dev, s->ino = (uint64_t)fs.st_ino;
    size_t n = HEAD_BYTES + 8 * (size_t)s->layers;
    uint8_t *h = malloc(n), *p = h;
    if (!h) return am_fail(AM_ENOMEM, "factors: out of memory");
    memcpy(p, MAGIC, 4), p += 4;
    uint32_t v = VERSION;
    memcpy(p, &v, 4), p += 4;
    memcpy(p, &s->count, 8), p += 8;
    memcpy(p, &s->batch, 4), p += 4;
    memcpy(p, &s->layers, 4), p += 4;
    memcpy(p, s->ident, 32), p += 32;
    memcpy(p, s->key, 32), p += 32;
    memcpy(p, &s->dev, 8), p += 8;
    memcpy(p, &s->ino, 8), p += 8;
    for (int i = 0; i < s->layers; i++, p += 8) {
        uint64_t l = s->lens[i];
        memcpy(p, &l, 8);
    }
    am_status rc = put_next(s, 0);
    if (rc == AM_OK) rc = put_sealed(s, "store.amfs", AM_SEAL_FACTOR_STORE, 0, h, n);
    sodium_memzero(h, n);
    free(h);
    return rc;
}

static am_status parse_head(am_factor_store *s, const uint8_t *h, size_t n) {
    uint32_t v;
    if (n < HEAD_BYTES || memcmp(h, MAGIC, 4)) return am_fail(AM_EFORMAT, "%s: not a factor store's header", s->dir);
    memcpy(&v, h + 4, 4);
    if (v != VERSION)
        return am_fail(AM_EFORMAT, "%s: factor store version %u (this build reads %u: make it again with precompute)",
                       s->dir, v, VERSION);
    memcpy(&s->count, h + 8, 8);
    memcpy(&s->batch, h + 16, 4);
    memcpy(&s->layers, h + 20, 4);
    memcpy(s->ident, h + 24, 32);
    memcpy(s->key, h + 56, 32);
    memcpy(&s->dev, h + 88, 8);
    memcpy(&s->ino, h + 96, 8);
    struct stat st;
    if (fstat(s->fd, &st) || (uint64_t)st.st_dev != s->dev || (uint64_t)st.st_ino != s->ino)
        return am_fail(AM_EINVAL, "%s: a copy of a factor store (it was made in another folder): refused, as its pads "
                                  "would be used a second time", s->dir);
    if (!s->count || s->batch < 1 || s->layers < 1 || s->layers > MAX_LAYERS || n != HEAD_BYTES + 8 * (size_t)s->layers)
        return am_fail(AM_EFORMAT, "%s: the factor store's header is out of range", s->dir);
    if (!(s->lens = malloc(sizeof(size_t) * (size_t)s->layers))) return am_fail(AM_ENOMEM, "factors: out of memory");
    for (int i = 0; i < s->layers; i++) {
        uint64_t l;
        memcpy(&l, h + HEAD_BYTES + 8 * (size_t)i, 8);
        if (!l || l > ((uint64_t)1 << 34)) return am_fail(AM_EFORMAT, "%s: a layer's factor count is out of range", s->dir);
        s->lens[i] = (size_t)l;
    }
    return AM_OK;
}

static am_status read_next(am_factor_store *s) {
    uint8_t *b;
    size_t n;
    /* Its index is the counter: read the header's, then check it. */
    int fd = openat(s->fd, "next.amfn", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    uint8_t head[64];
    ssize_t r = fd < 0 ? -1 : read(fd, head, sizeof head);
    if (fd >= 0) close(fd);
    am_seal_id id;
    if (r <= 0 || am_seal_peek(head, (size_t)r, &id) != AM_OK)
        return am_fail(AM_EFORMAT, "%s/next.amfn: the factor store's counter does not read", s->dir);
    AM_TRY(get_sealed(s, "next.amfn", AM_SEAL_FACTOR_NEXT, id.index, 0, &b, &n));
    uint64_t v = 0;
    for (size_t i = 0; i < 8 && n == 8; i++) v |= (uint64_t)b[i] << (8 * i);
    free(b);
    if (n != 8 || v != id.index || v > s->count) return am_fail(AM_EFORMAT, "%s: the factor store's counter is out of range", s->dir);
    s->next = v;
    return AM_OK;
}

am_status am_factors_open(const char *dir, am_factor_store **out) {
    *out = NULL;
    am_factor_store *s = calloc(1, sizeof *s);
    if (!s) return am_fail(AM_ENOMEM, "factors: out of memory");
    s->fd = -1;
    uint8_t *h = NULL;
    size_t n = 0;
    am_status st = lock_dir(s, dir);
    if (st == AM_OK && faccessat(s->fd, "store.amfs", F_OK, AT_SYMLINK_NOFOLLOW))
        st = am_fail(AM_EINVAL, "%s: no factor store here (or an interrupted precompute: make it again)", dir);
    if (st == AM_OK) st = get_sealed(s, "store.amfs", AM_SEAL_FACTOR_STORE, 0, 1, &h, &n);
    if (st == AM_OK) st = parse_head(s, h, n);
    if (h) sodium_memzero(h, n), free(h);
    if (st == AM_OK) st = read_next(s);
    if (st != AM_OK) am_factors_close(s);
    else *out = s;
    return st;
}

am_status am_factors_match(const am_factor_store *s, int batch, int layers, const size_t *lens, const uint8_t ident[32]) {
    if (batch != s->batch)
        return am_fail(AM_EINVAL, "%s: factors for batches of %d, not %d (give --batch %d)", s->dir, s->batch, batch, s->batch);
    int same = layers == s->layers && !memcmp(ident, s->ident, 32);
    for (int i = 0; same && i < layers; i++) same = lens[i] == s->lens[i];
    if (!same) return am_fail(AM_EINVAL, "%s: factors made for another model or other weights", s->dir);
    return AM_OK;
}

const uint8_t *am_factors_pad_key(const am_factor_store *s) { return s->key; }
uint64_t am_factors_count(const am_factor_store *s) { return s->count; }
uint64_t am_factors_left(const am_factor_store *s) { return s->count - s->next; }
int am_factors_dir_fd(const am_factor_store *s) { return s->fd; }

/* The next batch: the counter moves on disk before the batch is used. */
static am_status src_next(void *ctx, uint64_t *batch) {
    am_factor_store *s = ctx;
    if (s->next >= s->count)
        return am_fail(AM_EINVAL, "%s: all %llu factor sets are used (a pad is never used twice): make a new store "
                                  "with asymml precompute --out NEWDIR", s->dir, (unsigned long long)s->count);
    AM_TRY(put_next(s, s->next + 1));
    *batch = s->next++;
    return AM_OK;
}

static am_status src_load(void *ctx, uint64_t t, int ordinal, int32_t *out, size_t n) {
    am_factor_store *s = ctx;
    if (ordinal < 0 || ordinal >= s->layers || n != s->lens[ordinal] || t >= s->count)
        return am_fail(AM_EINVAL, "%s: no factors for layer %d of batch %llu", s->dir, ordinal, (unsigned long long)t);
    char name[64];
    file_name(name, sizeof name, t, ordinal);
    uint8_t *b;
    size_t got;
    AM_TRY(am_ckfile_slurp(s->fd, s->dir, name, &b, &got));
    am_seal_id id = {AM_SEAL_FACTORS, {0}, t * MAX_LAYERS + (uint64_t)ordinal};
    memcpy(id.id, s->id, sizeof id.id);
    char what[4200];
    snprintf(what, sizeof what, "%s/%s", s->dir, name);
    am_status st = am_factor_set_unseal(NULL, &id, b, got, what, out, n);
    free(b);
    AM_TRY(st);
    unlinkat(s->fd, name, 0); /* used: never again */
    return AM_OK;
}

const am_factor_src *am_factors_source(am_factor_store *s) {
    s->src = (am_factor_src){s, src_next, src_load};
    return &s->src;
}

void am_factors_close(am_factor_store *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd); /* and the lock */
    sodium_memzero(s->key, sizeof s->key);
    free(s->lens);
    free(s);
}
