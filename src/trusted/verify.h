/* Checking the accelerator's replies (accel.c's helper). Every reply is
 * merged into trusted memory by am_merge_reply, which reads each value of
 * the shared buffer once and reports a non-finite result; with --verify,
 * the same pass forms a random combination of the reply's channels, which
 * am_verify_* compare with the same combination recomputed in the trusted
 * side from what was sent (Freivalds): about 1/K of the conv's work. */
#ifndef ASYMML_TRUSTED_VERIFY_H
#define ASYMML_TRUSTED_VERIFY_H

#include "asymml/ops.h"

/* dst[o][m][i] = (add ? dst[o][m][i] : 0) + src[o][m][i] + (bias ? bias[m] : 0)
 * for o < outer, m < mid, i < inner; with coef (mid values), also
 * comb[o][i] = sum_m coef[m] src[o][m][i], from the same reads; with
 * moments (outer x mid pairs), each merged plane's am_plane_moments, taken
 * while it is in cache. Returns 1 if a merged value is not finite, else 0. */
int am_merge_reply(float *dst, const float *src, int outer, int mid, size_t inner, const float *bias, int add,
                   const float *coef, float *comb, double *moments);

/* Random coefficients, of random sign and magnitude uniform in [1/2, 1],
 * from the operating system's generator: the server cannot predict the
 * combination it will be checked with, nor make its errors cancel in it but
 * by a chance that shrinks with their size. */
void am_verify_coefs(float *s, int n);

/* The reference side of each check: ref = the combination the reply must
 * equal, mag = a bound on the magnitudes summed into it (the float error
 * bound is proportional to it). Each works through work (work_n floats) a
 * sample at a time.
 *
 * Forward, Y = conv(W, R), combined over output channels with s (K):
 *   ref[b][p] = conv(sum_k s_k W_k, R_b)[p], mag = conv(sum_k |W_k|, |R_b|)
 * (|s_k| <= 1).
 * R holds g samples; rows b of ref and mag are written. */
am_status am_verify_fwd(const am_conv2d_cfg *cfg, am_shape x1, const float *W, const float *s, const float *R, int g,
                        float *ref, float *mag, float *work, size_t work_n);
/* Backward data, dX = conv_T(W, G), combined over input channels with u (C):
 *   ref[b][p] = conv_T(sum_c u_c W[:, c], G_b)[p], mag likewise with |.|. */
am_status am_verify_bwd_data(const am_conv2d_cfg *cfg, am_shape x, const float *W, const float *u, const float *G,
                             float *ref, float *mag, float *work, size_t work_n);
/* Backward filter, dW = corr(R, G), combined over input channels with u:
 * given Ru[b] = sum_c u_c R[b][c] and Ra[b] = sum_c |R[b][c]| (B x 1 x H x W),
 *   ref[k][t] = corr(Ru, G)[k][t], mag = corr(Ra, |G|). */
am_status am_verify_bwd_filter(const am_conv2d_cfg *cfg, am_shape x, const float *Ru, const float *Ra, const float *G,
                               float *ref, float *mag, float *work, size_t work_n);
/* Ru and Ra of g samples of R (C x N each), into rows b0.. of Ru and Ra. */
void am_verify_reduce_channels(const float *R, int g, int C, size_t N, const float *u, float *Ru, float *Ra);

/* AM_OK if |comb - ref| <= tol * mag everywhere (n values), where tol
 * bounds float32 error for sums of `terms` products; else AM_EIO naming
 * the layer and the request. */
am_status am_verify_compare(const float *comb, const float *ref, const float *mag, size_t n, double terms, int layer,
                            const char *what);
/* Floats of work the checks of a conv on input shape x need. */
size_t am_verify_workspace(const am_conv2d_cfg *cfg, am_shape x);

#endif
