/* The projection onto a shared basis in one pass: V_b = U^T X_b and
 * R_b = X_b - U V_b, a block of 16 pixels of one sample at a time while it
 * is in cache, with ||V||^2 and ||R||^2 summed on the way. X is read once
 * and V and R written once; the GEMM form (am_project_ws) reads and writes
 * R three more times, and the energies take two more passes. The blocks
 * run in parallel: no BLAS call is made inside them (OpenBLAS's calls
 * cannot run side by side, see am_shared_basis). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/decomp.h"
#include "core/avx512.h"
#include "core/hot.h"
#include "decomp/block.h"

#define PB AM_PB /* pixels per block */
#define JB 4     /* basis vectors (or channels) per register tile */

/* f += a vector's sum of squares. */
#define SQ8(v, f)                                                                                  \
    do {                                                                                           \
        const v8 s_ = (v) * (v);                                                                   \
        f += ((s_[0] + s_[1]) + (s_[2] + s_[3])) + ((s_[4] + s_[5]) + (s_[6] + s_[7]));            \
    } while (0)

/* V (r x 16, rows ldv apart) = U^T x for a block x (C x 16, rows ldx
 * apart); adds ||V||^2 to *fvp unless it is NULL. */
AM_HOT void am_block_coefs(const float *x, size_t ldx, const float *U, int C, int r, float *v, size_t ldv,
                           float *fvp) {
    float fv = 0.f;
    int j = 0;
    for (; j + JB <= r; j += JB) {
        v8 a[JB][2] = {{{0}}};
        for (int c = 0; c < C; c++) {
            const v8 x0 = LD8(x + (size_t)c * ldx), x1 = LD8(x + (size_t)c * ldx + 8);
            const float *u = U + (size_t)c * r + j;
            for (int t = 0; t < JB; t++) a[t][0] += u[t] * x0, a[t][1] += u[t] * x1;
        }
        for (int t = 0; t < JB; t++) {
            ST8(v + (size_t)(j + t) * ldv, a[t][0]), ST8(v + (size_t)(j + t) * ldv + 8, a[t][1]);
            SQ8(a[t][0], fv);
            SQ8(a[t][1], fv);
        }
    }
    for (; j < r; j++) {
        v8 a0 = {0}, a1 = {0};
        for (int c = 0; c < C; c++) {
            const float u = U[(size_t)c * r + j];
            a0 += u * LD8(x + (size_t)c * ldx), a1 += u * LD8(x + (size_t)c * ldx + 8);
        }
        ST8(v + (size_t)j * ldv, a0), ST8(v + (size_t)j * ldv + 8, a1);
        SQ8(a0, fv);
        SQ8(a1, fv);
    }
    if (fvp) *fvp += fv;
}

typedef void block_fn(const float *x, const float *U, int C, int N, int r, float *v, float *rr, double *er,
                      double *ev);

/* One full block: x = X_b + p (rows N apart), v = V_b + p, r_ = R_b + p. */
AM_HOT static void block(const float *x, const float *U, int C, int N, int r, float *v, float *rr, double *er,
                         double *ev) {
    float fv = 0.f, fr = 0.f;
    am_block_coefs(x, (size_t)N, U, C, r, v, (size_t)N, &fv);
    int c = 0;
    for (; c + JB <= C; c += JB) {
        v8 a[JB][2];
        for (int t = 0; t < JB; t++) a[t][0] = LD8(x + (size_t)(c + t) * N), a[t][1] = LD8(x + (size_t)(c + t) * N + 8);
        for (int i = 0; i < r; i++) {
            const v8 v0 = LD8(v + (size_t)i * N), v1 = LD8(v + (size_t)i * N + 8);
            for (int t = 0; t < JB; t++) {
                const float u = U[(size_t)(c + t) * r + i];
                a[t][0] -= u * v0, a[t][1] -= u * v1;
            }
        }
        for (int t = 0; t < JB; t++) {
            ST8(rr + (size_t)(c + t) * N, a[t][0]), ST8(rr + (size_t)(c + t) * N + 8, a[t][1]);
            SQ8(a[t][0], fr);
            SQ8(a[t][1], fr);
        }
    }
    for (; c < C; c++) {
        v8 a0 = LD8(x + (size_t)c * N), a1 = LD8(x + (size_t)c * N + 8);
        for (int i = 0; i < r; i++) {
            const float u = U[(size_t)c * r + i];
            a0 -= u * LD8(v + (size_t)i * N), a1 -= u * LD8(v + (size_t)i * N + 8);
        }
        ST8(rr + (size_t)c * N, a0), ST8(rr + (size_t)c * N + 8, a1);
        SQ8(a0, fr);
        SQ8(a1, fr);
    }
    *ev += fv, *er += fr;
}

