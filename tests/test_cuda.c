/* The CUDA backend against the CPU backend: each request kind on a range of
 * conv shapes, the keep hints, chunked requests, one training step of
 * every zoo model in asymml mode, and gpu-only mode's ops through a few
 * models' steps. Where this build has no CUDA backend or
 * no GPU is visible, the test says why and exits 77 (CTest: skipped).
 *
 * Precision: the backend lets cuDNN use TF32 tensor cores (10-bit
 * mantissa, PyTorch's default), which would move results by about 1e-3 of
 * scale and, through BatchNorm over few values, gradients by more. The test
 * turns TF32 off (NVIDIA_TF32_OVERRIDE=0, read by cuDNN) so that the GPU and
 * the CPU differ by FP32 rounding only: a wrong index, chunk or stale copy
 * would be off by the output's scale. */
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
#include "boundary/backend.h"
#include "untrusted/cpu_backend.h"
#include "untrusted/cuda/cuda_backend.h"

#define OP_BOUND 1e-3

static am_rng rng;

/* Runs one request of kind k on backend be with the given inputs; the
 * output is copied to out. keep: the AM_KEEP_* bits to pass. */
static void run_req(am_backend *be, am_req_kind k, const am_conv2d_cfg *c, am_shape x, const float *in0, size_t n0,
                    const float *in1, size_t n1, float *out, size_t no, int layer, unsigned keep) {
    float *b0, *b1, *bo;
    int r0 = k == AM_REQ_CONV_BWD_DATA ? AM_BUF_GRAD : AM_BUF_INPUT;
    int r1 = k == AM_REQ_CONV_BWD_FILTER ? AM_BUF_GRAD : AM_BUF_WEIGHT;
    int ro = k == AM_REQ_CONV_FWD ? AM_BUF_OUTPUT : k == AM_REQ_CONV_BWD_DATA ? AM_BUF_DX : AM_BUF_DW;
    assert_int_equal(be->vt->buffer(be, layer, (am_buf_role)r0, n0, &b0), AM_OK);
    assert_int_equal(be->vt->buffer(be, layer, (am_buf_role)r1, n1, &b1), AM_OK);
    assert_int_equal(be->vt->buffer(be, layer, (am_buf_role)ro, no, &bo), AM_OK);
    if (!(keep & AM_KEEP_IN0)) memcpy(b0, in0, n0 * sizeof(float));
    if (!(keep & AM_KEEP_IN1)) memcpy(b1, in1, n1 * sizeof(float));
    am_req q = {k, layer, *c, x, b0, b1, bo, keep, AM_CROSS_RESIDUAL, AM_CROSS_WEIGHTS, 0, 0};
    if (be->vt->submit(be, &q) != AM_OK || be->vt->wait(be) != AM_OK) fail_msg("%s: %s", be->vt->name, am_last_error());
    memcpy(out, bo, no * sizeof(float));
}

static void fill(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = am_rng_normal(&rng);
}

typedef struct shape_case {
    int n, c, h, w, k, kh, kw, s, p;
} shape_case;

