/* Every op's backward pass against central finite differences of its forward
 * pass. Table-driven: a case sets up inputs and says how to run forward and
 * backward; the harness perturbs every input element, compares, and also
 * checks that accum=1 adds to the input gradient instead of overwriting.
 *
 * Loss: L = sum(y * r) for a fixed random r, so dL/dy = r. Inputs are kept
 * away from kinks (ReLU at 0, max-pool ties) by more than the step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"

#define MAXIN 4
#define EPS 1e-3f

typedef struct fcase fcase;
struct fcase {
    const char *name;
    float eps;             /* the finite difference's step; 0: EPS */
    int nin;               /* differentiable inputs; input 0 is x */
    float *in[MAXIN];
    size_t len[MAXIN];
    float *g[MAXIN];       /* analytic gradients */
    am_tensor x, y, dy, dx;
    float *work;
    size_t work_n;
    void (*fwd)(fcase *);
    void (*bwd)(fcase *, int accum); /* dx from dy; parameter grads into g[1..] */
    /* op state */
    am_conv2d_cfg conv;
    am_pool_cfg pool;
    am_bn_cfg bn;
    int training, out_f;
    float rm[64], rv[64], sm[64], si[64];
    int32_t argmax[4096];
    float mask[4096];
    int32_t labels[16];
    float probs[4096];
};

static am_rng rng;

static float *rnd(size_t n, float scale) {
    float *p = am_aligned_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = scale * am_rng_normal(&rng);
    return p;
}

/* Values |v| >= 0.05 with distinct magnitudes spaced apart: no ReLU kinks
 * and no max-pool ties within a finite-difference step. */
static float *distinct(size_t n) {
    float *p = am_aligned_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = 0.05f + 0.01f * (float)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = am_rng_below(&rng, (uint32_t)(i + 1));
        float t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        if (am_rng_uniform(&rng) < 0.5f) p[i] = -p[i];
    return p;
}

static double loss_of(fcase *c, const float *r) {
    c->fwd(c);
    double s = 0;
    size_t n = am_shape_numel(c->y.s);
    for (size_t i = 0; i < n; i++) s += (double)c->y.d[i] * r[i];
    return s;
}

static void run_case(fcase *c) {
    size_t ny = am_shape_numel(c->y.s);
    float *r = rnd(ny, 1.f);
    c->in[0] = c->x.d;
    c->len[0] = am_shape_numel(c->x.s);
    assert_int_equal(am_tensor_alloc(&c->dy, c->y.s), AM_OK);
    assert_int_equal(am_tensor_alloc(&c->dx, c->x.s), AM_OK);
    for (int k = 0; k < c->nin; k++) c->g[k] = k ? am_aligned_alloc(c->len[k] * sizeof(float)) : c->dx.d;
    loss_of(c, r);
    memcpy(c->dy.d, r, ny * sizeof(float));
    c->bwd(c, 0);
    double worst = 0;
    const float eps = c->eps > 0 ? c->eps : EPS;
    for (int k = 0; k < c->nin; k++) {
        for (size_t i = 0; i < c->len[k]; i++) {
            float keep = c->in[k][i];
            c->in[k][i] = keep + eps;
            double lp = loss_of(c, r);
            c->in[k][i] = keep - eps;
            double lm = loss_of(c, r);
            c->in[k][i] = keep;
            double num = (lp - lm) / (2.0 * eps), ana = c->g[k][i];
            double err = fabs(num - ana) / (2e-3 + 1e-2 * fmax(fabs(num), fabs(ana)));
            if (err > worst) worst = err;
            if (err > 1.0) {
                print_error("%s: input %d element %zu: analytic %.6f numeric %.6f\n", c->name, k, i,
                            ana, num);
                fail();
            }
        }
    }
    /* accum = 1 adds to what is there. */
    size_t nx = c->len[0];
    float *first = malloc(nx * sizeof(float));
    memcpy(first, c->dx.d, nx * sizeof(float));
    for (size_t i = 0; i < nx; i++) c->dx.d[i] = 1.f;
    loss_of(c, r);
    c->bwd(c, 1);
    for (size_t i = 0; i < nx; i++) assert_float_equal(c->dx.d[i], first[i] + 1.f, 1e-5);
    free(first);
    free(r);
    for (int k = 1; k < c->nin; k++) am_aligned_free(c->g[k]);
    for (int k = 1; k < c->nin; k++) am_aligned_free(c->in[k]);
    am_tensor_free(&c->x);
    am_tensor_free(&c->y);
    am_tensor_free(&c->dy);
    am_tensor_free(&c->dx);
    am_aligned_free(c->work);
}

static void set_x(fcase *c, am_shape s, int kinks) {
    c->x.s = s;
    c->x.d = kinks ? distinct(am_shape_numel(s)) : rnd(am_shape_numel(s), 1.f);
}

