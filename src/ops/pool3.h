/* A max-pool other than 2x2 fused after a batchnorm's ReLU, fast for the
 * 3x3, stride-2, padding-1 one (internal to src/ops: pool3.c, used by
 * bn_act.c). */
#ifndef ASYMML_OPS_POOL3_H
#define ASYMML_OPS_POOL3_H

#include "asymml/ops.h"

#include <stdint.h>

/* This pool's configuration (PyTorch's ResNet stem); ceil mode either way. */
int am_pool3_is(const am_pool_cfg *c);
/* Pooled values and argmax (index into the plane) of one H x W plane q of
 * ReLU outputs, Ho x Wo of them, for any pool c; the first maximum in row
 * order wins. */
void am_pool3_plane(const am_pool_cfg *c, const float *q, int H, int W, int Ho, int Wo, float *yp, int32_t *ap);
/* gp (H x W) = each pooled gradient g (its mask bit set) at its argmax,
 * added in output order over the overlapping windows; zero elsewhere. */
void am_pool3_expand(const am_pool_cfg *c, const float *g, const uint32_t *bt, const int32_t *ap, int H, int W, int Ho,
                     int Wo, float *gp);

/* Output (oh, ow)'s gradient (its mask bit set) added at its argmax and
 * +0 at every other position of its window in gp (H x W): any pool. */
void am_pool_expand_one(const am_pool_cfg *c, const float *g, const uint32_t *bt, const int32_t *ap, int H, int W,
                        int oh, int ow, int Wo, float *gp);

#endif
