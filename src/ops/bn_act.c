/* Batchnorm fused with what follows it (a ReLU, and a max-pool after that)
 * into two passes over the activations each way, where the unfused layers
 * take seven to nine; am_bn_forward and am_bn_backward are this with nothing
 * fused. The maths is PyTorch's: batchnorm, the ReLU (here NaN becomes 0,
 * as in am_relu_forward), the max-pool (first maximum wins). The statistics
 * come per plane, from the layer that wrote the input while it was in
 * cache (am_plane_moments), or from a pass of their own. Like the unfused
 * ops these run on private activations in the TEE: no branch and no address
 * depends on a value (the ReLU's mask is an AND, the pool's argmax selects
 * by masking every window position).
 *
 * Forward: y = relu(a x + b) with its mask, or straight to the pooled
 * output, its argmax and one mask bit per pooled value (that value > 0: the
 * ReLU passed its argmax). Backward: pass 1 sums g and g (x - mean) per
 * channel, with g the gradient that reaches the batchnorm's output; pass 2
 * writes dx. With the pool, each plane's g is first expanded from the
 * pooled gradients into a per-thread buffer that stays in cache. The mask
 * has its own words per plane, so threads that own different channels never
 * share one. */
#include "asymml/ops.h"
#include "mask.h"
#include "pool3.h"
#include "window.h"

#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Float sums in four SSE lanes (and four scalar partial sums without SSE2):
 * independent chains, which a single running sum is not. */
#if defined(__SSE2__)
static inline float hsum(__m128 v) {
    float t[4];
    _mm_storeu_ps(t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
}
/* The ReLU's mask bits m (low 4) as lanes. */
static inline __m128 lanes(uint32_t m) {
    const __m128i lane = _mm_set_epi32(8, 4, 2, 1);
    return _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(_mm_set1_epi32((int)(m & 15u)), lane), lane));
}
#endif

void am_plane_moments(const float *x, size_t len, double out[2]) {
    size_t i = 0;
    float s = 0.f, ss = 0.f;
#if defined(__SSE2__)
    __m128 a = _mm_setzero_ps();
    for (; i + 4 <= len; i += 4) a = _mm_add_ps(a, _mm_loadu_ps(x + i));
    s = hsum(a);
#endif
    for (; i < len; i++) s += x[i];
    const float m = len ? s / (float)len : 0.f;
    i = 0;
#if defined(__SSE2__)
    const __m128 vm = _mm_set1_ps(m);
    a = _mm_setzero_ps();
    for (; i + 4 <= len; i += 4) {
        const __m128 d = _mm_sub_ps(_mm_loadu_ps(x + i), vm);
        a = _mm_add_ps(a, _mm_mul_ps(d, d));
    }
    ss = hsum(a);
#endif
    for (; i < len; i++) {
        const float d = x[i] - m;
        ss += d * d;
    }
    out[0] = (double)s;
    out[1] = (double)ss;
}

static int plane_len(const am_bn_act *act, am_shape x) {
    if (!act || !act->pool) return x.h * x.w;
    am_shape y;
    if (am_pool_out_shape(act->pool, x, &y) != AM_OK) return 0;
    return y.h * y.w;
}

size_t am_bn_act_bits_words(const am_bn_act *act, am_shape x) {
    return (size_t)x.n * x.c * (((size_t)plane_len(act, x) + 31) / 32);
}

/* ------------------------------------------------------------ forward */

/* Up to 32 values a x + b, with the ReLU (its mask returned) or without. */
static uint32_t affine_span(const float *p, float a, float b, int relu, float *q, size_t len) {
    uint32_t m = 0;
    for (size_t i = 0; i < len; i++) {
        const float v = p[i] * a + b;
        m |= (uint32_t)(v > 0.f) << i;
        q[i] = relu ? (v > 0.f ? v : 0.f) : v;
    }
    return m;
}
#if defined(__SSE2__)
static uint32_t affine_word(const float *p, float a, float b, int relu, float *q) {
    const __m128 z = _mm_setzero_ps(), va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
    uint32_t m = 0;
    for (int i = 0; i < 32; i += 4) {
        const __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(p + i), va), vb);
        _mm_storeu_ps(q + i, relu ? _mm_max_ps(v, z) : v);
        m |= (uint32_t)_mm_movemask_ps(_mm_cmpgt_ps(v, z)) << i;
    }
    return m;
}
#else
static uint32_t affine_word(const float *p, float a, float b, int relu, float *q) {
    return affine_span(p, a, b, relu, q, 32);
}
#endif

