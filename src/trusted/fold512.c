/* Folding and unfolding 3x3 weights with AVX-512 (fold.c takes them where
 * the processor has it): W' = U^T W per output channel, and the weight
 * gradient's low-rank part dW = U D back, each straight from its operands
 * with 32 columns in registers against each broadcast value, written once
 * in the result's order. Measured on 2 cores of an AMD EPYC, K = C = 512,
 * r = 32 (a VGG16 layer at 2x2 or 4x4), best of 15 in three alternating
 * rounds: fold 0.73-1.17 -> 0.33-0.36 ms, unfold 0.62-0.80 -> 0.54-0.57 ms
 * (fold_3x3's blocks of 8 and the GEMM before). Fused multiply-adds: each
 * term rounds once. */
#include "trusted/fold.h"

#include <stddef.h>

#include "core/avx512.h"

#if AM_HAVE_AVX512

/* Accumulators a[t] (16 columns of U from j0) written out transposed:
 * Pk[(j0 + i) * 9 + t] for the lanes before r. */
AM_AVX512 static inline void put_block(const __m512 a[9], int j0, int r, float *Pk) {
    float s[9][16];
    for (int t = 0; t < 9; t++) _mm512_storeu_ps(s[t], a[t]);
    for (int i = 0; i < 16 && j0 + i < r; i++)
        for (int t = 0; t < 9; t++) Pk[(size_t)(j0 + i) * 9 + t] = s[t][i];
}

/* fold.c's fold_3x3 with AVX-512: 32 columns of U (two
 * registers) against each broadcast tap, 18 accumulators, so that a load
 * of W serves 32 columns instead of 8; a last block of 16 or fewer is
 * masked. Fused multiply-adds: the sums round once per term, not twice. */
AM_AVX512 void am_fold_3x3_512(const float *W, const float *U, int K, int C, int r, float *Wp) {
#pragma omp parallel for schedule(static) if ((size_t)K * C * r > 65536)
    for (int k = 0; k < K; k++) {
        const float *Wk = W + (size_t)k * C * 9;
        float *Pk = Wp + (size_t)k * r * 9;
        int j0 = 0;
        for (; j0 + 32 <= r; j0 += 32) {
            __m512 a[9], b[9];
            for (int t = 0; t < 9; t++) a[t] = b[t] = _mm512_setzero_ps();
            for (int c = 0; c < C; c++) {
                const float *uc = U + (size_t)c * r + j0;
                const __m512 u0 = _mm512_loadu_ps(uc), u1 = _mm512_loadu_ps(uc + 16);
                const float *w = Wk + (size_t)c * 9;
                for (int t = 0; t < 9; t++) {
                    const __m512 wt = _mm512_set1_ps(w[t]);
                    a[t] = _mm512_fmadd_ps(wt, u0, a[t]);
                    b[t] = _mm512_fmadd_ps(wt, u1, b[t]);
                }
            }
            put_block(a, j0, r, Pk);
            put_block(b, j0 + 16, r, Pk);
        }
        for (; j0 < r; j0 += 16) {
            const __mmask16 m = am_lanes(r - j0);
            __m512 a[9];
            for (int t = 0; t < 9; t++) a[t] = _mm512_setzero_ps();
            for (int c = 0; c < C; c++) {
                const __m512 u = _mm512_maskz_loadu_ps(m, U + (size_t)c * r + j0);
                const float *w = Wk + (size_t)c * 9;
                for (int t = 0; t < 9; t++) a[t] = _mm512_fmadd_ps(_mm512_set1_ps(w[t]), u, a[t]);
            }
            put_block(a, j0, r, Pk);
        }
    }
}

/* dW[k][c0 + i][t] (=, or += with add) s[t][i] for the lanes before C. */
AM_AVX512 static inline void put_grad(const __m512 a[9], int c0, int C, float *dWk, int add) {
    float s[9][16];
    for (int t = 0; t < 9; t++) _mm512_storeu_ps(s[t], a[t]);
    for (int i = 0; i < 16 && c0 + i < C; i++) {
        float *d = dWk + (size_t)(c0 + i) * 9;
        for (int t = 0; t < 9; t++) d[t] = (add ? d[t] : 0.f) + s[t][i];
    }
}

/* am_unfold for 3x3 kernels with AVX-512: per output channel k, 32 input
 * channels at a time (two registers of Ut = Ucat transposed, Q x C) against
 * each broadcast value of D, written out once in dW's order: no GEMM
 * packing and no transposed copy of the result. */
AM_AVX512 void am_unfold_3x3_512(const float *Ut, const float *D, int Q, int K, int C, float *dW, int add) {
    const size_t kkk = (size_t)K * 9;
#pragma omp parallel for schedule(static) if ((size_t)K * C * Q > 65536)
    for (int k = 0; k < K; k++) {
        float *dWk = dW + (size_t)k * C * 9;
        int c0 = 0;
        for (; c0 + 32 <= C; c0 += 32) {
            __m512 a[9], b[9];
            for (int t = 0; t < 9; t++) a[t] = b[t] = _mm512_setzero_ps();
            for (int q = 0; q < Q; q++) {
                const float *uq = Ut + (size_t)q * C + c0, *d = D + q * kkk + (size_t)k * 9;
                const __m512 u0 = _mm512_loadu_ps(uq), u1 = _mm512_loadu_ps(uq + 16);
                for (int t = 0; t < 9; t++) {
                    const __m512 dt = _mm512_set1_ps(d[t]);
                    a[t] = _mm512_fmadd_ps(dt, u0, a[t]);
                    b[t] = _mm512_fmadd_ps(dt, u1, b[t]);
                }
            }
            put_grad(a, c0, C, dWk, add);
            put_grad(b, c0 + 16, C, dWk, add);
        }
        for (; c0 < C; c0 += 16) {
            const __mmask16 m = am_lanes(C - c0);
            __m512 a[9];
            for (int t = 0; t < 9; t++) a[t] = _mm512_setzero_ps();
            for (int q = 0; q < Q; q++) {
                const float *d = D + q * kkk + (size_t)k * 9;
                const __m512 u = _mm512_maskz_loadu_ps(m, Ut + (size_t)q * C + c0);
                for (int t = 0; t < 9; t++) a[t] = _mm512_fmadd_ps(_mm512_set1_ps(d[t]), u, a[t]);
            }
            put_grad(a, c0, C, dWk, add);
        }
    }
}
#else
void am_fold_3x3_512(const float *W, const float *U, int K, int C, int r, float *Wp) {
    (void)W, (void)U, (void)K, (void)C, (void)r, (void)Wp;
}
void am_unfold_3x3_512(const float *Ut, const float *D, int Q, int K, int C, float *dW, int add) {
    (void)Ut, (void)D, (void)Q, (void)K, (void)C, (void)dW, (void)add;
}
#endif
