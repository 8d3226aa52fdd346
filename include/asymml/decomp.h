/* asymml decomposition: split a conv layer's input X into a low-rank part
 * U V and a residual R (ALGORITHM.md, "Decomposition of one conv layer's
 * input"). A sample's input X_b is the matrix C x N (channels x pixels,
 * N = H*W), stored row-major as NCHW stores it.
 *
 * Three ways to find U:
 * - am_light_svd: the paper's Algorithm 1, per sample: greedy rank-1
 *   deflation with alternating least squares, T iterations each;
 * - am_shared_basis: one orthonormal U for the whole batch, by blocked
 *   subspace iteration (GEMMs) on [X_1 ... X_B];
 * - am_exact_basis: the reference, LAPACK's symmetric eigensolver on the
 *   Gram matrix sum_b X_b X_b^T (double precision). */
#ifndef ASYMML_DECOMP_H
#define ASYMML_DECOMP_H

#include "asymml/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Algorithm 1 on one sample. X (C x N) is overwritten by the residual R;
 * U (C x r) and V (r x N) receive the factors (X = U V + R). T >= 1
 * alternating steps per component, started from the largest-norm channel.
 * eps is scaled by ||X||_F^2 so that small activations are not shrunk. */
am_status am_light_svd(float *X, int C, int N, int r, int T, float *U, float *V);

/* The shared basis is computed from at most about this many columns of
 * [X_1 ... X_B] (runs of contiguous pixels spread evenly over each sample);
 * the projection then uses all of them. */
#define AM_BASIS_COLS(C) ((size_t)((C) * 32 > 4096 ? (C) * 32 : 4096))
/* Floats of scratch am_shared_basis needs. */
size_t am_shared_basis_workspace(int B, int C, int N, int r);
/* U (C x r, orthonormal columns) spanning approximately the top-r left
 * singular subspace of [X_1 ... X_B] (each X_b is C x N at X + b*C*N),
 * estimated from up to AM_BASIS_COLS(C) of its columns.
 * iters >= 1 subspace iterations; warm != 0 starts from the U passed in
 * (the previous batch's), else from the r largest-norm channels. */
am_status am_shared_basis(const float *X, int B, int C, int N, int r, int iters, int warm, float *U,
                          float *work, size_t work_n);

/* The exact reference: all min(C, B*N) singular values of [X_1 ... X_B] in
 * descending order into s (C floats; the rest zero), and, if U is not NULL,
 * the top-r left singular vectors (C x r). */
am_status am_exact_basis(const float *X, int B, int C, int N, int r, float *U, float *s);

/* V_b = U^T X_b (r x N each), R_b = X_b - U V_b (C x N each). R may be NULL. */
am_status am_project(const float *X, int B, int C, int N, int r, const float *U, float *V, float *R);
/* The same with caller-provided scratch of am_project_workspace floats (else
 * it allocates). */
size_t am_project_workspace(int B, int C, int N, int r);
am_status am_project_ws(const float *X, int B, int C, int N, int r, const float *U, float *V, float *R, float *work,
                        size_t work_n);

/* The same as am_project for an R that is not NULL, in one pass over X
 * (blocks of 16 pixels; no BLAS), adding ||R||^2 to *er and ||V||^2 to *ev. */
am_status am_project_fused(const float *X, int B, int C, int N, int r, const float *U, float *V, float *R, double *er,
                           double *ev);

/* Z (C x r) = X X^T U for X (C x N), in one pass over X (blocks of 16
 * columns; no BLAS): the shared basis's subspace step without AVX-512, for
 * the ranks am_subspace_fits takes (8 and 16, where it is faster). */
int am_subspace_fits(int C, int r);
am_status am_subspace_product(const float *X, int C, int N, int r, const float *U, float *Z);
/* The same step over columns read where they lie in a batch X (B samples
 * of C x N): run k < cps of sample b is the L pixels at
 * X + b*C*N + k*stride + off, rows N apart (what am_shared_basis samples).
 * AVX-512 processors, ranks a multiple of 4 up to 64, C a multiple of 4
 * (am_subspace_runs_fits). */
typedef struct am_runs {
    int B, N, L, cps, stride, off;
} am_runs;
int am_subspace_runs_fits(int C, int r);
am_status am_subspace_runs(const float *X, int C, const am_runs *q, int r, const float *U, float *Z);

/* SVD-channel entropy mu = -log2(sum_j (s_j / sum_p s_p)^2), 0 <= mu <= log2 n. */
double am_svd_entropy(const float *s, int n);
/* ||A||_F^2 of n floats, in double. */
double am_sumsq(const float *a, size_t n);

/* ---- rank policies ---- */
typedef enum am_rank_policy {
    AM_RANK_RATIO,   /* r = ceil(ratio * C) */
    AM_RANK_FIXED,   /* r = value, every layer */
    AM_RANK_ENTROPY, /* r = ceil(2^mu) */
    AM_RANK_ENERGY,  /* smallest r whose residual share is below tau */
    AM_RANK_LIST,    /* r from a per-layer list: am_rank_pick takes this layer's entry as value */
} am_rank_policy;

/* The rank a policy picks for a layer with C channels whose singular values
 * are s (C of them, descending; not needed for RATIO and FIXED). value is the
 * ratio, the fixed rank, or tau. Always in [1, C]. */
int am_rank_pick(am_rank_policy p, double value, const float *s, int C);
/* Energy share kept by the top r of the singular values s (n of them). */
double am_energy_kept(const float *s, int n, int r);

#ifdef __cplusplus
}
#endif
#endif
