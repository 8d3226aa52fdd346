/* bench's fixed-point modes (quantized, slalom): inference only, on the
 * model folded and calibrated on the bench's batch. Slalom's unblinding
 * factors are made first, as Slalom makes them, timed apart (the
 * precomputation's cost per batch) and sealed as a store seals them
 * (under a key of the bench's own); the timed passes then take each
 * batch's sets from memory and unseal them, as infer --factors does after
 * reading them from its store's files (the reading is not timed here). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/factors.h"
#include "cli.h"

typedef struct mem_src {
    am_factor_src src;
    int L;
    size_t *lens;
    uint8_t **v; /* set t's layer i, sealed: v[t L + i] */
    size_t *vn;
    uint64_t next, count;
    uint8_t key[32];
    am_seal_id id;
} mem_src;

static am_status mem_next(void *ctx, uint64_t *batch) {
    mem_src *m = ctx;
    if (m->next >= m->count) return am_fail(AM_EINVAL, "bench: no factor set left");
    *batch = m->next++;
    return AM_OK;
}

static am_status mem_load(void *ctx, uint64_t batch, int ordinal, int32_t *out, size_t n) {
    mem_src *m = ctx;
    if (batch >= m->count || ordinal < 0 || ordinal >= m->L || n != m->lens[ordinal])
        return am_fail(AM_EINVAL, "bench: no such factors");
    const uint64_t k = batch * (uint64_t)m->L + (uint64_t)ordinal;
    am_seal_id id = m->id;
    id.index = k;
    return am_factor_set_unseal(m->key, &id, m->v[k], m->vn[k], "bench's factors", out, n);
}

static void mem_free(mem_src *m) {
    for (uint64_t i = 0; m->v && i < m->count * (uint64_t)m->L; i++) free(m->v[i]);
    free(m->v);
    free(m->vn);
    free(m->lens);
    sodium_memzero(m->key, sizeof m->key);
}

/* Factors for n batches into memory: seconds a batch. */
static int precompute(am_model *q, mem_src *m, int n, double *per) {
    m->L = am_model_fixed_layers(q);
    m->count = (uint64_t)n;
    m->lens = malloc(sizeof(size_t) * (size_t)(m->L > 0 ? m->L : 1));
    m->v = calloc((size_t)n * (size_t)m->L, sizeof(uint8_t *));
    m->vn = calloc((size_t)n * (size_t)m->L, sizeof(size_t));
    if (!m->lens || !m->v || !m->vn) return die(EXIT_RUNTIME, "bench: out of memory");
    randombytes_buf(m->key, sizeof m->key);
    m->id = (am_seal_id){AM_SEAL_FACTORS, {0}, 0};
    randombytes_buf(m->id.id, sizeof m->id.id);
    size_t most = 0;
    for (int i = 0; i < m->L; i++) {
        m->lens[i] = am_model_factor_len(q, i);
        if (m->lens[i] > most) most = m->lens[i];
    }
    int32_t *v = malloc(most * sizeof(int32_t));
    if (!v) return die(EXIT_RUNTIME, "bench: out of memory for slalom's factors");
    double t0 = now_s();
    for (int t = 0; t < n; t++)
        for (int i = 0; i < m->L; i++) {
            const size_t k = (size_t)t * m->L + i;
            am_seal_id id = m->id;
            id.index = k;
            if (am_model_factors(q, (uint64_t)t, i, v) ||
                am_factor_set_seal(m->key, &id, v, m->lens[i], &m->v[k], &m->vn[k])) {
                free(v);
                return lib_fail("bench");
            }
        }
    *per = (now_s() - t0) / n;
    free(v);
    m->src = (am_factor_src){m, mem_next, mem_load};
    return 0;
}

int bench_fixed(am_model *m, am_mode mode, am_backend *be, am_tensor *x, int steps, int warm, double *t, double *ac,
                double out[3], double *pre_s, const char *label) {
    am_model *q = NULL;
    mem_src src = {0};
    double sgd;
    *pre_s = 0;
    am_asym_cfg c = am_asym_defaults();
    c.mode = mode;
    int rc = 0;
    if (am_model_fold_bn(m, &q, NULL) || am_model_set_batch(q, x->s.n) ||
        am_model_set_asym(q, &c, mode == AM_MODE_SLALOM ? be : NULL) || am_model_calibrate(q, x))
        rc = lib_fail(label);
    if (!rc && mode == AM_MODE_SLALOM) {
        rc = precompute(q, &src, warm + steps, pre_s);
        if (!rc && am_model_use_factors(q, &src.src)) rc = lib_fail("bench");
    }
    if (!rc) rc = bench_time_steps(q, NULL, x, NULL, NULL, 1, steps, warm, t, ac, out, &sgd, label);
    mem_free(&src);
    am_model_free(q);
    return rc;
}
