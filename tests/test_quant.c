/* Quantized inference (issue 16, item 1) against PyTorch: BatchNorm folded
 * (torch.nn.utils.fusion.fuse_conv_bn_eval) and fixed point by PyTorch's
 * fake-quantize ops, on a small VGG-style and ResNet-style net whose
 * BatchNorm statistics are far from the defaults. Also: the exact integer
 * conv against a 64-bit integer reference, the exactness bound at every zoo
 * layer, the mode's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "boundary/backend.h"
#include "fixture.h"

static am_rng rng;

static int64_t rand_int(int64_t lim) { return (int64_t)(am_rng_u64(&rng) % (uint64_t)(2 * lim + 1)) - lim; }

/* conv over int64, the plain loop: the reference no BLAS touches. */
static void conv_ref(const am_conv2d_cfg *c, am_shape x, const int64_t *xi, const int64_t *wi, am_shape y,
                     int64_t *yi) {
    for (int n = 0; n < x.n; n++)
        for (int k = 0; k < c->out_c; k++)
            for (int oh = 0; oh < y.h; oh++)
                for (int ow = 0; ow < y.w; ow++) {
                    int64_t t = 0;
                    for (int ch = 0; ch < x.c; ch++)
                        for (int i = 0; i < c->kh; i++)
                            for (int j = 0; j < c->kw; j++) {
                                int ih = oh * c->sh - c->ph + i, iw = ow * c->sw - c->pw + j;
                                if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w) continue;
                                t += xi[(((size_t)n * x.c + ch) * x.h + ih) * x.w + iw] *
                                     wi[(((size_t)k * x.c + ch) * c->kh + i) * c->kw + j];
                            }
                    yi[(((size_t)n * c->out_c + k) * y.h + oh) * y.w + ow] = t;
                }
}

/* Integers up to xlim and wlim; every output equal, to the unit. */
static void exact_case(am_conv2d_cfg c, am_shape x, int64_t xlim, int64_t wlim) {
    am_shape y;
    assert_int_equal(am_conv2d_out_shape(&c, x, &y), AM_OK);
    size_t nx = am_shape_numel(x), ny = am_shape_numel(y), nw = (size_t)c.out_c * x.c * c.kh * c.kw;
    int64_t *xi = malloc(nx * 8), *wi = malloc(nw * 8), *yi = malloc(ny * 8);
    double *xd = malloc(nx * 8), *wd = malloc(nw * 8), *yd = malloc(ny * 8);
    size_t wn = am_conv2d_exact_workspace(&c, x);
    double *work = malloc(wn * 8);
    for (size_t i = 0; i < nx; i++) xd[i] = (double)(xi[i] = rand_int(xlim));
    for (size_t i = 0; i < nw; i++) wd[i] = (double)(wi[i] = rand_int(wlim));
    conv_ref(&c, x, xi, wi, y, yi);
    assert_int_equal(am_conv2d_exact(&c, x, xd, wd, yd, work, wn), AM_OK);
    for (size_t i = 0; i < ny; i++)
        if (yd[i] != (double)yi[i]) fail_msg("exact conv: output %zu is %.17g, not %lld", i, yd[i], (long long)yi[i]);
    assert_int_equal(am_conv2d_exact(&c, x, xd, wd, yd, work, wn - 1), AM_EINVAL);
    free(xi), free(wi), free(yi), free(xd), free(wd), free(yd), free(work);
}

