/* Kernels' fast paths against plain loops written here: the fused 3x3
 * stride-2 max-pool (src/ops/pool3.c) bit for bit with the one-output loop,
 * forward and backward, on every plane up to 24 x 24 with ties, zeros of
 * both signs and random mask bits; im2col's rows on planes narrower than
 * the kernel's padding (conv2d.c), against a direct convolution; and the
 * linear layer's small-batch kernels (skinny.c, where the processor has
 * AVX-512; sgemm elsewhere) against sums in double, the same bits at 1 and 2
 * threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "ops/pool3.h"
#include "ops/skinny.h"

static am_rng rng;

static uint32_t draw(uint32_t n) { return (uint32_t)(am_rng_uniform(&rng) * n) % n; }

/* The pool's forward, one output at a time: first maximum in row order. */
static void ref_max(const am_pool_cfg *c, const float *q, int H, int W, int Ho, int Wo, float *y, int32_t *a) {
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            int bi = -1;
            float best = 0.f;
            for (int ih = oh * c->sh - c->ph; ih < oh * c->sh - c->ph + c->kh; ih++)
                for (int iw = ow * c->sw - c->pw; iw < ow * c->sw - c->pw + c->kw; iw++) {
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    if (bi < 0 || q[ih * W + iw] > best) best = q[ih * W + iw], bi = ih * W + iw;
                }
            y[oh * Wo + ow] = best, a[oh * Wo + ow] = bi;
        }
}

/* Its backward: each window position, in output order, gets the output's
 * gradient (mask bit set) if it is the argmax, else +0. */
static void ref_expand(const am_pool_cfg *c, const float *g, const uint32_t *bt, const int32_t *a, int H, int W,
                       int Ho, int Wo, float *gp) {
    memset(gp, 0, sizeof(float) * (size_t)H * W);
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            const int o = oh * Wo + ow;
            const float go = (bt[o / 32] >> (o % 32)) & 1 ? g[o] : 0.f;
            for (int ih = oh * c->sh - c->ph; ih < oh * c->sh - c->ph + c->kh; ih++)
                for (int iw = ow * c->sw - c->pw; iw < ow * c->sw - c->pw + c->kw; iw++)
                    if (ih >= 0 && ih < H && iw >= 0 && iw < W) gp[ih * W + iw] += ih * W + iw == a[o] ? go : 0.f;
        }
}

static void pool3_plane_case(const am_pool_cfg *c, int H, int W) {
    am_shape ps;
    assert_int_equal(am_pool_out_shape(c, am_shape4(1, 1, H, W), &ps), AM_OK);
    const int Ho = ps.h, Wo = ps.w;
    const size_t HW = (size_t)H * W, PL = (size_t)Ho * Wo, wpp = (PL + 31) / 32;
    float *q = malloc(sizeof(float) * HW), *y = malloc(sizeof(float) * PL), *yr = malloc(sizeof(float) * PL);
    float *g = malloc(sizeof(float) * PL), *gp = malloc(sizeof(float) * HW), *gr = malloc(sizeof(float) * HW);
    int32_t *a = malloc(sizeof(int32_t) * PL), *ar = malloc(sizeof(int32_t) * PL);
    uint32_t *bt = malloc(sizeof(uint32_t) * wpp);
    assert_true(q && y && yr && g && gp && gr && a && ar && bt);
    static const float vals[] = {0.f, -0.f, 0.5f, 1.f, 2.f, 3.f};
    for (int rep = 0; rep < 3; rep++) {
        /* Few distinct values (many ties), then distinct ones. */
        for (size_t i = 0; i < HW; i++) q[i] = rep < 2 ? vals[draw(6)] : (float)draw(100000) / 7.f;
        am_pool3_plane(c, q, H, W, Ho, Wo, y, a);
        ref_max(c, q, H, W, Ho, Wo, yr, ar);
        assert_memory_equal(y, yr, sizeof(float) * PL);
        assert_memory_equal(a, ar, sizeof(int32_t) * PL);
        for (size_t i = 0; i < PL; i++) g[i] = am_rng_normal(&rng);
        for (size_t i = 0; i < wpp; i++) bt[i] = rep == 0 ? 0xffffffffu : (uint32_t)draw(1u << 16) << 16 | draw(1u << 16);
        am_pool3_expand(c, g, bt, a, H, W, Ho, Wo, gp);
        ref_expand(c, g, bt, a, H, W, Ho, Wo, gr);
        assert_memory_equal(gp, gr, sizeof(float) * HW);
    }
    free(q), free(y), free(yr), free(g), free(gp), free(gr), free(a), free(ar), free(bt);
}

