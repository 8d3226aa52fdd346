/* A max-pool output's input window (internal to src/ops: pool.c and the
 * pool fused into batchnorm, bn_act.c). */
#ifndef ASYMML_OPS_WINDOW_H
#define ASYMML_OPS_WINDOW_H

#include "asymml/ops.h"

/* The input window [h0, h1) x [w0, w1) of max-pool output (oh, ow), clipped
 * to the input (padding never wins a max). */
static inline void am_max_window(const am_pool_cfg *c, int H, int W, int oh, int ow, int *h0, int *h1, int *w0, int *w1) {
    *h0 = oh * c->sh - c->ph, *h1 = *h0 + c->kh;
    *w0 = ow * c->sw - c->pw, *w1 = *w0 + c->kw;
    if (*h0 < 0) *h0 = 0;
    if (*h1 > H) *h1 = H;
    if (*w0 < 0) *w0 = 0;
    if (*w1 > W) *w1 = W;
}

#endif
