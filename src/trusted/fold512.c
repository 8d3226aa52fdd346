/* Folding and unfolding 3x3 weights with AVX-512 (fold.c takes them where
 * the processor has it): W' = U^T W per output channel, and the weight
 * gradient's low-rank part dW = U D back, each straight from its operands
 * with 32 columns in registers against each broadcast value, written once
 * in the result's order. Measured on 2 cores of an AMD EPYC, K = C = 512,
 * r = 32 (a VGG16 layer at 2x2 or 4x4), best of 15 in three alternating
 * rounds: fold 0.73-1.17 -> 0.33-0.36 ms, unfold 0.62-0.80 -> 0.54-0.57 ms
 * (fold_3x3's blocks of 8 and the GEMM before). Fused multiply-adds: each
 * term rounds once. Later (2026-12-02, same machine, best of 15, two
 * rounds): rows of 9 stored by a register transpose instead of one value
 * at a time, unfold 0.51-0.53 -> 0.43-0.51 ms, with the reply merged
 * 0.63-0.66 -> 0.53-0.66 ms; the weights read ahead, caches cold, fold
 * 0.65 -> 0.33 ms. */
#include "trusted/fold.h"

#include <stddef.h>

#include "core/avx512.h"

#if AM_HAVE_AVX512

/* col[i] lane t = a[t] lane i for t < 9 (lanes 9-15 zero): the 16 x 16
 * transpose of a's rows and seven zero rows, by unpacks within 128 bits
 * and then moves of 128-bit lanes. */
AM_AVX512 static inline void columns9(const __m512 a[9], __m512 col[16]) {
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; i++) r[i] = i < 9 ? a[i] : _mm512_setzero_ps();
    for (int i = 0; i < 16; i += 2) { /* lane L: rows i, i + 1 at columns 4L .. 4L + 3, interleaved */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* u[g + e] lane L: rows g .. g + 3 at column 4L + e */
        const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int e = 0; e < 4; e++) { /* column 4L + e: lane L of u[e], u[4 + e], u[8 + e], u[12 + e] */
        const __m512 v0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88), v1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
        col[e] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        col[8 + e] = _mm512_shuffle_f32x4(v0, w0, 0xdd);
        col[4 + e] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        col[12 + e] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
    }
}

/* out[i][t] (=, or += with add) a[t] lane i for the lanes i before
 * n - i0, each row of 9 one masked store (the transpose above: scalar
 * stores bounded the unfold); with src (out's layout), out = a + src
 * instead, src read once, x * 0 summed into *nan over what was merged (NaN
 * if a value is not finite). The sums as am_merge_reply's and the scalar
 * form's, to the bit. */
AM_AVX512 static inline void put9(const __m512 a[9], int i0, int n, float *out, int add, const float *src,
                                  __m512 *nan) {
    const __mmask16 k9 = 0x1ff;
    const __m512 zero = _mm512_setzero_ps();
    const int m = n - i0 < 16 ? n - i0 : 16;
    __m512 col[16];
    columns9(a, col);
    for (int i = 0; i < m; i++) {
        float *d = out + (size_t)(i0 + i) * 9;
        __m512 x;
        if (src) {
            x = _mm512_add_ps(_mm512_add_ps(col[i], _mm512_maskz_loadu_ps(k9, src + (size_t)(i0 + i) * 9)), zero);
            *nan = _mm512_add_ps(*nan, _mm512_mul_ps(x, zero));
        } else {
            x = _mm512_add_ps(add ? _mm512_maskz_loadu_ps(k9, d) : zero, col[i]);
        }
        _mm512_mask_storeu_ps(d, k9, x);
    }
}

/* out[i][t] (=, or += with add) sum_q A[q][i] B[q][t] for i < n, t < 9
 * (with src, that sum + src[i][t]; the result as put9's),
 * A's rows lda apart and B's ldb apart: 32 columns of A (two registers,
 * 18 accumulators) against each broadcast value of B, so that a load of B
 * serves 32 columns; a last block of 16 or fewer is masked. */