static void t_pool3_exact(void **st) {
    (void)st;
    am_rng_seed(&rng, 41);
    const am_pool_cfg cfgs[] = {{3, 3, 2, 2, 1, 1, 0}, {3, 3, 2, 2, 1, 1, 1}, {3, 3, 1, 1, 1, 1, 0}};
    for (int k = 0; k < 3; k++)
        for (int H = 1; H <= 24; H++)
            for (int W = 1; W <= 24; W++) pool3_plane_case(&cfgs[k], H, W);
}

/* Direct convolution, the definition. */
static float ref_conv_at(const am_conv2d_cfg *c, const am_tensor *x, const float *w, int n, int k, int oh, int ow) {
    float s = 0.f;
    for (int ch = 0; ch < x->s.c; ch++)
        for (int i = 0; i < c->kh; i++)
            for (int j = 0; j < c->kw; j++) {
                const int ih = oh * c->sh - c->ph + i, iw = ow * c->sw - c->pw + j;
                if (ih < 0 || ih >= x->s.h || iw < 0 || iw >= x->s.w) continue;
                s += x->d[(((size_t)n * x->s.c + ch) * x->s.h + ih) * x->s.w + iw] *
                     w[(((size_t)k * x->s.c + ch) * c->kh + i) * c->kw + j];
            }
    return s;
}

/* Planes 1 to 4 wide and high under kernels up to 7 with every padding and
 * strides 1 to 3: im2col's zero runs cover whole rows there. */
static void t_conv_narrow(void **st) {
    (void)st;
    am_rng_seed(&rng, 43);
    for (int kk = 5; kk <= 7; kk++)
        for (int p = 0; p < kk; p++)
            for (int s = 1; s <= 3; s++)
                for (int H = 1; H <= 4; H++)
                    for (int W = 1; W <= 4; W++) {
                        am_conv2d_cfg c = {3, kk, kk, s, s, p, p, 0};
                        am_shape xs = am_shape4(2, 2, H, W), ys;
                        if (am_conv2d_out_shape(&c, xs, &ys) != AM_OK) continue;
                        am_tensor x, y;
                        assert_int_equal(am_tensor_alloc(&x, xs) | am_tensor_alloc(&y, ys), AM_OK);
                        float w[3 * 2 * 7 * 7];
                        for (size_t i = 0; i < am_shape_numel(xs); i++) x.d[i] = am_rng_normal(&rng);
                        for (int i = 0; i < 3 * 2 * kk * kk; i++) w[i] = am_rng_normal(&rng);
                        const size_t wn = am_conv2d_workspace(&c, xs);
                        float *work = am_aligned_alloc(sizeof(float) * wn);
                        assert_non_null(work);
                        assert_int_equal(am_conv2d_forward(&c, &x, w, NULL, &y, work, wn), AM_OK);
                        for (int n = 0; n < 2; n++)
                            for (int k = 0; k < 3; k++)
                                for (int oh = 0; oh < ys.h; oh++)
                                    for (int ow = 0; ow < ys.w; ow++) {
                                        const float r = ref_conv_at(&c, &x, w, n, k, oh, ow);
                                        const float v = y.d[(((size_t)n * 3 + k) * ys.h + oh) * ys.w + ow];
                                        assert_float_equal(v, r, 1e-4 * (1.0 + (r < 0 ? -r : r)));
                                    }
                        am_aligned_free(work), am_tensor_free(&x), am_tensor_free(&y);
                    }
}

/* One linear layer's forward and backward at batch N against double sums,
 * and at 1 thread against 2, bitwise. */
