/* Every op's forward and backward against PyTorch (tests/fixtures/ops.amfx
 * fused.amfx and wino.amfx, written by tests/gen_fixtures.py). Tolerance: 1e-5 absolute plus 1e-4
 * relative, float32 rounding of sums of a few hundred products. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "fixture.h"
#include "core/avx512.h"
#include "ops/winograd.h"

#define ATOL 1e-5
#define RTOL 1e-4

static fx_file F, FU, FW; /* ops.amfx, fused.amfx, wino.amfx */
static fx_file *cur = &F; /* the file tens and CLOSE read */

static am_tensor tens(const char *name) {
    const fx_tensor *t = fx_get(cur, name);
    int d[4] = {1, 1, 1, 1};
    if (t->ndim == 2) d[0] = t->dims[0], d[1] = t->dims[1];
    else if (t->ndim == 1) d[0] = t->dims[0];
    else for (int i = 0; i < t->ndim && i < 4; i++) d[i] = t->dims[i];
    am_tensor r = {am_shape4(d[0], d[1], d[2], d[3]), t->data};
    return r;
}

static am_tensor zeros(am_shape s) {
    am_tensor t;
    assert_int_equal(am_tensor_alloc(&t, s), AM_OK);
    return t;
}

#define CLOSE(what, got, name) \
    fx_close(what, (got), fx_f32(cur, name, 0), fx_get(cur, name)->numel, ATOL, RTOL)

static void t_conv(void **st) {
    (void)st;
    for (int i = 0; i < 9; i++) {
        char k[16], nm[64];
        snprintf(k, sizeof k, "conv%d", i);
#define N(s) (snprintf(nm, sizeof nm, "%s.%s", k, s), nm)
        const int32_t *c = fx_i32(&F, N("cfg"), 8);
        am_conv2d_cfg cfg = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]};
        am_tensor x = tens(N("x")), dy = tens(N("dy"));
        const float *w = fx_f32(&F, N("w"), 0);
        const float *b = cfg.bias ? fx_f32(&F, N("b"), 0) : NULL;
        am_shape ys;
        assert_int_equal(am_conv2d_out_shape(&cfg, x.s, &ys), AM_OK);
        assert_true(am_shape_eq(ys, dy.s));
        am_tensor y = zeros(ys), dx = zeros(x.s);
        size_t wn = am_conv2d_workspace(&cfg, x.s);
        float *work = am_aligned_alloc(wn * sizeof(float));
        float *dw = calloc(fx_get(&F, N("w"))->numel, sizeof(float)), db[64];
        assert_int_equal(am_conv2d_forward(&cfg, &x, w, b, &y, work, wn), AM_OK);
        CLOSE(k, y.d, N("y"));
        assert_int_equal(am_conv2d_backward(&cfg, &x, w, &dy, &dx, 0, dw, cfg.bias ? db : NULL, work, wn), AM_OK);
        CLOSE("conv dx", dx.d, N("dx"));
        CLOSE("conv dw", dw, N("dw"));
        if (cfg.bias) CLOSE("conv db", db, N("db"));
        if (am_conv3x3_fits(&cfg, x.s)) { /* conv0, 7, 8: the direct weight gradient too */
            size_t n3 = am_conv3x3_workspace(x.s);
            float *w3 = am_aligned_alloc(n3 * sizeof(float));
            assert_int_equal(am_conv3x3_dw(&cfg, &x, &dy, dw, w3, n3), AM_OK);
            CLOSE("conv3x3 dw", dw, N("dw"));
            if (am_conv3x3_fwd_fits(&cfg, x.s)) { /* and its forward pass, with AVX-512 */
                am_tensor y3 = zeros(ys);
                assert_int_equal(am_conv3x3_forward(&cfg, &x, w, b, &y3, w3, n3, NULL), AM_OK);
                CLOSE("conv3x3 forward", y3.d, N("y"));
                am_tensor_free(&y3);
            }
            am_aligned_free(w3);
        }
        am_tensor_free(&y);
        am_tensor_free(&dx);
        am_aligned_free(work);
        free(dw);