/* ---------------------------------------------------------------- conv */
static void conv_fwd(fcase *c) {
    am_status s = am_conv2d_forward(&c->conv, &c->x, c->in[1], c->conv.bias ? c->in[2] : NULL,
                                    &c->y, c->work, c->work_n);
    if (s) print_error("%s\n", am_last_error());
    assert_int_equal(s, AM_OK);
}
static void conv_bwd(fcase *c, int accum) {
    assert_int_equal(am_conv2d_backward(&c->conv, &c->x, c->in[1], &c->dy, &c->dx, accum, c->g[1],
                                        c->conv.bias ? c->g[2] : NULL, c->work, c->work_n), AM_OK);
}
/* fast: the workspace for the faster forms (Winograd's where it fits), and
 * a larger step: a conv is linear, so the step adds no error of its own,
 * while at 1e-3 the rounding of Winograd's transforms moves the
 * difference quotient past the tolerance. */
static void conv_case_ws(const char *name, am_shape xs, am_conv2d_cfg cfg, int fast) {
    fcase c = {0};
    c.name = name;
    c.eps = fast ? 0.05f : 0.f;
    c.conv = cfg;
    set_x(&c, xs, 0);
    am_shape ys;
    assert_int_equal(am_conv2d_out_shape(&cfg, xs, &ys), AM_OK);
    assert_int_equal(am_tensor_alloc(&c.y, ys), AM_OK);
    c.nin = cfg.bias ? 3 : 2;
    c.len[1] = (size_t)cfg.out_c * xs.c * cfg.kh * cfg.kw;
    c.in[1] = rnd(c.len[1], 0.3f);
    c.len[2] = (size_t)cfg.out_c;
    if (cfg.bias) c.in[2] = rnd(c.len[2], 0.3f);
    c.work_n = fast ? am_conv2d_workspace_fast(&cfg, xs) : am_conv2d_workspace(&cfg, xs);
    c.work = am_aligned_alloc(c.work_n * sizeof(float));
    c.fwd = conv_fwd;
    c.bwd = conv_bwd;
    run_case(&c);
}
static void conv_case(const char *name, am_shape xs, am_conv2d_cfg cfg) { conv_case_ws(name, xs, cfg, 0); }

static void t_conv(void **st) {
    (void)st;
    conv_case("conv 3x3 s1 p1", am_shape4(2, 3, 5, 5), (am_conv2d_cfg){4, 3, 3, 1, 1, 1, 1, 1});
    conv_case("conv 3x3 s2 p1 nobias", am_shape4(2, 2, 6, 5), (am_conv2d_cfg){3, 3, 3, 2, 2, 1, 1, 0});
    conv_case("conv 1x1", am_shape4(3, 4, 3, 3), (am_conv2d_cfg){2, 1, 1, 1, 1, 0, 0, 1});
    conv_case("conv 1x1 s2", am_shape4(2, 3, 5, 5), (am_conv2d_cfg){2, 1, 1, 2, 2, 0, 0, 0});
    conv_case("conv 5x3 s(2,1) p(2,0)", am_shape4(2, 2, 7, 6), (am_conv2d_cfg){3, 5, 3, 2, 1, 2, 0, 1});
    conv_case("conv 7x7 s2 p3", am_shape4(1, 2, 9, 9), (am_conv2d_cfg){2, 7, 7, 2, 2, 3, 3, 0});
    /* 2x2 output planes: several samples per GEMM chunk. */
    conv_case("conv 3x3 on 2x2", am_shape4(5, 3, 2, 2), (am_conv2d_cfg){3, 3, 3, 1, 1, 1, 1, 1});
    /* Winograd's F(4x4, 3x3): partial tiles down and across. */
    conv_case_ws("conv 3x3 winograd", am_shape4(2, 16, 5, 7), (am_conv2d_cfg){17, 3, 3, 1, 1, 1, 1, 1}, 1);
}

/* ---------------------------------------------------------------- bn */
static void bn_fwd(fcase *c) {
    assert_int_equal(am_bn_forward(&c->bn, c->training, &c->x, c->in[1], c->in[2], c->rm, c->rv,
                                   c->sm, c->si, &c->y), AM_OK);
}
static void bn_bwd(fcase *c, int accum) {
    assert_int_equal(am_bn_backward(&c->bn, c->training, &c->x, c->in[1], c->sm, c->si,
                                    &c->dy, &c->dx, accum, c->g[1], c->g[2]), AM_OK);
}
static void bn_case(const char *name, am_shape xs, int training) {
    fcase c = {0};
    c.name = name;
    c.bn = (am_bn_cfg){1e-5f, 0.1f};
    c.training = training;
    set_x(&c, xs, 0);
    for (int i = 0; i < xs.n * xs.h * xs.w * xs.c; i++) c.x.d[i] = 2.f * c.x.d[i] + 0.5f;
    assert_int_equal(am_tensor_alloc(&c.y, xs), AM_OK);
    c.nin = 3;
    c.len[1] = c.len[2] = (size_t)xs.c;
    c.in[1] = rnd(xs.c, 1.f);
    c.in[2] = rnd(xs.c, 1.f);
    for (int i = 0; i < xs.c; i++) {
        c.rm[i] = 0.1f * (float)i;
        c.rv[i] = 1.f + 0.2f * (float)i;
    }
    c.fwd = bn_fwd;
    c.bwd = bn_bwd;
    run_case(&c);
}

