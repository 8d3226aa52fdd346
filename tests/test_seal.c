/* Sealed files: round trips at chunk boundaries; a wrong key, any changed
 * byte, a dropped final chunk or extra bytes are errors; each file's role
 * and identity are authenticated: a test file given as training data,
 * labels of another sealing, a checkpoint or log opened as data, are
 * refused; key files readable by others are refused; sealed IDX data
 * (plain and .gz) read like plain; sealed checkpoints resume. */
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

static am_seal_id id_of(am_seal_role role, int who, uint64_t index) {
    am_seal_id id = {role, {0}, index};
    memset(id.id, who, sizeof id.id);
    return id;
}

static void t_roundtrip(void **st) {
    (void)st;
    uint8_t key[AM_SEAL_KEY_BYTES], other[AM_SEAL_KEY_BYTES];
    for (int i = 0; i < AM_SEAL_KEY_BYTES; i++) key[i] = (uint8_t)i, other[i] = (uint8_t)(i + 1);
    const size_t M = (size_t)1 << 20;
    const size_t sizes[] = {0, 1, 1000, M - 1, M, M + 1, 2 * M + 7};
    uint8_t *in = malloc(2 * M + 7);
    for (size_t i = 0; i < 2 * M + 7; i++) in[i] = (uint8_t)(i * 31 + 7);
    const am_seal_id id = id_of(AM_SEAL_TRAIN_IMAGES, 7, 0);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint8_t *s, *p;
        size_t sn, pn;
        am_seal_id got;
        assert_int_equal(am_seal(key, &id, in, n, &s, &sn), AM_OK);
        assert_true(am_is_sealed(s, sn));
        assert_int_equal(am_unseal(key, s, sn, "x", &got, &p, &pn), AM_OK);
        assert_int_equal(pn, n);
        assert_memory_equal(&got.id, id.id, sizeof id.id);
        assert_int_equal(got.role, id.role);
        if (n) assert_memory_equal(p, in, n);
        free(p);
        /* Another key. */
        assert_int_equal(am_unseal(other, s, sn, "x", &got, &p, &pn), AM_EFORMAT);
        assert_non_null(strstr(am_last_error(), "wrong key"));
        /* No key. */
        assert_int_equal(am_unseal(NULL, s, sn, "x", &got, &p, &pn), AM_EINVAL);
        /* A changed byte anywhere: the role, the identity, the index, the
         * stream header, the first and the last byte. */
        size_t where[6] = {8, 14, 30, 40, 80, sn - 1};
        for (int w = 0; w < 6; w++) {
            if (where[w] >= sn) continue;
            s[where[w]] ^= 0x20;
            assert_int_not_equal(am_unseal(key, s, sn, "x", &got, &p, &pn), AM_OK);
            s[where[w]] ^= 0x20;
        }
        /* Truncated: the final chunk dropped (a chunk boundary), or cut. */
        if (n > M) {
            size_t first = 36 + 24 + M + 17;
            assert_int_equal(am_unseal(key, s, first, "x", &got, &p, &pn), AM_EFORMAT);
            assert_non_null(strstr(am_last_error(), "truncated"));
        }
        assert_int_equal(am_unseal(key, s, sn - 1, "x", &got, &p, &pn), AM_EFORMAT);
        /* Extra bytes after the end. */
        uint8_t *t = malloc(sn + 3);
        memcpy(t, s, sn);
        memset(t + sn, 0, 3);
        assert_int_equal(am_unseal(key, t, sn + 3, "x", &got, &p, &pn), AM_EFORMAT);
        free(t);
        free(s);
    }
    /* Not sealed at all; sealed by the older format, without an identity. */
    uint8_t *p;
    size_t pn;
    am_seal_id got;
    assert_int_equal(am_unseal(key, in, 100, "x", &got, &p, &pn), AM_EFORMAT);
    memcpy(in, "AMSEAL\x01\x00", 8);
    assert_int_equal(am_unseal(key, in, 100, "x", &got, &p, &pn), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "seal it again"));
    /* A file sealed as data never opens as a checkpoint or a log, nor the
     * reverse: each kind has its own subkey. Rewriting the role in the
     * header breaks its authentication. */
    uint8_t *s;
    size_t sn;
    am_seal_id ck = id_of(AM_SEAL_CHECKPOINT, 1, 5);
    assert_int_equal(am_seal(key, &ck, in, 100, &s, &sn), AM_OK);
    s[8] = AM_SEAL_TRAIN_IMAGES;
    assert_int_equal(am_unseal(key, s, sn, "x", &got, &p, &pn), AM_EFORMAT);
    s[8] = AM_SEAL_LOG;
    assert_int_equal(am_unseal(key, s, sn, "x", &got, &p, &pn), AM_EFORMAT);
    free(s);
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
    /* A key readable by group or others is refused. */
    assert_int_equal(chmod(k, 0640), 0);
    assert_int_equal(am_seal_key_read(k, key), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "chmod 600"));
    assert_int_equal(chmod(k, 0604), 0);
    assert_int_equal(am_seal_key_read(k, key), AM_EINVAL);
    assert_int_equal(chmod(k, 0600), 0);
    FILE *f = fopen(bad, "wb");
    fwrite(key, 1, 31, f);
    fclose(f);
    chmod(bad, 0600);
    assert_int_equal(am_seal_key_read(bad, key), AM_EFORMAT);
    assert_int_equal(am_seal_key_read("/nonexistent/key", key), AM_EIO);
    /* Roles from the datasets' file names. */
    am_seal_role r;
    uint64_t idx;
    assert_int_equal(am_seal_role_of_name("/d/t10k-labels-idx1-ubyte.gz", &r, &idx), AM_OK);
    assert_int_equal(r, AM_SEAL_TEST_LABELS);
    assert_int_equal(am_seal_role_of_name("data_batch_3.bin", &r, &idx), AM_OK);
    assert_true(r == AM_SEAL_TRAIN_RECORDS && idx == 3);
    assert_int_equal(am_seal_role_of_name("notes.txt", &r, &idx), AM_EINVAL);
}

