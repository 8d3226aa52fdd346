/* The linear layer's forward and weight gradient for a batch of 8 samples
 * or fewer against a large weight matrix (VGG's ImageNet classifier: 25,088
 * x 4,096), with AVX-512 where the processor has it (linear.c takes sgemm
 * otherwise). OpenBLAS's sgemm packs W (or dW) as it goes and moves it at
 * about a quarter of this machine's bandwidth at this shape; here W is read
 * once in place, three rows at a time against the batch's rows held in L2,
 * and dW written once with the batch's gradients in registers. Measured
 * against sgemm, 2 cores, best of 5 in one process, batch 8: 25,088 x 4,096
 * forward 42 -> 30 ms, weight gradient 48 -> 28 ms; 4,096 x 4,096 9.3 ->
 * 6.0 and 9.3 -> 5.2 ms. The input gradient stays with sgemm: a kernel
 * of this kind was no faster at 25,088 columns (40 -> 35-38 ms) and up to
 * 2x slower at 4,096 (16 rows of W 16 KiB apart share L1's sets). Every sum
 * is taken in an order that depends only on the shape, so results do not
 * change with the thread count. */
#include "skinny.h"

#include "asymml/core.h"
#include "core/avx512.h"

#include <omp.h>
#include <string.h>

#if AM_HAVE_AVX512

#define FWD_COLS 4096 /* x's columns per forward chunk: 8 rows of 16 KiB, in L2 */

/* s[q * 8 + n] = W[o + q] x[n] over columns [c0, c0 + ic), q < 3: three rows
 * of W at once, so that each load of x serves three. */
AM_AVX512 static void fwd3(const float *const r[8], const float *w, size_t IN, int c0, int ic, float *s) {
    __m512 a[24];
    for (int q = 0; q < 24; q++) a[q] = _mm512_setzero_ps();
    for (int i = 0; i < ic; i += 16) {
        const __mmask16 m = am_lanes(ic - i);
        const float *wi = w + c0 + i;
        const __m512 w0 = _mm512_maskz_loadu_ps(m, wi), w1 = _mm512_maskz_loadu_ps(m, wi + IN),
                     w2 = _mm512_maskz_loadu_ps(m, wi + 2 * IN);
        for (int n = 0; n < 8; n++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, r[n] + c0 + i);
            a[n] = _mm512_fmadd_ps(w0, xv, a[n]);
            a[8 + n] = _mm512_fmadd_ps(w1, xv, a[8 + n]);
            a[16 + n] = _mm512_fmadd_ps(w2, xv, a[16 + n]);
        }
    }
    for (int q = 0; q < 24; q++) s[q] = _mm512_reduce_add_ps(a[q]);
}

/* The same for one row. */
AM_AVX512 static void fwd1(const float *const r[8], const float *w, int c0, int ic, float *s) {
    __m512 a[8];
    for (int n = 0; n < 8; n++) a[n] = _mm512_setzero_ps();
    for (int i = 0; i < ic; i += 16) {
        const __mmask16 m = am_lanes(ic - i);
        const __m512 wv = _mm512_maskz_loadu_ps(m, w + c0 + i);
        for (int n = 0; n < 8; n++) a[n] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, r[n] + c0 + i), a[n]);
    }
    for (int n = 0; n < 8; n++) s[n] = _mm512_reduce_add_ps(a[n]);
}

/* part[o][n] += W[o] x[n] over a chunk of columns, for o in [o0, o1). */
AM_AVX512 static void fwd_rows(const float *const r[8], const float *w, int IN, int o0, int o1, int c0, int ic,
                            float *part) {
    float s[24];
    int o = o0;
    for (; o + 3 <= o1; o += 3) {
        fwd3(r, w + (size_t)o * IN, (size_t)IN, c0, ic, s);
        for (int q = 0; q < 24; q++) part[(size_t)o * 8 + q] += s[q];
    }
    for (; o < o1; o++) {
        fwd1(r, w + (size_t)o * IN, c0, ic, s);
        for (int n = 0; n < 8; n++) part[(size_t)o * 8 + n] += s[n];
    }
}