static void t_bn(void **st) {
    (void)st;
    bn_case("bn train", am_shape4(3, 4, 3, 3), 1);
    bn_case("bn train 1x1", am_shape4(6, 3, 1, 1), 1);
    bn_case("bn eval", am_shape4(2, 3, 2, 3), 0);
}

/* ---------------------------------------------------------------- bn fused with relu, pool */
static uint32_t g_bits[4096];
static am_bn_act g_act;
static int g_moments; /* the producer's moments, or the op's own pass */
static void bnact_fwd(fcase *c) {
    double mo[2 * 256];
    const int planes = c->x.s.n * c->x.s.c;
    const size_t hw = (size_t)c->x.s.h * c->x.s.w;
    for (int i = 0; g_moments && i < planes; i++) am_plane_moments(c->x.d + i * hw, hw, mo + 2 * i);
    assert_int_equal(am_bn_act_forward(&c->bn, &g_act, c->training, &c->x, g_moments ? mo : NULL, c->in[1], c->in[2],
                                       c->rm, c->rv, c->sm, c->si, g_act.pool ? NULL : &c->y, g_act.relu ? g_bits : NULL,
                                       g_act.pool ? &c->y : NULL, c->argmax),
                     AM_OK);
}
static void bnact_bwd(fcase *c, int accum) {
    assert_int_equal(am_bn_act_backward(&c->bn, &g_act, c->training, &c->x, c->in[1], c->sm, c->si, g_bits, c->argmax,
                                        &c->dy, &c->dx, accum, c->g[1], c->g[2]), AM_OK);
}
/* Inputs spaced apart (no pool ties), and each channel's beta set so that
 * the ReLU's zero falls midway between two normalized values: no kink
 * within a finite-difference step of x, gamma or beta. */
static void bnact_case(const char *name, am_shape xs, int relu, const am_pool_cfg *pool, int training, int moments) {
    fcase c = {0};
    c.name = name;
    c.bn = (am_bn_cfg){1e-5f, 0.1f};
    c.training = training;
    g_act = (am_bn_act){relu, pool};
    g_moments = moments;
    set_x(&c, xs, 1);
    am_shape ys = xs;
    if (pool) assert_int_equal(am_pool_out_shape(pool, xs, &ys), AM_OK);
    assert_int_equal(am_tensor_alloc(&c.y, ys), AM_OK);
    c.nin = 3;
    c.len[1] = c.len[2] = (size_t)xs.c;
    c.in[1] = rnd(xs.c, 1.f);
    c.in[2] = rnd(xs.c, 0.f);
    for (int i = 0; i < xs.c; i++) {
        c.in[1][i] = 0.5f + fabsf(c.in[1][i]);
        c.rm[i] = 0.1f * (float)i;
        c.rv[i] = 1.f + 0.2f * (float)i;
    }
    const size_t hw = (size_t)xs.h * xs.w;
    am_bn_act plain = {0, NULL};
    am_tensor z;
    assert_int_equal(am_tensor_alloc(&z, xs), AM_OK);
    float rm[64], rv[64];
    memcpy(rm, c.rm, sizeof rm), memcpy(rv, c.rv, sizeof rv);
    assert_int_equal(am_bn_act_forward(&c.bn, &plain, training, &c.x, NULL, c.in[1], c.in[2], rm, rv, c.sm, c.si, &z,
                                       NULL, NULL, NULL), AM_OK);
    for (int ch = 0; ch < xs.c; ch++) {
        float neg = -1e30f, pos = 1e30f;
        for (int n = 0; n < xs.n; n++)
            for (size_t i = 0; i < hw; i++) {
                float v = z.d[((size_t)n * xs.c + ch) * hw + i];
                if (v <= 0.f && v > neg) neg = v;
                if (v > 0.f && v < pos) pos = v;
            }
        c.in[2][ch] = pos < 1e29f && neg > -1e29f ? -(neg + pos) / 2 : 0.f;
    }
    am_tensor_free(&z);
    c.fwd = bnact_fwd;
    c.bwd = bnact_bwd;
    run_case(&c);
}

static void t_bn_act(void **st) {
    (void)st;
    const am_pool_cfg p2 = {2, 2, 2, 2, 0, 0, 0}, p3 = {3, 3, 2, 2, 1, 1, 0}, pc = {2, 2, 2, 2, 0, 0, 1};
    bnact_case("bn (fused, own moments)", am_shape4(3, 4, 3, 3), 0, NULL, 1, 0);
    bnact_case("bn relu (fused, producer's moments)", am_shape4(3, 4, 3, 3), 1, NULL, 1, 1);
    bnact_case("bn relu, 7x5 planes", am_shape4(2, 3, 7, 5), 1, NULL, 1, 0);
    bnact_case("bn relu maxpool 2", am_shape4(2, 3, 6, 6), 1, &p2, 1, 1);
    bnact_case("bn relu maxpool 3 s2 p1", am_shape4(2, 2, 7, 7), 1, &p3, 1, 0);
    bnact_case("bn relu maxpool 2 ceil on 7", am_shape4(1, 3, 7, 7), 1, &pc, 1, 1);
    bnact_case("bn relu maxpool eval", am_shape4(2, 2, 6, 6), 1, &p2, 0, 0);
}

