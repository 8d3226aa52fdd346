/* The modelled enclave page cache (src/core/pagesim.c) and a step's trusted
 * regions through it (am_model_paging): LRU's exact misses on traces whose
 * answers are known, page arithmetic at region edges, and on a real model
 * the properties a working-set model must have: nothing swaps when the
 * cache holds everything, swaps never grow with the cache (LRU's inclusion
 * property), the working set holds the weights, gradients and momentum and
 * stays within what the model allocated, and bad arguments are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>

#include "asymml/asymml.h"
#include "core/pagesim.h"

#define PG AM_PAGE_BYTES

static am_pagesim *make(size_t cap) {
    am_pagesim *s;
    assert_int_equal(am_pagesim_create(cap, &s), AM_OK);
    return s;
}

static void touch_pages(am_pagesim *s, const int *pages, int n) {
    for (int i = 0; i < n; i++) assert_int_equal(am_pagesim_touch(s, (uintptr_t)pages[i] * PG + 100, 1), AM_OK);
}

static void t_lru_exact(void **st) {
    (void)st;
    /* A cycle of 5 pages through 4 slots: LRU misses every touch. */
    am_pagesim *s = make(4);
    const int cyc[5] = {0, 1, 2, 3, 4};
    touch_pages(s, cyc, 5);
    am_pagesim_reset_counts(s);
    touch_pages(s, cyc, 5);
    assert_int_equal(am_pagesim_misses(s), 5);
    assert_int_equal(am_pagesim_touches(s), 5);
    assert_int_equal(am_pagesim_distinct(s), 5);
    am_pagesim_free(s);
    /* The same cycle fits in 5: no misses after the first pass. */
    s = make(5);
    touch_pages(s, cyc, 5);
    assert_int_equal(am_pagesim_misses(s), 5);
    am_pagesim_reset_counts(s);
    touch_pages(s, cyc, 5);
    assert_int_equal(am_pagesim_misses(s), 0);
    am_pagesim_free(s);
    /* Recency, not arrival: A B A C evicts B (A was used after it). */
    s = make(2);
    const int seq[4] = {10, 11, 10, 12};
    touch_pages(s, seq, 4);
    assert_int_equal(am_pagesim_misses(s), 3);
    const int a[1] = {10};
    touch_pages(s, a, 1);
    assert_int_equal(am_pagesim_misses(s), 3); /* A stayed */
    const int b[1] = {11};
    touch_pages(s, b, 1);
    assert_int_equal(am_pagesim_misses(s), 4); /* B was evicted; B evicts C */
    const int c[1] = {12};
    touch_pages(s, c, 1);
    assert_int_equal(am_pagesim_misses(s), 5); /* so C misses */
    am_pagesim_free(s);
}

static void t_page_edges(void **st) {
    (void)st;
    am_pagesim *s = make(100);
    assert_int_equal(am_pagesim_touch(s, PG - 1, 2), AM_OK); /* two pages */
    assert_int_equal(am_pagesim_touches(s), 2);
    assert_int_equal(am_pagesim_touch(s, 5 * PG, PG), AM_OK); /* exactly one */
    assert_int_equal(am_pagesim_touches(s), 3);
    assert_int_equal(am_pagesim_touch(s, 9 * PG, 0), AM_OK); /* nothing */
    assert_int_equal(am_pagesim_touches(s), 3);
    assert_int_equal(am_pagesim_distinct(s), 3);
    /* Many pages: the table grows and keeps every page apart. */
    assert_int_equal(am_pagesim_touch(s, 1000 * (uintptr_t)PG, 5000 * (size_t)PG), AM_OK);
    assert_int_equal(am_pagesim_distinct(s), 5003);
    am_pagesim_reset_counts(s);
    assert_int_equal(am_pagesim_touch(s, 5998 * (uintptr_t)PG, 2 * (size_t)PG), AM_OK); /* among the last 100 */
    assert_int_equal(am_pagesim_misses(s), 0);
    am_pagesim_free(s);
    am_pagesim *z;
    assert_int_equal(am_pagesim_create(0, &z), AM_EINVAL);
}

static const char desc[] =
    "input 3 16 16\n"
    "conv 16 k=3 p=1 bias=0\nbn\nrelu\n"
    "conv 32 k=3 p=1 bias=0\nbn\nrelu\nmaxpool k=2\n"
    "conv 32 k=3 p=1 bias=0\nbn\nrelu\nmaxpool k=2\n"
    "flatten\nlinear 10\n";