/* The common pool (2x2, stride 2, no padding) on the windows that lie
 * inside the plane: four candidates each, the first maximum wins. One
 * output here; pool_row2 does a row of them, four at a time with SSE2, and
 * returns how many it did. */
static void pool_one2(const float *r0, const float *r1, int W, int row0, int ow, float a, float b, float *yo,
                      int32_t *ao) {
    float v0 = r0[2 * ow] * a + b, v1 = r0[2 * ow + 1] * a + b, v2 = r1[2 * ow] * a + b, v3 = r1[2 * ow + 1] * a + b;
    v0 = v0 > 0.f ? v0 : 0.f, v1 = v1 > 0.f ? v1 : 0.f, v2 = v2 > 0.f ? v2 : 0.f, v3 = v3 > 0.f ? v3 : 0.f;
    int off = 0;
    float best = v0;
    off = v1 > best ? 1 : off, best = v1 > best ? v1 : best;
    off = v2 > best ? W : off, best = v2 > best ? v2 : best;
    off = v3 > best ? W + 1 : off, best = v3 > best ? v3 : best;
    yo[ow] = best;
    ao[ow] = row0 + 2 * ow + off;
}
#if defined(__SSE2__)
static int pool_row2(const float *r0, const float *r1, int W, int row0, int Wo, float a, float b, float *yo,
                     int32_t *ao) {
    const int full = W / 2 < Wo ? W / 2 : Wo;
    const __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b), z = _mm_setzero_ps();
    const __m128i o1 = _mm_set1_epi32(1), oW = _mm_set1_epi32(W), oW1 = _mm_set1_epi32(W + 1), step = _mm_set1_epi32(8);
    __m128i idx = _mm_setr_epi32(row0, row0 + 2, row0 + 4, row0 + 6);
    int ow = 0;
    for (; ow + 4 <= full; ow += 4, idx = _mm_add_epi32(idx, step)) {
        const __m128 a0 = _mm_loadu_ps(r0 + 2 * ow), a1 = _mm_loadu_ps(r0 + 2 * ow + 4);
        const __m128 b0 = _mm_loadu_ps(r1 + 2 * ow), b1 = _mm_loadu_ps(r1 + 2 * ow + 4);
        const __m128 v0 = _mm_max_ps(_mm_add_ps(_mm_mul_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)), va), vb), z);
        const __m128 v1 = _mm_max_ps(_mm_add_ps(_mm_mul_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)), va), vb), z);
        const __m128 v2 = _mm_max_ps(_mm_add_ps(_mm_mul_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), va), vb), z);
        const __m128 v3 = _mm_max_ps(_mm_add_ps(_mm_mul_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)), va), vb), z);
        __m128 best = v0, m;
        __m128i off = _mm_setzero_si128();
        m = _mm_cmpgt_ps(v1, best), best = am_sel(m, v1, best), off = am_seli(m, o1, off);
        m = _mm_cmpgt_ps(v2, best), best = am_sel(m, v2, best), off = am_seli(m, oW, off);
        m = _mm_cmpgt_ps(v3, best), best = am_sel(m, v3, best), off = am_seli(m, oW1, off);
        _mm_storeu_ps(yo + ow, best);
        _mm_storeu_si128((__m128i *)(void *)(ao + ow), _mm_add_epi32(idx, off));
    }
    for (; ow < full; ow++) pool_one2(r0, r1, W, row0, ow, a, b, yo, ao);
    return full;
}
#else
static int pool_row2(const float *r0, const float *r1, int W, int row0, int Wo, float a, float b, float *yo,
                     int32_t *ao) {
    const int full = W / 2 < Wo ? W / 2 : Wo;
    for (int ow = 0; ow < full; ow++) pool_one2(r0, r1, W, row0, ow, a, b, yo, ao);
    return full;
}
#endif

