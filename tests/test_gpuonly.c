/* gpu-only mode against tee-only: the same model, weights, batches and
 * SGD settings run three training steps and an evaluation pass both ways,
 * every layer as an op on the CPU backend (the protocol a GPU backend
 * implements). Losses, weights, gradients, running statistics and logits
 * must agree: the ops are the same kernels, unfused, so only summation
 * order differs. Also: what the host is handed (PUTs only: the batch,
 * labels, weights, state), a backend without ops refused, bad labels
 * refused before anything crosses, and leaving the mode keeping what was
 * trained in it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "boundary/backend.h"
#include "untrusted/cpu_backend.h"

#define B 4

static const char *const descs[] = {
    /* BatchNorm, in-place ReLU, max-pool, dropout, two linear layers */
    "input 3 12 12\nconv 8 k=3 p=1\nbn\nrelu\nmaxpool k=2\nconv 16 k=3 p=1 bias=0\nbn\nrelu\nmaxpool k=2\n"
    "flatten\ndropout p=0.3\nlinear 20\nrelu\nlinear 5\n",
    /* residual blocks: adds (one input read twice), a strided 1x1 shortcut,
     * average and adaptive pooling */
    "input 3 10 10\nconv 8 k=3 p=1 bias=0\nbn\nrelu name=s0\n"
    "conv 8 k=3 p=1 bias=0\nbn\nrelu\nconv 8 k=3 p=1 bias=0\nbn name=m1\nadd from=m1,s0\nrelu name=s1\n"
    "conv 12 k=3 s=2 p=1 bias=0\nbn\nrelu\nconv 12 k=3 p=1 bias=0\nbn name=m2\n"
    "conv 12 k=1 s=2 bias=0 from=s1\nbn name=d2\nadd from=m2,d2\nrelu\n"
    "avgpool k=2 s=1\nadaptiveavg 2 2\nflatten\nlinear 5\n",
    /* adds over an in-place ReLU and a max-pool (the trusted side's add
     * writes over them; on the accelerator their backward ops read them) */
    "input 3 8 8\nconv 4 k=3 p=1 name=c0\nconv 4 k=3 p=1\nrelu name=r\nadd from=r,c0\nrelu name=s\n"
    "maxpool k=2 name=p\nconv 4 k=2 s=2 from=s name=c1\nadd from=p,c1\nflatten\nlinear 5\n",
};

typedef struct run {
    float loss[3], *w, *buf, *g, *logits;
    size_t nw, nb, nl;
} run;

static void free_run(run *r) {
    free(r->w), free(r->buf), free(r->g), free(r->logits);
}

static void steps(const char *desc, am_backend *be, const am_sgd_cfg *sc, run *out) {
    am_model *m;
    if (am_model_create(desc, &m)) fail_msg("%s", am_last_error());
    assert_int_equal(am_model_init(m, 7), AM_OK);
    assert_int_equal(am_model_set_batch(m, B), AM_OK);
    if (be) {
        am_asym_cfg c = am_asym_defaults();
        c.mode = AM_MODE_GPU_ONLY;
        if (am_model_set_asym(m, &c, be)) fail_msg("%s", am_last_error());
        assert_int_equal(am_model_mode(m), AM_MODE_GPU_ONLY);
    }
    am_sgd *opt;
    assert_int_equal(am_sgd_create(sc, am_model_weights_len(m), &opt), AM_OK);
    am_shape s = am_model_input_shape(m);
    s.n = B;
    am_tensor x;
    assert_int_equal(am_tensor_alloc(&x, s), AM_OK);
    am_rng data, drop;
    am_rng_seed(&data, 11);
    am_rng_seed(&drop, 12);
    int32_t lab[B];
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = am_rng_normal(&data);
        for (int b = 0; b < B; b++) lab[b] = (int32_t)am_rng_below(&data, 5);
        am_model_set_step(m, (uint64_t)k);
        assert_int_equal(am_model_forward(m, &x, 1, &drop), AM_OK);
        assert_int_equal(am_model_loss(m, lab, &out->loss[k]), AM_OK);
        assert_int_equal(am_model_backward(m), AM_OK);
        assert_int_equal(am_model_sgd_step(m, opt, 0.05f), AM_OK);
    }
    /* an evaluation pass (running statistics, no dropout) */
    assert_int_equal(am_model_forward(m, &x, 0, NULL), AM_OK);
    assert_int_equal(am_model_sync(m), AM_OK);
    out->nw = am_model_weights_len(m), out->nb = am_model_buffers_len(m);
    const am_tensor *lg = am_model_logits(m);
    out->nl = am_shape_numel(lg->s);
    out->w = malloc(out->nw * sizeof(float)), out->g = malloc(out->nw * sizeof(float));
    out->buf = malloc((out->nb ? out->nb : 1) * sizeof(float)), out->logits = malloc(out->nl * sizeof(float));
    memcpy(out->w, am_model_weights(m), out->nw * sizeof(float));
    memcpy(out->g, am_model_grads(m), out->nw * sizeof(float));
    memcpy(out->buf, am_model_buffers(m), out->nb * sizeof(float));
    memcpy(out->logits, lg->d, out->nl * sizeof(float));
    am_tensor_free(&x);
    am_sgd_free(opt);
    am_model_free(m);
}

