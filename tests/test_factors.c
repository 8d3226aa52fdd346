/* Slalom's factors made ahead of time (issue 16, item 2): a store written
 * by a precompute model and read by a slalom model gives quantized mode's
 * logits bit for bit; every set is used once (the counter persists across
 * openings, running out is an error, never a reuse); a factor file moved to
 * another batch, a store of other weights or batch size, a copy of a
 * store, an incomplete store, a second opener: each refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asymml/asymml.h"
#include "fixture.h"
#include "untrusted/cpu_backend.h"

static fx_file F;
static am_backend *be;
static char root[64];

static am_model *fixed_point(am_mode md) { return fx_fixed_model(&F, md, md == AM_MODE_SLALOM ? be : NULL); }

static am_status infer(am_model *m) {
    am_tensor t = {am_shape4(4, 3, 16, 16), (float *)fx_f32(&F, "x", 4 * 768)};
    return am_model_forward(m, &t, 0, NULL);
}

/* A store of count sets for m's layers, as asymml precompute makes it. */
static void precompute(const char *dir, uint64_t count, int finish) {
    am_model *m = fixed_point(AM_MODE_QUANTIZED);
    int L = am_model_fixed_layers(m);
    size_t lens[16];
    uint8_t ident[32];
    for (int i = 0; i < L; i++) lens[i] = am_model_factor_len(m, i);
    assert_int_equal(am_model_factor_identity(m, ident), AM_OK);
    am_factor_store *s;
    if (am_factors_create(dir, count, 4, L, lens, ident, &s)) fail_msg("%s", am_last_error());
    assert_int_equal(am_model_set_pad_key(m, am_factors_pad_key(s)), AM_OK);
    int32_t *v = malloc(4 * lens[0] * 4);
    for (uint64_t t = 0; t < count; t++)
        for (int i = 0; i < L; i++) {
            assert_int_equal(am_model_factors(m, t, i, v), AM_OK);
            assert_int_equal(am_factors_put(s, t, i, v), AM_OK);
        }
    if (finish) assert_int_equal(am_factors_finish(s), AM_OK);
    am_factors_close(s);
    free(v);
    am_model_free(m);
}

/* A slalom model that takes its factors from the store in dir. */
static am_model *from_store(const char *dir, am_factor_store **s) {
    am_model *m = fixed_point(AM_MODE_SLALOM);
    if (am_factors_open(dir, s)) fail_msg("%s", am_last_error());
    int L = am_model_fixed_layers(m);
    size_t lens[16];
    uint8_t ident[32];
    for (int i = 0; i < L; i++) lens[i] = am_model_factor_len(m, i);
    assert_int_equal(am_model_factor_identity(m, ident), AM_OK);
    if (am_factors_match(*s, 4, L, lens, ident)) fail_msg("%s", am_last_error());
    assert_int_equal(am_model_set_pad_key(m, am_factors_pad_key(*s)), AM_OK);
    assert_int_equal(am_model_use_factors(m, am_factors_source(*s)), AM_OK);
    return m;
}

static void t_once_each(void **st) {
    (void)st;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/a", root);
    precompute(dir, 3, 1);
    am_model *q = fixed_point(AM_MODE_QUANTIZED);
    assert_int_equal(infer(q), AM_OK);
    const am_tensor *ref = am_model_logits(q);
    am_factor_store *s;
    am_model *m = from_store(dir, &s);
    assert_int_equal(am_factors_left(s), 3);
    for (int b = 0; b < 2; b++) {
        if (infer(m)) fail_msg("%s", am_last_error());
        assert_memory_equal(am_model_logits(m)->d, ref->d, am_shape_numel(ref->s) * sizeof(float));
    }
    am_factor_store *other;
    assert_int_equal(am_factors_open(dir, &other), AM_EIO); /* locked */
    assert_non_null(strstr(am_last_error(), "in use by another process"));
    am_factors_close(s);
    am_model_free(m);
    /* Opened again: one set left, then none, and never a reuse. */
    m = from_store(dir, &s);
    assert_int_equal(am_factors_left(s), 1);
    assert_int_equal(infer(m), AM_OK);
    assert_memory_equal(am_model_logits(m)->d, ref->d, am_shape_numel(ref->s) * sizeof(float));
    assert_int_equal(infer(m), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "all 3 factor sets are used"));
    am_factors_close(s);
    am_model_free(m);
    m = from_store(dir, &s);
    assert_int_equal(am_factors_left(s), 0);
    assert_int_equal(infer(m), AM_EINVAL);
    am_factors_close(s);
    am_model_free(m);
    am_model_free(q);
}

/* A set of three pieces (two whole, one part) round trip; pieces swapped,
 * a byte short, under another key, or of another index: refused. */