static int is_pool2(const am_pool_cfg *c) {
    return c->kh == 2 && c->kw == 2 && c->sh == 2 && c->sw == 2 && c->ph == 0 && c->pw == 0;
}

/* A 2x2 pool's output whose window the plane cuts (ceil mode), one at a time. */
static void pool_one(const am_pool_cfg *c, const float *xp, int H, int W, int oh, int ow, int Wo, float a, float b,
                     float *yp, int32_t *ap) {
    int h0, h1, w0, w1;
    am_max_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1);
    int bi = h0 * W + w0;
    float best = xp[bi] * a + b;
    best = best > 0.f ? best : 0.f;
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            const int i = ih * W + iw;
            float v = xp[i] * a + b;
            v = v > 0.f ? v : 0.f; /* as am_relu_forward: NaN becomes 0, so no NaN can win */
            const int take = v > best;
            best = take ? v : best;
            bi = take ? i : bi;
        }
    yp[oh * Wo + ow] = best;
    ap[oh * Wo + ow] = bi;
}

/* relu(a x + b) over a plane, as am_relu_forward (NaN becomes 0). */
static void relu_plane(const float *p, float a, float b, float *q, size_t len) {
    for (size_t i = 0; i < len; i++) {
        const float v = p[i] * a + b;
        q[i] = v > 0.f ? v : 0.f;
    }
}

/* One plane's max-pool of relu(a x + b): pooled values, argmax, mask, and
 * the ReLU's output into q (NULL: not kept; needed by pools other than
 * 2x2, which pool3.c takes from it). */
static void pool_plane(const am_pool_cfg *c, const float *xp, int H, int W, float a, float b, float *q, float *yp,
                       int32_t *ap, uint32_t *bits, int Ho, int Wo) {
    memset(bits, 0, sizeof(uint32_t) * (((size_t)Ho * Wo + 31) / 32));
    if (!is_pool2(c)) {
        relu_plane(xp, a, b, q, (size_t)H * W);
        am_pool3_plane(c, q, H, W, Ho, Wo, yp, ap);
    } else {
        for (int oh = 0; oh < Ho; oh++) {
            const int done = 2 * oh + 1 < H ? pool_row2(xp + (size_t)2 * oh * W, xp + (size_t)(2 * oh + 1) * W, W,
                                                        2 * oh * W, Wo, a, b, yp + (size_t)oh * Wo, ap + (size_t)oh * Wo)
                                            : 0;
            for (int ow = done; ow < Wo; ow++) pool_one(c, xp, H, W, oh, ow, Wo, a, b, yp, ap);
        }
        if (q) relu_plane(xp, a, b, q, (size_t)H * W);
    }
    for (int o = 0; o < Ho * Wo; o++) bits[o / 32] |= (uint32_t)(yp[o] > 0.f) << (o % 32);
}

/* A channel's moments, plane by plane: Chan et al.'s pairwise combination
 * of (count, mean, squared deviations), in double. */
typedef struct moments {
    double n, mean, m2;
} moments;

static void moments_add(moments *t, double len, double sum, double m2) {
    const double n = t->n + len, d = sum / len - t->mean;
    t->mean += d * len / n;
    t->m2 += m2 + d * d * t->n * len / n;
    t->n = n;
}

/* Mean and 1/std from the batch; the running estimates move toward it. */
static void batch_stats(const am_bn_cfg *cfg, const moments *t, int c, float *mean, float *invstd, float *rm,
                        float *rv) {
    *mean = (float)t->mean;
    *invstd = (float)(1.0 / sqrt(t->m2 / t->n + (double)cfg->eps));
    rm[c] = (1.f - cfg->momentum) * rm[c] + cfg->momentum * *mean;
    rv[c] = (1.f - cfg->momentum) * rv[c] + cfg->momentum * (float)(t->m2 / (t->n - 1.0));
}