/* The fused kernel against the unfused chain (batchnorm, ReLU with bits,
 * max-pool), on random data with ties and NaN-free values: outputs, running
 * statistics, mask semantics and every gradient agree to float rounding. */
static void fused_vs_chain(am_shape xs, const am_pool_cfg *pool, int training, int accum) {
    const size_t n = am_shape_numel(xs), hw = (size_t)xs.h * xs.w;
    const int C = xs.c;
    am_bn_cfg cfg = {1e-5f, 0.1f};
    am_tensor x, y, y2, d, d2;
    am_shape ps = xs;
    if (pool) assert_int_equal(am_pool_out_shape(pool, xs, &ps), AM_OK);
    am_tensor py, py2, g;
    assert_int_equal(am_tensor_alloc(&x, xs) | am_tensor_alloc(&y, xs) | am_tensor_alloc(&y2, xs) |
                         am_tensor_alloc(&d, xs) | am_tensor_alloc(&d2, xs) | am_tensor_alloc(&py, ps) |
                         am_tensor_alloc(&py2, ps) | am_tensor_alloc(&g, ps), AM_OK);
    for (size_t i = 0; i < n; i++) x.d[i] = 3.f * am_rng_normal(&rng) + 1.f;
    for (size_t i = 0; i < n; i += 13) x.d[i] = x.d[i / 2]; /* ties */
    for (size_t i = 0; i < am_shape_numel(ps); i++) g.d[i] = am_rng_normal(&rng);
    float gm[64], bt[64], rm[64], rv[64], rm2[64], rv2[64], sm[64], si[64], sm2[64], si2[64];
    float dg[64], db[64], dg2[64], db2[64];
    for (int c = 0; c < C; c++) {
        gm[c] = am_rng_normal(&rng), bt[c] = am_rng_normal(&rng);
        rm[c] = rm2[c] = 0.1f * (float)c, rv[c] = rv2[c] = 1.f + 0.1f * (float)c;
    }
    double *mo = malloc(sizeof(double) * 2 * (size_t)xs.n * C);
    for (int i = 0; i < xs.n * C; i++) am_plane_moments(x.d + i * hw, hw, mo + 2 * i);
    uint32_t *bits = calloc(am_bn_act_bits_words(&(am_bn_act){1, pool}, xs), sizeof(uint32_t));
    uint32_t *cbits = calloc((n + 31) / 32, sizeof(uint32_t));
    int32_t *amx = calloc(am_shape_numel(ps), sizeof(int32_t)), *amx2 = calloc(am_shape_numel(ps), sizeof(int32_t));
    am_bn_act act = {1, pool};
    assert_int_equal(am_bn_act_forward(&cfg, &act, training, &x, training ? mo : NULL, gm, bt, rm, rv, sm, si,
                                       pool ? NULL : &y, bits, pool ? &py : NULL, amx), AM_OK);
    assert_int_equal(am_bn_forward(&cfg, training, &x, gm, bt, rm2, rv2, sm2, si2, &y2), AM_OK);
    assert_int_equal(am_relu_forward_bits(&y2, &y2, cbits), AM_OK);
    if (pool) assert_int_equal(am_maxpool_forward(pool, &y2, &py2, amx2), AM_OK);
    for (int c = 0; c < C; c++) {
        assert_float_equal(rm[c], rm2[c], 1e-5 * (1 + fabsf(rm2[c])));
        assert_float_equal(rv[c], rv2[c], 1e-5 * (1 + fabsf(rv2[c])));
        assert_float_equal(si[c], si2[c], 1e-5 * fabsf(si2[c]));
    }
    const float *a = pool ? py.d : y.d, *b = pool ? py2.d : y2.d;
    for (size_t i = 0; i < am_shape_numel(ps); i++) assert_float_equal(a[i], b[i], 1e-5 * (1 + fabsf(b[i])));
    if (pool) {
        for (size_t i = 0; i < am_shape_numel(ps); i++) assert_int_equal(amx[i], amx2[i]);
        /* The ReLU's output kept too (am_model_keep_outputs): the chain's, and the same pool. */
        am_tensor pk;
        assert_int_equal(am_tensor_alloc(&pk, ps), AM_OK);
        int32_t *amk = calloc(am_shape_numel(ps), sizeof(int32_t));
        float km[64], kv[64], ks[64], ki[64];
        memcpy(km, rm2, sizeof km), memcpy(kv, rv2, sizeof kv);
        assert_int_equal(am_bn_act_forward(&cfg, &act, training, &x, NULL, gm, bt, km, kv, ks, ki, &y, bits, &pk, amk),
                         AM_OK);
        for (size_t i = 0; i < n; i++) assert_float_equal(y.d[i], y2.d[i], 1e-5 * (1 + fabsf(y2.d[i])));
        assert_memory_equal(pk.d, py.d, am_shape_numel(ps) * sizeof(float));
        assert_memory_equal(amk, amx, am_shape_numel(ps) * sizeof(int32_t));
        am_tensor_free(&pk), free(amk);
    }
    for (size_t i = 0; i < n; i++) d.d[i] = d2.d[i] = accum ? (float)(i % 5) : 99.f;
    am_tensor *gr = &g;
    assert_int_equal(am_bn_act_backward(&cfg, &act, training, &x, gm, sm, si, bits, amx, gr, &d, accum, dg, db), AM_OK);
    /* The chain: the pool's gradient into y2's, the ReLU's, then batchnorm's. */
    am_tensor t;
    assert_int_equal(am_tensor_alloc(&t, xs), AM_OK);
    if (pool) assert_int_equal(am_maxpool_backward(pool, amx2, gr, &t, 0), AM_OK);
    else memcpy(t.d, g.d, n * sizeof(float));
    assert_int_equal(am_relu_backward_bits(cbits, &t, &t, 0), AM_OK);
    assert_int_equal(am_bn_backward(&cfg, training, &x, gm, sm2, si2, &t, &d2, accum, dg2, db2), AM_OK);
    for (int c = 0; c < C; c++) {
        assert_float_equal(dg[c], dg2[c], 1e-4 * (1 + fabsf(dg2[c])));
        assert_float_equal(db[c], db2[c], 1e-4 * (1 + fabsf(db2[c])));
    }
    for (size_t i = 0; i < n; i++) assert_float_equal(d.d[i], d2.d[i], 1e-4 * (1 + fabsf(d2.d[i])));
    am_tensor_free(&t), am_tensor_free(&x), am_tensor_free(&y), am_tensor_free(&y2), am_tensor_free(&d);
    am_tensor_free(&d2), am_tensor_free(&py), am_tensor_free(&py2), am_tensor_free(&g);
    free(mo), free(bits), free(cbits), free(amx), free(amx2);
}

