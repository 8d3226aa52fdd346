/* Branch-free masking for ops that run on private activations (internal to
 * src/ops). */
#ifndef ASYMML_OPS_MASK_H
#define ASYMML_OPS_MASK_H

#include <stdint.h>
#include <string.h>

/* g where the low bit of `bit` is set, else +0 (a NaN gradient too): an AND
 * on the float's bits, no branch. */
static inline float am_keep_if(float g, uint32_t bit) {
    uint32_t u;
    memcpy(&u, &g, sizeof u);
    u &= 0u - (bit & 1u);
    memcpy(&g, &u, sizeof g);
    return g;
}

#endif
