/* OpenBLAS called from several OpenMP threads at once, as Winograd's conv
 * does (src/ops/winograd.c: its 36 GEMMs inside a parallel loop), against
 * the same GEMMs called one at a time: the same bits, round after round,
 * in both of its GEMM forms. A change once saw wrong results from such
 * calls (src/core/threads.c); this is the check that the OpenBLAS this
 * build links gives none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"

#define NP 36

/* One point's GEMM: the forward's M = V U (T x co), or with tr the weight
 * gradient's S = V^T D (ci x co). */
static void gemm(int tr, int T, int ci, int co, const float *V, const float *U, float *O, int p) {
    if (tr)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ci, co, T, 1.f, V + (size_t)p * T * ci, ci,
                    U + (size_t)p * T * co, co, 0.f, O + (size_t)p * ci * co, co);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, co, ci, 1.f, V + (size_t)p * T * ci, ci,
                    U + (size_t)p * ci * co, co, 0.f, O + (size_t)p * T * co, co);
}

static void concurrent_case(int tr, int T, int ci, int co, int rounds) {
    const size_t nv = (size_t)NP * T * ci, nu = (size_t)NP * (tr ? T : ci) * co, no = (size_t)NP * (tr ? ci : T) * co;
    float *V = malloc(sizeof(float) * nv), *U = malloc(sizeof(float) * nu), *R = malloc(sizeof(float) * no),
          *O = malloc(sizeof(float) * no);
    assert_true(V && U && R && O);
    am_rng rng;
    am_rng_seed(&rng, 61);
    for (size_t i = 0; i < nv; i++) V[i] = am_rng_normal(&rng);
    for (size_t i = 0; i < nu; i++) U[i] = am_rng_normal(&rng);
    /* One at a time, each on one thread (as inside a parallel region: a
     * GEMM spread over threads may sum in another order). */
    const int nt = omp_get_max_threads();
    am_blas_serial(1);
    for (int p = 0; p < NP; p++) gemm(tr, T, ci, co, V, U, R, p);
    am_blas_serial(0);
    omp_set_num_threads(nt);
    for (int r = 0; r < rounds; r++) {
        memset(O, 0xff, sizeof(float) * no);
#pragma omp parallel for schedule(dynamic)
        for (int p = 0; p < NP; p++) gemm(tr, T, ci, co, V, U, O, p);
        assert_memory_equal(O, R, sizeof(float) * no);
    }
    free(V), free(U), free(R), free(O);
}

static void t_concurrent_gemms(void **st) {
    (void)st;
    const int nt = omp_get_max_threads();
    omp_set_num_threads(4); /* more calls at once than this machine's 2 cores */
    for (int tr = 0; tr < 2; tr++) {
        concurrent_case(tr, 904, 64, 64, 30);
        concurrent_case(tr, 32, 512, 512, 20);
        concurrent_case(tr, 256, 16, 128, 30);
    }
    omp_set_num_threads(nt);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_concurrent_gemms)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
