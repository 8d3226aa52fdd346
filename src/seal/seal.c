/* Sealing: see asymml/seal.h. Below the data readers and the checkpoints,
 * which both use it; it depends on libsodium only. */
#define _GNU_SOURCE /* renameat2 */
#include "asymml/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMAGIC "AMSEAL\x02\x00"
#define SMAGIC_OLD "AMSEAL\x01\x00"
#define SMAGIC_LEN 8
#define IDHDR (SMAGIC_LEN + 4 + AM_SEAL_ID_BYTES + 8) /* magic, role, identity, index */
#define HDR crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define CHUNK ((size_t)1 << 20)
#define KDF_CONTEXT "amsealv2"

static uint8_t *g_key; /* sodium_malloc'd: locked, guarded, zeroed when freed */

static const char *const role_names[AM_SEAL_ROLES] = {
    "",           "train-images", "train-labels", "test-images",    "test-labels", "train-records",
    "test-records", "checkpoint", "log",          "factor-store", "factors",     "factor-counter"};

const char *am_seal_role_name(am_seal_role r) { return r > 0 && r < AM_SEAL_ROLES ? role_names[r] : "unknown"; }

am_status am_seal_role_parse(const char *s, am_seal_role *out) {
    for (int r = 1; r < AM_SEAL_ROLES; r++)
        if (s && !strcmp(s, role_names[r])) {
            *out = (am_seal_role)r;
            return AM_OK;
        }
    return am_fail(AM_EINVAL, "'%s' is not a role (train-images, train-labels, test-images, test-labels, train-records, "
                              "test-records)", s ? s : "");
}

am_status am_seal_role_of_name(const char *path, am_seal_role *role, uint64_t *index) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    *index = 0;
    int k;
    if (!strncmp(b, "train-images", 12)) *role = AM_SEAL_TRAIN_IMAGES;
    else if (!strncmp(b, "train-labels", 12)) *role = AM_SEAL_TRAIN_LABELS;
    else if (!strncmp(b, "t10k-images", 11)) *role = AM_SEAL_TEST_IMAGES;
    else if (!strncmp(b, "t10k-labels", 11)) *role = AM_SEAL_TEST_LABELS;
    else if (sscanf(b, "data_batch_%d.bin", &k) == 1 && k >= 1 && k <= 5) *role = AM_SEAL_TRAIN_RECORDS, *index = (uint64_t)k;
    else if (!strncmp(b, "test_batch.bin", 14) || !strncmp(b, "test.bin", 8)) *role = AM_SEAL_TEST_RECORDS;
    else if (!strncmp(b, "train.bin", 9)) *role = AM_SEAL_TRAIN_RECORDS;
    else return am_fail(AM_EINVAL, "%s: cannot tell from its name whether it is training or test data (give --role)", path);
    return AM_OK;
}

am_status am_seal_set_key(const uint8_t *key) {
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    if (g_key) sodium_free(g_key); /* zeroes it */
    g_key = NULL;
    if (!key) return AM_OK;
    g_key = sodium_malloc(AM_SEAL_KEY_BYTES);
    if (!g_key) return am_fail(AM_ENOMEM, "seal: cannot hold the key in locked memory");
    memcpy(g_key, key, AM_SEAL_KEY_BYTES);
    return AM_OK;
}
int am_seal_have_key(void) { return g_key != NULL; }

int am_is_sealed(const uint8_t *buf, size_t n) {
    return buf && n >= SMAGIC_LEN && (!memcmp(buf, SMAGIC, SMAGIC_LEN) || !memcmp(buf, SMAGIC_OLD, SMAGIC_LEN));
}

am_status am_seal_keygen(const char *path) {
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    uint8_t key[AM_SEAL_KEY_BYTES];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        sodium_memzero(key, sizeof key);
        return am_fail(AM_EIO, "%s: %s", path, e == EEXIST ? "exists; not overwritten" : strerror(e));
    }
    ssize_t w = write(fd, key, sizeof key);
    int e = errno;
    sodium_memzero(key, sizeof key);
    int bad = w != (ssize_t)sizeof key || fsync(fd);
    if (close(fd)) bad = 1;
    if (bad) {
        unlink(path);
        return am_fail(AM_EIO, "%s: write failed (%s)", path, strerror(e));
    }
    return AM_OK;
}

am_status am_seal_key_read(const char *path, uint8_t key[AM_SEAL_KEY_BYTES]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return am_fail(AM_EIO, "%s: cannot open the key (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return am_fail(AM_EIO, "%s: not a regular file", path);
    }
    if (sb.st_mode & 077) {
        close(fd);
        return am_fail(AM_EINVAL, "%s: the key file is readable or writable by group or others (mode %03o): chmod 600 it",
                       path, (unsigned)(sb.st_mode & 0777));
    }
    uint8_t b[AM_SEAL_KEY_BYTES + 1];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != AM_SEAL_KEY_BYTES) {
        sodium_memzero(b, sizeof b);
        return am_fail(AM_EFORMAT, "%s: not a key (%zd bytes; a key file holds exactly %d)", path, n, AM_SEAL_KEY_BYTES);
    }
    memcpy(key, b, AM_SEAL_KEY_BYTES);
    sodium_memzero(b, sizeof b);
    return AM_OK;
}