static void t_exact_conv(void **st) {
    (void)st;
    am_rng_seed(&rng, 7);
    exact_case((am_conv2d_cfg){6, 3, 3, 1, 1, 1, 1, 0}, am_shape4(3, 5, 9, 7), 127, 127);
    exact_case((am_conv2d_cfg){4, 3, 3, 2, 2, 1, 1, 0}, am_shape4(2, 3, 10, 11), 127, 127);
    exact_case((am_conv2d_cfg){5, 5, 5, 1, 1, 2, 2, 0}, am_shape4(2, 2, 8, 8), 32767, 127);
    exact_case((am_conv2d_cfg){7, 1, 1, 1, 1, 0, 0, 0}, am_shape4(5, 40, 1, 1), 127, 127); /* a linear layer */
    /* Values mod p = 2^31 - 1, as blinding sends them, at a fan-in of 4608:
     * sums near 2^50, still exact. */
    exact_case((am_conv2d_cfg){3, 3, 3, 1, 1, 1, 1, 0}, am_shape4(1, 512, 3, 3), 1073741823, 127);
}

/* The exactness bounds, for every conv and linear layer of the zoo: at
 * 8-bit activations and weights the worst partial sum is far below 2^53
 * (where double stops being exact: quantized mode's bound) and below p/2
 * (blinding recovers W x from W x mod p); the accelerator's conv of
 * residues (|x + r| <= (p-1)/2) by 8-bit weights stays below 2^53. */
static void t_bound(void **st) {
    (void)st;
    static char desc[65536];
    const char *const *names = am_zoo_names();
    for (int z = 0; names[z]; z++) {
        int lenet = !strcmp(names[z], "lenet"), big = strstr(names[z], "imagenet") != NULL;
        am_shape in = lenet ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, big ? 224 : 32, big ? 224 : 32);
        assert_int_equal(am_zoo_describe(names[z], in, big ? 1000 : 10, desc, sizeof desc), AM_OK);
        am_model *m;
        assert_int_equal(am_model_create(desc, &m), AM_OK);
        double worst = 0, blind = 0;
        const double h = (AM_MODP - 1) / 2;
        for (int i = 0; i < am_model_num_params(m); i++) {
            am_param *p = am_model_param(m, i);
            if (p->kind != AM_P_WEIGHT) continue;
            am_conv2d_cfg c = {p->shape.n, p->shape.h, p->shape.w, 1, 1, 0, 0, 0};
            worst = fmax(worst, am_exact_bound(&c, p->shape.c, 127, AM_WEIGHT_MAX));
            blind = fmax(blind, am_exact_bound(&c, p->shape.c, h, AM_WEIGHT_MAX));
        }
        print_message("%-18s largest partial sums: 8 bits 2^%.1f, blinded 2^%.1f\n", names[z], log2(worst),
                      log2(blind));
        assert_true(worst < h);
        assert_true(blind < 9007199254740992.0);
        am_model_free(m);
    }
}

static const float *eval_logits(am_model *m, const float *x, int B) {
    am_shape in = am_model_input_shape(m);
    in.n = B;
    am_tensor t = {in, (float *)x};
    if (am_model_forward(m, &t, 0, NULL)) fail_msg("%s", am_last_error());
    return am_model_logits(m)->d;
}