#undef N
    }
}

/* The direct 3x3 weight gradient against im2col + sgemm's (itself checked
 * against PyTorch above and by finite differences in test_grad): channel
 * counts up to its limit (4), output channels in blocks of 4 and single ones,
 * widths of one and several vectors; what it does not take is refused; and
 * am_conv2d_backward taking it for the weight gradient alone (bias too)
 * where it is faster. */
static void t_conv3x3(void **st) {
    (void)st;
    /* The last four: 5 to 8 channels, AVX-512's form alone (16 pixels a
     * register) where the processor has it, refused elsewhere; the last,
     * float sums over groups of 4 samples (256-pixel planes), 7 samples:
     * a whole group and a partial one. */
    const int cases[][5] = {{3, 1, 8, 8, 5},  {2, 4, 16, 6, 8}, {1, 2, 40, 3, 7}, {4, 4, 32, 32, 64},
                            {2, 3, 24, 9, 1}, {2, 8, 16, 5, 9}, {1, 5, 48, 4, 4}, {3, 7, 32, 3, 6},
                            {7, 6, 16, 16, 5}};
    am_rng rng;
    am_rng_seed(&rng, 7);
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int B = cases[t][0], C = cases[t][1], W = cases[t][2], H = cases[t][3], K = cases[t][4];
        am_conv2d_cfg cfg = {K, 3, 3, 1, 1, 1, 1, 0};
        am_tensor x = zeros(am_shape4(B, C, H, W)), dy = zeros(am_shape4(B, K, H, W));
        for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&rng);
        for (size_t i = 0; i < am_shape_numel(dy.s); i++) dy.d[i] = am_rng_normal(&rng);
        if (C > 4 && !am_has_avx512()) {
            assert_false(am_conv3x3_fits(&cfg, x.s));
            am_tensor_free(&x), am_tensor_free(&dy);
            continue;
        }
        assert_true(am_conv3x3_fits(&cfg, x.s));
        size_t wn = am_conv2d_workspace(&cfg, x.s), n3 = am_conv3x3_workspace(x.s);
        float *work = am_aligned_alloc((wn > n3 ? wn : n3) * sizeof(float));
        float *w = calloc((size_t)K * C * 9, sizeof(float)), *d1 = malloc(sizeof(float) * K * C * 9),
              *d2 = malloc(sizeof(float) * K * C * 9);
        am_tensor dx = zeros(x.s); /* asked for: im2col + sgemm, never the direct form */
        assert_int_equal(am_conv2d_backward(&cfg, &x, w, &dy, &dx, 0, d1, NULL, work, wn), AM_OK);
        am_tensor_free(&dx);
        for (int i = 0; i < K * C * 9; i++) d2[i] = NAN; /* written, not added to */
        assert_int_equal(am_conv3x3_dw(&cfg, &x, &dy, d2, work, n3), AM_OK);
        fx_close("conv3x3 dw", d2, d1, (size_t)K * C * 9, ATOL * sqrt((double)B * H * W), RTOL);
        assert_int_equal(am_conv3x3_dw(&cfg, &x, &dy, d2, work, n3 - 1), AM_EINVAL);
        am_tensor_free(&x), am_tensor_free(&dy);
        am_aligned_free(work);
        free(w), free(d1), free(d2);
    }
    {
        am_conv2d_cfg cfg = {6, 3, 3, 1, 1, 1, 1, 1};
        am_tensor x = zeros(am_shape4(2, 3, 5, 32)), dy = zeros(am_shape4(2, 6, 5, 32)), dx = zeros(x.s);
        for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&rng);
        for (size_t i = 0; i < am_shape_numel(dy.s); i++) dy.d[i] = am_rng_normal(&rng);
        size_t wn = am_conv2d_workspace_fast(&cfg, x.s);
        assert_true(wn >= am_conv3x3_workspace(x.s) && wn >= am_conv2d_workspace(&cfg, x.s));
        float *work = am_aligned_alloc(wn * sizeof(float)), w[6 * 27] = {0}, d1[6 * 27], d2[6 * 27], b1[6], b2[6];
        assert_int_equal(am_conv2d_backward(&cfg, &x, w, &dy, &dx, 0, d1, b1, work, wn), AM_OK);
        assert_int_equal(am_conv2d_backward(&cfg, &x, w, &dy, NULL, 0, d2, b2, work, wn), AM_OK);
        fx_close("first conv dw", d2, d1, 6 * 27, ATOL * 20, RTOL);
        fx_close("first conv db", b2, b1, 6, ATOL, RTOL);
        float d3[6 * 27]; /* it took the direct form: the same bits */
        assert_int_equal(am_conv3x3_dw(&cfg, &x, &dy, d3, work, wn), AM_OK);
        assert_memory_equal(d2, d3, sizeof d3);
        /* without a bias gradient: the weight gradient alone */
        for (int i = 0; i < 6 * 27; i++) d3[i] = NAN;
        am_conv2d_cfg nb = cfg;
        nb.bias = 0;
        assert_int_equal(am_conv2d_backward(&nb, &x, w, &dy, NULL, 0, d3, NULL, work, wn), AM_OK);
        assert_memory_equal(d2, d3, sizeof d3);
        am_tensor_free(&x), am_tensor_free(&dy), am_tensor_free(&dx);
        am_aligned_free(work);
    }
    am_conv2d_cfg s2 = {4, 3, 3, 2, 2, 1, 1, 0}, k5 = {4, 5, 5, 1, 1, 2, 2, 0}, c1 = {4, 3, 3, 1, 1, 1, 1, 0};
    assert_false(am_conv3x3_fits(&s2, am_shape4(1, 2, 16, 16)));
    assert_false(am_conv3x3_fits(&k5, am_shape4(1, 2, 16, 16)));
    assert_false(am_conv3x3_fits(&c1, am_shape4(1, 2, 16, 12)));
    assert_false(am_conv3x3_fits(&c1, am_shape4(1, 5, 16, 24))); /* over 4 channels: AVX-512's, 16 wide */
    assert_false(am_conv3x3_fits(&c1, am_shape4(1, 9, 16, 16)));
    assert_int_equal(am_conv3x3_fits(&c1, am_shape4(1, 8, 16, 16)), !!am_has_avx512());
}