/* The subkey for a role's kind of file: data, checkpoints, logs, factors. */
static void subkey(const uint8_t *key, am_seal_role role, uint8_t *sub) {
    uint64_t kind = role == AM_SEAL_CHECKPOINT ? 2 : role == AM_SEAL_LOG ? 3 : role >= AM_SEAL_FACTOR_STORE ? 4 : 1;
    crypto_kdf_derive_from_key(sub, crypto_secretstream_xchacha20poly1305_KEYBYTES, kind, KDF_CONTEXT, key);
}

static void put_header(uint8_t *h, const am_seal_id *id) {
    memcpy(h, SMAGIC, SMAGIC_LEN);
    uint32_t r = (uint32_t)id->role;
    for (int i = 0; i < 4; i++) h[SMAGIC_LEN + i] = (uint8_t)(r >> (8 * i));
    memcpy(h + SMAGIC_LEN + 4, id->id, AM_SEAL_ID_BYTES);
    for (int i = 0; i < 8; i++) h[SMAGIC_LEN + 4 + AM_SEAL_ID_BYTES + i] = (uint8_t)(id->index >> (8 * i));
}

static void get_header(const uint8_t *h, am_seal_id *id) {
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (uint32_t)h[SMAGIC_LEN + i] << (8 * i);
    id->role = (am_seal_role)r;
    memcpy(id->id, h + SMAGIC_LEN + 4, AM_SEAL_ID_BYTES);
    id->index = 0;
    for (int i = 0; i < 8; i++) id->index |= (uint64_t)h[SMAGIC_LEN + 4 + AM_SEAL_ID_BYTES + i] << (8 * i);
}

am_status am_seal_peek(const uint8_t *buf, size_t n, am_seal_id *id) {
    if (!buf || n < IDHDR || memcmp(buf, SMAGIC, SMAGIC_LEN)) return am_fail(AM_EFORMAT, "not a sealed file of this version");
    get_header(buf, id);
    return AM_OK;
}

