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

#if defined(__SSE2__)
#include <emmintrin.h>

/* x where the mask m is set, else y, lane by lane. */
static inline __m128 am_sel(__m128 m, __m128 x, __m128 y) { return _mm_or_ps(_mm_and_ps(m, x), _mm_andnot_ps(m, y)); }
static inline __m128i am_seli(__m128 m, __m128i x, __m128i y) {
    const __m128i mi = _mm_castps_si128(m);
    return _mm_or_si128(_mm_and_si128(mi, x), _mm_andnot_si128(mi, y));
}

/* Pooled outputs o .. o + 3: their gradients where their mask bits are set
 * (+0 elsewhere) into *go, and their argmax offsets from idx0, idx0 + 2,
 * idx0 + 4, idx0 + 6 (each output's first window position) into *off. */
static inline void am_four_grads(const float *g, const uint32_t *bt, const int32_t *ap, int o, int idx0, __m128 *go,
                                 __m128i *off) {
    const __m128i bits = _mm_setr_epi32((int)(bt[o / 32] >> (o % 32)), (int)(bt[(o + 1) / 32] >> ((o + 1) % 32)),
                                        (int)(bt[(o + 2) / 32] >> ((o + 2) % 32)),
                                        (int)(bt[(o + 3) / 32] >> ((o + 3) % 32)));
    const __m128i one = _mm_set1_epi32(1);
    *go = _mm_and_ps(_mm_loadu_ps(g + o), _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(bits, one), one)));
    *off = _mm_sub_epi32(_mm_loadu_si128((const __m128i *)(const void *)(ap + o)),
                         _mm_add_epi32(_mm_set1_epi32(idx0), _mm_setr_epi32(0, 2, 4, 6)));
}
#endif

#endif