static void t_bn(void **st) {
    (void)st;
    am_bn_cfg cfg = {1e-5f, 0.1f};
    float gamma[5], beta[5], rm[5], rv[5], sm[5], si[5], dg[5], dbt[5];
    memcpy(gamma, fx_f32(&F, "bn.gamma", 5), sizeof gamma);
    memcpy(beta, fx_f32(&F, "bn.beta", 5), sizeof beta);
    memcpy(rm, fx_f32(&F, "bn.rm0", 5), sizeof rm);
    memcpy(rv, fx_f32(&F, "bn.rv0", 5), sizeof rv);
    const char *mode[2] = {"bn.train.", "bn.eval."};
    for (int tr = 1; tr >= 0; tr--) {
        char nm[96];
#define N(s) (snprintf(nm, sizeof nm, "%s%s", mode[!tr], s), nm)
        am_tensor x = tens(N("x")), dy = tens(N("dy"));
        am_tensor y = zeros(x.s), dx = zeros(x.s);
        assert_int_equal(am_bn_forward(&cfg, tr, &x, gamma, beta, rm, rv, sm, si, &y), AM_OK);
        CLOSE("bn y", y.d, N("y"));
        if (tr) {
            CLOSE("bn running mean", rm, N("rm1"));
            CLOSE("bn running var", rv, N("rv1"));
        }
        assert_int_equal(am_bn_backward(&cfg, tr, &x, gamma, sm, si, &dy, &dx, 0, dg, dbt), AM_OK);
        CLOSE("bn dx", dx.d, N("dx"));
        CLOSE("bn dgamma", dg, N("dgamma"));
        CLOSE("bn dbeta", dbt, N("dbeta"));
        am_tensor_free(&y);
        am_tensor_free(&dx);
#undef N
    }
}

