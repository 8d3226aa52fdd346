/* Blinded inference, slalom mode (issue 16, item 2), on the CPU backend:
 * its logits equal quantized mode's bit for bit (blinding changes nothing
 * but what the accelerator sees); what the accelerator is sent is uniform
 * mod p, layer by layer (a chi-square test on a real batch and on blank
 * images, which the quantized input itself fails by far); no pad is used
 * twice; every reply is checked exactly (Freivalds over Z_p), so that any
 * wrong one (a single value off by one) is refused, on every input alike. */
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
#include "untrusted/cpu_backend.h"

/* A CPU backend that can spoil its replies: tamper 1 sets a reply value
 * to p (not a residue), tamper 2 adds p/3 to one (a residue, but far off),
 * tamper 3 adds 1 to one (only the exact check can tell): value pos (its
 * last when pos is -1) of layer `layer`'s reply (every layer's when -1).
 * Tamper 4 adds 1 to the first integer weight in the backend's own copy
 * of layer `layer`'s weights, which stays there. It notes each layer's
 * reply size. */
typedef struct spoil {
    am_backend base;
    am_backend *cpu;
    int tamper, layer;
    long pos;
    size_t out_n[64];
} spoil;

static am_status sp_buffer(am_backend *b, int l, am_buf_role r, size_t n, float **o) {
    return ((spoil *)b)->cpu->vt->buffer(((spoil *)b)->cpu, l, r, n, o);
}
static am_status sp_submit(am_backend *b, const am_req *q) {
    spoil *s = (spoil *)b;
    const int here = s->layer < 0 || q->layer == s->layer;
    if (s->tamper == 4 && here) ((float *)q->in1)[0] += 1;
    AM_TRY(s->cpu->vt->submit(s->cpu, q));
    am_shape ys;
    assert_int_equal(am_conv2d_out_shape(&q->cfg, q->x, &ys), AM_OK);
    const size_t n = am_shape_numel(ys);
    s->out_n[q->layer] = n;
    int32_t *y = (int32_t *)(void *)q->out;
    const size_t i = s->pos < 0 ? n - 1 : (size_t)s->pos;
    if (!here) return AM_OK;
    if (s->tamper == 1) y[i] = AM_MODP;
    if (s->tamper == 2) y[i] = (int32_t)(((int64_t)y[i] + AM_MODP / 3) % AM_MODP);
    if (s->tamper == 3) y[i] = (int32_t)(((int64_t)y[i] + 1) % AM_MODP);
    return AM_OK;
}
static am_status sp_wait(am_backend *b) { return ((spoil *)b)->cpu->vt->wait(((spoil *)b)->cpu); }
static double sp_busy(am_backend *b) { return ((spoil *)b)->cpu->vt->busy_seconds(((spoil *)b)->cpu); }
static void sp_destroy(am_backend *b) {
    ((spoil *)b)->cpu->vt->destroy(((spoil *)b)->cpu);
    free(b);
}
static const am_backend_vt sp_vt = {"spoil", sp_buffer, sp_submit, sp_wait, sp_busy, sp_destroy, NULL, NULL};

static spoil *spoil_create(void) {
    spoil *s = calloc(1, sizeof *s);
    s->base.vt = &sp_vt;
    s->layer = -1;
    s->pos = 3;
    assert_int_equal(am_cpu_backend_create(&s->cpu), AM_OK);
    return s;
}

static am_status infer(am_model *m, const float *x) {
    am_shape in = am_model_input_shape(m);
    in.n = 4;
    am_tensor t = {in, (float *)x};
    return am_model_forward(m, &t, 0, NULL);
}

