/* Element-wise ops: ReLU, dropout, the residual add. ReLU is branch-free
 * (a max, and a multiply by or an AND with a 0/1 mask) because the trusted
 * side runs it on private activations. */
#include "asymml/ops.h"
#include "mask.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* Up to 32 elements, one mask word: forward writes max(x, 0) and returns
 * the sign bits, backward keeps the gradient where they are set. The plain
 * loops serve a short last word; SSE2 (in every x86-64) does whole words
 * four lanes at a time: the mask bits come from movemask and go back through
 * a compare against each lane's own bit, with no table indexed by the
 * private bits. */
static uint32_t relu_span(const float *a, float *b, size_t len) {
    uint32_t m = 0;
    for (size_t i = 0; i < len; i++) {
        m |= (uint32_t)(a[i] > 0.f) << i;
        b[i] = a[i] > 0.f ? a[i] : 0.f;
    }
    return m;
}
static void relu_back_span(uint32_t m, const float *g, float *d, int accum, size_t len) {
    for (size_t i = 0; i < len; i++) d[i] = (accum ? d[i] : 0.f) + am_keep_if(g[i], m >> i);
}
#if defined(__SSE2__)
static uint32_t relu_word(const float *a, float *b) {
    const __m128 z = _mm_setzero_ps();
    uint32_t m = 0;
    for (int i = 0; i < 32; i += 4) {
        __m128 v = _mm_loadu_ps(a + i);
        _mm_storeu_ps(b + i, _mm_max_ps(v, z));
        m |= (uint32_t)_mm_movemask_ps(_mm_cmpgt_ps(v, z)) << i;
    }
    return m;
}
static void relu_back_word(uint32_t m, const float *g, float *d, int accum) {
    const __m128i lane = _mm_set_epi32(8, 4, 2, 1);
    for (int i = 0; i < 32; i += 4) {
        __m128i bits = _mm_and_si128(_mm_set1_epi32((int)((m >> i) & 15u)), lane);
        __m128 keep = _mm_castsi128_ps(_mm_cmpeq_epi32(bits, lane));
        __m128 v = _mm_and_ps(_mm_loadu_ps(g + i), keep);
        _mm_storeu_ps(d + i, accum ? _mm_add_ps(_mm_loadu_ps(d + i), v) : v);
    }
}
#else
static uint32_t relu_word(const float *a, float *b) { return relu_span(a, b, 32); }
static void relu_back_word(uint32_t m, const float *g, float *d, int accum) { relu_back_span(m, g, d, accum, 32); }
#endif
/* A mask word's len values (32 but for a short last word). */
static inline uint32_t relu_any(const float *a, float *b, size_t len) {
    return len == 32 ? relu_word(a, b) : relu_span(a, b, len);
}
static inline void relu_back_any(uint32_t m, const float *g, float *d, int accum, size_t len) {
    if (len == 32) relu_back_word(m, g, d, accum);
    else relu_back_span(m, g, d, accum, len);
}

am_status am_relu_forward_bits(const am_tensor *x, am_tensor *y, uint32_t *bits) {
    AM_TRY(same(x, y, "relu"));
    if (!bits) return am_fail(AM_EINVAL, "relu: NULL mask");
    const size_t n = am_shape_numel(x->s), words = (n + 31) / 32;
    const float *a = x->d;
    float *b = y->d;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t w = 0; w < words; w++) {
        const size_t i0 = w * 32;
        bits[w] = relu_any(a + i0, b + i0, n - i0 < 32 ? n - i0 : 32);
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
        const size_t i0 = w * 32;
        relu_back_any(bits[w], g + i0, d + i0, accum, n - i0 < 32 ? n - i0 : 32);
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
        if (dx->d != dy->d) am_copy_floats(dx->d, dy->d, n);
        return AM_OK;
    }
    const float *g = dy->d;
    float *d = dx->d;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) d[i] += g[i];
    return AM_OK;
}

/* The residual add and the ReLU after it in one pass: y = max(a + b, 0),
 * its mask in bits as am_relu_forward_bits keeps it. y may be a or b. A
 * word's sum is written, then rectified where it lies, in L1. */
am_status am_add_relu_forward(const am_tensor *a, const am_tensor *b, am_tensor *y, uint32_t *bits) {
    AM_TRY(same(a, b, "add relu"));
    AM_TRY(same(a, y, "add relu"));
    if (!bits) return am_fail(AM_EINVAL, "add relu: NULL mask");
    const size_t n = am_shape_numel(a->s), words = (n + 31) / 32;
    const float *p = a->d, *q = b->d;
    float *r = y->d;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t w = 0; w < words; w++) {
        const size_t i0 = w * 32, len = n - i0 < 32 ? n - i0 : 32;
        for (size_t i = i0; i < i0 + len; i++) r[i] = p[i] + q[i];
        bits[w] = relu_any(r + i0, r + i0, len);
    }
    return AM_OK;
}

/* Its backward: dy (the gradient of y) is masked in place, which makes it
 * the gradient of a when a's gradient shares dy's buffer, and the masked
 * values also go into db (=, or += with accum_b); db NULL: b takes none. */
am_status am_add_relu_backward(const uint32_t *bits, am_tensor *dy, am_tensor *db, int accum_b) {
    if (!dy || !dy->d || !bits) return am_fail(AM_EINVAL, "add relu backward: NULL argument");
    if (db) AM_TRY(same(dy, db, "add relu backward"));
    if (db && db->d == dy->d) return am_fail(AM_EINVAL, "add relu backward: db is dy");
    const size_t n = am_shape_numel(dy->s), words = (n + 31) / 32;
    float *g = dy->d, *d = db ? db->d : NULL;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t w = 0; w < words; w++) {
        const size_t i0 = w * 32, len = n - i0 < 32 ? n - i0 : 32;
        if (d) relu_back_any(bits[w], g + i0, d + i0, accum_b, len);
        relu_back_any(bits[w], g + i0, g + i0, 0, len);
    }
    return AM_OK;
}
