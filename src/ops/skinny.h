/* The linear layer's forward and weight gradient for a small batch and a large weight matrix
 * (internal to src/ops: skinny.c, used by linear.c). x: N x IN, W: O x IN
 * (nn.Linear's), dy: N x O, all row-major. */
#ifndef ASYMML_OPS_SKINNY_H
#define ASYMML_OPS_SKINNY_H

#include "asymml/core.h"

/* A batch of 1 to 8 against 2^20 weights or more, on a processor with
 * AVX-512: where these are used instead of sgemm. */
int am_skinny_fits(int N, int IN, int O);
/* y = x W^T + b (b may be NULL). */
am_status am_skinny_forward(const float *x, const float *w, const float *b, float *y, int N, int IN, int O);
/* dw = dy^T x, written. */
am_status am_skinny_weight_grad(const float *x, const float *dy, float *dw, int N, int IN, int O);

#endif