static void t_bn_act_vs_chain(void **st) {
    (void)st;
    const am_pool_cfg p2 = {2, 2, 2, 2, 0, 0, 0}, p3 = {3, 3, 2, 2, 1, 1, 0}, pc = {2, 2, 2, 2, 0, 0, 1};
    const am_shape shapes[] = {am_shape4(4, 5, 28, 28), am_shape4(3, 7, 9, 11), am_shape4(2, 3, 56, 56)};
    for (int s = 0; s < 3; s++)
        for (int tr = 0; tr < 2; tr++) {
            fused_vs_chain(shapes[s], NULL, tr, s & 1);
            fused_vs_chain(shapes[s], &p2, tr, 0);
            fused_vs_chain(shapes[s], &p3, tr, 1);
            fused_vs_chain(shapes[s], &pc, tr, 0);
        }
}

/* ---------------------------------------------------------------- relu, add, dropout */
static void relu_fwd(fcase *c) { assert_int_equal(am_relu_forward(&c->x, &c->y), AM_OK); }
static void relu_bwd(fcase *c, int accum) {
    assert_int_equal(am_relu_backward(&c->y, &c->dy, &c->dx, accum), AM_OK);
}
static void drop_fwd(fcase *c) { assert_int_equal(am_dropout_forward(&c->x, c->mask, &c->y), AM_OK); }
static void drop_bwd(fcase *c, int accum) {
    assert_int_equal(am_dropout_backward(c->mask, &c->dy, &c->dx, accum), AM_OK);
}
static void add_fwd(fcase *c) {
    am_tensor b = {c->x.s, c->in[1]};
    assert_int_equal(am_add_forward(&c->x, &b, &c->y), AM_OK);
}
static void add_bwd(fcase *c, int accum) {
    assert_int_equal(am_add_backward(&c->dy, &c->dx, accum), AM_OK);
    am_tensor gb = {c->x.s, c->g[1]};
    assert_int_equal(am_add_backward(&c->dy, &gb, 0), AM_OK);
}

/* The add with its ReLU: the mask in g_bits; b = 1/2 a keeps
 * a + b away from the kink. Backward as the model runs it: dy masked in
 * place (a's gradient), the masked values written into b's. */
static uint32_t g_bits[4096];
static void addrelu_fwd(fcase *c) {
    am_tensor b = {c->x.s, c->in[1]};
    assert_int_equal(am_add_relu_forward(&c->x, &b, &c->y, g_bits), AM_OK);
}
static void addrelu_bwd(fcase *c, int accum) {
    const size_t n = am_shape_numel(c->x.s);
    am_tensor t = {c->x.s, am_aligned_alloc(n * sizeof(float))}, gb = {c->x.s, c->g[1]};
    memcpy(t.d, c->dy.d, n * sizeof(float));
    assert_int_equal(am_add_relu_backward(g_bits, &t, &gb, 0), AM_OK);
    for (size_t i = 0; i < n; i++) c->dx.d[i] = (accum ? c->dx.d[i] : 0.f) + t.d[i];
    am_aligned_free(t.d);
}

/* The fused add and ReLU against the chain (add, bit-mask ReLU; its
 * backward, the add's copy or sum into b's gradient), bit for bit, in
 * place over a as the model runs it, with b's gradient written, added to
 * or absent, over vector words, a short last word and parallel sizes. */