typedef enum { U_RELU, U_MAX, U_AVG, U_ADA } ukind;

static void unary(const char *k, ukind kind) {
    char nm[96];
#define N(s) (snprintf(nm, sizeof nm, "%s.%s", k, s), nm)
    am_tensor x = tens(N("x")), dy = tens(N("dy"));
    am_tensor y = zeros(dy.s), dx = zeros(x.s);
    am_pool_cfg pc = {0};
    if (kind == U_MAX || kind == U_AVG) {
        const int32_t *c = fx_i32(&F, N("cfg"), 7);
        pc = (am_pool_cfg){c[0], c[1], c[2], c[3], c[4], c[5], c[6]};
        am_shape ys;
        assert_int_equal(am_pool_out_shape(&pc, x.s, &ys), AM_OK);
        assert_true(am_shape_eq(ys, dy.s));
    }
    int32_t *am = calloc(am_shape_numel(y.s), sizeof(int32_t));
    switch (kind) {
    case U_RELU: assert_int_equal(am_relu_forward(&x, &y), AM_OK); break;
    case U_MAX: assert_int_equal(am_maxpool_forward(&pc, &x, &y, am), AM_OK); break;
    case U_AVG: assert_int_equal(am_avgpool_forward(&pc, &x, &y), AM_OK); break;
    case U_ADA: assert_int_equal(am_adaptive_avgpool_forward(&x, &y), AM_OK); break;
    }
    CLOSE(k, y.d, N("y"));
    switch (kind) {
    case U_RELU: assert_int_equal(am_relu_backward(&y, &dy, &dx, 0), AM_OK); break;
    case U_MAX: assert_int_equal(am_maxpool_backward(&pc, am, &dy, &dx, 0), AM_OK); break;
    case U_AVG: assert_int_equal(am_avgpool_backward(&pc, &dy, &dx, 0), AM_OK); break;
    case U_ADA: assert_int_equal(am_adaptive_avgpool_backward(&dy, &dx, 0), AM_OK); break;
    }
    CLOSE(k, dx.d, N("dx"));
    free(am);
    am_tensor_free(&y);
    am_tensor_free(&dx);
#undef N
}

static void t_unary(void **st) {
    (void)st;
    unary("relu", U_RELU);
    unary("maxpool0", U_MAX);
    unary("maxpool1", U_MAX);
    unary("maxpool2", U_MAX);
    unary("avgpool0", U_AVG);
    unary("avgpool1", U_AVG);
    unary("adaptive0", U_ADA);
    unary("adaptive1", U_ADA);
    unary("adaptive2", U_ADA);
}