static am_status check_common(const am_bn_cfg *cfg, const am_bn_act *act, const am_tensor *x) {
    if (!cfg || !(cfg->eps > 0.f) || !(cfg->momentum >= 0.f && cfg->momentum <= 1.f))
        return am_fail(AM_EINVAL, "batchnorm: bad eps or momentum");
    if (!act || (act->pool && !act->relu)) return am_fail(AM_EINVAL, "batchnorm: a fused pool needs the ReLU");
    if (!x || !x->d) return am_fail(AM_EINVAL, "batchnorm: NULL input");
    return am_shape_check(x->s);
}

static am_status check_fwd(const am_bn_cfg *cfg, const am_bn_act *act, int training, const am_tensor *x,
                           const am_tensor *y, const uint32_t *bits, const am_tensor *pooled,
                           const int32_t *argmax) {
    AM_TRY(check_common(cfg, act, x));
    if (training && (size_t)x->s.n * x->s.h * x->s.w < 2)
        return am_fail(AM_EINVAL, "batchnorm: training needs more than one value per channel");
    if (act->relu && !bits) return am_fail(AM_EINVAL, "batchnorm: the ReLU needs its mask");
    if (y && (!y->d || !am_shape_eq(x->s, y->s))) return am_fail(AM_EINVAL, "batchnorm: output shape differs");
    if (!act->pool) return y ? AM_OK : am_fail(AM_EINVAL, "batchnorm: NULL output");
    am_shape ps;
    AM_TRY(am_pool_out_shape(act->pool, x->s, &ps));
    if (!pooled || !pooled->d || !argmax || !am_shape_eq(ps, pooled->s))
        return am_fail(AM_EINVAL, "batchnorm: the fused pool's output or argmax is missing or misshapen");
    return AM_OK;
}

am_status am_bn_act_forward(const am_bn_cfg *cfg, const am_bn_act *act, int training, const am_tensor *x,
                            const double *moments_in, const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd, am_tensor *y, uint32_t *bits,
                            am_tensor *pooled, int32_t *argmax) {
    AM_TRY(check_fwd(cfg, act, training, x, y, bits, pooled, argmax));
    if (!gamma || !beta || !running_mean || !running_var) return am_fail(AM_EINVAL, "batchnorm: NULL parameter");
    if (training && (!save_mean || !save_invstd))
        return am_fail(AM_EINVAL, "batchnorm: training needs buffers for the batch statistics");
    const int N = x->s.n, C = x->s.c, H = x->s.h, W = x->s.w;
    const size_t HW = (size_t)H * W;
    if (!training)
        for (int c = 0; c < C; c++)
            if (!(running_var[c] >= 0.f))
                return am_fail(AM_ENUM, "batchnorm: running variance of channel %d is %g", c, (double)running_var[c]);
    const int Ho = act->pool ? pooled->s.h : H, Wo = act->pool ? pooled->s.w : W;
    const size_t PL = (size_t)Ho * Wo, wpp = (PL + 31) / 32;
    /* A pool other than 2x2 reads the ReLU's plane: each thread's, when y is not kept. */
    const int own_plane = act->pool && !y && !is_pool2(act->pool);
    float *scratch = own_plane ? am_aligned_alloc(sizeof(float) * HW * (size_t)omp_get_max_threads()) : NULL;
    if (own_plane && !scratch) return am_fail(AM_ENOMEM, "batchnorm: out of memory");
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (training) {
            /* The producer's moments, or a pass of their own (each plane twice, in cache). */
            moments t = {0, 0, 0};
            for (int n = 0; n < N; n++) {
                double own[2];
                const double *mo = moments_in ? moments_in + 2 * ((size_t)n * C + c) : own;
                if (!moments_in) am_plane_moments(x->d + ((size_t)n * C + c) * HW, HW, own);
                moments_add(&t, (double)HW, mo[0], mo[1]);
            }
            batch_stats(cfg, &t, c, &mean, &invstd, running_mean, running_var);
        } else {
            mean = running_mean[c];
            invstd = 1.f / sqrtf(running_var[c] + cfg->eps);
        }
        if (save_mean) save_mean[c] = mean, save_invstd[c] = invstd;
        const float a = gamma[c] * invstd, b = beta[c] - mean * a;
        for (int n = 0; n < N; n++) {
            const size_t pl = (size_t)n * C + c;
            const float *p = x->d + pl * HW;
            uint32_t *bt = bits ? bits + pl * wpp : NULL;
            if (act->pool) { /* the ReLU's output too where kept (every output: am_model_keep_outputs) */
                float *q = y ? y->d + pl * HW : scratch ? scratch + HW * (size_t)omp_get_thread_num() : NULL;
                pool_plane(act->pool, p, H, W, a, b, q, pooled->d + pl * PL, argmax + pl * PL, bt, Ho, Wo);
                continue;
            }
            float *q = y->d + pl * HW;
            const int relu = act->relu;
            size_t i0 = 0;
            for (size_t w = 0; i0 < HW; w++, i0 += 32) {
                const uint32_t m =
                    i0 + 32 <= HW ? affine_word(p + i0, a, b, relu, q + i0) : affine_span(p + i0, a, b, relu, q + i0, HW - i0);
                if (bt) bt[w] = m;
            }
        }
    }
    am_aligned_free(scratch);
    return AM_OK;
}