static void t_add_relu_vs_chain(void **st) {
    (void)st;
    const size_t sizes[] = {1, 31, 32, 33, 100, 70001};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        const size_t n = sizes[t], words = (n + 31) / 32;
        am_shape s = am_shape4(1, 1, 1, (int)n);
        am_tensor a, b, y, g, gb, d, db;
        assert_int_equal(am_tensor_alloc(&a, s) | am_tensor_alloc(&b, s) | am_tensor_alloc(&y, s) |
                             am_tensor_alloc(&g, s) | am_tensor_alloc(&gb, s) | am_tensor_alloc(&d, s) |
                             am_tensor_alloc(&db, s),
                         AM_OK);
        uint32_t *bits = calloc(words, sizeof *bits), *bits2 = calloc(words, sizeof *bits2);
        assert_true(bits && bits2);
        for (size_t i = 0; i < n; i++) {
            a.d[i] = am_rng_normal(&rng);
            b.d[i] = i % 5 == 0 ? -a.d[i] : am_rng_normal(&rng); /* sums of exactly 0 too */
        }
        assert_int_equal(am_add_forward(&a, &b, &y), AM_OK);
        assert_int_equal(am_relu_forward_bits(&y, &y, bits2), AM_OK);
        assert_int_equal(am_add_relu_forward(&a, &b, &a, bits), AM_OK); /* over a */
        assert_memory_equal(a.d, y.d, n * sizeof(float));
        assert_memory_equal(bits, bits2, words * sizeof *bits);
        for (int mode = 0; mode < 3; mode++) { /* b's gradient: written, added to, none */
            for (size_t i = 0; i < n; i++) {
                g.d[i] = d.d[i] = am_rng_normal(&rng);
                gb.d[i] = db.d[i] = (float)i;
            }
            assert_int_equal(am_relu_backward_bits(bits2, &d, &d, 0), AM_OK);
            if (mode < 2) assert_int_equal(am_add_backward(&d, &db, mode), AM_OK);
            assert_int_equal(am_add_relu_backward(bits, &g, mode < 2 ? &gb : NULL, mode == 1), AM_OK);
            assert_memory_equal(g.d, d.d, n * sizeof(float));
            assert_memory_equal(gb.d, db.d, n * sizeof(float));
        }
        assert_int_equal(am_add_relu_backward(bits, &g, &g, 0), AM_EINVAL); /* b's gradient cannot be dy */
        assert_int_equal(am_add_relu_forward(&a, &b, &y, NULL), AM_EINVAL);
        free(bits), free(bits2);
        am_tensor_free(&a), am_tensor_free(&b), am_tensor_free(&y), am_tensor_free(&g);
        am_tensor_free(&gb), am_tensor_free(&d), am_tensor_free(&db);
    }
}

/* The bit-mask ReLU the models use (vector words and a short last word,
 * serial and parallel sizes) against the plain one, exactly: zeros, -0 and a
 * NaN input give 0 like the plain one; a masked NaN gradient gives 0. */
static void t_relu_bits(void **st) {
    (void)st;
    const size_t sizes[] = {1, 31, 32, 33, 100, 70001};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        size_t n = sizes[t];
        am_tensor x, y, y2, g, d, d2;
        am_shape s = am_shape4(1, 1, 1, (int)n);
        assert_int_equal(am_tensor_alloc(&x, s) | am_tensor_alloc(&y, s) | am_tensor_alloc(&y2, s) |
                             am_tensor_alloc(&g, s) | am_tensor_alloc(&d, s) | am_tensor_alloc(&d2, s),
                         AM_OK);
        uint32_t *bits = calloc((n + 31) / 32, sizeof *bits);
        assert_non_null(bits);
        for (size_t i = 0; i < n; i++) {
            x.d[i] = i % 7 == 0 ? 0.f : i % 11 == 0 ? -0.f : am_rng_normal(&rng);
            g.d[i] = am_rng_normal(&rng);
        }
        if (n > 40) x.d[40] = NAN, g.d[39] = NAN, x.d[39] = -1.f;
        assert_int_equal(am_relu_forward_bits(&x, &y, bits), AM_OK);
        assert_int_equal(am_relu_forward(&x, &y2), AM_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(y.d[i] == y2.d[i] && !signbit(y.d[i]));
            assert_int_equal((bits[i / 32] >> (i % 32)) & 1u, x.d[i] > 0.f);
        }
        for (int accum = 0; accum < 2; accum++) {
            for (size_t i = 0; i < n; i++) d.d[i] = d2.d[i] = accum ? (float)i : 99.f;
            assert_int_equal(am_relu_backward_bits(bits, &g, &d, accum), AM_OK);
            for (size_t i = 0; i < n; i++) {
                float want = (accum ? d2.d[i] : 0.f) + (x.d[i] > 0.f ? g.d[i] : 0.f);
                assert_true(d.d[i] == want);
            }
        }
        free(bits);
        am_tensor_free(&x), am_tensor_free(&y), am_tensor_free(&y2);
        am_tensor_free(&g), am_tensor_free(&d), am_tensor_free(&d2);
    }
}