static void t_equal(void **st) {
    (void)st;
    const char *files[2] = {"quant_vgg.amfx", "quant_resnet.amfx"};
    for (int k = 0; k < 2; k++) {
        fx_file F;
        fx_load(&F, files[k]);
        spoil *be = spoil_create();
        am_model *q = fx_fixed_model(&F, AM_MODE_QUANTIZED, NULL), *s = fx_fixed_model(&F, AM_MODE_SLALOM, &be->base);
        const size_t per = am_shape_numel(am_model_input_shape(q));
        const float *x = fx_f32(&F, "x", 4 * per);
        assert_int_equal(infer(q, x), AM_OK);
        for (int round = 0; round < 2; round++) { /* new pads each time, the same result */
            if (infer(s, x)) fail_msg("%s", am_last_error());
            const am_tensor *a = am_model_logits(q), *b = am_model_logits(s);
            assert_memory_equal(a->d, b->d, am_shape_numel(a->s) * sizeof(float));
        }
        print_message("%s: slalom's logits equal quantized mode's, bit for bit\n", files[k]);
        am_model_free(q);
        am_model_free(s);
        be->base.vt->destroy(&be->base);
        fx_free(&F);
    }
}

/* Chi-square of n values over 64 equal bins of [-(p-1)/2, (p-1)/2]. */
static double chi2(const int32_t *v, size_t n) {
    double cnt[64] = {0};
    for (size_t i = 0; i < n; i++) cnt[(uint64_t)((int64_t)v[i] + (AM_MODP - 1) / 2) * 64 / AM_MODP]++;
    double e = (double)n / 64, t = 0;
    for (int b = 0; b < 64; b++) t += (cnt[b] - e) * (cnt[b] - e) / e;
    return t;
}

/* The upper 1e-6 point of chi-square with 63 degrees of freedom
 * (Wilson-Hilferty): a uniform sample exceeds it once in a million tests
 * (the pads' key is random: so is the test's outcome). */
static double critical(void) {
    const double k = 63, z = 4.753;
    double c = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * c * c * c;
}

/* Every layer's blinded input as the backend holds it after a pass on x:
 * its chi-square, worst over layers; and how many values equal those of
 * the previous pass (prev: a copy per layer, refreshed). */
static double worst_chi2(am_model *m, am_backend *cpu, int32_t **prev, size_t *same) {
    double worst = 0;
    for (int i = 0; i < am_model_ledger_count(m); i++) {
        const am_ledger_entry *e = am_model_ledger_entry(m, i);
        if (e->kind != AM_CROSS_BLINDED) continue;
        size_t n = am_shape_numel(e->shape);
        float *buf;
        assert_int_equal(cpu->vt->buffer(cpu, e->layer, AM_BUF_INPUT, n, &buf), AM_OK);
        const int32_t *v = (const int32_t *)(const void *)buf;
        double c = chi2(v, n);
        worst = fmax(worst, c);
        if (!prev[e->layer]) {
            prev[e->layer] = malloc(n * 4);
        } else {
            for (size_t j = 0; j < n; j++) *same += prev[e->layer][j] == v[j];
        }
        memcpy(prev[e->layer], v, n * 4);
    }
    return worst;
}

static void t_uniform(void **st) {
    (void)st;
    fx_file F;
    fx_load(&F, "quant_vgg.amfx");
    spoil *be = spoil_create();
    am_model *s = fx_fixed_model(&F, AM_MODE_SLALOM, &be->base);
    am_model_ledger_enable(s, 1);
    const size_t per = am_shape_numel(am_model_input_shape(s));
    float *blank = calloc(4 * per, sizeof(float));
    int32_t *prev[64] = {0};
    size_t same = 0;
    am_model_ledger_clear(s);
    assert_int_equal(infer(s, fx_f32(&F, "x", 4 * per)), AM_OK);
    double real = worst_chi2(s, be->cpu, prev, &same);
    am_model_ledger_clear(s);
    assert_int_equal(infer(s, blank), AM_OK);
    double zero = worst_chi2(s, be->cpu, prev, &same);
    print_message("blinded inputs, worst layer's chi-square (63 dof; 1e-6 point %.1f): real batch %.1f, blank images "
                  "%.1f; values equal across two passes: %zu\n", critical(), real, zero, same);
    assert_true(real < critical());
    assert_true(zero < critical());
    assert_true(same <= 2); /* about n / p expected: none */
    /* The test has power: the quantized input itself is far from uniform. */
    size_t n = 4 * per;
    int32_t *q = malloc(n * 4);
    const float *x = fx_f32(&F, "x", n);
    for (size_t i = 0; i < n; i++) q[i] = (int32_t)lrintf(x[i] * 30);
    assert_true(chi2(q, n) > 100 * critical());
    free(q);
    for (int i = 0; i < 64; i++) free(prev[i]);
    free(blank);
    am_model_free(s);
    be->base.vt->destroy(&be->base);
    fx_free(&F);
}