/* ------------------------------------------------------------ backward */

/* The most floats of kept gradient planes batchnorm's backward allocates
 * (16 MiB; the ResNet stem's at 3x224x224, batch 32, 2 threads: 3 MiB). */
#define BN_KEEP_FLOATS ((size_t)1 << 22)

/* The gradient that reaches one plane of the batchnorm's output from its
 * pool: each pooled value's (where its mask bit is set) at its argmax, zero
 * elsewhere, into gp (H x W). Every window position is written, masked, so
 * the addresses do not depend on where the maxima were (the windows that
 * the plane cuts, one output at a time: pool3.c's am_pool_expand_one). */
#if defined(__SSE2__)
/* Four outputs of a 2x2 pool's row into the two input rows they cover. */
static void expand4(const float *g, const uint32_t *bt, const int32_t *ap, int W, int o, int idx0, float *q0,
                    float *q1) {
    __m128 go;
    __m128i off;
    am_four_grads(g, bt, ap, o, idx0, &go, &off);
    const __m128i one = _mm_set1_epi32(1);
    const __m128 e0 = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_setzero_si128())));
    const __m128 e1 = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, one)));
    const __m128 e2 = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_set1_epi32(W))));
    const __m128 e3 = _mm_and_ps(go, _mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_set1_epi32(W + 1))));
    _mm_storeu_ps(q0, _mm_unpacklo_ps(e0, e1));
    _mm_storeu_ps(q0 + 4, _mm_unpackhi_ps(e0, e1));
    _mm_storeu_ps(q1, _mm_unpacklo_ps(e2, e3));
    _mm_storeu_ps(q1 + 4, _mm_unpackhi_ps(e2, e3));
}
#endif

static void expand_plane(const am_pool_cfg *c, const float *g, const uint32_t *bt, const int32_t *ap, int H, int W,
                         int Ho, int Wo, float *gp) {
    if (!is_pool2(c)) {
        am_pool3_expand(c, g, bt, ap, H, W, Ho, Wo, gp);
        return;
    }
    const int exact = 2 * Ho == H && 2 * Wo == W;
    if (!exact) memset(gp, 0, sizeof(float) * (size_t)H * W);
    for (int oh = 0; oh < Ho; oh++) {
        int ow = 0;
        if (2 * oh + 1 < H) {
            const int full = W / 2 < Wo ? W / 2 : Wo;
            float *q0 = gp + (size_t)2 * oh * W, *q1 = q0 + W;
#if defined(__SSE2__)
            for (; ow + 4 <= full; ow += 4) expand4(g, bt, ap, W, oh * Wo + ow, 2 * oh * W + 2 * ow, q0 + 2 * ow, q1 + 2 * ow);
#endif
            for (; ow < full; ow++) {
                const int o = oh * Wo + ow, off = ap[o] - (2 * oh * W + 2 * ow);
                const float go = am_keep_if(g[o], bt[o / 32] >> (o % 32));
                q0[2 * ow] = am_keep_if(go, (uint32_t)(off == 0));
                q0[2 * ow + 1] = am_keep_if(go, (uint32_t)(off == 1));
                q1[2 * ow] = am_keep_if(go, (uint32_t)(off == W));
                q1[2 * ow + 1] = am_keep_if(go, (uint32_t)(off == W + 1));
            }
        }
        for (; ow < Wo; ow++) am_pool_expand_one(c, g, bt, ap, H, W, oh, ow, Wo, gp);
    }
}

