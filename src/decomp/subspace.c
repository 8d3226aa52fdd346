/* One step of the shared basis's subspace iteration, Z = X X^T U, in one
 * pass over X (C x N): a block of 16 columns at a time, V = U^T X_blk
 * (block.h), then Z += X_blk V^T, each thread summing its own Z, added in
 * thread order at the end (the same result from run to run at a given
 * thread count). OpenBLAS runs the two skinny GEMMs it replaces (N = r)
 * far below its peak. Where the processor has AVX-512, subspace512.c's
 * step runs instead, at every rank it takes. */
#include <omp.h>
#include <string.h>

#include "asymml/decomp.h"
#include "core/hot.h"
#include "decomp/block.h"


/* Ranks 8 and 16, where it was measured faster than the GEMMs (a basis of
 * 2 steps, C 128 over 8,192 columns at r 8: 0.8 ms against 2.2 and 4.6 ms
 * in two runs; C 256 over 25,088 at r 16: 3.9 against 5.8 ms, one run);
 * at r 32 (C 512) the GEMMs were faster. */
int am_subspace_fits(int C, int r) { return (r == 8 || r == 16) && r <= C; }

/* z (C x r, the thread's) += x (C x 16, rows ldx apart) vt (16 x r), two
 * rows of z by r / 8 vectors at a time. */
#define ACC_ROWS(NV)                                                                               \
    do {                                                                                           \
        int c = 0;                                                                                 \
        for (; c + 2 <= C; c += 2) {                                                               \
            v8 a[2][NV];                                                                           \
            for (int i = 0; i < (NV); i++)                                                         \
                a[0][i] = LD8(z + (size_t)c * r + 8 * i), a[1][i] = LD8(z + (size_t)(c + 1) * r + 8 * i); \
            const float *x0 = x + (size_t)c * ldx, *x1 = x0 + ldx;                                 \
            for (int q = 0; q < AM_PB; q++) {                                                      \
                for (int i = 0; i < (NV); i++) {                                                   \
                    const v8 t = LD8(vt + (size_t)q * r + 8 * i);                                  \
                    a[0][i] += x0[q] * t, a[1][i] += x1[q] * t;                                    \
                }                                                                                  \
            }                                                                                      \
            for (int i = 0; i < (NV); i++)                                                         \
                ST8(z + (size_t)c * r + 8 * i, a[0][i]), ST8(z + (size_t)(c + 1) * r + 8 * i, a[1][i]); \
        }                                                                                          \
        for (; c < C; c++)                                                                         \
            for (int q = 0; q < AM_PB; q++)                                                        \
                for (int j = 0; j < r; j++) z[(size_t)c * r + j] += x[(size_t)c * ldx + q] * vt[(size_t)q * r + j]; \
    } while (0)

AM_HOT static void accumulate(const float *x, size_t ldx, const float *vt, int C, int r, float *z) {
    if (r == 8)
        ACC_ROWS(1);
    else
        ACC_ROWS(2);
}

/* One block: its coefficients v (r x 16), transposed into vt, then z. */
static void step_block(const float *x, size_t ldx, const float *U, int C, int r, float *v, float *vt, float *z) {
    am_block_coefs(x, ldx, U, C, r, v, AM_PB, NULL);
    for (int j = 0; j < r; j++)
        for (int q = 0; q < AM_PB; q++) vt[(size_t)q * r + j] = v[(size_t)j * AM_PB + q];
    accumulate(x, ldx, vt, C, r, z);
}

void am_sum_threads(const float *ws, size_t each, int used, size_t n, float *Z) {
    memcpy(Z, ws, sizeof(float) * n);
    for (int t = 1; t < used; t++) {
        const float *z = ws + each * (size_t)t;
        for (size_t i = 0; i < n; i++) Z[i] += z[i];
    }
}

am_status am_subspace_product(const float *X, int C, int N, int r, const float *U, float *Z) {
    if (!X || !U || !Z || C < 1 || N < 1 || !am_subspace_fits(C, r))
        return am_fail(AM_EINVAL, "subspace product: bad argument");
    const int nblk = (N + AM_PB - 1) / AM_PB, par = (size_t)C * N > 65536, nt = par ? omp_get_max_threads() : 1;
    /* Per thread: its Z, v and vt, and a padded block for the last columns. */
    const size_t zr = (size_t)C * r, per = zr + 2 * (size_t)r * AM_PB + (size_t)C * AM_PB;
    float *ws = am_aligned_alloc(sizeof(float) * per * (size_t)nt);
    if (!ws) return am_fail(AM_ENOMEM, "subspace product: out of memory");
    int used = 1;
#pragma omp parallel if (par)
    {
        const int t = omp_get_thread_num();
        float *z = ws + per * (size_t)t, *v = z + zr, *vt = v + (size_t)r * AM_PB, *pad = vt + (size_t)r * AM_PB;
        memset(z, 0, sizeof(float) * zr);
#pragma omp single
        used = omp_get_num_threads();
#pragma omp for schedule(static)
        for (int k = 0; k < nblk; k++) {
            const size_t p = (size_t)k * AM_PB;
            if (p + AM_PB <= (size_t)N) {
                step_block(X + p, (size_t)N, U, C, r, v, vt, z);
                continue;
            }
            const size_t n = (size_t)N - p; /* zero columns add nothing */
            memset(pad, 0, sizeof(float) * (size_t)C * AM_PB);
            for (int c = 0; c < C; c++) memcpy(pad + (size_t)c * AM_PB, X + (size_t)c * N + p, sizeof(float) * n);
            step_block(pad, AM_PB, U, C, r, v, vt, z);
        }
    }
    am_sum_threads(ws, per, used, zr, Z);
    am_aligned_free(ws);
    return AM_OK;
}
