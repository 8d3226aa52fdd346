/* Sealing: see asymml/seal.h. */
#include "asymml/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMAGIC "AMSEAL\x01\x00"
#define SMAGIC_LEN 8
#define HDR crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define CHUNK ((size_t)1 << 20)

static uint8_t g_key[AM_SEAL_KEY_BYTES];
static int g_have_key;

void am_seal_set_key(const uint8_t *key) {
    if (key) memcpy(g_key, key, sizeof g_key);
    else sodium_memzero(g_key, sizeof g_key);
    g_have_key = key != NULL;
}
int am_seal_have_key(void) { return g_have_key; }

int am_is_sealed(const uint8_t *buf, size_t n) { return buf && n >= SMAGIC_LEN && !memcmp(buf, SMAGIC, SMAGIC_LEN); }

am_status am_seal_keygen(const char *path) {
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    uint8_t key[AM_SEAL_KEY_BYTES];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return am_fail(AM_EIO, "%s: cannot create (%s)", path, strerror(errno));
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
    int fd = open(path, O_RDONLY);
    if (fd < 0) return am_fail(AM_EIO, "%s: cannot open the key (%s)", path, strerror(errno));
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

am_status am_seal(const uint8_t key[AM_SEAL_KEY_BYTES], const uint8_t *in, size_t n, uint8_t **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    if (!key || (!in && n)) return am_fail(AM_EINVAL, "seal: NULL argument");
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    size_t chunks = n / CHUNK + 1; /* the last, FINAL one may be empty */
    size_t len = SMAGIC_LEN + HDR + n + chunks * ABYTES;
    uint8_t *o = malloc(len);
    if (!o) return am_fail(AM_ENOMEM, "seal: cannot hold %zu MiB", len >> 20);
    memcpy(o, SMAGIC, SMAGIC_LEN);
    crypto_secretstream_xchacha20poly1305_state s;
    crypto_secretstream_xchacha20poly1305_init_push(&s, o + SMAGIC_LEN, key);
    uint8_t *c = o + SMAGIC_LEN + HDR;
    for (size_t i = 0; i < chunks; i++) {
        size_t off = i * CHUNK, m = n - off < CHUNK ? n - off : CHUNK;
        int last = i + 1 == chunks;
        /* The first chunk also authenticates the format's magic. */
        crypto_secretstream_xchacha20poly1305_push(&s, c, NULL, in + off, m, i ? NULL : (const uint8_t *)SMAGIC,
                                                   i ? 0 : SMAGIC_LEN,
                                                   last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
        c += m + ABYTES;
    }
    sodium_memzero(&s, sizeof s);
    *out = o;
    *out_n = len;
    return AM_OK;
}

am_status am_unseal(const uint8_t key[AM_SEAL_KEY_BYTES], const uint8_t *in, size_t n, const char *what, uint8_t **out,
                    size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    if (!what) what = "sealed data";
    if (!am_is_sealed(in, n)) return am_fail(AM_EFORMAT, "%s: not a sealed file", what);
    if (!key) return am_fail(AM_EINVAL, "%s is sealed: give the key (--key FILE)", what);
    if (sodium_init() < 0) return am_fail(AM_EIO, "seal: libsodium failed to initialize");
    if (n < SMAGIC_LEN + HDR + ABYTES) return am_fail(AM_EFORMAT, "%s: sealed file truncated", what);
    crypto_secretstream_xchacha20poly1305_state s;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&s, in + SMAGIC_LEN, key))
        return am_fail(AM_EFORMAT, "%s: bad sealed-file header", what);
    size_t left = n - SMAGIC_LEN - HDR;
    uint8_t *o = malloc(left ? left : 1);
    if (!o) return am_fail(AM_ENOMEM, "%s: cannot hold %zu MiB", what, left >> 20);
    const uint8_t *c = in + SMAGIC_LEN + HDR;
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
        if (crypto_secretstream_xchacha20poly1305_pull(&s, o + len, &ml, &tag, c, cl, i ? NULL : (const uint8_t *)SMAGIC,
                                                       i ? 0 : SMAGIC_LEN)) {
            st = am_fail(AM_EFORMAT, "%s: authentication failed at byte %zu: wrong key, or the file was altered", what,
                         (size_t)(c - in));
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

am_status am_seal_current(const uint8_t *in, size_t n, uint8_t **out, size_t *out_n) {
    if (!g_have_key) return am_fail(AM_EINVAL, "seal: no key set");
    return am_seal(g_key, in, n, out, out_n);
}

am_status am_unseal_current(const uint8_t *in, size_t n, const char *what, uint8_t **out, size_t *out_n) {
    return am_unseal(g_have_key ? g_key : NULL, in, n, what, out, out_n);
}

am_status am_seal_file(const uint8_t key[AM_SEAL_KEY_BYTES], const char *in, const char *out) {
    if (access(out, F_OK) == 0) return am_fail(AM_EIO, "%s: exists; not overwritten", out);
    FILE *f = fopen(in, "rb");
    if (!f) return am_fail(AM_EIO, "%s: cannot open (%s)", in, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return am_fail(AM_EIO, "%s: not a regular file", in);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *b = malloc(n ? n : 1);
    size_t got = b ? fread(b, 1, n, f) : 0;
    fclose(f);
    if (!b || got != n) {
        free(b);
        return am_fail(b ? AM_EIO : AM_ENOMEM, "%s: read failed", in);
    }
    uint8_t *s;
    size_t sn;
    am_status st = am_seal(key, b, n, &s, &sn);
    sodium_memzero(b, n);
    free(b);
    AM_TRY(st);
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out) >= (int)sizeof tmp) {
        free(s);
        return am_fail(AM_EINVAL, "%s: path too long", out);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
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
    if (!err && rename(tmp, out)) err = errno;
    if (err) {
        unlink(tmp);
        return am_fail(AM_EIO, "%s: write failed (%s)", out, strerror(err));
    }
    return AM_OK;
}