/* Pass 1 over one plane: sum g and g (x - mean), g the gradient at the
 * batchnorm's output (with the ReLU's mask applied, or expanded from the
 * pool into gp first). */
static void sums_plane(int relu, const float *p, const float *g, const uint32_t *bt, size_t HW, float mean,
                       float *fs, float *fsx) {
    float s = 0.f, sx = 0.f;
    size_t i = 0;
#if defined(__SSE2__)
    __m128 as = _mm_setzero_ps(), ax = _mm_setzero_ps();
    const __m128 vm = _mm_set1_ps(mean);
    for (; i + 4 <= HW; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        if (relu) gi = _mm_and_ps(gi, lanes(bt[i / 32] >> (i % 32)));
        as = _mm_add_ps(as, gi);
        ax = _mm_add_ps(ax, _mm_mul_ps(gi, _mm_sub_ps(_mm_loadu_ps(p + i), vm)));
    }
    s = hsum(as), sx = hsum(ax);
#endif
    for (; i < HW; i++) {
        const float gi = relu ? am_keep_if(g[i], bt[i / 32] >> (i % 32)) : g[i];
        s += gi;
        sx += gi * (p[i] - mean);
    }
    *fs = s, *fsx = sx;
}

/* Pass 2 over one plane: dx = k (g - m1 - (x - mean) m2), written or added. */
static void dx_plane(int relu, const float *p, const float *g, const uint32_t *bt, size_t HW, float mean, float k,
                     float m1, float m2, int accum, float *q) {
    size_t i = 0;
#if defined(__SSE2__)
    const __m128 vm = _mm_set1_ps(mean), vk = _mm_set1_ps(k), v1 = _mm_set1_ps(m1), v2 = _mm_set1_ps(m2);
    for (; i + 4 <= HW; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        if (relu) gi = _mm_and_ps(gi, lanes(bt[i / 32] >> (i % 32)));
        const __m128 xm = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(p + i), vm), v2);
        __m128 d = _mm_mul_ps(vk, _mm_sub_ps(_mm_sub_ps(gi, v1), xm));
        if (accum) d = _mm_add_ps(_mm_loadu_ps(q + i), d);
        _mm_storeu_ps(q + i, d);
    }
#endif
    for (; i < HW; i++) {
        const float gi = relu ? am_keep_if(g[i], bt[i / 32] >> (i % 32)) : g[i];
        q[i] = (accum ? q[i] : 0.f) + k * (gi - m1 - (p[i] - mean) * m2);
    }
}