/* Writes bytes (gzipped or not) as dir/name and seals it into name.sealed
 * as id says; the plain file is removed. */
static void write_sealed(const char *name, const uint8_t *bytes, size_t n, int gz, const uint8_t *key, am_seal_id id) {
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
    assert_int_equal(am_seal_file(key, &id, p, s), AM_OK);
    assert_int_equal(am_seal_file(key, &id, p, s), AM_EIO); /* exists */
    unlink(p);
}

enum { N = 24 };
static uint8_t img[16 + N * 64], lab[8 + N];

static void make_idx(void) {
    memcpy(img, "\0\0\x08\x03\0\0\0\x18\0\0\0\x08\0\0\0\x08", 16);
    memcpy(lab, "\0\0\x08\x01\0\0\0\x18", 8);
    for (int i = 0; i < N * 64; i++) img[16 + i] = (uint8_t)(i * 7);
    for (int i = 0; i < N; i++) lab[8 + i] = (uint8_t)(i % 4);
}

static void clean(const char *name) {
    char p[512];
    path_of(p, name);
    unlink(p);
}

static void t_sealed_data(void **st) {
    (void)st;
    uint8_t key[AM_SEAL_KEY_BYTES];
    for (int i = 0; i < AM_SEAL_KEY_BYTES; i++) key[i] = (uint8_t)(200 - i);
    make_idx();
    am_dataset d;
    for (int gz = 0; gz < 2; gz++) {
        const char *im = gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte";
        const char *la = gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte";
        write_sealed(im, img, sizeof img, gz, key, id_of(AM_SEAL_TRAIN_IMAGES, 3, 0));
        write_sealed(la, lab, sizeof lab, gz, key, id_of(AM_SEAL_TRAIN_LABELS, 3, 0));
        am_seal_set_key(NULL);
        assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_EINVAL);
        assert_non_null(strstr(am_last_error(), "give the key"));
        am_seal_set_key(key);
        assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_OK);
        assert_int_equal(d.n, N);
        assert_memory_equal(d.pixels, img + 16, N * 64);
        am_dataset_free(&d);
        char s1[64], s2[64];
        snprintf(s1, sizeof s1, "%s.sealed", im);
        snprintf(s2, sizeof s2, "%s.sealed", la);
        clean(s1);
        clean(s2);
    }
    /* The test set sealed as such, put where the training set belongs:
     * refused, whatever its name says. */
    write_sealed("train-images-idx3-ubyte", img, sizeof img, 0, key, id_of(AM_SEAL_TEST_IMAGES, 3, 0));
    write_sealed("train-labels-idx1-ubyte", lab, sizeof lab, 0, key, id_of(AM_SEAL_TEST_LABELS, 3, 0));
    assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "sealed as test-images, but read as train-images"));
    clean("train-images-idx3-ubyte.sealed");
    clean("train-labels-idx1-ubyte.sealed");
    /* Labels from another sealing (another dataset's, or relabelled). */
    write_sealed("train-images-idx3-ubyte", img, sizeof img, 0, key, id_of(AM_SEAL_TRAIN_IMAGES, 3, 0));
    write_sealed("train-labels-idx1-ubyte", lab, sizeof lab, 0, key, id_of(AM_SEAL_TRAIN_LABELS, 4, 0));
    assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "another dataset"));
    /* A plain labels file planted beside sealed images is not taken (with a
     * key, sealed copies come first), and one split never mixes the two. */
    clean("train-labels-idx1-ubyte.sealed");
    write_sealed("train-labels-idx1-ubyte", lab, sizeof lab, 0, key, id_of(AM_SEAL_TRAIN_LABELS, 3, 0));
    char p[512];
    path_of(p, "train-labels-idx1-ubyte");
    FILE *f = fopen(p, "wb");
    fwrite(lab, 1, sizeof lab, f);
    fclose(f);
    assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "train", &d), AM_OK);
    am_dataset_free(&d);
    char pi[512], pl[512];
    path_of(pi, "train-images-idx3-ubyte.sealed");
    path_of(pl, "train-labels-idx1-ubyte");
    assert_int_equal(am_idx_load(pi, pl, 10, 1, &d), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "seal them all, or none"));
    clean("train-labels-idx1-ubyte");
    clean("train-labels-idx1-ubyte.sealed");
    clean("train-images-idx3-ubyte.sealed");
    am_seal_set_key(NULL);
}