static void t_refused(void **st) {
    (void)st;
    fx_file F;
    fx_load(&F, "quant_vgg.amfx");
    spoil *be = spoil_create();
    am_model *s = fx_fixed_model(&F, AM_MODE_SLALOM, &be->base);
    const size_t per = am_shape_numel(am_model_input_shape(s));
    const float *x = fx_f32(&F, "x", 4 * per);
    be->tamper = 1;
    assert_int_equal(infer(s, x), AM_ENUM);
    assert_non_null(strstr(am_last_error(), "not a residue mod p: refused"));
    /* A residue far off, or off by one: the exact check refuses both, on
     * any input alike (a refusal that depended on the input would tell
     * the accelerator something of it: a chosen offset whose refusal
     * follows the unblinded value leaks a bit a run). */
    float *blank = calloc(4 * per, sizeof(float));
    for (int t = 2; t <= 3; t++)
        for (int k = 0; k < 2; k++) {
            be->tamper = t;
            assert_int_equal(infer(s, k ? blank : x), AM_ENUM);
            assert_non_null(strstr(am_last_error(), "fails the exact check: refused"));
        }
    free(blank);
    /* Honest replies pass, and give the same result every time. */
    be->tamper = 0;
    assert_int_equal(infer(s, x), AM_OK);
    float ref[40];
    memcpy(ref, am_model_logits(s)->d, sizeof ref);
    for (int i = 0; i < 3; i++) assert_int_equal(infer(s, x), AM_OK);
    assert_memory_equal(ref, am_model_logits(s)->d, sizeof ref);
    /* Inference only; an accelerator is needed. */
    am_shape in = am_model_input_shape(s);
    in.n = 4;
    am_tensor t = {in, (float *)x};
    assert_int_equal(am_model_forward(s, &t, 1, NULL), AM_EINVAL);
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_SLALOM;
    assert_int_equal(am_model_set_asym(s, &c, NULL), AM_EINVAL);
    am_model_free(s);
    be->base.vt->destroy(&be->base);
    fx_free(&F);
}

/* A value off by one anywhere is refused: in every blinded layer of both
 * fixtures (strided, 1x1 and linear layers among them), at its first,
 * last and middle value and at random ones; and after each refusal an
 * honest reply passes and gives the same logits. */
static void t_anywhere(void **st) {
    (void)st;
    const char *files[2] = {"quant_vgg.amfx", "quant_resnet.amfx"};
    am_rng rng;
    am_rng_seed(&rng, 7);
    for (int f = 0; f < 2; f++) {
        fx_file F;
        fx_load(&F, files[f]);
        spoil *be = spoil_create();
        am_model *s = fx_fixed_model(&F, AM_MODE_SLALOM, &be->base);
        const float *x = fx_f32(&F, "x", 4 * am_shape_numel(am_model_input_shape(s)));
        assert_int_equal(infer(s, x), AM_OK);
        float ref[40];
        memcpy(ref, am_model_logits(s)->d, sizeof ref);
        int layers = 0, tries = 0;
        for (int l = 0; l < 64; l++) {
            const size_t n = be->out_n[l];
            if (!n) continue;
            layers++;
            const long pos[5] = {0, -1, (long)(n / 2), (long)(am_rng_u64(&rng) % n), (long)(am_rng_u64(&rng) % n)};
            for (int k = 0; k < 5; k++, tries++) {
                be->tamper = 3, be->layer = l, be->pos = pos[k];
                if (infer(s, x) != AM_ENUM || !strstr(am_last_error(), "fails the exact check"))
                    fail_msg("%s: layer %d, value %ld off by one: not refused", files[f], l, pos[k]);
                be->tamper = 0;
                assert_int_equal(infer(s, x), AM_OK);
                assert_memory_equal(ref, am_model_logits(s)->d, sizeof ref);
            }
        }
        print_message("%s: %d blinded layers, %d replies off by one: each refused\n", files[f], layers, tries);
        am_model_free(s);
        be->base.vt->destroy(&be->base);
        fx_free(&F);
    }
}