AM_AVX512 static int times9(const float *A, size_t lda, int n, const float *B, size_t ldb, int Q, float *out,
                            int add, const float *src) {
    int i0 = 0;
    __m512 nan = _mm512_setzero_ps();
    for (; i0 + 32 <= n; i0 += 32) {
        __m512 a[9], b[9];
        for (int t = 0; t < 9; t++) a[t] = b[t] = _mm512_setzero_ps();
        /* The next block's result lines (and reply lines, merging) on the
         * way meanwhile: the hardware's prefetch left the merged unfold at
         * 1.43 ms against 0.63 in cache (K = C = 512, r = 32). */
        for (int l = 0; l < 18 && i0 + 32 < n; l++) {
            _mm_prefetch((const char *)(out + (size_t)(i0 + 32) * 9) + 64 * l, _MM_HINT_T0);
            if (src) _mm_prefetch((const char *)(src + (size_t)(i0 + 32) * 9) + 64 * l, _MM_HINT_T0);
        }
        for (int q = 0; q < Q; q++) {
            const float *aq = A + (size_t)q * lda + i0, *bq = B + (size_t)q * ldb;
            if (ldb == 9) _mm_prefetch((const char *)(bq + 128 * 9), _MM_HINT_T0); /* the fold's weights, ahead */
            const __m512 u0 = _mm512_loadu_ps(aq), u1 = _mm512_loadu_ps(aq + 16);
            for (int t = 0; t < 9; t++) {
                const __m512 v = _mm512_set1_ps(bq[t]);
                a[t] = _mm512_fmadd_ps(v, u0, a[t]);
                b[t] = _mm512_fmadd_ps(v, u1, b[t]);
            }
        }
        put9(a, i0, n, out, add, src, &nan);
        put9(b, i0 + 16, n, out, add, src, &nan);
    }
    for (; i0 < n; i0 += 16) {
        const __mmask16 m = am_lanes(n - i0);
        __m512 a[9];
        for (int t = 0; t < 9; t++) a[t] = _mm512_setzero_ps();
        for (int q = 0; q < Q; q++) {
            const float *bq = B + (size_t)q * ldb;
            const __m512 u = _mm512_maskz_loadu_ps(m, A + (size_t)q * lda + i0);
            for (int t = 0; t < 9; t++) a[t] = _mm512_fmadd_ps(_mm512_set1_ps(bq[t]), u, a[t]);
        }
        put9(a, i0, n, out, add, src, &nan);
    }
    return _mm512_cmp_ps_mask(nan, nan, _CMP_UNORD_Q) != 0;
}

/* fold.c's fold_3x3: per output channel k, W'_k[j][t] = sum_c U[c][j]
 * W_k[c][t], 32 basis vectors at a time instead of AVX2's 8. */
void am_fold_3x3_512(const float *W, const float *U, int K, int C, int r, float *Wp) {
#pragma omp parallel for schedule(static) if ((size_t)K * C * r > 65536)
    for (int k = 0; k < K; k++) times9(U, (size_t)r, r, W + (size_t)k * C * 9, 9, C, Wp + (size_t)k * r * 9, 0, NULL);
}

/* am_unfold for 3x3 kernels: per output channel k, dW_k[c][t] = sum_q
 * Ut[q][c] D[q][k 9 + t], written once in dW's order: no GEMM packing
 * and no transposed copy of the result. With src, dW = that + src (the
 * accelerator's reply merged in the same pass); 1 if a merged value is not
 * finite. */
int am_unfold_3x3_512(const float *Ut, const float *D, int Q, int K, int C, float *dW, int add, const float *src) {
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if ((size_t)K * C * Q > 65536)
    for (int k = 0; k < K; k++)
        bad |= times9(Ut, (size_t)C, C, D + (size_t)k * 9, (size_t)K * 9, Q, dW + (size_t)k * C * 9, add,
                      src ? src + (size_t)k * C * 9 : NULL);
    return bad;
}
#else
void am_fold_3x3_512(const float *W, const float *U, int K, int C, int r, float *Wp) {
    (void)W, (void)U, (void)K, (void)C, (void)r, (void)Wp;
}
int am_unfold_3x3_512(const float *Ut, const float *D, int Q, int K, int C, float *dW, int add, const float *src) {
    (void)Ut, (void)D, (void)Q, (void)K, (void)C, (void)dW, (void)add, (void)src;
    return 0;
}
#endif
