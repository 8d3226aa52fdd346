/* The 3x3 convolution by Winograd's F(4x4, 3x3) (src/ops/winograd.c),
 * taken through am_conv2d_* with am_conv2d_workspace_fast's workspace:
 * forward (with bias and the planes' moments), input gradient (written and
 * added to) and weight gradient against sums in double, on planes whose
 * sides are and are not multiples of 4, chunks of tile rows that split a
 * sample, and the same bits at 1 and 2 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "ops/winograd.h"

static am_rng rng;

static float *filled(size_t n, float scale) {
    float *p = am_aligned_alloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = am_rng_normal(&rng) * scale;
    return p;
}

/* Index of (n, c, h, w) in an NCHW tensor. */
static size_t at(am_shape s, int n, int c, int h, int w) { return (((size_t)n * s.c + c) * s.h + h) * s.w + w; }

/* The error allowed against a sum in double whose terms' magnitudes add up
 * to m: the transforms' rounding, a few tens of float ulps of m. */
static double tol(double m) { return 1e-5 * m + 1e-6; }

typedef struct wcase {
    am_conv2d_cfg c;
    am_shape xs;
    am_tensor x, y, dy, dx;
    float *w, *b, *dw, *work;
    size_t wn;
} wcase;

static void run(wcase *t, int threads, float *y, float *dx, float *dw, const float *dx0) {
    const int nt = omp_get_max_threads();
    omp_set_num_threads(threads);
    am_tensor ty = {t->y.s, y}, tdx = {t->xs, dx};
    double *mom = malloc(sizeof(double) * 2 * (size_t)t->xs.n * t->c.out_c);
    assert_non_null(mom);
    assert_int_equal(am_conv2d_forward_moments(&t->c, &t->x, t->w, t->b, &ty, t->work, t->wn, mom), AM_OK);
    const size_t P = (size_t)t->y.s.h * t->y.s.w;
    for (int pl = 0; pl < t->xs.n * t->c.out_c; pl++) { /* the moments are of the output written */
        double ref[2];
        am_plane_moments(y + (size_t)pl * P, P, ref);
        assert_memory_equal(ref, mom + 2 * pl, sizeof ref);
    }
    free(mom);
    memcpy(dx, dx0, sizeof(float) * am_shape_numel(t->xs));
    float db[64];
    assert_true(t->c.out_c <= 64);
    assert_int_equal(am_conv2d_backward(&t->c, &t->x, t->w, &t->dy, &tdx, 1, dw, db, t->work, t->wn), AM_OK);
    omp_set_num_threads(nt);
}

static void check(const wcase *t, const float *y, const float *dx, const float *dx0, const float *dw) {
    const am_shape xs = t->xs, ys = t->y.s;
    const int C = xs.c, K = ys.c;
    for (int n = 0; n < xs.n; n++)
        for (int k = 0; k < K; k++)
            for (int h = 0; h < ys.h; h++)
                for (int v = 0; v < ys.w; v++) {
                    double s = t->b[k], m = fabs(t->b[k]);
                    for (int c = 0; c < C; c++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++) {
                                const int ih = h + i - 1, iw = v + j - 1;
                                if (ih < 0 || ih >= xs.h || iw < 0 || iw >= xs.w) continue;
                                const double p = (double)t->x.d[at(xs, n, c, ih, iw)] * t->w[((k * C + c) * 3 + i) * 3 + j];
                                s += p, m += fabs(p);
                            }
                    assert_float_equal(y[at(ys, n, k, h, v)], s, tol(m));
                }
    for (int n = 0; n < xs.n; n++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < xs.h; h++)
                for (int v = 0; v < xs.w; v++) {
                    double s = dx0[at(xs, n, c, h, v)], m = fabs(s);
                    for (int k = 0; k < K; k++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++) {
                                const int oh = h - i + 1, ow = v - j + 1;
                                if (oh < 0 || oh >= ys.h || ow < 0 || ow >= ys.w) continue;
                                const double p = (double)t->dy.d[at(ys, n, k, oh, ow)] * t->w[((k * C + c) * 3 + i) * 3 + j];
                                s += p, m += fabs(p);
                            }
                    assert_float_equal(dx[at(xs, n, c, h, v)], s, tol(m));
                }
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double s = 0, m = 0;
                    for (int n = 0; n < xs.n; n++)
                        for (int h = 0; h < ys.h; h++)
                            for (int v = 0; v < ys.w; v++) {
                                const int ih = h + i - 1, iw = v + j - 1;
                                if (ih < 0 || ih >= xs.h || iw < 0 || iw >= xs.w) continue;
                                const double p = (double)t->dy.d[at(ys, n, k, h, v)] * t->x.d[at(xs, n, c, ih, iw)];
                                s += p, m += fabs(p);
                            }
                    assert_float_equal(dw[((k * C + c) * 3 + i) * 3 + j], s, tol(m));
                }
}