static void t_ops(void **st) {
    am_backend *gpu = *st, *cpu;
    assert_int_equal(am_cpu_backend_create(&cpu), AM_OK);
    const shape_case cases[] = {
        {2, 3, 32, 32, 16, 3, 3, 1, 1},  /* a first conv */
        {4, 64, 16, 16, 64, 3, 3, 1, 1}, /* VGG-like */
        {3, 32, 15, 15, 48, 3, 3, 2, 1}, /* stride 2, odd size */
        {2, 64, 8, 8, 128, 1, 1, 2, 0},  /* ResNet's 1x1 shortcut */
        {2, 3, 56, 56, 8, 7, 7, 2, 3},   /* ImageNet stem */
        {5, 6, 12, 12, 16, 5, 5, 1, 0},  /* LeNet-like, no padding */
        {7, 4, 9, 11, 5, 3, 1, 1, 1},    /* non-square kernel and input */
        {16, 64, 48, 48, 32, 3, 3, 1, 1}, /* large enough to run in chunks */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const shape_case *sc = &cases[i];
        am_conv2d_cfg c = {sc->k, sc->kh, sc->kw, sc->s, sc->s, sc->p, sc->kh == sc->kw ? sc->p : 0, 0};
        am_shape x = am_shape4(sc->n, sc->c, sc->h, sc->w), y;
        assert_int_equal(am_conv2d_out_shape(&c, x, &y), AM_OK);
        size_t xn = am_shape_numel(x), yn = am_shape_numel(y), wn = (size_t)sc->k * sc->c * sc->kh * sc->kw;
        float *X = malloc(xn * 4), *W = malloc(wn * 4), *G = malloc(yn * 4);
        float *y0 = malloc(yn * 4), *y1 = malloc(yn * 4), *dx0 = malloc(xn * 4), *dx1 = malloc(xn * 4);
        float *dw0 = malloc(wn * 4), *dw1 = malloc(wn * 4);
        fill(X, xn), fill(W, wn), fill(G, yn);
        int layer = (int)i;
        run_req(cpu, AM_REQ_CONV_FWD, &c, x, X, xn, W, wn, y0, yn, layer, 0);
        run_req(gpu, AM_REQ_CONV_FWD, &c, x, X, xn, W, wn, y1, yn, layer, 0);
        /* As a backward pass sends them: the input and weights kept from
         * the forward request, the gradient kept between the two. */
        run_req(cpu, AM_REQ_CONV_BWD_FILTER, &c, x, X, xn, G, yn, dw0, wn, layer, 0);
        run_req(gpu, AM_REQ_CONV_BWD_FILTER, &c, x, X, xn, G, yn, dw1, wn, layer, AM_KEEP_IN0);
        run_req(cpu, AM_REQ_CONV_BWD_DATA, &c, x, G, yn, W, wn, dx0, xn, layer, 0);
        run_req(gpu, AM_REQ_CONV_BWD_DATA, &c, x, G, yn, W, wn, dx1, xn, layer, AM_KEEP_IN0 | AM_KEEP_IN1);
        double ey = fx_scaled_err(y1, y0, yn), ew = fx_scaled_err(dw1, dw0, wn), ex = fx_scaled_err(dx1, dx0, xn);
        print_message("%dx%dx%dx%d -> %d, %dx%d s%d p%d: forward %.1e, dW %.1e, dX %.1e\n", sc->n, sc->c, sc->h, sc->w,
                      sc->k, sc->kh, sc->kw, sc->s, sc->p, ey, ew, ex);
        assert_true(ey < OP_BOUND);
        assert_true(ew < OP_BOUND);
        assert_true(ex < OP_BOUND);
        /* New data in the same buffers, without keep: the GPU must copy it. */
        for (size_t j = 0; j < xn; j++) X[j] = -X[j] + 0.5f;
        run_req(cpu, AM_REQ_CONV_FWD, &c, x, X, xn, W, wn, y0, yn, layer, 0);
        run_req(gpu, AM_REQ_CONV_FWD, &c, x, X, xn, W, wn, y1, yn, layer, 0);
        assert_true(fx_scaled_err(y1, y0, yn) < OP_BOUND);
        free(X), free(W), free(G), free(y0), free(y1), free(dx0), free(dx1), free(dw0), free(dw1);
    }
    /* A keep hint for a buffer the GPU has never seen still copies it. */
    {
        am_conv2d_cfg c = {4, 3, 3, 1, 1, 1, 1, 0};
        am_shape x = am_shape4(2, 3, 8, 8);
        size_t xn = am_shape_numel(x), yn = 2 * 4 * 64, wn = 4 * 3 * 9;
        float X[384], G[512], dw0[108], dw1[108];
        fill(X, xn), fill(G, yn);
        float *b;
        assert_int_equal(gpu->vt->buffer(gpu, 100, AM_BUF_INPUT, xn, &b), AM_OK);
        memcpy(b, X, sizeof X);
        run_req(cpu, AM_REQ_CONV_BWD_FILTER, &c, x, X, xn, G, yn, dw0, wn, 100, 0);
        run_req(gpu, AM_REQ_CONV_BWD_FILTER, &c, x, X, xn, G, yn, dw1, wn, 100, AM_KEEP_IN0);
        assert_true(fx_scaled_err(dw1, dw0, wn) < OP_BOUND);
    }
    /* Bad requests fail cleanly. */
    am_req bad = {AM_REQ_CONV_FWD, 0, {4, 3, 3, 1, 1, 1, 1, 0}, am_shape4(1, 3, 8, 8), NULL, NULL, NULL, 0, 0, 0, 0, 0};
    assert_int_equal(gpu->vt->submit(gpu, &bad), AM_EINVAL);
    cpu->vt->destroy(cpu);
}