/* One training step of the model above at batch 8, in mode md. */
static am_model *stepped(am_mode md, am_sgd **opt) {
    am_model *m;
    if (am_model_create(desc, &m)) fail_msg("%s", am_last_error());
    assert_int_equal(am_model_init(m, 3), AM_OK);
    const int B = 8;
    assert_int_equal(am_model_set_batch(m, B), AM_OK);
    if (md != AM_MODE_TEE_ONLY) {
        am_asym_cfg c = am_asym_defaults();
        c.mode = md;
        assert_int_equal(am_model_set_asym(m, &c, NULL), AM_OK);
    }
    am_sgd_cfg sc = {0.9f, 0.f, 0.f, 0};
    assert_int_equal(am_sgd_create(&sc, am_model_weights_len(m), opt), AM_OK);
    am_shape s = am_model_input_shape(m);
    s.n = B;
    static am_tensor x;
    am_tensor_free(&x);
    assert_int_equal(am_tensor_alloc(&x, s), AM_OK);
    am_rng r;
    am_rng_seed(&r, 1);
    for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = am_rng_normal(&r);
    int32_t lab[8];
    for (int b = 0; b < B; b++) lab[b] = b % 10;
    float loss;
    assert_int_equal(am_model_forward(m, &x, 1, &r), AM_OK);
    assert_int_equal(am_model_loss(m, lab, &loss), AM_OK);
    assert_int_equal(am_model_backward(m), AM_OK);
    assert_int_equal(am_sgd_step(*opt, am_model_weights(m), am_model_grads(m), 0.01f), AM_OK);
    return m;
}

static void check_model(am_mode md) {
    am_sgd *opt;
    am_model *m = stepped(md, &opt);
    int started;
    const float *mom = am_sgd_momentum(opt, &started);
    const size_t wb = am_model_weights_len(m) * sizeof(float);
    am_paging big, mid, small, one, inf;
    assert_int_equal(am_model_paging(m, 1, mom, wb, (size_t)1 << 32, &big), AM_OK);
    assert_true(big.touches > 0);
    assert_true(big.swaps == 0); /* everything fits: a second step swaps nothing */
    /* The working set holds weights, gradients and momentum, and no more
     * than the model's memory: its arena, those three, the input, and the
     * split's buffers (bounded here by the arena again), with a page of
     * slack for each region's edges. */
    assert_true(big.working_set >= 3.0 * wb);
    double cap = 2.0 * am_model_arena_bytes(m) + 3.0 * wb + 8 * 3 * 16 * 16 * 4 + 200.0 * PG;
    assert_true(big.working_set <= cap);
    const size_t ws = (size_t)big.working_set;
    assert_int_equal(am_model_paging(m, 1, mom, wb, ws / 2, &mid), AM_OK);
    assert_int_equal(am_model_paging(m, 1, mom, wb, ws / 8, &small), AM_OK);
    assert_int_equal(am_model_paging(m, 1, mom, wb, PG, &one), AM_OK);
    assert_true(mid.touches == big.touches && small.touches == big.touches);
    assert_true(mid.swaps > 0);
    assert_true(small.swaps >= mid.swaps);
    assert_true(one.swaps >= small.swaps);
    assert_true(one.swaps <= one.touches);
    assert_true(big.working_set == mid.working_set);
    /* An inference pass touches less: no gradients, no optimizer. */
    assert_int_equal(am_model_paging(m, 0, NULL, 0, (size_t)1 << 32, &inf), AM_OK);
    assert_true(inf.working_set < big.working_set - 2.0 * wb);
    assert_true(inf.swaps == 0);
    am_sgd_free(opt);
    am_model_free(m);
}

static void t_model_tee_only(void **st) {
    (void)st;
    check_model(AM_MODE_TEE_ONLY);
}

static void t_model_lowrank(void **st) {
    (void)st;
    check_model(AM_MODE_LOWRANK_ONLY);
}

static void t_bad_args(void **st) {
    (void)st;
    am_model *m;
    am_paging p;
    assert_int_equal(am_model_create(desc, &m), AM_OK);
    assert_int_equal(am_model_paging(m, 1, NULL, 0, (size_t)1 << 30, &p), AM_EINVAL); /* no batch */
    assert_int_equal(am_model_set_batch(m, 2), AM_OK);
    assert_int_equal(am_model_paging(m, 1, NULL, 0, 100, &p), AM_EINVAL); /* not a page */
    assert_int_equal(am_model_paging(NULL, 1, NULL, 0, (size_t)1 << 30, &p), AM_EINVAL);
    /* Before any step the input's address is a stand-in: still a model. */
    assert_int_equal(am_model_paging(m, 0, NULL, 0, (size_t)1 << 30, &p), AM_OK);
    assert_true(p.working_set > 0 && p.swaps == 0);
    am_model_free(m);
}

int main(void) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(t_lru_exact),      cmocka_unit_test(t_page_edges),  cmocka_unit_test(t_model_tee_only),
        cmocka_unit_test(t_model_lowrank), cmocka_unit_test(t_bad_args),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