static void t_linear_dropout_add_ce(void **st) {
    (void)st;
    am_tensor x = tens("linear.x"), dy = tens("linear.dy");
    am_tensor y = zeros(am_shape4(4, 5, 1, 1)), dx = zeros(x.s);
    float dw[60], db[5];
    assert_int_equal(am_linear_forward(&x, fx_f32(&F, "linear.w", 60), fx_f32(&F, "linear.b", 5), 5, &y), AM_OK);
    CLOSE("linear y", y.d, "linear.y");
    dy.s = y.s;
    assert_int_equal(am_linear_backward(&x, fx_f32(&F, "linear.w", 60), &dy, &dx, 0, dw, db), AM_OK);
    CLOSE("linear dx", dx.d, "linear.dx");
    CLOSE("linear dw", dw, "linear.dw");
    CLOSE("linear db", db, "linear.db");
    am_tensor_free(&y);
    am_tensor_free(&dx);

    x = tens("dropout.x");
    dy = tens("dropout.dy");
    y = zeros(x.s);
    dx = zeros(x.s);
    const float *mask = fx_f32(&F, "dropout.mask", am_shape_numel(x.s));
    assert_int_equal(am_dropout_forward(&x, mask, &y), AM_OK);
    CLOSE("dropout y", y.d, "dropout.y");
    assert_int_equal(am_dropout_backward(mask, &dy, &dx, 0), AM_OK);
    CLOSE("dropout dx", dx.d, "dropout.dx");
    am_tensor_free(&y);
    am_tensor_free(&dx);

    am_tensor a = tens("add.a"), b = tens("add.b");
    dy = tens("add.dy");
    y = zeros(a.s);
    dx = zeros(a.s);
    assert_int_equal(am_add_forward(&a, &b, &y), AM_OK);
    CLOSE("add y", y.d, "add.y");
    assert_int_equal(am_add_backward(&dy, &dx, 0), AM_OK);
    CLOSE("add da", dx.d, "add.da");
    CLOSE("add db", dx.d, "add.db");
    am_tensor_free(&y);
    am_tensor_free(&dx);

    am_tensor z = tens("ce.logits");
    dx = zeros(z.s);
    float probs[60], loss;
    assert_int_equal(am_softmax_ce_forward(&z, fx_i32(&F, "ce.labels", 6), probs, &loss), AM_OK);
    CLOSE("cross-entropy loss", &loss, "ce.loss");
    assert_int_equal(am_softmax_ce_backward(&z, fx_i32(&F, "ce.labels", 6), probs, &dx), AM_OK);
    CLOSE("cross-entropy dlogits", dx.d, "ce.dlogits");
    am_tensor_free(&dx);
}

/* Batchnorm (training), ReLU and the 3x3 stride-2 max-pool fused, against
 * PyTorch's three ops on planes where the four-output path and the edges
 * both run: the pooled output, running statistics and every gradient. */
static void t_bn_relu_pool3(void **st) {
    (void)st;
    cur = &FU;
    am_bn_cfg cfg = {1e-5f, 0.1f};
    const am_pool_cfg pc = {3, 3, 2, 2, 1, 1, 0};
    const am_bn_act act = {1, &pc};
    am_tensor x = tens("bnpool.x"), dy = tens("bnpool.dy");
    am_tensor y = zeros(dy.s), dx = zeros(x.s);
    const float *gamma = fx_f32(cur, "bnpool.gamma", 3), *beta = fx_f32(cur, "bnpool.beta", 3);
    float rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1}, sm[3], si[3], dg[3], db[3];
    uint32_t *bits = calloc(am_bn_act_bits_words(&act, x.s), sizeof(uint32_t));
    int32_t *amx = calloc(am_shape_numel(dy.s), sizeof(int32_t));
    assert_non_null(bits);
    assert_non_null(amx);
    assert_int_equal(am_bn_act_forward(&cfg, &act, 1, &x, NULL, gamma, beta, rm, rv, sm, si, NULL, bits, &y, amx),
                     AM_OK);
    CLOSE("bn relu pool3 y", y.d, "bnpool.y");
    CLOSE("bn relu pool3 running mean", rm, "bnpool.rm1");
    CLOSE("bn relu pool3 running var", rv, "bnpool.rv1");
    assert_int_equal(am_bn_act_backward(&cfg, &act, 1, &x, gamma, sm, si, bits, amx, &dy, &dx, 0, dg, db), AM_OK);
    CLOSE("bn relu pool3 dx", dx.d, "bnpool.dx");
    CLOSE("bn relu pool3 dgamma", dg, "bnpool.dgamma");
    CLOSE("bn relu pool3 dbeta", db, "bnpool.dbeta");
    am_tensor_free(&y), am_tensor_free(&dx), free(bits), free(amx);
    cur = &F;
}

/* The residual add and the ReLU after it in one pass each way, as a ResNet
 * block's end runs it: the sum over a, a's gradient masked in dy's buffer,
 * b's written, against PyTorch's relu(a + b). */