/* The zoo model `name` (1x28x28 for LeNet, else 3x32x32) at batch 4 in
 * mode md, on the CPU backend (run 0) or the GPU (run 1); *x gets a batch
 * of N(0, 1) values (seed 5) the first time. */
enum { ZB = 4 };
static am_model *zoo_model(const char *name, int run, am_mode md, am_backend **be, am_tensor *x) {
    static char desc[65536];
    am_shape in = !strcmp(name, "lenet") ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, 32, 32);
    assert_int_equal(am_zoo_describe(name, in, 10, desc, sizeof desc), AM_OK);
    if (!x->d) {
        in.n = ZB;
        assert_int_equal(am_tensor_alloc(x, in), AM_OK);
        am_rng dr;
        am_rng_seed(&dr, 5);
        for (size_t i = 0; i < am_shape_numel(in); i++) x->d[i] = am_rng_normal(&dr);
    }
    assert_int_equal(run ? am_cuda_backend_create(be) : am_cpu_backend_create(be), AM_OK);
    am_model *m = fx_model(desc, 3, ZB);
    am_asym_cfg c = am_asym_defaults();
    c.mode = md;
    if (am_model_set_asym(m, &c, *be)) fail_msg("%s", am_last_error());
    return m;
}

/* One asymml training step of `name` on the CPU backend and on the GPU. */
static void zoo_step(const char *name) {
    const int B = ZB;
    float loss[2], *grads[2], *logits[2];
    size_t nw = 0;
    am_tensor x = {0};
    int32_t lab[4] = {1, 3, 5, 7};
    am_rng dr;
    for (int run = 0; run < 2; run++) {
        am_backend *be;
        am_model *m = zoo_model(name, run, AM_MODE_ASYMML, &be, &x);
        am_rng_seed(&dr, 9);
        if (am_model_forward(m, &x, 1, &dr)) fail_msg("%s", am_last_error());
        assert_int_equal(am_model_loss(m, lab, &loss[run]), AM_OK);
        if (am_model_backward(m)) fail_msg("%s", am_last_error());
        nw = am_model_weights_len(m);
        grads[run] = malloc(nw * sizeof(float));
        memcpy(grads[run], am_model_grads(m), nw * sizeof(float));
        const am_tensor *lg = am_model_logits(m);
        logits[run] = malloc((size_t)B * 10 * sizeof(float));
        memcpy(logits[run], lg->d, (size_t)B * 10 * sizeof(float));
        am_model_free(m);
        be->vt->destroy(be);
    }
    double el = fx_scaled_err(logits[1], logits[0], (size_t)B * 10), eg = fx_scaled_err(grads[1], grads[0], nw);
    print_message("%-18s loss %.6f (cpu) %.6f (cuda), logits %.1e, grads %.1e\n", name, loss[0], loss[1], el, eg);
    /* As in test_asym: BatchNorm over few values and ReLU masks amplify
     * rounding in the gradients; a missing or stale term would move these
     * figures by 0.1 to 1. */
    assert_true(fabs(loss[1] - loss[0]) <= 1e-3 * fabs(loss[0]));
    assert_true(el < 2e-2);
    assert_true(eg < 5e-2);
    for (int i = 0; i < 2; i++) free(grads[i]), free(logits[i]);
    am_tensor_free(&x);
}