am_status am_seal(const uint8_t key[AM_SEAL_KEY_BYTES], const am_seal_id *id, const uint8_t *in, size_t n,
                  uint8_t **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    if (!key || !id || (!in && n)) return am_fail(AM_EINVAL, "seal: NULL argument");
    if (id->role <= 0 || id->role >= AM_SEAL_ROLES) return am_fail(AM_EINVAL, "seal: unknown role %d", (int)id->role);
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    size_t chunks = n / CHUNK + 1; /* the last, FINAL one may be empty */
    size_t len = am_sealed_size(n);
    uint8_t *o = malloc(len);
    if (!o) return am_fail(AM_ENOMEM, "seal: cannot hold %zu MiB", len >> 20);
    put_header(o, id);
    uint8_t sub[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    subkey(key, id->role, sub);
    crypto_secretstream_xchacha20poly1305_state s;
    crypto_secretstream_xchacha20poly1305_init_push(&s, o + IDHDR, sub);
    sodium_memzero(sub, sizeof sub);
    uint8_t *c = o + IDHDR + HDR;
    for (size_t i = 0; i < chunks; i++) {
        size_t off = i * CHUNK, m = n - off < CHUNK ? n - off : CHUNK;
        int last = i + 1 == chunks;
        /* The first chunk also authenticates the header: magic, role,
         * identity, index. */
        crypto_secretstream_xchacha20poly1305_push(&s, c, NULL, in + off, m, i ? NULL : o, i ? 0 : IDHDR,
                                                   last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
        c += m + ABYTES;
    }
    sodium_memzero(&s, sizeof s);
    *out = o;
    *out_n = len;
    return AM_OK;
}

am_status am_unseal(const uint8_t key[AM_SEAL_KEY_BYTES], const uint8_t *in, size_t n, const char *what,
                    am_seal_id *id, uint8_t **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    if (!what) what = "sealed data";
    if (!am_is_sealed(in, n)) return am_fail(AM_EFORMAT, "%s: not a sealed file", what);
    if (!memcmp(in, SMAGIC_OLD, SMAGIC_LEN))
        return am_fail(AM_EFORMAT, "%s: sealed by an older asymml, without its role and identity: seal it again", what);
    if (!key) return am_fail(AM_EINVAL, "%s is sealed: give the key (--key FILE)", what);
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    if (n < IDHDR + HDR + ABYTES) return am_fail(AM_EFORMAT, "%s: sealed file truncated", what);
    get_header(in, id);
    if (id->role <= 0 || id->role >= AM_SEAL_ROLES) return am_fail(AM_EFORMAT, "%s: sealed file of unknown role", what);
    uint8_t sub[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    subkey(key, id->role, sub);
    crypto_secretstream_xchacha20poly1305_state s;
    int bad = crypto_secretstream_xchacha20poly1305_init_pull(&s, in + IDHDR, sub);
    sodium_memzero(sub, sizeof sub);
    if (bad) return am_fail(AM_EFORMAT, "%s: bad sealed-file header", what);
    size_t left = n - IDHDR - HDR;
    uint8_t *o = malloc(left ? left : 1);
    if (!o) return am_fail(AM_ENOMEM, "%s: cannot hold %zu MiB", what, left >> 20);
    const uint8_t *c = in + IDHDR + HDR;
    size_t len = 0;
    am_status st = AM_OK;
    for (size_t i = 0;; i++) {
        if (left < ABYTES) {
            st = am_fail(AM_EFORMAT, "%s: sealed file truncated (no final chunk)", what);
            break;
        }
        size_t cl = left < CHUNK + ABYTES ? left : CHUNK + ABYTES;
        unsigned long long ml;
        unsigned char tag;
        if (crypto_secretstream_xchacha20poly1305_pull(&s, o + len, &ml, &tag, c, cl, i ? NULL : in, i ? 0 : IDHDR)) {
            st = am_fail(AM_EFORMAT,
                         "%s: authentication failed at byte %zu: wrong key, a file of another kind, or the file was altered",
                         what, (size_t)(c - in));
            break;
        }
        len += (size_t)ml;
        c += cl;
        left -= cl;
        if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
            if (left) st = am_fail(AM_EFORMAT, "%s: %zu bytes after the sealed file's end", what, left);
            break;
        }
    }
    sodium_memzero(&s, sizeof s);
    if (st != AM_OK) {
        sodium_memzero(o, len);
        free(o);
        return st;
    }
    *out = o;
    *out_n = len;
    return AM_OK;
}

size_t am_sealed_size(size_t n) { return IDHDR + HDR + n + (n / CHUNK + 1) * ABYTES; }

am_status am_seal_current(const am_seal_id *id, const uint8_t *in, size_t n, uint8_t **out, size_t *out_n) {
    if (!g_key) return am_fail(AM_EINVAL, "seal: no key set");
    return am_seal(g_key, id, in, n, out, out_n);
}

am_status am_unseal_current(const uint8_t *in, size_t n, const char *what, am_seal_id *id, uint8_t **out,
                            size_t *out_n) {
    return am_unseal(g_key, in, n, what, id, out, out_n);
}

/* The whole of a regular file into memory. */
static am_status slurp(const char *path, uint8_t **buf, size_t *n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return am_fail(AM_EIO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return am_fail(AM_EIO, "%s: not a regular file", path);
    }
    *n = (size_t)sb.st_size;
    *buf = malloc(*n ? *n : 1);
    size_t got = 0;
    while (*buf && got < *n) {
        ssize_t r = read(fd, *buf + got, *n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!*buf || got != *n) {
        am_status st = *buf ? AM_EIO : AM_ENOMEM;
        free(*buf);
        *buf = NULL;
        return am_fail(st, "%s: read failed", path);
    }
    return AM_OK;
}

am_status am_seal_file(const uint8_t key[AM_SEAL_KEY_BYTES], const am_seal_id *id, const char *in, const char *out) {
    if (access(out, F_OK) == 0) return am_fail(AM_EIO, "%s: exists; not overwritten", out);
    uint8_t *b = NULL, *s;
    size_t n = 0, sn;
    AM_TRY(slurp(in, &b, &n));
    am_status st = am_seal(key, id, b, n, &s, &sn);
    sodium_memzero(b, n);
    free(b);
    AM_TRY(st);
    /* A temporary name of our own: created new (O_EXCL), never through a
     * link; renamed only where nothing is (RENAME_NOREPLACE). */
    char tmp[4200];
    uint32_t r = randombytes_random();
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%08x", out, r) >= (int)sizeof tmp) {
        free(s);
        return am_fail(AM_EINVAL, "%s: path too long", out);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(s);
        return am_fail(AM_EIO, "%s: cannot create (%s)", tmp, strerror(errno));
    }
    size_t off = 0;
    int err = 0;
    while (off < sn && !err) {
        ssize_t w = write(fd, s + off, sn - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) err = errno ? errno : EIO;
        else off += (size_t)w;
    }
    free(s);
    if (!err && fsync(fd)) err = errno;
    if (close(fd) && !err) err = errno;
    if (!err && renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE)) err = errno;
    if (err) {
        unlink(tmp);
        return am_fail(AM_EIO, "%s: write failed (%s)", out, strerror(err));
    }
    return AM_OK;
}
