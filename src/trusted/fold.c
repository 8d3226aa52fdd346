/* Folding a basis into conv weights and back (lowrank.c's helper): W' = U^T W
 * per basis, straight from W in register blocks for 3x3 kernels, else as
 * GEMMs over many output channels at once through small trusted scratch
 * buffers; the weight gradient's low-rank part unfolded as GEMMs the same
 * way. With AVX-512, 3x3 kernels take fold512.c's both ways. See fold.h. */
#include "trusted/fold.h"

#include <cblas.h>
#include <string.h>

#include "asymml/core.h"
#include "core/avx512.h"
#include "core/hot.h"
#include "trusted/verify.h"

/* Folding's scratch (see fold below): at most FOLD_FLOATS floats of
 * transposed weights at a time. */

/* Output channels per chunk, and samples per unfold group. */
int am_fold_chunk(int K, int C, int kk) {
    size_t kc = FOLD_FLOATS / ((size_t)C * kk);
    return kc < 1 ? 1 : kc > (size_t)K ? K : (int)kc;
}
int am_unfold_group(int B, int K, int r, int kk) {
    size_t g = FOLD_FLOATS / ((size_t)r * K * kk);
    return g < 1 ? 1 : g > (size_t)B ? B : (int)g;
}

/* Folding U into W and back, as GEMMs over many output channels at once:
 * with Wt = W laid out C x (K kk),
 *     W'_b[k][j][t] = (U_b^T Wt)[j][k kk + t]            (fold, per basis b)
 *     dW[k][c][t]   = (sum_b U_b D_b)[c][k kk + t],  D_b[j][k kk + t] = dW'_b[k][j][t]   (unfold)
 * instead of K small GEMMs per basis. The transposed copies (Wt, and E in
 * the unfold) hold a chunk of output channels at a time, at most
 * FOLD_FLOATS floats, so that they stay small in trusted memory; only the
 * per-sample forward keeps all of Wt, which every sample's fold reads
 * (FOLD_FLOATS, fold_chunk, unfold_group below; asym_lowrank_alloc in
 * lowrank.c sizes the buffers with them). */
/* Rows k of W (K x C x kk) as Wt (C x K kk). */
void am_to_ck(const float *W, int K, int C, int kk, float *Wt) {
#pragma omp parallel for schedule(static) if ((size_t)K * C * kk > 65536)
    for (int c = 0; c < C; c++)
        for (int k = 0; k < K; k++)
            memcpy(Wt + ((size_t)c * K + k) * kk, W + ((size_t)k * C + c) * kk, sizeof(float) * (size_t)kk);
}

/* W' (K x r x kk) for the basis U (C x r) from Wt (C x K kk, as to_ck);
 * M scratch r x K kk. */
void am_fold(const float *Wt, const float *U, int K, int C, int r, int kk, float *M, float *Wp) {
    const int kkk = K * kk;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, kkk, C, 1.f, U, r, Wt, kkk, 0.f, M, kkk);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < r; j++)
            memcpy(Wp + ((size_t)k * r + j) * kk, M + (size_t)j * kkk + (size_t)k * kk, sizeof(float) * (size_t)kk);
}

/* 3x3 kernels straight from W, without its transposed copy: per output
 * channel k, W'_k (r x 9) = U^T W_k with W_k (C x 9) as it lies in W. A
 * block of 8 (or 4) columns of U against the 9 taps stays in registers
 * while c runs; the block is written out transposed at the end. (The
 * transposed copy and the GEMM's own packing cost more than the
 * arithmetic: K = C = 512, r = 32 went from 2.0 to 1.0 ms here.) */
typedef float am_v4 __attribute__((vector_size(16)));

#define FOLD_BLOCK(V, NJ)                                                                          \
    do {                                                                                           \
        V a[9] = {{0}};                                                                            \
        for (int c = 0; c < C; c++) {                                                              \
            V u;                                                                                   \
            memcpy(&u, U + (size_t)c * r + j0, sizeof u);                                          \
            const float *w = Wk + (size_t)c * 9;                                                   \
            for (int t = 0; t < 9; t++) a[t] += w[t] * u;                                          \
        }                                                                                          \
        for (int i = 0; i < (NJ); i++)                                                             \
            for (int t = 0; t < 9; t++) Pk[(size_t)(j0 + i) * 9 + t] = a[t][i];                    \
    } while (0)

AM_HOT static void fold_3x3(const float *W, const float *U, int K, int C, int r, float *Wp) {
#pragma omp parallel for schedule(static) if ((size_t)K * C * r > 65536)
    for (int k = 0; k < K; k++) {
        const float *Wk = W + (size_t)k * C * 9;
        float *Pk = Wp + (size_t)k * r * 9;
        int j0 = 0;
        for (; j0 + 8 <= r; j0 += 8) FOLD_BLOCK(v8, 8);
        for (; j0 + 4 <= r; j0 += 4) FOLD_BLOCK(am_v4, 4);
        for (; j0 < r; j0++)
            for (int t = 0; t < 9; t++) {
                float s = 0.f;
                for (int c = 0; c < C; c++) s += U[(size_t)c * r + j0] * Wk[(size_t)c * 9 + t];
                Pk[(size_t)j0 * 9 + t] = s;
            }
    }
}
#undef FOLD_BLOCK