static void wino_case(int B, int C, int K, int H, int W) {
    wcase t = {.c = {K, 3, 3, 1, 1, 1, 1, 1}, .xs = am_shape4(B, C, H, W)};
    assert_true(am_wino_fits(&t.c, t.xs));
    assert_int_equal(am_tensor_alloc(&t.x, t.xs) | am_tensor_alloc(&t.y, am_shape4(B, K, H, W)) |
                         am_tensor_alloc(&t.dy, t.y.s),
                     AM_OK);
    const size_t nx = am_shape_numel(t.xs), ny = am_shape_numel(t.y.s), nw = (size_t)K * C * 9;
    for (size_t i = 0; i < nx; i++) t.x.d[i] = am_rng_normal(&rng);
    for (size_t i = 0; i < ny; i++) t.dy.d[i] = am_rng_normal(&rng);
    t.w = filled(nw, 0.3f), t.b = filled((size_t)K, 1.f);
    t.wn = am_conv2d_workspace_fast(&t.c, t.xs);
    assert_int_equal(am_conv2d_workspace_used(&t.c, t.xs, t.wn, 1, 1), am_wino_workspace(&t.c, t.xs));
    t.work = filled(t.wn, 1.f); /* not zeroed: nothing may read it before writing */
    float *dx0 = filled(nx, 1.f), *y1 = filled(ny, 0), *y2 = filled(ny, 0), *dx1 = filled(nx, 0),
          *dx2 = filled(nx, 0), *dw1 = filled(nw, 0), *dw2 = filled(nw, 0);
    run(&t, 1, y1, dx1, dw1, dx0);
    run(&t, omp_get_max_threads() > 1 ? 2 : 1, y2, dx2, dw2, dx0); /* the workspace has room for as many */
    assert_memory_equal(y1, y2, sizeof(float) * ny);
    assert_memory_equal(dx1, dx2, sizeof(float) * nx);
    assert_memory_equal(dw1, dw2, sizeof(float) * nw);
    check(&t, y2, dx2, dx0, dw2);
    am_tensor_free(&t.x), am_tensor_free(&t.y), am_tensor_free(&t.dy);
    float *all[] = {t.w, t.b, t.work, dx0, y1, y2, dx1, dx2, dw1, dw2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) am_aligned_free(all[i]);
}

static void t_wino_definition(void **st) {
    (void)st;
    am_rng_seed(&rng, 53);
    wino_case(2, 16, 16, 16, 16); /* whole tiles */
    wino_case(2, 17, 19, 17, 19); /* a partial tile on both sides; channels past the last 8 */
    wino_case(3, 16, 24, 18, 23);
    wino_case(1, 23, 16, 22, 16);
    wino_case(4, 16, 16, 4, 4); /* one tile a plane */
    wino_case(2, 16, 17, 5, 7);
}

/* The widest plane it takes (128 tiles across), with a chunk of tile rows
 * (28 here) that ends inside a sample (30 tile rows). */
static void t_wino_chunks(void **st) {
    (void)st;
    am_rng_seed(&rng, 59);
    wino_case(2, 16, 16, 118, 512);
}

static void t_wino_shapes(void **st) {
    (void)st;
    am_conv2d_cfg c = {16, 3, 3, 1, 1, 1, 1, 0};
    assert_true(am_wino_fits(&c, am_shape4(1, 16, 4, 4)));
    assert_true(am_wino_fits(&c, am_shape4(1, 128, 4, 512)));
    assert_false(am_wino_fits(&c, am_shape4(1, 16, 3, 16))); /* im2col there */
    assert_false(am_wino_fits(&c, am_shape4(1, 16, 16, 516)));
    assert_false(am_wino_fits(&c, am_shape4(1, 15, 16, 16)));
    assert_false(am_wino_fits(&c, am_shape4(1, 129, 16, 16)));
    c.out_c = 15;
    assert_false(am_wino_fits(&c, am_shape4(1, 16, 16, 16)));
    c.out_c = 16, c.sh = c.sw = 2;
    assert_false(am_wino_fits(&c, am_shape4(1, 16, 16, 16)));
    c.sh = c.sw = 1, c.ph = c.pw = 0;
    assert_false(am_wino_fits(&c, am_shape4(1, 16, 16, 16)));
    /* A workspace too small for it takes im2col, and says so. */
    c.ph = c.pw = 1;
    const am_shape xs = am_shape4(4, 64, 64, 64);
    const size_t im = am_conv2d_workspace(&c, xs);
    assert_true(am_wino_workspace(&c, xs) > 0);
    if (im < am_wino_workspace(&c, xs)) assert_int_equal(am_conv2d_workspace_used(&c, xs, im, 0, 1), im);
}

/* Winograd's workspace alone, smaller than im2col's, is enough: the form
 * is chosen before im2col's need is checked. */