/* dw[o] = sum_n dy[n][o] x[n] for o in [o0, o1); g: dy as O x 8. */
AM_AVX512 static void dw_rows(const float *const r[8], const float *g, int IN, int o0, int o1, float *dw) {
    for (int o = o0; o < o1; o++) {
        __m512 b[8];
        for (int n = 0; n < 8; n++) b[n] = _mm512_set1_ps(g[(size_t)o * 8 + n]);
        float *d = dw + (size_t)o * IN;
        for (int i = 0; i < IN; i += 16) {
            const __mmask16 m = am_lanes(IN - i);
            __m512 v = _mm512_mul_ps(b[0], _mm512_maskz_loadu_ps(m, r[0] + i));
            for (int n = 1; n < 8; n++) v = _mm512_fmadd_ps(b[n], _mm512_maskz_loadu_ps(m, r[n] + i), v);
            _mm512_mask_storeu_ps(d + i, m, v);
        }
    }
}

int am_skinny_fits(int N, int IN, int O) {
    return N >= 1 && N <= 8 && (size_t)IN * O >= ((size_t)1 << 20) && am_has_avx512();
}

/* dy (N x O) as O x 8, zero past N. */
static float *dy_t8(const float *dy, int N, int O) {
    float *t = am_aligned_alloc(sizeof(float) * 8 * (size_t)O);
    if (t)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) t[(size_t)o * 8 + n] = dy[(size_t)n * O + o];
    return t;
}

/* Rows of x, past N a zero row. */
static void rows8(const float *x, int N, int IN, const float *zero, const float *r[8]) {
    for (int n = 0; n < 8; n++) r[n] = n < N ? x + (size_t)n * IN : zero;
}

/* [lo, hi) of n items for thread t of nt. */
static void share(int n, int t, int nt, int *lo, int *hi) {
    *lo = (int)((long long)n * t / nt), *hi = (int)((long long)n * (t + 1) / nt);
}

am_status am_skinny_forward(const float *x, const float *w, const float *b, float *y, int N, int IN, int O) {
    float *part = am_aligned_alloc(sizeof(float) * (8 * (size_t)O + (size_t)IN)); /* then a zero row */
    if (!part) return am_fail(AM_ENOMEM, "linear: out of memory");
    const float *r[8];
    rows8(x, N, IN, part + 8 * (size_t)O, r);
#pragma omp parallel
    {
        int o0, o1;
        share(O, omp_get_thread_num(), omp_get_num_threads(), &o0, &o1);
        for (int c0 = 0; c0 < IN; c0 += FWD_COLS)
            fwd_rows(r, w, IN, o0, o1, c0, IN - c0 < FWD_COLS ? IN - c0 : FWD_COLS, part);
    }
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) y[(size_t)n * O + o] = part[(size_t)o * 8 + n] + (b ? b[o] : 0.f);
    am_aligned_free(part);
    return AM_OK;
}

am_status am_skinny_weight_grad(const float *x, const float *dy, float *dw, int N, int IN, int O) {
    float *g = dy_t8(dy, N, O), *zero = am_aligned_alloc(sizeof(float) * (size_t)IN);
    if (!g || !zero) {
        am_aligned_free(g), am_aligned_free(zero);
        return am_fail(AM_ENOMEM, "linear backward: out of memory");
    }
    const float *r[8];
    rows8(x, N, IN, zero, r);
#pragma omp parallel
    {
        int o0, o1;
        share(O, omp_get_thread_num(), omp_get_num_threads(), &o0, &o1);
        dw_rows(r, g, IN, o0, o1, dw);
    }
    am_aligned_free(g), am_aligned_free(zero);
    return AM_OK;
}

#else
int am_skinny_fits(int N, int IN, int O) {
    (void)N, (void)IN, (void)O;
    return 0;
}
am_status am_skinny_forward(const float *x, const float *w, const float *b, float *y, int N, int IN, int O) {
    (void)x, (void)w, (void)b, (void)y, (void)N, (void)IN, (void)O;
    return am_fail(AM_EINVAL, "linear: no AVX-512 kernels in this build");
}
am_status am_skinny_weight_grad(const float *x, const float *dy, float *dw, int N, int IN, int O) {
    (void)x, (void)dy, (void)dw, (void)N, (void)IN, (void)O;
    return am_fail(AM_EINVAL, "linear: no AVX-512 kernels in this build");
}
#endif