static void t_eltwise(void **st) {
    (void)st;
    am_shape s = am_shape4(2, 3, 4, 5);
    fcase c = {0};
    c.name = "relu";
    set_x(&c, s, 1);
    assert_int_equal(am_tensor_alloc(&c.y, s), AM_OK);
    c.nin = 1;
    c.fwd = relu_fwd;
    c.bwd = relu_bwd;
    run_case(&c);

    memset(&c, 0, sizeof c);
    c.name = "dropout";
    set_x(&c, s, 0);
    assert_int_equal(am_tensor_alloc(&c.y, s), AM_OK);
    assert_int_equal(am_dropout_mask(0.3f, &rng, c.mask, am_shape_numel(s)), AM_OK);
    c.nin = 1;
    c.fwd = drop_fwd;
    c.bwd = drop_bwd;
    run_case(&c);

    memset(&c, 0, sizeof c);
    c.name = "add";
    set_x(&c, s, 0);
    assert_int_equal(am_tensor_alloc(&c.y, s), AM_OK);
    c.nin = 2;
    c.len[1] = am_shape_numel(s);
    c.in[1] = rnd(c.len[1], 1.f);
    c.fwd = add_fwd;
    c.bwd = add_bwd;
    run_case(&c);

    memset(&c, 0, sizeof c);
    c.name = "add relu";
    set_x(&c, am_shape4(2, 3, 5, 7), 0); /* not whole words */
    for (size_t i = 0; i < am_shape_numel(c.x.s); i++) c.x.d[i] += c.x.d[i] < 0 ? -0.05f : 0.05f;
    assert_int_equal(am_tensor_alloc(&c.y, c.x.s), AM_OK);
    c.nin = 2;
    c.len[1] = am_shape_numel(c.x.s);
    c.in[1] = rnd(c.len[1], 1.f);
    for (size_t i = 0; i < c.len[1]; i++) c.in[1][i] = 0.5f * c.x.d[i];
    c.fwd = addrelu_fwd;
    c.bwd = addrelu_bwd;
    run_case(&c);
}

/* ---------------------------------------------------------------- pools */
static void maxp_fwd(fcase *c) {
    assert_int_equal(am_maxpool_forward(&c->pool, &c->x, &c->y, c->argmax), AM_OK);
}
static void maxp_bwd(fcase *c, int accum) {
    assert_int_equal(am_maxpool_backward(&c->pool, c->argmax, &c->dy, &c->dx, accum), AM_OK);
}
static void avgp_fwd(fcase *c) { assert_int_equal(am_avgpool_forward(&c->pool, &c->x, &c->y), AM_OK); }
static void avgp_bwd(fcase *c, int accum) {
    assert_int_equal(am_avgpool_backward(&c->pool, &c->dy, &c->dx, accum), AM_OK);
}
static void ada_fwd(fcase *c) { assert_int_equal(am_adaptive_avgpool_forward(&c->x, &c->y), AM_OK); }
static void ada_bwd(fcase *c, int accum) {
    assert_int_equal(am_adaptive_avgpool_backward(&c->dy, &c->dx, accum), AM_OK);
}

static void pool_case(const char *name, am_shape xs, am_pool_cfg cfg, int max) {
    fcase c = {0};
    c.name = name;
    c.pool = cfg;
    set_x(&c, xs, max);
    am_shape ys;
    assert_int_equal(am_pool_out_shape(&cfg, xs, &ys), AM_OK);
    assert_int_equal(am_tensor_alloc(&c.y, ys), AM_OK);
    c.nin = 1;
    c.fwd = max ? maxp_fwd : avgp_fwd;
    c.bwd = max ? maxp_bwd : avgp_bwd;
    run_case(&c);
}

static void t_pool(void **st) {
    (void)st;
    pool_case("maxpool 2", am_shape4(2, 2, 6, 6), (am_pool_cfg){2, 2, 2, 2, 0, 0, 0}, 1);
    pool_case("maxpool 3 s2 p1", am_shape4(2, 2, 7, 7), (am_pool_cfg){3, 3, 2, 2, 1, 1, 0}, 1);
    pool_case("maxpool 2 ceil on 7", am_shape4(1, 3, 7, 7), (am_pool_cfg){2, 2, 2, 2, 0, 0, 1}, 1);
    pool_case("avgpool 2", am_shape4(2, 2, 6, 6), (am_pool_cfg){2, 2, 2, 2, 0, 0, 0}, 0);
    pool_case("avgpool 3 s2 p1", am_shape4(2, 2, 7, 7), (am_pool_cfg){3, 3, 2, 2, 1, 1, 0}, 0);
    pool_case("avgpool 3 s2 p1 ceil", am_shape4(1, 2, 6, 6), (am_pool_cfg){3, 3, 2, 2, 1, 1, 1}, 0);
    const am_shape outs[] = {am_shape4(2, 3, 1, 1), am_shape4(2, 3, 3, 2)};
    for (int i = 0; i < 2; i++) {
        fcase c = {0};
        c.name = i ? "adaptive 3x2 on 7x5" : "global avgpool";
        set_x(&c, am_shape4(2, 3, 7, 5), 0);
        assert_int_equal(am_tensor_alloc(&c.y, outs[i]), AM_OK);
        c.nin = 1;
        c.fwd = ada_fwd;
        c.bwd = ada_bwd;
        run_case(&c);
    }
}

