/* Folding a basis U into conv weights (W' = U^T W, per output channel) and
 * unfolding the low-rank weight gradient back (dW = U dW'), as GEMMs over
 * many output channels at once through bounded scratch (3x3 folds at r >= 8
 * straight from W, without it): lowrank.c's helpers. */
#ifndef ASYMML_TRUSTED_FOLD_H
#define ASYMML_TRUSTED_FOLD_H

#include <stddef.h>

/* Folding's scratch holds at most this many floats of transposed weights. */
#define FOLD_FLOATS ((size_t)1 << 20)

/* Output channels per fold chunk, and samples per unfold group. */
int am_fold_chunk(int K, int C, int kk);
int am_unfold_group(int B, int K, int r, int kk);
/* Rows k of W (K x C x kk) as Wt (C x K kk). */
void am_to_ck(const float *W, int K, int C, int kk, float *Wt);
/* W' (K x r x kk) for the basis U (C x r) from Wt (C x K kk); M scratch r x K kk. */
void am_fold(const float *Wt, const float *U, int K, int C, int r, int kk, float *M, float *Wp);
/* Whether am_fold_chunked folds straight from W (3x3 kernels, r >= 8),
 * touching neither scratch buffer. */
int am_fold_direct(int kk, int r);
/* The same for one shared basis, a chunk of output channels at a time;
 * Wt scratch C x (chunk) kk. */
void am_fold_chunked(const float *W, const float *U, int K, int C, int r, int kk, float *Wt, float *M, float *Wp);
/* dW'_b (K x r x kk) into rows b*r .. b*r + r of D (nb*r x K kk). */
void am_stack_grad(const float *dWp, int K, int r, int kk, int b, float *D);
/* dW (=, or += with add) sum_b U_b D_b with Ucat = [U_1 ... U_nb]
 * (C x nb*r), a chunk of output channels at a time; E scratch C x kc kk. */
void am_unfold(const float *Ucat, const float *D, int nb, int K, int C, int r, int kk, float *E, float *dW, int add);
/* dW = U D + src for one basis (nb = 1): the unfold with the accelerator's
 * weight gradient merged in, src read once (am_merge_reply's sum, to the
 * bit); 1 if a merged value is not finite. In one pass where the unfold
 * takes fold512.c's kernel, else the unfold then am_merge_reply. */
int am_unfold_merge(const float *U, const float *D, int K, int C, int r, int kk, float *E, float *dW,
                    const float *src);

/* fold512.c, where am_has_avx512 (core/avx512.h): fold_3x3 for one
 * shared basis (Wp = U^T W per output channel), and the unfold of kk = 9
 * from Ut = Ucat transposed (Q x C, Q = nb r), with src merged in (its
 * result: 1 if a merged value is not finite). */
void am_fold_3x3_512(const float *W, const float *U, int K, int C, int r, float *Wp);
int am_unfold_3x3_512(const float *Ut, const float *D, int Q, int K, int C, float *dW, int add, const float *src);

#endif
