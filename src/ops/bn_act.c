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

/* Up to 32 values a x + b, with the ReLU (its mask returned) or without:
 * four at a time with SSE2 (planes of 4x4 and 2x2 are one span). */
static inline uint32_t affine_span(const float *p, float a, float b, int relu, float *q, size_t len) {
    uint32_t m = 0;
    size_t i = 0;
#if defined(__SSE2__)
    const __m128 z = _mm_setzero_ps(), va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
    for (; i + 4 <= len; i += 4) {
        const __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(p + i), va), vb);
        _mm_storeu_ps(q + i, relu ? _mm_max_ps(v, z) : v);
        m |= (uint32_t)_mm_movemask_ps(_mm_cmpgt_ps(v, z)) << i;
    }
#endif
    for (; i < len; i++) {
        const float v = p[i] * a + b;
        m |= (uint32_t)(v > 0.f) << i;
        q[i] = relu ? (v > 0.f ? v : 0.f) : v;
    }
    return m;
}

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

/* Channels per block: as many as keep a block's planes of input and
 * gradient within BLOCK_BYTES, and at least four blocks a thread. Measured
 * here (2 threads, caches flushed before each pass, ms forward/backward,
 * channel by channel -> blocks of 8 MiB): 32x64x32x32 0.48/1.44 ->
 * 0.41/1.00, 8x128x112x112 3.4/6.8 -> 2.0/4.2, 8x256x56x56 with the pool
 * 2.8/4.1 -> 1.9/3.4; 256 KiB blocks gained little, 16 MiB no more. */
#define BLOCK_BYTES ((size_t)8 << 20)
static int channel_block(int N, int C, size_t HW) {
    const size_t per = (size_t)N * HW * 2 * sizeof(float), most = (size_t)C / (4 * (size_t)omp_get_max_threads());
    size_t cb = BLOCK_BYTES / per;
    cb = cb > most ? most : cb;
    return cb < 1 ? 1 : (int)cb;
}

/* One plane of the forward pass: y = a x + b with the ReLU and its mask,
 * or the pool's output, its argmax and mask (q: the ReLU's plane, where
 * kept or where a pool other than 2x2 needs it). */
static void forward_plane(const am_bn_act *act, const float *p, int H, int W, float a, float b, float *q, float *yp,
                          int32_t *ap, uint32_t *bt, int Ho, int Wo) {
    if (act->pool) {
        pool_plane(act->pool, p, H, W, a, b, q, yp, ap, bt, Ho, Wo);
        return;
    }
    const size_t HW = (size_t)H * W;
    size_t i0 = 0;
    for (size_t w = 0; i0 < HW; w++, i0 += 32) {
        const uint32_t m = i0 + 32 <= HW ? affine_span(p + i0, a, b, act->relu, q + i0, 32)
                                         : affine_span(p + i0, a, b, act->relu, q + i0, HW - i0);
        if (bt) bt[w] = m;
    }
}

/* Channel c's scale and shift (ab[2c], ab[2c + 1]): from the batch's
 * statistics, its planes' moments combined in the order of the samples
 * (training), or from the running ones. */
static void channel_affine(const am_bn_cfg *cfg, int training, int N, int C, int c, size_t HW, const double *mo,
                           const float *gamma, const float *beta, float *rm, float *rv, float *save_mean,
                           float *save_invstd, float *ab) {
    float mean, invstd;
    if (training) {
        moments t = {0, 0, 0};
        for (int n = 0; n < N; n++) moments_add(&t, (double)HW, mo[2 * ((size_t)n * C + c)], mo[2 * ((size_t)n * C + c) + 1]);
        batch_stats(cfg, &t, c, &mean, &invstd, rm, rv);
    } else {
        mean = rm[c];
        invstd = 1.f / sqrtf(rv[c] + cfg->eps);
    }
    if (save_mean) save_mean[c] = mean, save_invstd[c] = invstd;
    ab[2 * c] = gamma[c] * invstd;
    ab[2 * c + 1] = beta[c] - mean * ab[2 * c];
}

/* Both directions take the channels in blocks, each block's planes in
 * memory order (sample by sample, the block's channels side by side): a
 * block's N planes stay in cache between its passes, and small planes
 * (VGG's 2x2 and 4x4 ones are a cache line or less) are read as runs, not
 * as lines scattered a channel apart. A block of one channel is the
 * channel-by-channel order that large planes need. */