/* max |a - b| / (max |b| + 1e-3) */
static double scaled(const float *a, const float *b, size_t n) {
    double d = 0, s = 1e-3;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / s;
}

static void compare(const char *desc, const am_sgd_cfg *sc) {
    am_backend *be;
    assert_int_equal(am_cpu_backend_create(&be), AM_OK);
    run t, g;
    steps(desc, NULL, sc, &t);
    steps(desc, be, sc, &g);
    for (int k = 0; k < 3; k++) assert_true(fabs(g.loss[k] - t.loss[k]) <= 1e-5 * fabs(t.loss[k]) + 1e-6);
    double ew = scaled(g.w, t.w, t.nw), eg = scaled(g.g, t.g, t.nw), eb = scaled(g.buf, t.buf, t.nb),
           el = scaled(g.logits, t.logits, t.nl);
    print_message("losses %.6f %.6f %.6f; weights %.2g, gradients %.2g, statistics %.2g, logits %.2g\n", g.loss[0],
                  g.loss[1], g.loss[2], ew, eg, eb, el);
    assert_true(ew < 1e-5 && eg < 1e-4 && eb < 1e-5 && el < 1e-4);
    assert_true(t.loss[2] != t.loss[0]); /* the steps did something */
    free_run(&t), free_run(&g);
    be->vt->destroy(be);
}

static void t_vgg_like(void **st) {
    (void)st;
    am_sgd_cfg sc = {0.9f, 0.f, 5e-4f, 0};
    compare(descs[0], &sc);
    am_sgd_cfg nest = {0.9f, 0.f, 1e-3f, 1};
    compare(descs[0], &nest);
}

static void t_resnet_like(void **st) {
    (void)st;
    am_sgd_cfg sc = {0.5f, 0.1f, 0.f, 0};
    compare(descs[1], &sc);
    am_sgd_cfg plain = {0.f, 0.f, 1e-4f, 0};
    compare(descs[1], &plain);
    compare(descs[2], &sc);
}

/* A backend that counts what it is asked and runs nothing but PUT and GET
 * checks: the ops a model hands it, and that only PUT carries data. */
typedef struct spy {
    am_backend base;
    am_backend *inner;
    int puts[AM_CROSS_KINDS], gets, others;
} spy;
static am_status s_buffer(am_backend *b, int l, am_buf_role r, size_t n, float **out) {
    am_backend *in = ((spy *)b)->inner;
    return in->vt->buffer(in, l, r, n, out);
}
static am_status s_submit(am_backend *b, const am_req *q) {
    (void)b, (void)q;
    return am_fail(AM_EINVAL, "spy: gpu-only mode sent a conv request");
}
static am_status s_wait(am_backend *b) { return ((spy *)b)->inner->vt->wait(((spy *)b)->inner); }
static double s_busy(am_backend *b) { return ((spy *)b)->inner->vt->busy_seconds(((spy *)b)->inner); }
static void s_destroy(am_backend *b) { (void)b; }
static am_status s_op(am_backend *b, const am_op *o) {
    spy *s = (spy *)b;
    if (o->kind == AM_OP_PUT) s->puts[o->tag]++;
    else if (o->kind == AM_OP_GET) s->gets++;
    else s->others++;
    return s->inner->vt->op(s->inner, o);
}
static const am_backend_vt spy_vt = {"spy", s_buffer, s_submit, s_wait, s_busy, s_destroy, NULL, s_op};
static const am_backend_vt convs_only_vt = {"convs-only", s_buffer, s_submit, s_wait, s_busy, s_destroy, NULL, NULL};

