/* The shared basis's subspace step, Z = X X^T U, with AVX-512, over the
 * columns it samples read where they lie in the batch (no gathered copy):
 * runs of L pixels, cps a sample, each a row of 16-column vectors, the
 * last masked. A chunk is 16 such vectors, from one run or several, which
 * stay in cache while two passes read them:
 *   V (r x 256) = U^T X_chunk, 4 basis vectors x 4 column vectors a tile;
 *   Z += X_chunk V^T, 4 channels x 4 basis vectors a tile, each product
 *   summed lane-wise over the chunk, the 16 tiles' sums then added across
 *   lanes at once (reduce16) into the thread's Z.
 * Each thread sums its own Z over a fixed share of the chunks; they are
 * added in thread order at the end (the same result from run to run at a
 * given thread count). A run's last vector is read through a mask: no read
 * past a run's end, and the lanes beyond it are zeros, which add nothing.
 * (OpenBLAS runs the two skinny GEMMs this replaces far below its peak,
 * and the AVX2 step in subspace.c takes only ranks 8 and 16.) Measured on
 * 2 cores of an AMD EPYC, a basis of 2 steps, best of 15, caches cold or
 * hot, before -> after: B 32, C 64 at 32x32 r 4 1.5-1.8 -> 0.09-0.25 ms,
 * C 128 at 16x16 r 8 1.09-1.28 -> 0.26-0.58, C 256 at 8x8 r 16 0.80-1.11
 * -> 0.38-0.71, C 512 at 4x4 r 32 0.80-1.19 -> 0.63-0.71; B 8, cold: C 64
 * at 224x224 0.60 -> 0.22, C 256 at 56x56 4.3 -> 2.9, C 512 at 28x28 9.0
 * -> 4.3, at 7x7 0.80 -> 0.87 (noise). The step alone, hot: 250-260
 * GFLOP/s at r 8-32 (this machine's sgemm: 330). Fetching the next chunk
 * ahead was tried: no steady gain (8% slower at 4x4). */
#include <omp.h>

#include "asymml/decomp.h"
#include "core/avx512.h"
#include "decomp/block.h"

#define NV 16 /* column vectors a chunk */
#define W (16 * NV)

int am_subspace_runs_fits(int C, int r) {
    return AM_HAVE_AVX512 && am_has_avx512() && r >= 4 && r <= 64 && r % 4 == 0 && C % 4 == 0 && r <= C;
}

#if AM_HAVE_AVX512

/* Basis vectors j .. j+3 of V (rows W apart) for column vectors m .. m+MT-1
 * of the chunk (vector m's rows at xs[m], ldx apart, its lanes mk[m]). */
#define COEFS(MT)                                                                                   \
    do {                                                                                            \
        __m512 a[4][MT];                                                                            \
        for (int t = 0; t < 4; t++)                                                                 \
            for (int q = 0; q < (MT); q++) a[t][q] = _mm512_setzero_ps();                           \
        for (int c = 0; c < C; c++) {                                                               \
            const float *u = U + (size_t)c * r + j;                                                 \
            __m512 xv[MT];                                                                          \
            for (int q = 0; q < (MT); q++)                                                          \
                xv[q] = _mm512_maskz_loadu_ps(mk[m + q], xs[m + q] + (size_t)c * ldx);              \
            for (int t = 0; t < 4; t++) {                                                           \
                const __m512 ut = _mm512_set1_ps(u[t]);                                             \
                for (int q = 0; q < (MT); q++) a[t][q] = _mm512_fmadd_ps(ut, xv[q], a[t][q]);       \
            }                                                                                       \
        }                                                                                           \
        for (int t = 0; t < 4; t++)                                                                 \
            for (int q = 0; q < (MT); q++)                                                          \
                _mm512_store_ps(v + (size_t)(j + t) * W + 16 * (m + q), a[t][q]);                   \
    } while (0)

AM_AVX512 static void coefs(const float *const *xs, size_t ldx, int nv, const __mmask16 *mk, const float *U, int C,
                            int r, float *v) {
    for (int j = 0; j < r; j += 4) {
        int m = 0;
        for (; m + 4 <= nv; m += 4) COEFS(4);
        for (; m < nv; m++) COEFS(1);
    }
}
#undef COEFS

/* out's 4-float block i = the lane sums of a[4i .. 4i+3]: pairs, then
 * quads within each 128-bit lane, then across the four lanes. */