/* The integer weights cross once: the accelerator keeps its copy. Changed
 * there, the next reply is refused (and the weights sent again); changed
 * in the model, they are made and sent again, and the logits follow them
 * exactly as quantized mode's do. */
static void t_weights(void **st) {
    (void)st;
    fx_file F;
    fx_load(&F, "quant_vgg.amfx");
    spoil *be = spoil_create();
    am_model *q = fx_fixed_model(&F, AM_MODE_QUANTIZED, NULL), *s = fx_fixed_model(&F, AM_MODE_SLALOM, &be->base);
    const float *x = fx_f32(&F, "x", 4 * am_shape_numel(am_model_input_shape(s)));
    am_model_ledger_enable(s, 1);
    for (int i = 0; i < 2; i++) assert_int_equal(infer(s, x), AM_OK);
    int weights = 0, blinded = 0;
    for (int i = 0; i < am_model_ledger_count(s); i++) {
        weights += am_model_ledger_entry(s, i)->kind == AM_CROSS_WEIGHTS;
        blinded += am_model_ledger_entry(s, i)->kind == AM_CROSS_BLINDED;
    }
    assert_int_equal(weights * 2, blinded); /* two passes, the weights sent in the first only */
    float ref[40];
    memcpy(ref, am_model_logits(s)->d, sizeof ref);
    be->tamper = 4, be->layer = -1;
    assert_int_equal(infer(s, x), AM_ENUM);
    assert_non_null(strstr(am_last_error(), "fails the exact check"));
    be->tamper = 0;
    assert_int_equal(infer(s, x), AM_OK);
    assert_memory_equal(ref, am_model_logits(s)->d, sizeof ref);
    /* The model's weights change: both models' first layer doubled. */
    for (int k = 0; k < 2; k++) {
        am_param *w = am_model_param(k ? s : q, 0);
        for (size_t i = 0; i < w->numel; i++) w->data[i] *= 2;
    }
    assert_int_equal(infer(q, x), AM_OK);
    assert_int_equal(infer(s, x), AM_OK);
    assert_memory_equal(am_model_logits(q)->d, am_model_logits(s)->d, sizeof ref);
    assert_memory_not_equal(ref, am_model_logits(s)->d, sizeof ref);
    am_model_free(q);
    am_model_free(s);
    be->base.vt->destroy(&be->base);
    fx_free(&F);
}

/* The reduction mod p against fmod, at the edges and at random, over every
 * magnitude an exact integer in double can have. */
static void t_modp(void **st) {
    (void)st;
    const double p = AM_MODP, h = (AM_MODP - 1) / 2, top = 9007199254740991.0;
    const double edge[] = {0, 1, -1, h, h + 1, -h, -h - 1, p, -p, p - 1, 2 * p, 3 * p + h, 3 * p + h + 1, top, -top,
                           top - 1, 4194304.0 * p, -4194303.0 * p - h};
    am_rng r;
    am_rng_seed(&r, 3);
    for (int i = 0; i < 200000; i++) {
        double v = i < (int)(sizeof edge / sizeof *edge) ? edge[i]
                                                         : (double)((int64_t)(am_rng_u64(&r) >> (11 + i % 40)) *
                                                                    (i & 1 ? 1 : -1));
        double want = fmod(v, p);
        want = want > h ? want - p : want < -h ? want + p : want;
        double got = am_modp_center(v);
        if (got != want) fail_msg("%.17g mod p: %.17g, not %.17g", v, got, want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_modp), cmocka_unit_test(t_equal), cmocka_unit_test(t_uniform),
                                       cmocka_unit_test(t_refused), cmocka_unit_test(t_anywhere),
                                       cmocka_unit_test(t_weights)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
