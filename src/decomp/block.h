/* A block of 16 columns (pixels) of a C-row matrix projected onto a basis
 * U (C x r): project.c's kernel, which subspace.c shares. Internal to
 * src/decomp. */
#ifndef ASYMML_DECOMP_BLOCK_H
#define ASYMML_DECOMP_BLOCK_H

#include <stddef.h>

#define AM_PB 16

/* V (r x 16, rows ldv apart) = U^T x for x (C x 16, rows ldx apart); adds
 * ||V||^2 to *fv. */
void am_block_coefs(const float *x, size_t ldx, const float *U, int C, int r, float *v, size_t ldv, float *fv);
/* project512.c: project.c's block with AVX-512 (where am_has_avx512):
 * V and R of a block of 16 pixels (rows N apart), their energies added to
 * *ev and *er. */
void am_block512(const float *x, const float *U, int C, int N, int r, float *v, float *rr, double *er, double *ev);
/* subspace.c: Z (n floats) = the sum of the first n floats of each of
 * used threads' blocks, each floats apart from ws, in thread order (the
 * subspace steps' private sums: the same result at a given thread count). */
void am_sum_threads(const float *ws, size_t each, int used, size_t n, float *Z);

#endif