/* Pixels per gathered tile: its x, V and R (2 C + r rows) in 512 KiB. */
static int tile_px(int C, int r) {
    size_t t = ((size_t)512 << 10) / (sizeof(float) * (size_t)(2 * C + r)) / PB * PB;
    return t < PB ? PB : t > 1024 ? 1024 : (int)t;
}

/* Samples over 4 MiB go through gathered tiles: a block reads and writes C
 * rows N floats apart, more streams than the hardware prefetcher follows,
 * while a tile copies T pixels of each row at once (measured here, 2
 * threads, r = C / 16, B 8: C 64 at 224x224 44 -> 17 ms, C 128 at 224x224
 * 79 -> 40, C 128 at 112x112 12.1 -> 7.6, C 256 at 112x112 48 -> 27; C 512
 * at 56x56, 21.0 -> 22.6, is bound by the arithmetic either way; smaller
 * samples lost 10-70%). */
static int gathers(int C, int N) { return (size_t)C * N * sizeof(float) > ((size_t)4 << 20); }

/* n <= T pixels of a sample's plane through the thread's scratch t (C + r
 * + C rows of T), zero beyond n up to a whole block (zeros project to zeros
 * and add nothing to the energies). */
static void tile(block_fn *blk, const float *x, const float *U, int C, int N, int r, int n, int T, float *v,
                 float *rr, float *t, double *er, double *ev) {
    const int m = (n + PB - 1) / PB * PB;
    float *tx = t, *tv = t + (size_t)C * T, *tr = tv + (size_t)r * T;
    for (int c = 0; c < C; c++) {
        memcpy(tx + (size_t)c * T, x + (size_t)c * N, sizeof(float) * (size_t)n);
        memset(tx + (size_t)c * T + n, 0, sizeof(float) * (size_t)(m - n));
    }
    for (int q = 0; q < m; q += PB) blk(tx + q, U, C, T, r, tv + q, tr + q, er, ev);
    for (int j = 0; j < r; j++) memcpy(v + (size_t)j * N, tv + (size_t)j * T, sizeof(float) * (size_t)n);
    for (int c = 0; c < C; c++) memcpy(rr + (size_t)c * N, tr + (size_t)c * T, sizeof(float) * (size_t)n);
}

am_status am_project_fused(const float *X, int B, int C, int N, int r, const float *U, float *V, float *R, double *er,
                           double *ev) {
    if (B < 1 || C < 1 || N < 1 || r < 1 || r > C || !X || !U || !V || !R || !er || !ev)
        return am_fail(AM_EINVAL, "project: bad argument");
    /* Blocks of PB pixels read in place (the last through scratch), or tiles. */
    const int T = gathers(C, N) ? tile_px(C, r) : PB, scratched = T > PB || N % PB;
    const int nblk = (N + T - 1) / T, par = (size_t)B * C * N > 65536, nt = par ? omp_get_max_threads() : 1;
    const size_t per = (size_t)(2 * C + r) * T;
    /* Per thread: its energies, and its scratch. */
    double *sums = calloc(2 * (size_t)nt, sizeof(double));
    float *scratch = scratched ? am_aligned_alloc(sizeof(float) * per * (size_t)nt) : NULL;
    if (!sums || (scratched && !scratch)) {
        free(sums);
        am_aligned_free(scratch);
        return am_fail(AM_ENOMEM, "project: out of memory");
    }
    int used = 1;
    block_fn *blk = am_has_avx512() ? am_block512 : block;
#pragma omp parallel if (par)
    {
        const int t = omp_get_thread_num();
        double *se = sums + 2 * (size_t)t, *sv = se + 1;
#pragma omp single
        used = omp_get_num_threads();
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < nblk; k++) {
                const size_t p = (size_t)k * T, n = (size_t)N - p < (size_t)T ? (size_t)N - p : (size_t)T;
                const float *x = X + (size_t)b * C * N + p;
                float *v = V + (size_t)b * r * N + p, *rr = R + (size_t)b * C * N + p;
                if (T == PB && n == PB)
                    blk(x, U, C, N, r, v, rr, se, sv);
                else
                    tile(blk, x, U, C, N, r, (int)n, T, v, rr, scratch + per * (size_t)t, se, sv);
            }
    }
    /* In thread order: the same sums from run to run at a thread count. */
    for (int t = 0; t < used; t++) *er += sums[2 * t], *ev += sums[2 * t + 1];
    free(sums);
    am_aligned_free(scratch);
    return AM_OK;
}