static void linear_case(int N, int IN, int O) {
    am_tensor x, y, y1, dy, dx, dx1;
    assert_int_equal(am_tensor_alloc(&x, am_shape4(N, IN, 1, 1)) | am_tensor_alloc(&dx, x.s) |
                         am_tensor_alloc(&dx1, x.s) | am_tensor_alloc(&y, am_shape4(N, O, 1, 1)) |
                         am_tensor_alloc(&y1, y.s) | am_tensor_alloc(&dy, y.s),
                     AM_OK);
    const size_t wn = (size_t)O * IN;
    float *w = malloc(sizeof(float) * wn), *dw = malloc(sizeof(float) * wn), *dw1 = malloc(sizeof(float) * wn);
    float *b = malloc(sizeof(float) * (size_t)O);
    assert_true(w && dw && dw1 && b);
    for (size_t i = 0; i < wn; i++) w[i] = am_rng_normal(&rng) * 0.03f;
    for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&rng);
    for (int o = 0; o < O; o++) b[o] = am_rng_normal(&rng);
    for (size_t i = 0; i < am_shape_numel(y.s); i++) dy.d[i] = am_rng_normal(&rng);
    const int nt = omp_get_max_threads();
    for (int pass = 0; pass < 2; pass++) {
        omp_set_num_threads(pass == 0 ? 1 : (nt > 1 ? nt : 2));
        am_tensor *yy = pass ? &y : &y1, *dd = pass ? &dx : &dx1;
        assert_int_equal(am_linear_forward(&x, w, b, O, yy), AM_OK);
        assert_int_equal(am_linear_backward(&x, w, &dy, dd, 0, pass ? dw : dw1, NULL), AM_OK);
    }
    omp_set_num_threads(nt);
    if (am_skinny_fits(N, IN, O)) { /* sgemm's sums may depend on its threads */
        assert_memory_equal(y.d, y1.d, sizeof(float) * am_shape_numel(y.s));
        assert_memory_equal(dw, dw1, sizeof(float) * wn);
    }
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o += 7) {
            double s = b[o], m = fabs(b[o]);
            for (int i = 0; i < IN; i++) {
                const double p = (double)x.d[(size_t)n * IN + i] * w[(size_t)o * IN + i];
                s += p, m += fabs(p);
            }
            assert_float_equal(y.d[(size_t)n * O + o], s, 1e-6 * m + 1e-6);
        }
    for (int o = 0; o < O; o += 5)
        for (int i = 0; i < IN; i += 3) {
            double s = 0, m = 0;
            for (int n = 0; n < N; n++) {
                const double p = (double)dy.d[(size_t)n * O + o] * x.d[(size_t)n * IN + i];
                s += p, m += fabs(p);
            }
            assert_float_equal(dw[(size_t)o * IN + i], s, 1e-6 * m + 1e-7);
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < IN; i += 11) {
            double s = 0, m = 0;
            for (int o = 0; o < O; o++) {
                const double p = (double)dy.d[(size_t)n * O + o] * w[(size_t)o * IN + i];
                s += p, m += fabs(p);
            }
            assert_float_equal(dx.d[(size_t)n * IN + i], s, 1e-6 * m + 1e-7);
        }
    am_tensor_free(&x), am_tensor_free(&y), am_tensor_free(&y1), am_tensor_free(&dy), am_tensor_free(&dx);
    am_tensor_free(&dx1), free(w), free(dw), free(dw1), free(b);
}

/* Shapes that take the small-batch kernels (2^20 weights or more, batch 8
 * or fewer: odd widths leave tails of every length mod 16, rows mod 3) and
 * one that does not (batch 9). */
static void t_linear_small_batch(void **st) {
    (void)st;
    am_rng_seed(&rng, 47);
    linear_case(8, 1031, 1025);
    linear_case(3, 1024, 1027);
    linear_case(1, 2049, 513);
    linear_case(9, 1024, 1024);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_pool3_exact),
        cmocka_unit_test(t_conv_narrow),
        cmocka_unit_test(t_linear_small_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