/* ---------------------------------------------------------------- linear, loss */
static void lin_fwd(fcase *c) {
    assert_int_equal(am_linear_forward(&c->x, c->in[1], c->in[2], c->out_f, &c->y), AM_OK);
}
static void lin_bwd(fcase *c, int accum) {
    assert_int_equal(am_linear_backward(&c->x, c->in[1], &c->dy, &c->dx, accum, c->g[1], c->g[2]), AM_OK);
}
static void ce_fwd(fcase *c) {
    assert_int_equal(am_softmax_ce_forward(&c->x, c->labels, c->probs, c->y.d), AM_OK);
}
static void ce_bwd(fcase *c, int accum) {
    /* The loss is a scalar: scale by dy and add for accum. */
    am_tensor g;
    assert_int_equal(am_tensor_alloc(&g, c->x.s), AM_OK);
    assert_int_equal(am_softmax_ce_backward(&c->x, c->labels, c->probs, &g), AM_OK);
    for (size_t i = 0; i < am_shape_numel(c->x.s); i++)
        c->dx.d[i] = (accum ? c->dx.d[i] : 0.f) + g.d[i] * c->dy.d[0];
    am_tensor_free(&g);
}

static void t_linear_loss(void **st) {
    (void)st;
    fcase c = {0};
    c.name = "linear (flattened 2x3x2 input)";
    set_x(&c, am_shape4(4, 2, 3, 2), 0);
    c.out_f = 5;
    assert_int_equal(am_tensor_alloc(&c.y, am_shape4(4, 5, 1, 1)), AM_OK);
    c.nin = 3;
    c.len[1] = 5 * 12;
    c.in[1] = rnd(c.len[1], 0.5f);
    c.len[2] = 5;
    c.in[2] = rnd(5, 0.5f);
    c.fwd = lin_fwd;
    c.bwd = lin_bwd;
    run_case(&c);

    memset(&c, 0, sizeof c);
    c.name = "softmax cross-entropy";
    set_x(&c, am_shape4(5, 7, 1, 1), 0);
    for (int i = 0; i < 5; i++) c.labels[i] = (int32_t)am_rng_below(&rng, 7);
    assert_int_equal(am_tensor_alloc(&c.y, am_shape4(1, 1, 1, 1)), AM_OK);
    c.nin = 1;
    c.fwd = ce_fwd;
    c.bwd = ce_bwd;
    run_case(&c);
}

/* ---------------------------------------------------------------- bad input */
static void t_bad_input(void **st) {
    (void)st;
    am_tensor x, y;
    assert_int_equal(am_tensor_alloc(&x, am_shape4(1, 2, 4, 4)), AM_OK);
    assert_int_equal(am_tensor_alloc(&y, am_shape4(1, 3, 4, 4)), AM_OK);
    float w[3 * 2 * 9] = {0}, work[4096];
    am_conv2d_cfg cfg = {3, 3, 3, 1, 1, 0, 0, 0}; /* no padding: output is 2x2, not 4x4 */
    assert_int_equal(am_conv2d_forward(&cfg, &x, w, NULL, &y, work, 4096), AM_EINVAL);
    assert_true(strstr(am_last_error(), "output") != NULL);
    cfg.ph = cfg.pw = 1;
    assert_int_equal(am_conv2d_forward(&cfg, &x, w, NULL, &y, work, 1), AM_EINVAL); /* workspace */
    cfg.kh = 0;
    assert_int_equal(am_conv2d_forward(&cfg, &x, w, NULL, &y, work, 4096), AM_EINVAL);
    assert_int_equal(am_relu_forward(&x, &y), AM_EINVAL);
    int32_t lab[1] = {5};
    float probs[4], loss;
    am_tensor lg = {am_shape4(1, 4, 1, 1), probs};
    assert_int_equal(am_softmax_ce_forward(&lg, lab, probs, &loss), AM_EINVAL);
    lab[0] = 1;
    float nan_logits[4] = {0, NAN, 0, 0};
    lg.d = nan_logits;
    assert_int_equal(am_softmax_ce_forward(&lg, lab, probs, &loss), AM_ENUM);
    am_bn_cfg bad = {0.f, 0.1f};
    float g[2] = {1, 1}, b[2] = {0, 0};
    assert_int_equal(am_bn_forward(&bad, 1, &x, g, b, g, g, b, b, &x), AM_EINVAL);
    assert_int_equal(am_dropout_mask(1.f, &rng, probs, 4), AM_EINVAL);
    am_tensor_free(&x);
    am_tensor_free(&y);
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* run one test by name */
    am_rng_seed(&rng, 1234);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_conv),      cmocka_unit_test(t_bn),          cmocka_unit_test(t_bn_act), cmocka_unit_test(t_bn_act_vs_chain),          cmocka_unit_test(t_eltwise),    cmocka_unit_test(t_relu_bits), cmocka_unit_test(t_add_relu_vs_chain),
        cmocka_unit_test(t_pool),      cmocka_unit_test(t_linear_loss), cmocka_unit_test(t_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