am_status am_bn_act_forward(const am_bn_cfg *cfg, const am_bn_act *act, int training, const am_tensor *x,
                            const double *moments_in, const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd, am_tensor *y, uint32_t *bits,
                            am_tensor *pooled, int32_t *argmax) {
    AM_TRY(check_fwd(cfg, act, training, x, y, bits, pooled, argmax));
    if (!gamma || !beta || !running_mean || !running_var) return am_fail(AM_EINVAL, "batchnorm: NULL parameter");
    if (training && (!save_mean || !save_invstd))
        return am_fail(AM_EINVAL, "batchnorm: training needs buffers for the batch statistics");
    const int N = x->s.n, C = x->s.c, H = x->s.h, W = x->s.w;
    const size_t HW = (size_t)H * W, P = (size_t)N * C;
    if (!training)
        for (int c = 0; c < C; c++)
            if (!(running_var[c] >= 0.f))
                return am_fail(AM_ENUM, "batchnorm: running variance of channel %d is %g", c, (double)running_var[c]);
    const int Ho = act->pool ? pooled->s.h : H, Wo = act->pool ? pooled->s.w : W;
    const size_t PL = (size_t)Ho * Wo, wpp = (PL + 31) / 32;
    /* A pool other than 2x2 reads the ReLU's plane: each thread's, when y is not kept. */
    const int own_plane = act->pool && !y && !is_pool2(act->pool), own_mo = training && !moments_in;
    const size_t nsc = own_plane ? HW * (size_t)omp_get_max_threads() : 0;
    const size_t nown = own_mo ? 2 * P : 0;
    double *own = am_aligned_alloc(sizeof(double) * nown + sizeof(float) * (2 * (size_t)C + nsc));
    if (!own) return am_fail(AM_ENOMEM, "batchnorm: out of memory");
    float *ab = (float *)(void *)(own + nown), *scratch = own_plane ? ab + 2 * (size_t)C : NULL;
    const double *mo = own_mo ? own : moments_in;
    const int cb = channel_block(N, C, HW);
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += cb) {
        const int c1 = c0 + cb < C ? c0 + cb : C;
        if (own_mo) /* the planes' moments in a pass of their own (then each plane twice, in cache) */
            for (int n = 0; n < N; n++)
                for (size_t pl = (size_t)n * C + c0; pl < (size_t)n * C + c1; pl++)
                    am_plane_moments(x->d + pl * HW, HW, own + 2 * pl);
        for (int c = c0; c < c1; c++)
            channel_affine(cfg, training, N, C, c, HW, mo, gamma, beta, running_mean, running_var, save_mean,
                           save_invstd, ab);
        float *q0 = scratch ? scratch + HW * (size_t)omp_get_thread_num() : NULL;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                const size_t pl = (size_t)n * C + c;
                forward_plane(act, x->d + pl * HW, H, W, ab[2 * c], ab[2 * c + 1], y ? y->d + pl * HW : q0,
                              act->pool ? pooled->d + pl * PL : NULL, act->pool ? argmax + pl * PL : NULL,
                              bits ? bits + pl * wpp : NULL, Ho, Wo);
            }
    }
    am_aligned_free(own);
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

/* What every plane of one backward pass reads. */
typedef struct bwd {
    const am_bn_act *act;
    const float *x, *dy, *mean;
    const uint32_t *bits;
    const int32_t *argmax;
    float *dx;
    int C, H, W, Ho, Wo, relu, accum;
    size_t HW, PL, wpp;
} bwd;

/* The gradient at plane (n, c)'s batchnorm output: dy's own (the ReLU's
 * mask applied later), or expanded from the pool into gt. */
static inline const float *plane_grad(const bwd *k, size_t pl, float *gt) {
    const float *g = k->dy + pl * k->PL;
    if (!gt) return g;
    expand_plane(k->act->pool, g, k->bits + pl * k->wpp, k->argmax + pl * k->PL, k->H, k->W, k->Ho, k->Wo, gt);
    return gt;
}

static inline void plane_sums(const bwd *k, size_t pl, int c, const float *g, float *fs, float *fsx) {
    sums_plane(k->relu, k->x + pl * k->HW, g, k->relu ? k->bits + pl * k->wpp : NULL, k->HW, k->mean[c], fs, fsx);
}

/* dx of plane pl of channel c with the channel's terms t (k, m1, m2). */
static inline void plane_dx(const bwd *k, size_t pl, int c, const float *g, const float *t) {
    dx_plane(k->relu, k->x + pl * k->HW, g, k->relu ? k->bits + pl * k->wpp : NULL, k->HW, k->mean[c], t[0], t[1],
             t[2], k->accum, k->dx + pl * k->HW);
}

