/* Element-wise ops: ReLU, dropout, the residual add. ReLU is branch-free
 * (fmaxf and a multiply by a 0/1 mask) because the trusted side runs it on
 * private activations. */
#include "asymml/ops.h"

#include <string.h>

static am_status same(const am_tensor *a, const am_tensor *b, const char *op) {
    if (!a || !a->d || !b || !b->d) return am_fail(AM_EINVAL, "%s: NULL tensor", op);
    if (!am_shape_eq(a->s, b->s))
        return am_fail(AM_EINVAL, "%s: shapes %dx%dx%dx%d and %dx%dx%dx%d differ", op, a->s.n,
                       a->s.c, a->s.h, a->s.w, b->s.n, b->s.c, b->s.h, b->s.w);
    return AM_OK;
}

am_status am_relu_forward(const am_tensor *x, am_tensor *y) {
    AM_TRY(same(x, y, "relu"));
    const size_t n = am_shape_numel(x->s);
    const float *a = x->d;
    float *b = y->d;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) b[i] = a[i] > 0.f ? a[i] : 0.f;
    return AM_OK;
}

am_status am_relu_backward(const am_tensor *y, const am_tensor *dy, am_tensor *dx, int accum) {
    AM_TRY(same(y, dy, "relu backward"));
    AM_TRY(same(y, dx, "relu backward"));
    const size_t n = am_shape_numel(y->s);
    const float *a = y->d, *g = dy->d;
    float *d = dx->d;
    if (accum) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) d[i] += g[i] * (float)(a[i] > 0.f);
    } else {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) d[i] = g[i] * (float)(a[i] > 0.f);
    }
    return AM_OK;
}

am_status am_relu_forward_bits(const am_tensor *x, am_tensor *y, uint32_t *bits) {
    AM_TRY(same(x, y, "relu"));
    if (!bits) return am_fail(AM_EINVAL, "relu: NULL mask");
    const size_t n = am_shape_numel(x->s), words = (n + 31) / 32;
    const float *a = x->d;
    float *b = y->d;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t w = 0; w < words; w++) {
        size_t i0 = w * 32, i1 = i0 + 32 < n ? i0 + 32 : n;
        uint32_t m = 0;
        for (size_t i = i0; i < i1; i++) {
            uint32_t pos = a[i] > 0.f;
            m |= pos << (i - i0);
            b[i] = a[i] > 0.f ? a[i] : 0.f;
        }
        bits[w] = m;
    }
    return AM_OK;
}

am_status am_relu_backward_bits(const uint32_t *bits, const am_tensor *dy, am_tensor *dx, int accum) {
    AM_TRY(same(dy, dx, "relu backward"));
    if (!bits) return am_fail(AM_EINVAL, "relu backward: NULL mask");
    const size_t n = am_shape_numel(dy->s), words = (n + 31) / 32;
    const float *g = dy->d;
    float *d = dx->d;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t w = 0; w < words; w++) {
        size_t i0 = w * 32, i1 = i0 + 32 < n ? i0 + 32 : n;
        uint32_t m = bits[w];
        if (accum)
            for (size_t i = i0; i < i1; i++) d[i] += g[i] * (float)((m >> (i - i0)) & 1u);
        else
            for (size_t i = i0; i < i1; i++) d[i] = g[i] * (float)((m >> (i - i0)) & 1u);
    }
    return AM_OK;
}

am_status am_dropout_mask(float p, am_rng *rng, float *mask, size_t n) {
    if (!(p >= 0.f && p < 1.f)) return am_fail(AM_EINVAL, "dropout: p = %g outside [0, 1)", (double)p);
    if (!rng || (!mask && n)) return am_fail(AM_EINVAL, "dropout: NULL argument");
    const float scale = 1.f / (1.f - p);
    for (size_t i = 0; i < n; i++) mask[i] = am_rng_uniform(rng) >= p ? scale : 0.f;
    return AM_OK;
}

am_status am_dropout_forward(const am_tensor *x, const float *mask, am_tensor *y) {
    AM_TRY(same(x, y, "dropout"));
    if (!mask) return am_fail(AM_EINVAL, "dropout: NULL mask");
    const size_t n = am_shape_numel(x->s);
    for (size_t i = 0; i < n; i++) y->d[i] = x->d[i] * mask[i];
    return AM_OK;
}

am_status am_dropout_backward(const float *mask, const am_tensor *dy, am_tensor *dx, int accum) {
    AM_TRY(same(dy, dx, "dropout backward"));
    if (!mask) return am_fail(AM_EINVAL, "dropout backward: NULL mask");
    const size_t n = am_shape_numel(dy->s);
    for (size_t i = 0; i < n; i++) dx->d[i] = (accum ? dx->d[i] : 0.f) + dy->d[i] * mask[i];
    return AM_OK;
}

am_status am_add_forward(const am_tensor *a, const am_tensor *b, am_tensor *y) {
    AM_TRY(same(a, b, "add"));
    AM_TRY(same(a, y, "add"));
    const size_t n = am_shape_numel(a->s);
    const float *p = a->d, *q = b->d;
    float *r = y->d;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) r[i] = p[i] + q[i];
    return AM_OK;
}

am_status am_add_backward(const am_tensor *dy, am_tensor *dx, int accum) {
    AM_TRY(same(dy, dx, "add backward"));
    const size_t n = am_shape_numel(dy->s);
    if (!accum) {
        if (dx->d != dy->d) memcpy(dx->d, dy->d, n * sizeof(float));
        return AM_OK;
    }
    const float *g = dy->d;
    float *d = dx->d;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) d[i] += g[i];
    return AM_OK;
}