static void t_zoo(void **st) {
    (void)st;
    for (const char *const *n = am_zoo_names(); *n; n++) zoo_step(*n);
}

/* gpu-only mode (every layer an op on the GPU) against the same mode on
 * the CPU backend: two SGD steps and an evaluation pass; losses, weights,
 * running statistics (after am_model_sync) and logits. */
static void gpu_only_steps(const char *name) {
    const int B = ZB;
    float loss[2][2], *w[2], *logits[2];
    size_t nw = 0;
    am_tensor x = {0};
    int32_t lab[4] = {1, 3, 5, 7};
    for (int run = 0; run < 2; run++) {
        am_backend *be;
        am_model *m = zoo_model(name, run, AM_MODE_GPU_ONLY, &be, &x);
        am_sgd_cfg sc = {0.9f, 0.f, 5e-4f, 0};
        am_sgd *opt;
        assert_int_equal(am_sgd_create(&sc, am_model_weights_len(m), &opt), AM_OK);
        am_rng dr;
        am_rng_seed(&dr, 5);
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&dr);
            if (am_model_forward(m, &x, 1, &dr) || am_model_loss(m, lab, &loss[run][k]) || am_model_backward(m) ||
                am_model_sgd_step(m, opt, 0.01f))
                fail_msg("%s: %s", name, am_last_error());
        }
        if (am_model_forward(m, &x, 0, NULL) || am_model_sync(m)) fail_msg("%s: %s", name, am_last_error());
        nw = am_model_weights_len(m);
        w[run] = malloc(nw * sizeof(float));
        memcpy(w[run], am_model_weights(m), nw * sizeof(float));
        logits[run] = malloc((size_t)B * 10 * sizeof(float));
        memcpy(logits[run], am_model_logits(m)->d, (size_t)B * 10 * sizeof(float));
        am_sgd_free(opt);
        am_model_free(m);
        be->vt->destroy(be);
    }
    double el = fx_scaled_err(logits[1], logits[0], (size_t)B * 10), ew = fx_scaled_err(w[1], w[0], nw);
    print_message("%-18s gpu-only: losses %.6f %.6f (cpu) %.6f %.6f (cuda), weights %.1e, logits %.1e\n", name,
                  loss[0][0], loss[0][1], loss[1][0], loss[1][1], ew, el);
    for (int k = 0; k < 2; k++) assert_true(fabs(loss[1][k] - loss[0][k]) <= 1e-3 * fabs(loss[0][k]));
    assert_true(ew < 1e-3);
    assert_true(el < 2e-2);
    for (int i = 0; i < 2; i++) free(w[i]), free(logits[i]);
    am_tensor_free(&x);
}

static void t_gpu_only(void **st) {
    (void)st;
    const char *const names[] = {"lenet", "vgg11", "resnet18"};
    for (int i = 0; i < 3; i++) gpu_only_steps(names[i]);
}

static int setup(void **st) {
    am_backend *be;
    if (am_cuda_backend_create(&be) != AM_OK) return -1;
    *st = be;
    return 0;
}

static int teardown(void **st) {
    am_backend *be = *st;
    if (be) be->vt->destroy(be);
    return 0;
}

int main(void) {
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1); /* before any CUDA library starts */
    am_rng_seed(&rng, 2026);
    if (am_cuda_usable() != AM_OK) {
        printf("SKIP: test_cuda: %s\n", am_last_error());
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_ops, setup, teardown),
        cmocka_unit_test(t_zoo),
        cmocka_unit_test(t_gpu_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
