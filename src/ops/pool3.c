/* A max-pool other than 2x2 fused after a batchnorm and its ReLU
 * (bn_act.c): forward over the ReLU's output plane, and the expansion of the
 * pooled gradients back to that plane. For the ResNet stem's (3x3, stride 2,
 * padding 1) the windows that lie inside the plane go four outputs at a time
 * with SSE2; the edges and other pools take one output at a time, the same
 * maths. Both give the one-output loop's results bit for bit: the same
 * candidates in the same order (first maximum wins), the same additions in
 * the same order (output order, zeros included; the vector path adds one
 * more +0, to a sum that starts at +0 and so cannot be -0), except for the
 * sign or payload of a NaN that two NaN gradients make. No branch and no address depends on a value: the argmax is
 * selected by masks, and every window position is added to, masked. */
#include "pool3.h"

#include "mask.h"
#include "window.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

int am_pool3_is(const am_pool_cfg *c) {
    return c->kh == 3 && c->kw == 3 && c->sh == 2 && c->sw == 2 && c->ph == 1 && c->pw == 1;
}

/* Output (oh, ow) from its clipped window of q, one at a time. */
static void one_max(const am_pool_cfg *c, const float *q, int H, int W, int oh, int ow, int Wo, float *yp,
                    int32_t *ap) {
    int h0, h1, w0, w1;
    am_max_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1);
    int bi = h0 * W + w0;
    float best = q[bi];
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            const int i = ih * W + iw, take = q[i] > best;
            best = take ? q[i] : best;
            bi = take ? i : bi;
        }
    yp[oh * Wo + ow] = best;
    ap[oh * Wo + ow] = bi;
}

void am_pool_expand_one(const am_pool_cfg *c, const float *g, const uint32_t *bt, const int32_t *ap, int H, int W,
                       int oh, int ow, int Wo, float *gp) {
    const int o = oh * Wo + ow, ao = ap[o];
    const float go = am_keep_if(g[o], bt[o / 32] >> (o % 32));
    int h0, h1, w0, w1;
    am_max_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1);
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) gp[ih * W + iw] += am_keep_if(go, (uint32_t)(ih * W + iw == ao));
}

/* The first output column past the vector groups of a row (oh interior):
 * groups of four start at ow = 1 while every input they touch, 2 ow - 1 up
 * to 2 ow + 8, is in the row. 1 when no group fits. */
static int groups_end(const am_pool_cfg *c, int H, int W, int oh) {
    if (!am_pool3_is(c) || 2 * oh - 1 < 0 || 2 * oh + 1 >= H) return 1;
    int ow = 1;
    while (2 * ow + 8 <= W - 1) ow += 4;
    return ow;
}

#if defined(__SSE2__)
#define EVENS(a, b) _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))
#define ODDS(a, b) _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))

/* Outputs (oh, ow .. ow + 3): rows 2 oh - 1 .. 2 oh + 1, columns from 2 ow - 1. */
static void four_max(const float *q, int W, int oh, int ow, int Wo, float *yp, int32_t *ap) {
    const int base = 2 * ow - 1;
    __m128 best = _mm_setzero_ps();
    __m128i bi = _mm_setzero_si128();
    for (int dh = 0; dh < 3; dh++) {
        const int row = (2 * oh - 1 + dh) * W;
        const float *r = q + row + base;
        const __m128 a = _mm_loadu_ps(r), b = _mm_loadu_ps(r + 4), a2 = _mm_loadu_ps(r + 2), b2 = _mm_loadu_ps(r + 6);
        const __m128 v[3] = {EVENS(a, b), ODDS(a, b), EVENS(a2, b2)};
        const __m128i i0 = _mm_setr_epi32(row + base, row + base + 2, row + base + 4, row + base + 6);
        for (int dw = 0; dw < 3; dw++) {
            const __m128i idx = _mm_add_epi32(i0, _mm_set1_epi32(dw));
            if (dh == 0 && dw == 0) {
                best = v[0], bi = idx;
                continue;
            }
            const __m128 m = _mm_cmpgt_ps(v[dw], best);
            best = am_sel(m, v[dw], best), bi = am_seli(m, idx, bi);
        }
    }
    _mm_storeu_ps(yp + oh * Wo + ow, best);
    _mm_storeu_si128((__m128i *)(void *)(ap + oh * Wo + ow), bi);
}

/* Outputs (oh, ow .. ow + 3)'s gradients into their windows. Per input row:
 * the even columns take the right candidate of the output before (already
 * added for the first) and then the left of their own; the odd columns the
 * middle. The right candidate of the last output goes to column 2 ow + 7,
 * the next group's first. */
static void four_expand(const float *g, const uint32_t *bt, const int32_t *ap, int W, int oh, int ow, int Wo,
                        float *gp) {
    const int o = oh * Wo + ow, base = 2 * ow - 1;
    __m128 go;
    __m128i off;
    am_four_grads(g, bt, ap, o, (2 * oh - 1) * W + base, &go, &off);
    const __m128i one = _mm_set1_epi32(1);
    for (int dh = 0; dh < 3; dh++) {
        const __m128i at = _mm_set1_epi32(dh * W);
        const __m128 l = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, at)));
        const __m128 m = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_add_epi32(at, one))));
        const __m128 r = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_add_epi32(at, _mm_add_epi32(one, one)))));
        float *p = gp + (2 * oh - 1 + dh) * W + base;
        const __m128 lo = _mm_loadu_ps(p), hi = _mm_loadu_ps(p + 4);
        __m128 ev = _mm_add_ps(EVENS(lo, hi), _mm_castsi128_ps(_mm_slli_si128(_mm_castps_si128(r), 4)));
        ev = _mm_add_ps(ev, l);
        const __m128 od = _mm_add_ps(ODDS(lo, hi), m);
        _mm_storeu_ps(p, _mm_unpacklo_ps(ev, od));
        _mm_storeu_ps(p + 4, _mm_unpackhi_ps(ev, od));
        p[8] += _mm_cvtss_f32(_mm_shuffle_ps(r, r, _MM_SHUFFLE(3, 3, 3, 3)));
    }
}
#endif

void am_pool3_plane(const am_pool_cfg *c, const float *q, int H, int W, int Ho, int Wo, float *yp, int32_t *ap) {
    for (int oh = 0; oh < Ho; oh++) {
        int ow = 0;
#if defined(__SSE2__)
        const int end = groups_end(c, H, W, oh);
        if (end > 1) {
            one_max(c, q, H, W, oh, 0, Wo, yp, ap);
            for (ow = 1; ow < end; ow += 4) four_max(q, W, oh, ow, Wo, yp, ap);
        }
#endif
        for (; ow < Wo; ow++) one_max(c, q, H, W, oh, ow, Wo, yp, ap);
    }
}

void am_pool3_expand(const am_pool_cfg *c, const float *g, const uint32_t *bt, const int32_t *ap, int H, int W, int Ho,
                     int Wo, float *gp) {
    memset(gp, 0, sizeof(float) * (size_t)H * W);
    for (int oh = 0; oh < Ho; oh++) {
        int ow = 0;
#if defined(__SSE2__)
        const int end = groups_end(c, H, W, oh);
        if (end > 1) {
            am_pool_expand_one(c, g, bt, ap, H, W, oh, 0, Wo, gp);
            for (ow = 1; ow < end; ow += 4) four_expand(g, bt, ap, W, oh, ow, Wo, gp);
        }
#endif
        for (; ow < Wo; ow++) am_pool_expand_one(c, g, bt, ap, H, W, oh, ow, Wo, gp);
    }
}