AM_AVX512 static __m512 reduce16(const __m512 *a) {
    __m512 s[8], t[4];
    for (int p = 0; p < 8; p++)
        s[p] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * p], a[2 * p + 1]), _mm512_unpackhi_ps(a[2 * p], a[2 * p + 1]));
    for (int q = 0; q < 4; q++)
        t[q] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * q], s[2 * q + 1], 0x44),
                             _mm512_shuffle_ps(s[2 * q], s[2 * q + 1], 0xEE));
    const __m512 u0 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], 0x44), _mm512_shuffle_f32x4(t[0], t[1], 0xEE));
    const __m512 u1 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], 0x44), _mm512_shuffle_f32x4(t[2], t[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, 0x88), _mm512_shuffle_f32x4(u0, u1, 0xDD));
}

/* z (C x r) += x V^T over the chunk's nv column vectors. */
AM_AVX512 static void accumulate(const float *const *xs, size_t ldx, int nv, const __mmask16 *mk, const float *v, int C,
                                 int r, float *z) {
    for (int c = 0; c < C; c += 4)
        for (int j = 0; j < r; j += 4) {
            __m512 a[16];
            for (int i = 0; i < 16; i++) a[i] = _mm512_setzero_ps();
            for (int m = 0; m < nv; m++) {
                __m512 xv[4], vv[4];
                for (int i = 0; i < 4; i++) {
                    xv[i] = _mm512_maskz_loadu_ps(mk[m], xs[m] + (size_t)(c + i) * ldx);
                    vv[i] = _mm512_load_ps(v + (size_t)(j + i) * W + 16 * m);
                }
                for (int i = 0; i < 4; i++)
                    for (int k = 0; k < 4; k++) a[4 * i + k] = _mm512_fmadd_ps(xv[i], vv[k], a[4 * i + k]);
            }
            float o[16];
            _mm512_storeu_ps(o, reduce16(a));
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 4; k++) z[(size_t)(c + i) * r + j + k] += o[4 * i + k];
        }
}

/* Chunk h: column vectors 16 h .. 16 h + 15 of the runs q, each run's
 * last one masked to the run's end; V in v, Z added to z. */
AM_AVX512 static void chunk(const float *X, int C, const am_runs *q, long h, long nvec, const float *U, int r, float *v,
                            float *z) {
    const float *xs[NV];
    __mmask16 mk[NV];
    const long vpr = ((long)q->L + 15) / 16; /* vectors a run */
    int nv = 0;
    for (long g = h * NV; g < nvec && nv < NV; g++, nv++) {
        const long run = g / vpr;
        const int m = (int)(g % vpr), b = (int)(run / q->cps), k = (int)(run % q->cps);
        xs[nv] = X + (size_t)b * C * q->N + (size_t)k * q->stride + q->off + 16 * (size_t)m;
        mk[nv] = am_lanes(q->L - 16 * m);
    }
    coefs(xs, (size_t)q->N, nv, mk, U, C, r, v);
    accumulate(xs, (size_t)q->N, nv, mk, v, C, r, z);
}

#else
static void chunk(const float *X, int C, const am_runs *q, long h, long nvec, const float *U, int r, float *v,
                  float *z) {
    (void)X, (void)C, (void)q, (void)h, (void)nvec, (void)U, (void)r, (void)v, (void)z;
}
#endif

am_status am_subspace_runs(const float *X, int C, const am_runs *q, int r, const float *U, float *Z) {
    if (!X || !q || !U || !Z || !am_subspace_runs_fits(C, r) || q->B < 1 || q->N < 1 || q->L < 1 || q->cps < 1 ||
        q->off < 0 || q->stride < 0 || (size_t)(q->cps - 1) * q->stride + q->off + q->L > (size_t)q->N)
        return am_fail(AM_EINVAL, "subspace product: bad argument");
    if ((double)q->B * q->cps * q->L > (double)((size_t)1 << 40)) /* runs may overlap (stride 0): bound them */
        return am_fail(AM_EINVAL, "subspace product: more than 2^40 columns");
    const long nvec = (long)q->B * q->cps * (((long)q->L + 15) / 16), nch = (nvec + NV - 1) / NV;
    const size_t cols = (size_t)q->B * q->cps * q->L;
    const int par = (size_t)C * cols > 65536, nt = par ? omp_get_max_threads() : 1;
    const size_t zr = (size_t)C * r, each = (zr + 15) / 16 * 16 + (size_t)r * W;
    float *ws = am_aligned_alloc(sizeof(float) * each * (size_t)nt);
    if (!ws) return am_fail(AM_ENOMEM, "subspace product: out of memory");
    int used = 1;
#pragma omp parallel if (par)
    {
        const int t = omp_get_thread_num();
        float *z = ws + each * (size_t)t, *v = z + (zr + 15) / 16 * 16;
#pragma omp single
        used = omp_get_num_threads();
#pragma omp for schedule(static)
        for (long h = 0; h < nch; h++) chunk(X, C, q, h, nvec, U, r, v, z);
    }
    am_sum_threads(ws, each, used, zr, Z);
    am_aligned_free(ws);
    return AM_OK;
}
