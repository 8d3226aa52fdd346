/* Sealed files: round trips at chunk boundaries; a wrong key, any changed
 * byte, a dropped final chunk or extra bytes are errors; key files; sealed
 * IDX data (plain and .gz) read like plain; sealed checkpoints resume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "asymml/asymml.h"

static char dir[256];

static void path_of(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", dir, name); }

static void t_roundtrip(void **st) {
    (void)st;
    uint8_t key[AM_SEAL_KEY_BYTES], other[AM_SEAL_KEY_BYTES];
    for (int i = 0; i < AM_SEAL_KEY_BYTES; i++) key[i] = (uint8_t)i, other[i] = (uint8_t)(i + 1);
    const size_t M = (size_t)1 << 20;
    const size_t sizes[] = {0, 1, 1000, M - 1, M, M + 1, 2 * M + 7};
    uint8_t *in = malloc(2 * M + 7);
    for (size_t i = 0; i < 2 * M + 7; i++) in[i] = (uint8_t)(i * 31 + 7);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint8_t *s, *p;
        size_t sn, pn;
        assert_int_equal(am_seal(key, in, n, &s, &sn), AM_OK);
        assert_true(am_is_sealed(s, sn));
        assert_int_equal(am_unseal(key, s, sn, "x", &p, &pn), AM_OK);
        assert_int_equal(pn, n);
        if (n) assert_memory_equal(p, in, n);
        free(p);
        /* Another key. */
        assert_int_equal(am_unseal(other, s, sn, "x", &p, &pn), AM_EFORMAT);
        assert_non_null(strstr(am_last_error(), "wrong key, or the file was altered"));
        /* No key. */
        assert_int_equal(am_unseal(NULL, s, sn, "x", &p, &pn), AM_EINVAL);
        /* A changed byte anywhere: header, first, last. */
        size_t where[3] = {10, 40, sn - 1};
        for (int w = 0; w < 3; w++) {
            s[where[w]] ^= 0x20;
            assert_int_not_equal(am_unseal(key, s, sn, "x", &p, &pn), AM_OK);
            s[where[w]] ^= 0x20;
        }
        /* Truncated: the final chunk dropped (a chunk boundary), or cut. */
        if (n > M) {
            size_t first = 8 + 24 + M + 17;
            assert_int_equal(am_unseal(key, s, first, "x", &p, &pn), AM_EFORMAT);
            assert_non_null(strstr(am_last_error(), "truncated"));
        }
        assert_int_equal(am_unseal(key, s, sn - 1, "x", &p, &pn), AM_EFORMAT);
        /* Extra bytes after the end. */
        uint8_t *t = malloc(sn + 3);
        memcpy(t, s, sn);
        memset(t + sn, 0, 3);
        assert_int_equal(am_unseal(key, t, sn + 3, "x", &p, &pn), AM_EFORMAT);
        free(t);
        free(s);
    }
    /* Not sealed at all. */
    uint8_t *p;
    size_t pn;
    assert_int_equal(am_unseal(key, in, 100, "x", &p, &pn), AM_EFORMAT);
    free(in);
}