static void t_wino_workspace_only(void **st) {
    (void)st;
    am_rng_seed(&rng, 67);
    const am_conv2d_cfg c = {64, 3, 3, 1, 1, 1, 1, 1};
    const am_shape xs = am_shape4(4, 64, 16, 16);
    const size_t wn = am_wino_workspace(&c, xs);
    assert_true(wn < am_conv2d_workspace(&c, xs));
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wn, 0, 1), wn);
    am_tensor x, y, dy, dx;
    assert_int_equal(am_tensor_alloc(&x, xs) | am_tensor_alloc(&dx, xs) | am_tensor_alloc(&y, xs) |
                         am_tensor_alloc(&dy, xs),
                     AM_OK);
    float *w = filled((size_t)64 * 64 * 9, 0.1f), *b = filled(64, 1.f), *dw = filled((size_t)64 * 64 * 9, 0),
          *work = filled(wn, 1.f), db[64];
    for (size_t i = 0; i < am_shape_numel(xs); i++) x.d[i] = am_rng_normal(&rng), dy.d[i] = am_rng_normal(&rng);
    assert_int_equal(am_conv2d_forward(&c, &x, w, b, &y, work, wn), AM_OK);
    assert_int_equal(am_conv2d_backward(&c, &x, w, &dy, &dx, 0, dw, db, work, wn), AM_OK);
    for (int k = 0; k < 64; k++) { /* the bias gradient, summed apart */
        double s = 0, m = 0;
        for (int n = 0; n < 4; n++)
            for (int p = 0; p < 256; p++) {
                const double g = dy.d[((size_t)n * 64 + k) * 256 + p];
                s += g, m += fabs(g);
            }
        assert_float_equal(db[k], s, 1e-6 * m);
    }
    am_tensor_free(&x), am_tensor_free(&dx), am_tensor_free(&y), am_tensor_free(&dy);
    am_aligned_free(w), am_aligned_free(b), am_aligned_free(dw), am_aligned_free(work);
}

/* One side 16 times the other (a split conv's low-rank part): Winograd's
 * form for the weight gradient alone, im2col for the rest; the weight
 * gradient against sums in double. */
static void t_wino_dw_only(void **st) {
    (void)st;
    am_rng_seed(&rng, 71);
    const am_conv2d_cfg c = {256, 3, 3, 1, 1, 1, 1, 0};
    const am_shape xs = am_shape4(2, 16, 9, 8), ys = am_shape4(2, 256, 9, 8);
    assert_false(am_wino_fits(&c, xs));
    assert_true(am_wino_fits_dw(&c, xs));
    const size_t wn = am_conv2d_workspace_fast(&c, xs);
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wn, 1, 0), am_wino_workspace(&c, xs));
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wn, 0, 1), am_conv2d_workspace(&c, xs));
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wn, 1, 1), am_conv2d_workspace(&c, xs));
    am_tensor x, dy;
    assert_int_equal(am_tensor_alloc(&x, xs) | am_tensor_alloc(&dy, ys), AM_OK);
    for (size_t i = 0; i < am_shape_numel(xs); i++) x.d[i] = am_rng_normal(&rng);
    for (size_t i = 0; i < am_shape_numel(ys); i++) dy.d[i] = am_rng_normal(&rng);
    const size_t nw = (size_t)256 * 16 * 9;
    float *w = filled(nw, 0.1f), *dw = filled(nw, 0), *work = filled(wn, 1.f);
    assert_int_equal(am_conv2d_backward(&c, &x, w, &dy, NULL, 0, dw, NULL, work, wn), AM_OK);
    for (int k = 0; k < 256; k++)
        for (int ch = 0; ch < 16; ch++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double s = 0, m = 0;
                    for (int n = 0; n < 2; n++)
                        for (int h = 0; h < 9; h++)
                            for (int v = 0; v < 8; v++) {
                                const int ih = h + i - 1, iw = v + j - 1;
                                if (ih < 0 || ih >= 9 || iw < 0 || iw >= 8) continue;
                                const double p = (double)dy.d[at(ys, n, k, h, v)] * x.d[at(xs, n, ch, ih, iw)];
                                s += p, m += fabs(p);
                            }
                    assert_float_equal(dw[((k * 16 + ch) * 3 + i) * 3 + j], s, tol(m));
                }
    am_tensor_free(&x), am_tensor_free(&dy), am_aligned_free(w), am_aligned_free(dw), am_aligned_free(work);
}

/* What a pass reports touching follows the form it takes: a first conv over
 * RGB computes its weight gradient directly in the backward pass, and its
 * forward pass directly where the processor has AVX-512. */
static void t_workspace_used(void **st) {
    (void)st;
    const am_conv2d_cfg c = {16, 3, 3, 1, 1, 1, 1, 0};
    const am_shape xs = am_shape4(2, 3, 32, 32);
    const size_t wf = am_conv2d_workspace_fast(&c, xs);
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wf, 0, 0),
                     am_conv3x3_fwd_fits(&c, xs) ? am_conv3x3_workspace(xs) : am_conv2d_workspace(&c, xs));
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wf, 1, 0), am_conv3x3_workspace(xs));
    assert_int_equal(am_conv2d_workspace_used(&c, xs, wf, 1, 1), am_conv2d_workspace(&c, xs));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_wino_definition),
        cmocka_unit_test(t_wino_chunks),
        cmocka_unit_test(t_wino_shapes),
        cmocka_unit_test(t_wino_workspace_only),
        cmocka_unit_test(t_workspace_used),
        cmocka_unit_test(t_wino_dw_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