/* Channel c's parameter gradients from its planes' sums (added in double,
 * in the order of the samples) and the terms of its dx (t: k, m1, m2). */
static void channel_terms(const bwd *k, int N, int training, int c, const float *sums, float gamma, float invstd,
                          float *dgamma, float *dbeta, float *t) {
    double sdy = 0.0, sdyx = 0.0;
    for (int n = 0; n < N; n++) {
        sdy += sums[2 * ((size_t)n * k->C + c)];
        sdyx += sums[2 * ((size_t)n * k->C + c) + 1];
    }
    const double M = (double)N * k->HW;
    *dbeta = (float)sdy;
    *dgamma = (float)(sdyx * invstd);
    /* In evaluation mode the statistics are constants: dx is only the scale. */
    t[0] = gamma * invstd;
    t[1] = training ? (float)(sdy / M) : 0.f;
    t[2] = training ? (float)(sdyx / M) * invstd * invstd : 0.f;
}

/* Per block of channels: pass 1 sums each plane, the channels' terms
 * follow, pass 2 writes dx. With a pool each plane's gradient is expanded
 * into the thread's scratch; with keep (a pool other than 2x2, dearer to
 * expand), blocks of one channel whose N expanded planes stay there from
 * pass 1 for pass 2, else expanded again. sums: 2 per plane, then 3 per
 * channel (k, m1, m2). */
static void backward_blocks(const bwd *k, int N, int training, const float *gamma, const float *invstd, int keep,
                            float *scratch, float *sums, float *dgamma, float *dbeta) {
    const int C = k->C, cb = keep ? 1 : channel_block(N, C, k->HW);
    const size_t per = keep ? (size_t)N * k->HW : k->HW, kept = keep ? k->HW : 0;
    float *t = sums + 2 * (size_t)N * C;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += cb) {
        const int c1 = c0 + cb < C ? c0 + cb : C;
        float *gt = scratch ? scratch + per * (size_t)omp_get_thread_num() : NULL;
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) {
                const size_t pl = (size_t)n * C + c;
                plane_sums(k, pl, c, plane_grad(k, pl, gt ? gt + kept * n : NULL), sums + 2 * pl, sums + 2 * pl + 1);
            }
        for (int c = c0; c < c1; c++)
            channel_terms(k, N, training, c, sums, gamma[c], invstd[c], dgamma + c, dbeta + c, t + 3 * (size_t)c);
        if (k->dx)
            for (int n = 0; n < N; n++)
                for (int c = c0; c < c1; c++) {
                    const size_t pl = (size_t)n * C + c;
                    const float *g = keep ? gt + kept * n : plane_grad(k, pl, gt);
                    plane_dx(k, pl, c, g, t + 3 * (size_t)c);
                }
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
    const int N = x->s.n, C = x->s.c;
    const size_t HW = (size_t)x->s.h * x->s.w, PL = (size_t)ds.h * ds.w, P = (size_t)N * C;
    const bwd k = {act, x->d, dy->d, save_mean, bits, argmax, dx ? dx->d : NULL, C, x->s.h, x->s.w, ds.h, ds.w,
                   act->relu && !act->pool, accum, HW, PL, (PL + 31) / 32};
    /* A pool other than 2x2 keeps a channel's N expanded planes per thread
     * from pass 1 for pass 2 when there is a pass 2 and they take at most
     * BN_KEEP_FLOATS in all (else, or without the memory, it expands again). */
    const size_t nt = (size_t)omp_get_max_threads(), head = 2 * P + 3 * (size_t)C;
    int keep = act->pool && !is_pool2(act->pool) && dx && HW * (size_t)N * nt <= BN_KEEP_FLOATS;
    float *sums = keep ? am_aligned_alloc(sizeof(float) * (head + HW * (size_t)N * nt)) : NULL;
    if (!sums) {
        keep = 0;
        sums = am_aligned_alloc(sizeof(float) * (head + (act->pool ? HW * nt : 0)));
    }
    if (!sums) return am_fail(AM_ENOMEM, "batchnorm backward: out of memory");
    backward_blocks(&k, N, training, gamma, save_invstd, keep, act->pool ? sums + head : NULL, sums, dgamma, dbeta);
    am_aligned_free(sums);
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