static void t_keys(void **st) {
    (void)st;
    char k[512], bad[512];
    path_of(k, "key");
    path_of(bad, "short-key");
    assert_int_equal(am_seal_keygen(k), AM_OK);
    struct stat sb;
    assert_int_equal(stat(k, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(am_seal_keygen(k), AM_EIO); /* never overwritten */
    uint8_t key[AM_SEAL_KEY_BYTES];
    assert_int_equal(am_seal_key_read(k, key), AM_OK);
    FILE *f = fopen(bad, "wb");
    fwrite(key, 1, 31, f);
    fclose(f);
    assert_int_equal(am_seal_key_read(bad, key), AM_EFORMAT);
    assert_int_equal(am_seal_key_read("/nonexistent/key", key), AM_EIO);
}

/* An IDX pair of n 8x8 images, plain or gzipped, sealed under key. */
static void write_idx(const char *name, const uint8_t *bytes, size_t n, int gz, const uint8_t *key) {
    char p[512], s[560];
    path_of(p, name);
    if (gz) {
        gzFile g = gzopen(p, "wb");
        gzwrite(g, bytes, (unsigned)n);
        gzclose(g);
    } else {
        FILE *f = fopen(p, "wb");
        fwrite(bytes, 1, n, f);
        fclose(f);
    }
    snprintf(s, sizeof s, "%s.sealed", p);
    unlink(s);
    assert_int_equal(am_seal_file(key, p, s), AM_OK);
    assert_int_equal(am_seal_file(key, p, s), AM_EIO); /* exists */
    unlink(p);
}

static void t_sealed_data_and_checkpoints(void **st) {
    (void)st;
    uint8_t key[AM_SEAL_KEY_BYTES];
    for (int i = 0; i < AM_SEAL_KEY_BYTES; i++) key[i] = (uint8_t)(200 - i);
    enum { N = 24 };
    uint8_t img[16 + N * 64], lab[8 + N];
    memcpy(img, "\0\0\x08\x03\0\0\0\x18\0\0\0\x08\0\0\0\x08", 16);
    memcpy(lab, "\0\0\x08\x01\0\0\0\x18", 8);
    for (int i = 0; i < N * 64; i++) img[16 + i] = (uint8_t)(i * 7);
    for (int i = 0; i < N; i++) lab[8 + i] = (uint8_t)(i % 4);
    for (int gz = 0; gz < 2; gz++) {
        write_idx(gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte", img, sizeof img, gz, key);
        write_idx(gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte", lab, sizeof lab, gz, key);
        am_dataset d;
        am_seal_set_key(NULL);
        assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_EINVAL);
        assert_non_null(strstr(am_last_error(), "give the key"));
        am_seal_set_key(key);
        assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_OK);
        assert_int_equal(d.n, N);
        assert_memory_equal(d.pixels, img + 16, N * 64);
        am_dataset_free(&d);
        char p[512];
        path_of(p, gz ? "train-images-idx3-ubyte.gz.sealed" : "train-images-idx3-ubyte.sealed");
        unlink(p);
        path_of(p, gz ? "train-labels-idx1-ubyte.gz.sealed" : "train-labels-idx1-ubyte.sealed");
        if (!gz) unlink(p);
    }
    /* A sealed checkpoint: written with the key set, opened only with it,
     * and the run resumes from it. */
    am_dataset d;
    assert_int_equal(am_synthetic(32, 1, 8, 8, 4, 3, &d), AM_OK);
    am_train_cfg c = {.epochs = 2, .batch = 8, .lr = 0.05f, .momentum = 0.9f, .sched = AM_SCHED_CONSTANT,
                      .step_size = 1, .gamma = 0.1f, .seed = 5};
    am_trainer *t;
    assert_int_equal(am_trainer_create(&c, "input 1 8 8\nconv 4 k=3 p=1\nrelu\ngap\nflatten\nlinear 4", &d, &t),
                     AM_OK);
    assert_int_equal(am_trainer_step(t, NULL), AM_OK);
    char p[512];
    path_of(p, "sealed.amck");
    assert_int_equal(am_trainer_save(t, p), AM_OK);
    FILE *f = fopen(p, "rb");
    char head[6];
    assert_int_equal(fread(head, 1, 6, f), 6);
    fclose(f);
    assert_memory_equal(head, "AMSEAL", 6);
    am_trainer *r;
    assert_int_equal(am_trainer_resume(p, &d, &r), AM_OK);
    assert_int_equal(am_trainer_global_step(r), 1);
    am_trainer_free(r);
    am_seal_set_key(NULL);
    assert_int_equal(am_trainer_resume(p, &d, &r), AM_EINVAL);
    uint8_t other[AM_SEAL_KEY_BYTES] = {1};
    am_seal_set_key(other);
    assert_int_equal(am_trainer_resume(p, &d, &r), AM_EFORMAT);
    am_seal_set_key(NULL);
    am_trainer_free(t);
    am_dataset_free(&d);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/asymml-seal-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_roundtrip), cmocka_unit_test(t_keys),
                                       cmocka_unit_test(t_sealed_data_and_checkpoints)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) rc = rc ? rc : 1;
    return rc;
}