static void t_sealed_checkpoints(void **st) {
    (void)st;
    uint8_t key[AM_SEAL_KEY_BYTES];
    for (int i = 0; i < AM_SEAL_KEY_BYTES; i++) key[i] = (uint8_t)(100 + i);
    am_seal_set_key(key);
    /* A sealed checkpoint: written with the key set, opened only with it,
     * and the run resumes from it. */
    am_dataset d;
    assert_int_equal(am_synthetic(32, 1, 8, 8, 4, 3, &d), AM_OK);
    am_train_cfg c = {.epochs = 2, .batch = 8, .lr = 0.05f, .momentum = 0.9f, .sched = AM_SCHED_CONSTANT,
                      .step_size = 1, .gamma = 0.1f, .seed = 5};
    am_trainer *t;
    am_trainer_io io = {&d, NULL, NULL};
    assert_int_equal(am_trainer_create(&c, "input 1 8 8\nconv 4 k=3 p=1\nrelu\ngap\nflatten\nlinear 4", &io, &t), AM_OK);
    assert_int_equal(am_trainer_step(t, NULL), AM_OK);
    char p[512];
    path_of(p, "ckpt-0000000001.amck");
    assert_int_equal(am_trainer_save(t, p), AM_OK);
    FILE *f = fopen(p, "rb");
    char head[6];
    assert_int_equal(fread(head, 1, 6, f), 6);
    fclose(f);
    assert_memory_equal(head, "AMSEAL", 6);
    am_checkpoint ck;
    am_trainer *r;
    assert_int_equal(am_checkpoint_read(p, &ck), AM_OK);
    assert_int_equal(am_trainer_resume(&ck, &io, &r), AM_OK);
    assert_int_equal(am_trainer_global_step(r), 1);
    am_checkpoint_free(&ck);
    am_trainer_free(r);
    am_seal_set_key(NULL);
    assert_int_equal(am_checkpoint_read(p, &ck), AM_EINVAL);
    uint8_t other[AM_SEAL_KEY_BYTES] = {1};
    am_seal_set_key(other);
    assert_int_equal(am_checkpoint_read(p, &ck), AM_EFORMAT);
    /* A later step's name on an earlier step's file (a rollback) is refused. */
    am_seal_set_key(key);
    char q[512];
    path_of(q, "ckpt-0000000009.amck");
    assert_int_equal(rename(p, q), 0);
    assert_int_equal(am_checkpoint_read(q, &ck), AM_EFORMAT);
    /* A sealed data file given as a checkpoint. */
    make_idx();
    write_sealed("x", img, sizeof img, 0, key, id_of(AM_SEAL_TRAIN_IMAGES, 3, 0));
    path_of(q, "x.sealed");
    assert_int_equal(am_checkpoint_read(q, &ck), AM_EFORMAT);
    am_seal_set_key(NULL);
    am_trainer_free(t);
    am_dataset_free(&d);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/asymml-seal-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_roundtrip), cmocka_unit_test(t_keys),
                                       cmocka_unit_test(t_sealed_data), cmocka_unit_test(t_sealed_checkpoints)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) rc = rc ? rc : 1;
    return rc;
}