static void t_set(void **st) {
    (void)st;
    const size_t n = 2500000;
    int32_t *v = malloc(n * 4), *back = malloc(n * 4);
    for (size_t i = 0; i < n; i++) v[i] = (int32_t)(i * 2654435761u % AM_MODP);
    uint8_t key[32] = {1}, other[32] = {2};
    am_seal_id id = {AM_SEAL_FACTORS, {7}, 4097};
    uint8_t *c;
    size_t cn;
    assert_int_equal(am_factor_set_seal(key, &id, v, n, &c, &cn), AM_OK);
    assert_int_equal(cn, am_factor_set_size(n));
    assert_int_equal(am_factor_set_unseal(key, &id, c, cn, "set", back, n), AM_OK);
    assert_memory_equal(v, back, n * 4);
    assert_int_equal(am_factor_set_unseal(other, &id, c, cn, "set", back, n), AM_EFORMAT);
    assert_int_equal(am_factor_set_unseal(key, &id, c, cn - 1, "set", back, n), AM_EFORMAT);
    am_seal_id id2 = id;
    id2.index = 4098;
    assert_int_equal(am_factor_set_unseal(key, &id2, c, cn, "set", back, n), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "not this store's factors of index 4098"));
    id2 = id;
    id2.id[0] = 8;
    assert_int_equal(am_factor_set_unseal(key, &id2, c, cn, "set", back, n), AM_EFORMAT);
    const size_t p0 = am_sealed_size((size_t)4 << 20); /* a whole piece */
    uint8_t *tmp = malloc(p0);
    memcpy(tmp, c, p0), memcpy(c, c + p0, p0), memcpy(c + p0, tmp, p0);
    assert_int_equal(am_factor_set_unseal(key, &id, c, cn, "set", back, n), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "piece 0 holds factors of index 4097 (piece 1)"));
    free(tmp);
    free(c);
    free(v);
    free(back);
}

static void t_refused(void **st) {
    (void)st;
    char dir[128], a[256], b[256];
    /* A file moved to another batch's name. */
    snprintf(dir, sizeof dir, "%s/b", root);
    precompute(dir, 2, 1);
    snprintf(a, sizeof a, "%s/f-0000000000-0000.amfu", dir);
    snprintf(b, sizeof b, "%s/f-0000000001-0000.amfu", dir);
    assert_int_equal(rename(a, b), 0);
    am_factor_store *s;
    am_model *m = from_store(dir, &s);
    assert_int_equal(infer(m), AM_EIO); /* batch 0's file is gone */
    assert_int_equal(infer(m), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "not this store's factors of index 4096"));
    am_factors_close(s);
    am_model_free(m);
    /* Other weights, another batch size. */
    snprintf(dir, sizeof dir, "%s/c", root);
    precompute(dir, 1, 1);
    assert_int_equal(am_factors_open(dir, &s), AM_OK);
    m = fixed_point(AM_MODE_SLALOM);
    int L = am_model_fixed_layers(m);
    size_t lens[16];
    uint8_t ident[32];
    for (int i = 0; i < L; i++) lens[i] = am_model_factor_len(m, i);
    am_model_param(m, 0)->data[0] += 0.5f;
    assert_int_equal(am_model_factor_identity(m, ident), AM_OK);
    assert_int_equal(am_factors_match(s, 4, L, lens, ident), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "another model or other weights"));
    assert_int_equal(am_factors_match(s, 8, L, lens, ident), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "give --batch 4"));
    am_factors_close(s);
    am_model_free(m);
    /* A copy of a store elsewhere (it would start from the same counter,
     * and reuse every pad) is refused. */
    char cp[512], copy[160];
    snprintf(copy, sizeof copy, "%s/c-copy", root);
    snprintf(cp, sizeof cp, "cp -r %s %s", dir, copy);
    assert_int_equal(system(cp), 0);
    assert_int_equal(am_factors_open(copy, &s), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "a copy of a factor store"));
    /* The model's weights changed after its first pass with the store's
     * factors (made for the weights as they were): refused, not a wrong
     * result. */
    snprintf(dir, sizeof dir, "%s/w", root);
    precompute(dir, 2, 1);
    m = from_store(dir, &s);
    assert_int_equal(infer(m), AM_OK);
    am_model_param(m, 0)->data[0] += 0.5f;
    assert_int_equal(infer(m), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "weights changed since its factors were made"));
    am_factors_close(s);
    am_model_free(m);
    /* An interrupted precompute leaves no store. */
    snprintf(dir, sizeof dir, "%s/d", root);
    precompute(dir, 1, 0);
    assert_int_equal(am_factors_open(dir, &s), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "no factor store here"));
    /* Without the key nothing is made. */
    am_seal_set_key(NULL);
    snprintf(dir, sizeof dir, "%s/e", root);
    size_t one = 1;
    assert_int_equal(am_factors_create(dir, 1, 4, 1, &one, ident, &s), AM_EINVAL);
}

static int setup(void **st) {
    (void)st;
    uint8_t key[AM_SEAL_KEY_BYTES];
    if (sodium_init() < 0) return 1;
    randombytes_buf(key, sizeof key);
    am_seal_set_key(key);
    snprintf(root, sizeof root, "/tmp/asymml-factors-XXXXXX");
    if (!mkdtemp(root)) return 1;
    fx_load(&F, "quant_vgg.amfx");
    return am_cpu_backend_create(&be) != AM_OK;
}

static int teardown(void **st) {
    (void)st;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd)) return 1;
    fx_free(&F);
    be->vt->destroy(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_once_each), cmocka_unit_test(t_set), cmocka_unit_test(t_refused)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
