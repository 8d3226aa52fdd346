/* project.c's block with AVX-512 where the processor has it: a block of 16
 * pixels is one register per row, basis vectors (then channels) taken 8 at
 * a time against each row loaded, with fused multiply-adds (each term
 * rounds once: the bits differ from the AVX2 block's in the last places).
 * The whole projection, r = C / 16, 2 cores of an AMD EPYC, best of 5,
 * AVX2 -> AVX-512 over 2-3 alternating runs: B 8, C 512 at 28x28 2.4-3.3 ->
 * 1.3-1.4 ms, C 128 at 112x112 6.3-8.8 -> 4.5-6.3; B 32, C 512 at 4x4
 * 0.23-0.24 -> 0.10-0.11, C 128 at 16x16 0.26-0.28 -> 0.16-0.21; where
 * memory bounds it (C 64 at 224x224 and at 32x32, C 256 at 56x56) no
 * steady change. */
#include "decomp/block.h"

#include "core/avx512.h"

#if AM_HAVE_AVX512

/* Basis vectors j .. j + W - 1 of V (r x 16) = U^T x, W accumulators. */
#define COEF_TILE(W)                                                                                 \
    do {                                                                                             \
        __m512 a[W];                                                                                 \
        for (int t = 0; t < (W); t++) a[t] = _mm512_setzero_ps();                                    \
        for (int c = 0; c < C; c++) {                                                                \
            const __m512 xv = _mm512_loadu_ps(x + (size_t)c * ldx);                                  \
            const float *u = U + (size_t)c * r + j;                                                  \
            for (int t = 0; t < (W); t++) a[t] = _mm512_fmadd_ps(_mm512_set1_ps(u[t]), xv, a[t]);    \
        }                                                                                            \
        for (int t = 0; t < (W); t++) {                                                              \
            _mm512_storeu_ps(v + (size_t)(j + t) * ldv, a[t]);                                       \
            sq = _mm512_fmadd_ps(a[t], a[t], sq);                                                    \
        }                                                                                            \
    } while (0)

/* V (r x 16) = U^T x, 8 basis vectors at a time, then 4, then 1; x rows
 * ldx apart, v rows ldv apart. Returns the sum of squares as a vector. */
AM_AVX512 static __m512 coefs(const float *x, size_t ldx, const float *U, int C, int r, float *v, size_t ldv) {
    __m512 sq = _mm512_setzero_ps();
    int j = 0;
    for (; j + 8 <= r; j += 8) COEF_TILE(8);
    for (; j + 4 <= r; j += 4) COEF_TILE(4);
    for (; j < r; j++) COEF_TILE(1);
    return sq;
}
#undef COEF_TILE

/* Floats ahead in each row that the residual's pass asks the cache for,
 * the input to read and the residual to write (two blocks on): a block
 * takes one line of each of 2 C rows, more streams than the hardware
 * follows. The projection, B 32, caches cold, 2 rounds: C 64 at 32x32
 * 0.78 -> 0.71-0.72 ms, C 128 at 16x16 0.24-0.25 -> 0.22-0.23, C 256 at
 * 8x8 0.18-0.19 -> 0.16-0.17 (4 or 8 blocks on: no better). */
#define AHEAD 32
/* R (C x 16) = x - U V, 8 channels at a time, then one. */
AM_AVX512 static __m512 residual(const float *x, size_t ld, const float *U, int C, int r, const float *v, float *rr) {
    __m512 sq = _mm512_setzero_ps();
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        __m512 a[8];
        for (int t = 0; t < 8; t++) {
            a[t] = _mm512_loadu_ps(x + (size_t)(c + t) * ld);
            _mm_prefetch((const char *)(x + (size_t)(c + t) * ld + AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(rr + (size_t)(c + t) * ld + AHEAD), _MM_HINT_T0);
        }
        for (int i = 0; i < r; i++) {
            const __m512 vi = _mm512_loadu_ps(v + (size_t)i * ld);
            for (int t = 0; t < 8; t++) a[t] = _mm512_fnmadd_ps(_mm512_set1_ps(U[(size_t)(c + t) * r + i]), vi, a[t]);
        }
        for (int t = 0; t < 8; t++) {
            _mm512_storeu_ps(rr + (size_t)(c + t) * ld, a[t]);
            sq = _mm512_fmadd_ps(a[t], a[t], sq);
        }
    }
    for (; c < C; c++) {
        __m512 a = _mm512_loadu_ps(x + (size_t)c * ld);
        for (int i = 0; i < r; i++)
            a = _mm512_fnmadd_ps(_mm512_set1_ps(U[(size_t)c * r + i]), _mm512_loadu_ps(v + (size_t)i * ld), a);
        _mm512_storeu_ps(rr + (size_t)c * ld, a);
        sq = _mm512_fmadd_ps(a, a, sq);
    }
    return sq;
}

AM_AVX512 void am_block512(const float *x, const float *U, int C, int N, int r, float *v, float *rr, double *er,
                        double *ev) {
    *ev += _mm512_reduce_add_ps(coefs(x, (size_t)N, U, C, r, v, (size_t)N));
    *er += _mm512_reduce_add_ps(residual(x, (size_t)N, U, C, r, v, rr));
}
#else
void am_block512(const float *x, const float *U, int C, int N, int r, float *v, float *rr, double *er, double *ev) {
    (void)x, (void)U, (void)C, (void)N, (void)r, (void)v, (void)rr, (void)er, (void)ev;
}
#endif