am_status am_bn_act_backward(const am_bn_cfg *cfg, const am_bn_act *act, int training, const am_tensor *x,
                             const float *gamma, const float *save_mean, const float *save_invstd,
                             const uint32_t *bits, const int32_t *argmax, const am_tensor *dy, am_tensor *dx,
                             int accum, float *dgamma, float *dbeta) {
    AM_TRY(check_common(cfg, act, x));
    if (!dy || !dy->d) return am_fail(AM_EINVAL, "batchnorm backward: NULL tensor");
    if (!gamma || !dgamma || !dbeta || !save_mean || !save_invstd)
        return am_fail(AM_EINVAL, "batchnorm backward: NULL parameter or statistics");
    if ((act->relu && !bits) || (act->pool && !argmax))
        return am_fail(AM_EINVAL, "batchnorm backward: the mask or argmax is missing");
    am_shape ds = x->s;
    if (act->pool) AM_TRY(am_pool_out_shape(act->pool, x->s, &ds));
    if (!am_shape_eq(ds, dy->s)) return am_fail(AM_EINVAL, "batchnorm backward: output gradient misshapen");
    if (dx && (!dx->d || !am_shape_eq(dx->s, x->s)))
        return am_fail(AM_EINVAL, "batchnorm backward: input gradient shape differs from input");
    const int N = x->s.n, C = x->s.c, H = x->s.h, W = x->s.w, Ho = ds.h, Wo = ds.w;
    const size_t HW = (size_t)H * W, PL = (size_t)Ho * Wo, wpp = (PL + 31) / 32, M = (size_t)N * HW;
    /* With a pool: each thread's plane of expanded gradients, in cache. A
     * pool other than 2x2 (dearer to expand) keeps the channel's N planes
     * from pass 1 for pass 2 when there is a pass 2 and they take at most
     * BN_KEEP_FLOATS in all (else, or without the memory, it expands again). */
    const size_t nt = (size_t)omp_get_max_threads();
    int keep = act->pool && !is_pool2(act->pool) && dx && HW * (size_t)N * nt <= BN_KEEP_FLOATS;
    float *scratch = keep ? am_aligned_alloc(sizeof(float) * HW * (size_t)N * nt) : NULL;
    if (!scratch) keep = 0;
    if (act->pool && !scratch) scratch = am_aligned_alloc(sizeof(float) * HW * nt);
    if (act->pool && !scratch) return am_fail(AM_ENOMEM, "batchnorm backward: out of memory");
    const size_t tplanes = keep ? (size_t)N : 1;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float mean = save_mean[c], invstd = save_invstd[c];
        float *gt = scratch ? scratch + HW * tplanes * (size_t)omp_get_thread_num() : NULL;
        const int relu = act->relu && !act->pool;
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < N; n++) {
            const size_t pl = (size_t)n * C + c;
            const float *g = dy->d + pl * PL;
            float *gp = gt ? gt + (keep ? (size_t)n * HW : 0) : NULL;
            if (gp) expand_plane(act->pool, g, bits + pl * wpp, argmax + pl * PL, H, W, Ho, Wo, gp), g = gp;
            float fs, fsx;
            sums_plane(relu, x->d + pl * HW, g, relu ? bits + pl * wpp : NULL, HW, mean, &fs, &fsx);
            sdy += fs;
            sdyx += fsx;
        }
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)(sdyx * invstd);
        if (!dx) continue;
        /* In evaluation mode the statistics are constants: dx is only the scale. */
        const float k = gamma[c] * invstd;
        const float m1 = training ? (float)(sdy / (double)M) : 0.f;
        const float m2 = training ? (float)(sdyx / (double)M) * invstd * invstd : 0.f;
        for (int n = 0; n < N; n++) {
            const size_t pl = (size_t)n * C + c;
            const float *g = dy->d + pl * PL;
            if (keep) g = gt + (size_t)n * HW;
            else if (gt) expand_plane(act->pool, g, bits + pl * wpp, argmax + pl * PL, H, W, Ho, Wo, gt), g = gt;
            dx_plane(relu, x->d + pl * HW, g, relu ? bits + pl * wpp : NULL, HW, mean, k, m1, m2, accum,
                     dx->d + pl * HW);
        }
    }
    am_aligned_free(scratch);
    return AM_OK;
}

/* ------------------------------------------------------------ unfused */

am_status am_bn_forward(const am_bn_cfg *cfg, int training, const am_tensor *x,
                        const float *gamma, const float *beta, float *running_mean,
                        float *running_var, float *save_mean, float *save_invstd,
                        am_tensor *y) {
    const am_bn_act none = {0, NULL};
    if (!y) return am_fail(AM_EINVAL, "batchnorm: NULL tensor");
    return am_bn_act_forward(cfg, &none, training, x, NULL, gamma, beta, running_mean, running_var, save_mean,
                             save_invstd, y, NULL, NULL, NULL);
}

am_status am_bn_backward(const am_bn_cfg *cfg, int training, const am_tensor *x,
                         const float *gamma, const float *save_mean, const float *save_invstd,
                         const am_tensor *dy, am_tensor *dx, int accum, float *dgamma,
                         float *dbeta) {
    const am_bn_act none = {0, NULL};
    return am_bn_act_backward(cfg, &none, training, x, gamma, save_mean, save_invstd, NULL, NULL, dy, dx, accum, dgamma,
                              dbeta);
}