static void t_what_crosses(void **st) {
    (void)st;
    spy s = {{&spy_vt}, NULL, {0}, 0, 0};
    assert_int_equal(am_cpu_backend_create(&s.inner), AM_OK);
    am_model *m;
    assert_int_equal(am_model_create(descs[0], &m), AM_OK);
    assert_int_equal(am_model_init(m, 1), AM_OK);
    assert_int_equal(am_model_set_batch(m, B), AM_OK);
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_GPU_ONLY;
    /* A backend without ops cannot run the mode: said, nothing set. */
    am_backend convs = {&convs_only_vt};
    assert_int_equal(am_model_set_asym(m, &c, &convs), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "runs convs only"));
    assert_int_equal(am_model_mode(m), AM_MODE_TEE_ONLY);
    assert_int_equal(am_model_set_asym(m, &c, &s.base), AM_OK);
    /* The start: every layer's parameters (5 layers with weights), the
     * batchnorms' running statistics. */
    assert_int_equal(s.puts[AM_CROSS_WEIGHTS], 6);
    assert_int_equal(s.puts[AM_CROSS_STATE], 2);
    am_shape sh = am_model_input_shape(m);
    sh.n = B;
    am_tensor x;
    assert_int_equal(am_tensor_alloc(&x, sh), AM_OK);
    memset(x.d, 0, am_shape_numel(sh) * sizeof(float));
    am_rng r;
    am_rng_seed(&r, 1);
    int32_t lab[B] = {0, 1, 2, 3}, bad[B] = {0, 1, 5, 3};
    float loss;
    memset(s.puts, 0, sizeof s.puts);
    s.gets = s.others = 0;
    assert_int_equal(am_model_forward(m, &x, 1, &r), AM_OK);
    assert_int_equal(am_model_loss(m, bad, &loss), AM_EINVAL);
    assert_int_equal(s.puts[AM_CROSS_LABELS], 0); /* refused before it crossed */
    assert_int_equal(am_model_loss(m, lab, &loss), AM_OK);
    assert_int_equal(am_model_backward(m), AM_OK);
    /* One step hands over the batch, the labels and a dropout mask, and
     * takes back one float: the loss. */
    assert_int_equal(s.puts[AM_CROSS_ACTIVATION], 1);
    assert_int_equal(s.puts[AM_CROSS_LABELS], 1);
    assert_int_equal(s.puts[AM_CROSS_STATE], 1);
    assert_int_equal(s.puts[AM_CROSS_WEIGHTS], 0);
    assert_int_equal(s.gets, 1);
    /* 12 layer ops forward (flatten is none), the loss, 12 backward */
    assert_int_equal(s.others, 25);
    /* An inference pass hands over the batch and takes back the logits. */
    memset(s.puts, 0, sizeof s.puts);
    s.gets = 0;
    assert_int_equal(am_model_forward(m, &x, 0, NULL), AM_OK);
    assert_int_equal(s.puts[AM_CROSS_ACTIVATION], 1);
    assert_int_equal(s.puts[AM_CROSS_LABELS] + s.puts[AM_CROSS_STATE] + s.puts[AM_CROSS_WEIGHTS], 0);
    assert_int_equal(s.gets, 1);
    am_tensor_free(&x);
    am_model_free(m);
    s.inner->vt->destroy(s.inner);
}

/* Leaving gpu-only mode keeps what was trained there: one step there, then
 * tee-only, equals one step in tee-only. */
static void t_leave(void **st) {
    (void)st;
    float *w[2];
    size_t nw = 0;
    for (int gpu = 0; gpu < 2; gpu++) {
        am_backend *be;
        assert_int_equal(am_cpu_backend_create(&be), AM_OK);
        am_model *m;
        assert_int_equal(am_model_create(descs[1], &m), AM_OK);
        assert_int_equal(am_model_init(m, 3), AM_OK);
        assert_int_equal(am_model_set_batch(m, B), AM_OK);
        am_asym_cfg c = am_asym_defaults();
        c.mode = gpu ? AM_MODE_GPU_ONLY : AM_MODE_TEE_ONLY;
        assert_int_equal(am_model_set_asym(m, &c, be), AM_OK);
        am_sgd_cfg sc = {0.f, 0.f, 0.f, 0};
        am_sgd *opt;
        assert_int_equal(am_sgd_create(&sc, am_model_weights_len(m), &opt), AM_OK);
        am_shape s = am_model_input_shape(m);
        s.n = B;
        am_tensor x;
        assert_int_equal(am_tensor_alloc(&x, s), AM_OK);
        for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = (float)(i % 13) - 6.f;
        int32_t lab[B] = {0, 1, 2, 3};
        float loss;
        assert_int_equal(am_model_forward(m, &x, 1, NULL), AM_OK);
        assert_int_equal(am_model_loss(m, lab, &loss), AM_OK);
        assert_int_equal(am_model_backward(m), AM_OK);
        assert_int_equal(am_model_sgd_step(m, opt, 0.1f), AM_OK);
        c.mode = AM_MODE_TEE_ONLY;
        assert_int_equal(am_model_set_asym(m, &c, NULL), AM_OK);
        nw = am_model_weights_len(m);
        w[gpu] = malloc(nw * sizeof(float));
        memcpy(w[gpu], am_model_weights(m), nw * sizeof(float));
        am_tensor_free(&x);
        am_sgd_free(opt);
        am_model_free(m);
        be->vt->destroy(be);
    }
    assert_true(scaled(w[1], w[0], nw) < 1e-6);
    free(w[0]), free(w[1]);
}

int main(void) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(t_vgg_like),
        cmocka_unit_test(t_resnet_like),
        cmocka_unit_test(t_what_crosses),
        cmocka_unit_test(t_leave),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
