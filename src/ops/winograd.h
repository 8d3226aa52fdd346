/* 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering
 * F(4x4, 3x3) (internal to src/ops: winograd.c, used by conv2d.c).
 * Tensors are NCHW; w is K x C x 3 x 3. The workspace is
 * am_wino_workspace floats, sized for the threads that OpenMP would run
 * when it is called (each thread's scratch is in it). */
#ifndef ASYMML_OPS_WINOGRAD_H
#define ASYMML_OPS_WINOGRAD_H

#include "asymml/ops.h"

/* The shapes it takes: a 3x3 kernel, stride 1, padding 1, planes 4 to 512
 * wide and high, 16 or more input and output channels, neither count more
 * than 8 times the other, or 16 times for the weight gradient alone (a
 * split conv's low-rank part at the default rank): where it was measured
 * faster than im2col. am_wino_workspace is sized for either. */
int am_wino_fits(const am_conv2d_cfg *cfg, am_shape x);
int am_wino_fits_dw(const am_conv2d_cfg *cfg, am_shape x);
size_t am_wino_workspace(const am_conv2d_cfg *cfg, am_shape x);

/* y = conv(x, w) + b (b may be NULL); moments as am_conv2d_forward_moments
 * (may be NULL). */
am_status am_wino_forward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const float *b,
                          am_tensor *y, float *work, size_t work_n, double *moments);
/* dw = the weight gradient (written, not added to; may be NULL), and dx =
 * the input gradient (added to when accum; may be NULL). */
am_status am_wino_backward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const am_tensor *dy,
                           am_tensor *dx, int accum, float *dw, float *work, size_t work_n);

#endif