static void t_add_relu(void **st) {
    (void)st;
    cur = &FU;
    am_tensor a0 = tens("addrelu.a"), b = tens("addrelu.b"), dy0 = tens("addrelu.dy");
    am_tensor a = zeros(a0.s), dy = zeros(a0.s), db = zeros(a0.s);
    const size_t n = am_shape_numel(a.s);
    memcpy(a.d, a0.d, n * sizeof(float)), memcpy(dy.d, dy0.d, n * sizeof(float));
    uint32_t *bits = calloc((n + 31) / 32, sizeof(uint32_t));
    assert_non_null(bits);
    assert_int_equal(am_add_relu_forward(&a, &b, &a, bits), AM_OK);
    CLOSE("add relu y", a.d, "addrelu.y");
    assert_int_equal(am_add_relu_backward(bits, &dy, &db, 0), AM_OK);
    CLOSE("add relu da", dy.d, "addrelu.da");
    CLOSE("add relu db", db.d, "addrelu.db");
    am_tensor_free(&a), am_tensor_free(&dy), am_tensor_free(&db), free(bits);
}

/* A 3x3 conv by Winograd's F(4x4, 3x3) (the workspace for it given and
 * the shape one it takes), against PyTorch's conv: output, every gradient,
 * the input gradient also added to what was there. Its transforms round
 * more than a plain sum (winograd.c): the absolute tolerance is tens of
 * float ulps of the sum of the terms' magnitudes, about 20 for an output or
 * input gradient and 170 for a weight gradient here (test_winograd bounds
 * the error by that sum, element by element). */
#define CLOSE_W(what, got, name, atol) \
    fx_close(what, (got), fx_f32(cur, name, 0), fx_get(cur, name)->numel, atol, RTOL)
static void t_conv_wino(void **st) {
    (void)st;
    cur = &FW;
    const am_conv2d_cfg cfg = {17, 3, 3, 1, 1, 1, 1, 1};
    am_tensor x = tens("wino.x"), dy = tens("wino.dy");
    assert_true(am_wino_fits(&cfg, x.s));
    const size_t wn = am_conv2d_workspace_fast(&cfg, x.s), nx = am_shape_numel(x.s);
    assert_int_equal(am_conv2d_workspace_used(&cfg, x.s, wn, 0, 1), am_wino_workspace(&cfg, x.s));
    am_tensor y = zeros(dy.s), dx = zeros(x.s);
    float *work = am_aligned_alloc(wn * sizeof(float)), dw[17 * 16 * 9], db[17];
    assert_non_null(work);
    assert_int_equal(am_conv2d_forward(&cfg, &x, fx_f32(cur, "wino.w", 17 * 16 * 9), fx_f32(cur, "wino.b", 17), &y, work, wn),
                     AM_OK);
    CLOSE_W("wino y", y.d, "wino.y", 5e-5);
    for (size_t i = 0; i < nx; i++) dx.d[i] = 1.f;
    assert_int_equal(am_conv2d_backward(&cfg, &x, fx_f32(cur, "wino.w", 17 * 16 * 9), &dy, &dx, 1, dw, db, work, wn), AM_OK);
    for (size_t i = 0; i < nx; i++) dx.d[i] -= 1.f;
    CLOSE_W("wino dx", dx.d, "wino.dx", 5e-5);
    CLOSE_W("wino dw", dw, "wino.dw", 4e-4);
    CLOSE(("wino db"), db, "wino.db");
    am_tensor_free(&y), am_tensor_free(&dx), am_aligned_free(work);
    cur = &F;
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* run one test by name */
    fx_load(&F, "ops.amfx");
    fx_load(&FU, "fused.amfx");
    fx_load(&FW, "wino.amfx");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_conv),
        cmocka_unit_test(t_conv3x3),
        cmocka_unit_test(t_bn),
        cmocka_unit_test(t_unary),
        cmocka_unit_test(t_linear_dropout_add_ce),
        cmocka_unit_test(t_bn_relu_pool3),
        cmocka_unit_test(t_add_relu),
        cmocka_unit_test(t_conv_wino),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    fx_free(&F), fx_free(&FU), fx_free(&FW);
    return r;
}