static void quant_case(const char *file) {
    fx_file F;
    fx_load(&F, file);
    am_model *m = fx_params_model(&F, 4), *f;
    am_shape in = am_model_input_shape(m);
    const size_t per = am_shape_numel(in), nl = 4 * (size_t)am_model_num_classes(m);
    const float *x = fx_f32(&F, "x", 4 * per), *calib = fx_f32(&F, "calib", 8 * per);
    fx_close("float logits", eval_logits(m, x, 4), fx_f32(&F, "float_logits", nl), nl, 1e-5, 1e-4);
    int folded;
    assert_int_equal(am_model_fold_bn(m, &f, &folded), AM_OK);
    assert_int_equal(folded, fx_i32(&F, "folded", 1)[0]);
    assert_int_equal(am_model_set_batch(f, 4), AM_OK);
    fx_close("folded logits", eval_logits(f, x, 4), fx_f32(&F, "folded_logits", nl), nl, 1e-5, 1e-4);
    /* Quantized: calibrated on PyTorch's calibration batch (8 = two of 4). */
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_QUANTIZED;
    c.act_bits = fx_i32(&F, "bits", 1)[0];
    assert_int_equal(am_model_set_asym(f, &c, NULL), AM_OK);
    for (int b = 0; b < 2; b++) {
        am_tensor t = {am_shape4(4, in.c, in.h, in.w), (float *)calib + 4 * per * (size_t)b};
        if (am_model_calibrate(f, &t)) fail_msg("%s", am_last_error());
    }
    const float *ql = eval_logits(f, x, 4), *ref = fx_f32(&F, "quant_logits", nl);
    double err = fx_scaled_err(ql, ref, nl), moved = fx_scaled_err(ql, fx_f32(&F, "folded_logits", nl), nl);
    print_message("%s: quantized logits %.2g of scale from PyTorch's; quantization moved them %.2g\n", file, err,
                  moved);
    /* PyTorch's fake quantization computes in float32, ours exactly in
     * integers: the same fixed-point model within float rounding, well
     * below what quantization itself moves. */
    assert_true(err < 1e-4);
    assert_true(moved > 10 * err);
    /* Inference only. */
    int32_t lab[4] = {0, 1, 2, 3};
    float loss;
    assert_int_equal(am_model_loss(f, lab, &loss), AM_OK);
    assert_int_equal(am_model_backward(f), AM_EINVAL);
    am_tensor t = {am_shape4(4, in.c, in.h, in.w), (float *)x};
    assert_int_equal(am_model_forward(f, &t, 1, NULL), AM_EINVAL);
    am_model_free(f);
    am_model_free(m);
    fx_free(&F);
}

static void t_quant_vgg(void **st) {
    (void)st;
    quant_case("quant_vgg.amfx");
}

static void t_quant_resnet(void **st) {
    (void)st;
    quant_case("quant_resnet.amfx");
}

/* Without am_model_calibrate the first batch calibrates; 16-bit
 * activations come closer to float than 8-bit ones (the 8-bit weights
 * then dominate what is left); bad settings refused. */
static void t_settings(void **st) {
    (void)st;
    fx_file F;
    fx_load(&F, "quant_vgg.amfx");
    am_model *m = fx_params_model(&F, 4), *f;
    const size_t per = am_shape_numel(am_model_input_shape(m)), nl = 40;
    const float *x = fx_f32(&F, "x", 4 * per), *fl = fx_f32(&F, "folded_logits", nl);
    assert_int_equal(am_model_fold_bn(m, &f, NULL), AM_OK);
    assert_int_equal(am_model_set_batch(f, 4), AM_OK);
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_QUANTIZED;
    double err[2];
    for (int i = 0; i < 2; i++) {
        c.act_bits = i ? 16 : 8;
        assert_int_equal(am_model_set_asym(f, &c, NULL), AM_OK);
        err[i] = fx_scaled_err(eval_logits(f, x, 4), fl, nl);
    }
    print_message("self-calibrated: 8 bits %.2g, 16 bits %.2g of the float logits' scale\n", err[0], err[1]);
    assert_true(err[1] < err[0]);
    assert_true(err[0] < 0.05);
    c.act_bits = 17;
    assert_int_equal(am_model_set_asym(f, &c, NULL), AM_EINVAL);
    c.act_bits = 1;
    assert_int_equal(am_model_set_asym(f, &c, NULL), AM_EINVAL);
    am_asym_cfg t = am_asym_defaults();
    t.mode = AM_MODE_TEE_ONLY;
    assert_int_equal(am_model_set_asym(f, &t, NULL), AM_OK);
    am_tensor b = {am_shape4(4, 3, 16, 16), (float *)x};
    assert_int_equal(am_model_calibrate(f, &b), AM_EINVAL);
    am_model_free(f);
    am_model_free(m);
    fx_free(&F);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_exact_conv), cmocka_unit_test(t_bound),    cmocka_unit_test(t_quant_vgg),
        cmocka_unit_test(t_quant_resnet), cmocka_unit_test(t_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
