/* bench's fixed-point modes (quantized, slalom): inference only, on the
 * model folded and calibrated on the bench's batch. Slalom's unblinding
 * factors are made first, as Slalom makes them, timed apart (the
 * precomputation's cost per batch); the timed passes then take each
 * batch's set from memory (a real run reads it from its sealed store:
 * infer --factors). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct mem_src {
    am_factor_src src;
    int L;
    size_t *lens;
    int32_t **v; /* set t's layer i: v[t L + i] */
    uint64_t next, count;
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
    memcpy(out, m->v[batch * (uint64_t)m->L + (uint64_t)ordinal], n * sizeof(int32_t));
    return AM_OK;
}

static void mem_free(mem_src *m) {
    for (uint64_t i = 0; m->v && i < m->count * (uint64_t)m->L; i++) free(m->v[i]);
    free(m->v);
    free(m->lens);
}

/* Factors for n batches into memory: seconds a batch. */
static int precompute(am_model *q, mem_src *m, int n, double *per) {
    m->L = am_model_fixed_layers(q);
    m->count = (uint64_t)n;
    m->lens = malloc(sizeof(size_t) * (size_t)(m->L > 0 ? m->L : 1));
    m->v = calloc((size_t)n * (size_t)m->L, sizeof(int32_t *));
    if (!m->lens || !m->v) return die(EXIT_RUNTIME, "bench: out of memory");
    for (int i = 0; i < m->L; i++) m->lens[i] = am_model_factor_len(q, i);
    double t0 = now_s();
    for (int t = 0; t < n; t++)
        for (int i = 0; i < m->L; i++) {
            int32_t **v = &m->v[(size_t)t * m->L + i];
            if (!(*v = malloc(m->lens[i] * sizeof(int32_t))))
                return die(EXIT_RUNTIME, "bench: out of memory for slalom's factors");
            if (am_model_factors(q, (uint64_t)t, i, *v)) return lib_fail("bench");
        }
    *per = (now_s() - t0) / n;
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