/* From r = 8 up; below, the register blocks are too narrow to beat the
 * GEMM (K = C = 64, r = 4: 0.04 against 0.02 ms). */
int am_fold_direct(int kk, int r) { return kk == 9 && r >= 8; }

/* The same for one shared basis, a chunk of output channels at a time;
 * Wt scratch C x kc kk. */
void am_fold_chunked(const float *W, const float *U, int K, int C, int r, int kk, float *Wt, float *M,
                         float *Wp) {
    if (am_fold_direct(kk, r)) {
        if (am_has_avx512()) am_fold_3x3_512(W, U, K, C, r, Wp);
        else fold_3x3(W, U, K, C, r, Wp);
        return;
    }
    const int kc = am_fold_chunk(K, C, kk);
    for (int k0 = 0; k0 < K; k0 += kc) {
        const int n = K - k0 < kc ? K - k0 : kc;
        am_to_ck(W + (size_t)k0 * C * kk, n, C, kk, Wt);
        am_fold(Wt, U, n, C, r, kk, M, Wp + (size_t)k0 * r * kk);
    }
}

/* kk floats of e into d, or added to it. */
static inline void put(float *d, const float *e, int kk, int add) {
    if (add)
        for (int t = 0; t < kk; t++) d[t] += e[t];
    else
        memcpy(d, e, sizeof(float) * (size_t)kk);
}

/* dW'_b (K x r x kk) into rows b*r .. b*r + r of D (nb*r x K kk). */
void am_stack_grad(const float *dWp, int K, int r, int kk, int b, float *D) {
    const size_t kkk = (size_t)K * kk;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < r; j++) {
            float *d = D + ((size_t)b * r + j) * kkk + (size_t)k * kk;
            const float *e = dWp + ((size_t)k * r + j) * kk;
            if (kk == 9) /* a copy of known size: no call per 36 bytes */
                memcpy(d, e, sizeof(float) * 9);
            else
                memcpy(d, e, sizeof(float) * (size_t)kk);
        }
}

/* fold512.c's unfold, where it applies (3x3 kernels, Q = nb r >= 8 and
 * Ucat transposed fitting in E's C kc kk floats, AVX-512): 1 if taken,
 * *bad then its merge's result. */
static int unfold_512(const float *Ucat, const float *D, int Q, int K, int C, int kk, float *E, float *dW, int add,
                      const float *src, int *bad) {
    if (!(kk == 9 && Q >= 8 && Q <= am_fold_chunk(K, C, kk) * kk && am_has_avx512())) return 0;
    for (int c = 0; c < C; c++)
        for (int q = 0; q < Q; q++) E[(size_t)q * C + c] = Ucat[(size_t)c * Q + q];
    int b = am_unfold_3x3_512(E, D, Q, K, C, dW, add, src);
    if (bad) *bad = b;
    return 1;
}

/* dW (=, or += with add) sum_b U_b D_b with Ucat = [U_1 ... U_nb]
 * (C x nb*r), a chunk of output channels at a time; E scratch C x kc kk. */
void am_unfold(const float *Ucat, const float *D, int nb, int K, int C, int r, int kk, float *E, float *dW,
                   int add) {
    const int kkk = K * kk, kc = am_fold_chunk(K, C, kk);
    if (unfold_512(Ucat, D, nb * r, K, C, kk, E, dW, add, NULL, NULL)) return;
    for (int k0 = 0; k0 < K; k0 += kc) {
        const int n = K - k0 < kc ? K - k0 : kc, nk = n * kk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, nk, nb * r, 1.f, Ucat, nb * r,
                    D + (size_t)k0 * kk, kkk, 0.f, E, nk);
        float *dst = dW + (size_t)k0 * C * kk;
#pragma omp parallel for schedule(static) if ((size_t)n * C * kk > 65536)
        for (int k = 0; k < n; k++)
            for (int c = 0; c < C; c++) {
                float *d = dst + ((size_t)k * C + c) * kk;
                const float *e = E + ((size_t)c * n + k) * kk;
                if (kk == 9) /* a copy of known size: no call per 36 bytes */
                    put(d, e, 9, add);
                else
                    put(d, e, kk, add);
            }
    }
}

int am_unfold_merge(const float *U, const float *D, int K, int C, int r, int kk, float *E, float *dW,
                    const float *src) {
    int bad = 0;
    if (unfold_512(U, D, r, K, C, kk, E, dW, 0, src, &bad)) return bad;
    am_unfold(U, D, 1, K, C, r, kk, E, dW, 0);
    return am_merge_reply(dW, src, K, C, (size_t)kk, NULL, 1, NULL, NULL, NULL);
}
