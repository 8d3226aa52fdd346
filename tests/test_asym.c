/* AsymML: the exactness of the split (noise off: asymml equals tee-only for
 * every zoo model), the plan, the modes, the DP noise and accountant, and
 * the boundary ledger. The decomposition's own tests: test_decomp.c. */
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
#include "untrusted/cpu_backend.h"

static am_rng rng;
static am_backend *g_be; /* the accelerator the tests' models are given */

/* Loss, logits and every gradient of m on (x, labels) in the current mode;
 * BatchNorm in training mode or with its running statistics. */
static float run_mode(am_model *m, const am_tensor *x, const int32_t *lab, float *logits, float *grads,
                      int training) {
    float loss;
    am_rng dr; /* the same dropout masks in every run */
    am_rng_seed(&dr, 99);
    if (am_model_forward(m, x, training, &dr)) fail_msg("%s", am_last_error());
    assert_int_equal(am_model_loss(m, lab, &loss), AM_OK);
    if (am_model_backward(m)) fail_msg("%s", am_last_error());
    const am_tensor *lg = am_model_logits(m);
    memcpy(logits, lg->d, am_shape_numel(lg->s) * sizeof(float));
    memcpy(grads, am_model_grads(m), am_model_weights_len(m) * sizeof(float));
    return loss;
}

static float run(am_model *m, const am_tensor *x, const int32_t *lab, float *logits, float *grads) {
    return run_mode(m, x, lab, logits, grads, 1);
}

static void exactness(const char *name, am_shape in, int B, am_basis_kind basis, int protect) {
    static char desc[65536];
    /* What it is doing, as it goes: the whole zoo takes most of a minute. */
    print_message("exactness: %s at %dx%dx%d, batch %d, %s basis%s\n", name, in.c, in.h, in.w, B,
                  basis == AM_BASIS_SHARED ? "shared" : basis == AM_BASIS_PER_SAMPLE ? "per-sample" : "auto",
                  protect ? ", protected gradients" : "");
    assert_int_equal(am_zoo_describe(name, in, 10, desc, sizeof desc), AM_OK);
    am_model *m = fx_model(desc, 3, B);
    am_shape s = in;
    s.n = B;
    am_tensor x;
    assert_int_equal(am_tensor_alloc(&x, s), AM_OK);
    for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = am_rng_normal(&rng);
    int32_t lab[8];
    for (int b = 0; b < B; b++) lab[b] = b % 10;
    size_t nw = am_model_weights_len(m), nl = (size_t)B * 10;
    float *g0 = malloc(nw * sizeof(float)), *g1 = malloc(nw * sizeof(float)), l0[80], l1[80];
    /* Running statistics change with every training forward: keep them. */
    size_t nb = am_model_buffers_len(m);
    float *bufs = malloc((nb ? nb : 1) * sizeof(float));
    memcpy(bufs, am_model_buffers(m), nb * sizeof(float));
    float *e0 = malloc(nw * sizeof(float)), *e1 = malloc(nw * sizeof(float)), le0[80], le1[80];
    float eloss0 = run_mode(m, &x, lab, le0, e0, 0);
    float loss0 = run(m, &x, lab, l0, g0);
    memcpy(am_model_buffers(m), bufs, nb * sizeof(float));
    am_asym_cfg c = am_asym_defaults();
    c.basis = basis;
    c.protect_grads = protect;
    assert_int_equal(am_model_set_asym(m, &c, g_be), AM_OK);
    float eloss1 = run_mode(m, &x, lab, le1, e1, 0);
    float loss1 = run(m, &x, lab, l1, g1);
    /* The plan, decided by now (AUTO's bases on the first batch). */
    int split = 0;
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        assert_int_equal(am_model_split_info(m, i, &si), AM_OK);
        split += si.split;
        if (i == 0) assert_int_equal(si.split, 0); /* the first conv stays whole */
    }
    double eel = fx_scaled_err(le1, le0, nl), eeg = fx_scaled_err(e1, e0, nw);
    double el = fx_scaled_err(l1, l0, nl), eg = fx_scaled_err(g1, g0, nw);
    print_message("%-18s%s %d of %d convs split: eval logits %.2g grads %.2g; train loss %.6f vs %.6f, "
                  "logits %.2g, grads %.2g\n", name, protect ? " (protected)" : "", split, am_model_num_convs(m), eel, eeg, loss1, loss0, el, eg);
    assert_true(split > 0 || !strcmp(name, "lenet"));
    /* With BatchNorm's running statistics the forward pass is continuous in
     * rounding: the split must agree to 1e-4 of the logits' scale. The
     * gradients also pass ReLU and max-pool masks, and a pre-activation
     * within rounding of zero can flip between the two runs (seen at 1e-3 in
     * ResNet34 on some inputs): 1e-2 of scale, where a missing term of the
     * split would be off by 0.1 to 1. */
    assert_true(fabs(eloss1 - eloss0) <= 1e-4 * fabs(eloss0));
    assert_true(eel < 1e-4);
    assert_true(eeg < 1e-2);
    /* With batch statistics over a few values (4 samples of 2x2 in VGG's
     * last block), BatchNorm divides by small standard deviations and
     * amplifies rounding; dropping the residual instead moves these figures
     * by 0.1 to 1. */
    assert_true(fabs(loss1 - loss0) <= 1e-3 * fabs(loss0));
    assert_true(el < 2e-2);
    assert_true(eg < 5e-2);
    free(e0);
    free(e1);
    free(g0);
    free(g1);
    free(bufs);
    am_tensor_free(&x);
    am_model_free(m);
}

static void t_exactness_zoo(void **st) {
    (void)st;
    for (const char *const *n = am_zoo_names(); *n; n++) {
        int lenet = !strcmp(*n, "lenet");
        /* VGG13/16/19-imagenet: the convs of VGG13/16/19 (above) and the
         * classifier of VGG11-imagenet; 25 s of 4096-wide layers between them. */
        if (!strcmp(*n, "vgg13-imagenet") || !strcmp(*n, "vgg16-imagenet") || !strcmp(*n, "vgg19-imagenet")) continue;
        exactness(*n, lenet ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, 32, 32), 4, AM_BASIS_SHARED, 0);
    }
    exactness("vgg11", am_shape4(1, 1, 28, 28), 3, AM_BASIS_PER_SAMPLE, 0);
    exactness("resnet18", am_shape4(1, 3, 32, 32), 2, AM_BASIS_PER_SAMPLE, 0);
    /* 8 samples at 48x48: VGG's split 512 x 512 layer (6x6) unfolds in two
     * groups of samples (7 + 1); at 32x32 the 512 x 512 folds run in three
     * chunks of output channels (227 + 227 + 58). */
    exactness("vgg11", am_shape4(1, 3, 48, 48), 8, AM_BASIS_PER_SAMPLE, 0);
    /* Protected gradients: the A B terms in the TEE, S on the accelerator. */
    exactness("vgg13", am_shape4(1, 3, 32, 32), 4, AM_BASIS_SHARED, 1);
    exactness("resnet18", am_shape4(1, 3, 32, 32), 3, AM_BASIS_SHARED, 1);
    exactness("resnet18-imagenet", am_shape4(1, 3, 32, 32), 4, AM_BASIS_PER_SAMPLE, 1);
    exactness("lenet", am_shape4(1, 1, 28, 28), 4, AM_BASIS_PER_SAMPLE, 1);
    /* The basis chosen per layer on the first batch. */
    exactness("vgg11", am_shape4(1, 3, 32, 32), 4, AM_BASIS_AUTO, 0);
    exactness("resnet18", am_shape4(1, 3, 32, 32), 3, AM_BASIS_AUTO, 0);
}

/* A model of `name` on batch B of 3x32x32 (1x28x28 for LeNet), converted. */
static am_model *planned(const char *name, int B, const am_asym_cfg *c, am_status want) {
    static char desc[65536];
    int lenet = !strcmp(name, "lenet");
    assert_int_equal(am_zoo_describe(name, lenet ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, 32, 32), 10, desc, sizeof desc),
                     AM_OK);
    am_model *m = fx_model(desc, 3, B);
    am_status st = am_model_set_asym(m, c, g_be);
    if (st != want) fail_msg("set_asym: %d (%s), expected %d", st, am_last_error(), want);
    return m;
}

static void forward_once(am_model *m, int B, int lenet) {
    am_tensor x;
    assert_int_equal(am_tensor_alloc(&x, lenet ? am_shape4(B, 1, 28, 28) : am_shape4(B, 3, 32, 32)), AM_OK);
    for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&rng);
    if (am_model_forward(m, &x, 1, &rng)) fail_msg("%s", am_last_error());
    am_tensor_free(&x);
}

/* A training forward pass of m on x with dropout seeded by seed; the
 * crossings it made. */
static int forward_seeded(am_model *m, const am_tensor *x, uint64_t seed) {
    am_rng dr;
    am_rng_seed(&dr, seed);
    am_model_ledger_clear(m);
    if (am_model_forward(m, x, 1, &dr)) fail_msg("%s", am_last_error());
    return am_model_ledger_count(m);
}

/* Data-driven choices are made before the first batch's step, on a pass
 * that crosses nothing and moves nothing: that step sends what a step of
 * the same plan fixed in advance sends, and leaves the same running
 * statistics, bit for bit. */
static void t_plan_first_batch(void **st) {
    (void)st;
    am_asym_cfg c = am_asym_defaults();
    c.policy = AM_RANK_ENTROPY;
    c.basis = AM_BASIS_AUTO;
    am_model *m = planned("vgg11-imagenet", 4, &c, AM_OK), *m2 = planned("vgg11-imagenet", 4, &c, AM_OK);
    am_tensor x;
    assert_int_equal(am_tensor_alloc(&x, am_shape4(4, 3, 32, 32)), AM_OK);
    for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&rng);
    am_model_ledger_enable(m, 1);
    am_model_ledger_enable(m2, 1);
    int rank[16], basis[16];
    assert_int_equal(am_model_plan_get(m, rank, basis, 16), 0);
    int n1 = forward_seeded(m, &x, 5);
    int n = am_model_plan_get(m, rank, basis, 16);
    assert_int_equal(n, 8);
    assert_int_equal(am_model_plan_set(m2, rank, basis, n), AM_OK);
    int n2 = forward_seeded(m2, &x, 5);
    int split = 0;
    for (int i = 0; i < n; i++) split += rank[i] > 0;
    assert_true(split > 0);
    assert_int_equal(n1, 2 * split); /* per split layer: its residual and its weights */
    assert_int_equal(n2, n1);
    size_t nb = am_model_buffers_len(m);
    assert_true(nb > 0);
    assert_memory_equal(am_model_buffers(m), am_model_buffers(m2), nb * sizeof(float));
    const am_tensor *a = am_model_logits(m), *b = am_model_logits(m2);
    assert_memory_equal(a->d, b->d, am_shape_numel(a->s) * sizeof(float));
    am_tensor_free(&x);
    am_model_free(m);
    am_model_free(m2);
}

/* Rank lists, data-driven ranks, the basis chosen per layer, and replaying a
 * decided plan (what resuming does). */
static void t_plan(void **st) {
    (void)st;
    /* vgg11: 8 convs, 7 after the first. */
    am_asym_cfg c = am_asym_defaults();
    c.policy = AM_RANK_LIST;
    c.n_ranks = 7;
    int want[7] = {2, 4, 0, 8, 8, 16, 3};
    memcpy(c.ranks, want, sizeof want);
    am_model *m = planned("vgg11", 4, &c, AM_OK);
    int rank[16], basis[16];
    assert_int_equal(am_model_plan_get(m, rank, basis, 16), 8);
    assert_int_equal(rank[0], 0); /* the first conv: whole */
    for (int i = 0; i < 7; i++) {
        am_split_info si;
        assert_int_equal(am_model_split_info(m, i + 1, &si), AM_OK);
        assert_int_equal(si.split, want[i] != 0);
        assert_int_equal(rank[i + 1], want[i]);
        if (want[i]) assert_int_equal(si.r, want[i]);
    }
    am_model_free(m);
    c.n_ranks = 6;
    m = planned("vgg11", 4, &c, AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "6 entries; the model has 7"));
    am_model_free(m);
    c.n_ranks = 7;
    c.ranks[2] = -1;
    m = planned("vgg11", 4, &c, AM_EINVAL);
    am_model_free(m);

    /* Entropy ranks and AUTO bases: nothing decided before the first batch;
     * afterwards every split layer has a rank in [1, C) and a basis; a
     * fresh model replays that plan and splits the same. */
    c = am_asym_defaults();
    c.policy = AM_RANK_ENTROPY;
    c.basis = AM_BASIS_AUTO;
    m = planned("vgg11", 8, &c, AM_OK);
    assert_int_equal(am_model_plan_get(m, rank, basis, 16), 0);
    /* Until the first batch decides, every layer that may split counts as
     * split (what may cross is said before it). */
    for (int i = 1; i < 8; i++) {
        am_split_info si;
        assert_int_equal(am_model_split_info(m, i, &si), AM_OK);
        assert_int_equal(si.split, 1);
    }
    forward_once(m, 8, 0);
    assert_int_equal(am_model_plan_get(m, rank, basis, 16), 8);
    int shared = 0, per = 0;
    for (int i = 1; i < 8; i++) {
        am_split_info si;
        assert_int_equal(am_model_split_info(m, i, &si), AM_OK);
        if (!si.split) continue;
        assert_true(si.r >= 1 && si.r < si.C);
        shared += si.basis == AM_BASIS_SHARED;
        per += si.basis == AM_BASIS_PER_SAMPLE;
    }
    print_message("vgg11, entropy ranks, auto basis: %d shared, %d per-sample\n", shared, per);
    assert_true(shared + per > 0);
    am_model *m2 = planned("vgg11", 8, &c, AM_OK);
    assert_int_equal(am_model_plan_set(m2, rank, basis, 8), AM_OK);
    int rank2[16], basis2[16];
    assert_int_equal(am_model_plan_get(m2, rank2, basis2, 16), 8);
    assert_memory_equal(rank, rank2, sizeof(int) * 8);
    assert_memory_equal(basis, basis2, sizeof(int) * 8);
    assert_int_equal(am_model_asym_state_len(m2), am_model_asym_state_len(m));
    /* A plan that does not fit is refused. */
    am_model_free(m2);
    m2 = planned("vgg11", 8, &c, AM_OK);
    assert_int_equal(am_model_plan_set(m2, rank, basis, 7), AM_EINVAL);
    am_model_free(m2);
    m2 = planned("vgg11", 8, &c, AM_OK);
    rank[0] = 3; /* the first conv cannot split */
    assert_int_equal(am_model_plan_set(m2, rank, basis, 8), AM_EINVAL);
    am_model_free(m2);
    am_model_free(m);

    /* With noise on and no BatchNorm (LeNet), AUTO keeps every residual
     * dependent on its own sample only: per-sample bases throughout. */
    c = am_asym_defaults();
    c.basis = AM_BASIS_AUTO;
    c.rank_value = 0.5;
    c.clip = 1.f, c.sigma = 1.f;
    m = planned("lenet", 4, &c, AM_OK);
    forward_once(m, 4, 1);
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        assert_int_equal(am_model_split_info(m, i, &si), AM_OK);
        if (si.split) assert_int_equal(si.basis, AM_BASIS_PER_SAMPLE);
    }
    am_model_free(m);
    /* Energy ranks with a shared basis: each split layer keeps the rank
     * that leaves less than tau of the batch's energy in the residual. */
    c = am_asym_defaults();
    c.policy = AM_RANK_ENERGY;
    c.rank_value = 0.2;
    m = planned("vgg11", 4, &c, AM_OK);
    forward_once(m, 4, 0);
    assert_int_equal(am_model_plan_get(m, rank, basis, 16), 8);
    for (int i = 1; i < 8; i++) assert_true(rank[i] == 0 || basis[i] == AM_BASIS_SHARED);
    am_model_free(m);
}

static void t_modes(void **st) {
    (void)st;
    am_mode md;
    assert_int_equal(am_mode_parse("lowrank-only", &md), AM_OK);
    assert_int_equal(md, AM_MODE_LOWRANK_ONLY);
    assert_int_equal(am_mode_parse("gpu", &md), AM_EINVAL);
    char desc[8192];
    assert_int_equal(am_zoo_describe("vgg11", am_shape4(1, 3, 32, 32), 10, desc, sizeof desc), AM_OK);
    am_model *m = fx_model(desc, 1, 4);
    am_tensor x;
    assert_int_equal(am_tensor_alloc(&x, am_shape4(4, 3, 32, 32)), AM_OK);
    for (size_t i = 0; i < am_shape_numel(x.s); i++) x.d[i] = am_rng_normal(&rng);
    int32_t lab[4] = {1, 2, 3, 4};
    size_t nw = am_model_weights_len(m), nb = am_model_buffers_len(m);
    float *g[3], l[3][40], *bufs = malloc(nb * sizeof(float));
    memcpy(bufs, am_model_buffers(m), nb * sizeof(float));
    const am_mode modes[3] = {AM_MODE_TEE_ONLY, AM_MODE_OPEN, AM_MODE_LOWRANK_ONLY};
    for (int k = 0; k < 3; k++) {
        am_asym_cfg c = am_asym_defaults();
        c.mode = modes[k];
        assert_int_equal(am_model_set_asym(m, &c, g_be), AM_OK);
        assert_int_equal(am_model_mode(m), modes[k]);
        g[k] = malloc(nw * sizeof(float));
        memcpy(am_model_buffers(m), bufs, nb * sizeof(float));
        run(m, &x, lab, l[k], g[k]);
    }
    assert_true(fx_scaled_err(l[1], l[0], 40) < 1e-4);   /* open: the same convs, elsewhere */
    assert_true(fx_scaled_err(g[1], g[0], nw) < 1e-4);
    assert_true(fx_scaled_err(l[2], l[0], 40) > 1e-2);   /* lowrank-only drops the residual */
    /* Bad configurations. */
    am_asym_cfg c = am_asym_defaults();
    c.sigma = 1.f; /* noise without a clipping bound */
    assert_int_equal(am_model_set_asym(m, &c, g_be), AM_EINVAL);
    c = am_asym_defaults();
    c.rank_value = 0;
    assert_int_equal(am_model_set_asym(m, &c, g_be), AM_EINVAL);
    for (int k = 0; k < 3; k++) free(g[k]);
    free(bufs);
    am_tensor_free(&x);
    am_model_free(m);
}

static void t_dp(void **st) {
    (void)st;
    /* Noise drawn for a group of samples equals the same samples' noise in
     * one call over the batch, also where the generator's 65536-value
     * chunks and its Box-Muller pairs straddle the groups. */
    {
        const int B = 7;
        const size_t n = 30001; /* odd, and chunks fall inside samples */
        float *all = malloc(sizeof(float) * B * n), *part = malloc(sizeof(float) * B * n);
        for (size_t i = 0; i < B * n; i++) all[i] = part[i] = (float)((i % 97) * 0.01 - 0.4);
        uint8_t key[32];
        for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i + 1);
        assert_int_equal(am_dp_clip_noise(all, B, n, 3.f, 0.7f, key, 42, 5), AM_OK);
        const int groups[][2] = {{0, 2}, {2, 1}, {3, 3}, {6, 1}};
        for (int g = 0; g < 4; g++)
            assert_int_equal(am_dp_clip_noise_at(part + (size_t)groups[g][0] * n, groups[g][1], n, groups[g][0], 3.f, 0.7f,
                                                 key, 42, 5),
                             AM_OK);
        assert_memory_equal(all, part, sizeof(float) * B * n);
        free(all);
        free(part);
    }
    /* The analytic Gaussian mechanism at known points. For D = s (sigma 1 of
     * sensitivity 1), delta(0) = Phi(1/2) - Phi(-1/2) = 0.382924922548026. */
    assert_true(fabs(am_agm_delta(0, 1, 1) - 0.382924922548026) < 1e-12);
    /* delta(1) = Phi(1/2 - 1) - e Phi(-1/2 - 1) = 0.308537538725987 - e*0.066807201268858 */
    assert_true(fabs(am_agm_delta(1, 1, 1) - (0.308537538725987 - exp(1.0) * 0.066807201268858)) < 1e-12);
    /* epsilon inverts delta. */
    double e = am_agm_epsilon(1e-5, 1, 1);
    assert_true(fabs(am_agm_delta(e, 1, 1) - 1e-5) < 1e-9);
    assert_true(e > 3.5 && e < 5.5);
    /* Composition: k releases at multiplier sigma equal one at sigma/sqrt(k):
     * with D = 2c, 16 releases at sigma 8 are one at sigma 2. */
    assert_true(fabs(am_dp_epsilon(8, 16, 1, 1e-5) - am_agm_epsilon(1e-5, 2, 2)) < 1e-9);
    assert_true(am_dp_epsilon(8, 16, 1, 1e-5) < am_dp_epsilon(8, 32, 1, 1e-5));
    /* A batch of 4 that shares a basis: sensitivity 2c*2, as 4x the releases. */
    assert_true(fabs(am_dp_epsilon(8, 4, 4, 1e-5) - am_dp_epsilon(8, 16, 1, 1e-5)) < 1e-12);
    assert_true(isinf(am_dp_epsilon(0, 3, 1, 1e-5)));
    assert_true(am_dp_epsilon(1, 0, 1, 1e-5) == 0);
    /* Clipping and noise. */
    const int B = 3;
    const size_t n = 20000;
    float *R = malloc(sizeof(float) * B * n), *R2 = malloc(sizeof(float) * B * n);
    for (size_t i = 0; i < B * n; i++) R[i] = 0.f;
    R[0] = 30.f; /* sample 0 has norm 30, clipped to 2 */
    assert_int_equal(am_dp_clip_noise(R, B, n, 2.f, 0.f, NULL, 1, 0), AM_OK);
    assert_float_equal(R[0], 2.f, 1e-6);
    memcpy(R2, R, sizeof(float) * B * n);
    assert_int_equal(am_dp_clip_noise(R, B, n, 2.f, 1.5f, NULL, 9, 4), AM_OK);
    double s = 0, ss = 0;
    for (size_t i = 1; i < B * n; i++) s += R[i], ss += (double)R[i] * R[i];
    double mean = s / (B * n - 1), sd = sqrt(ss / (B * n - 1) - mean * mean);
    assert_true(fabs(mean) < 0.05 && fabs(sd - 3.0) < 0.05); /* std sigma * c = 3 */
    float *R3 = malloc(sizeof(float) * B * n);
    memcpy(R3, R2, sizeof(float) * B * n);
    assert_int_equal(am_dp_clip_noise(R2, B, n, 2.f, 1.5f, NULL, 9, 4), AM_OK);
    assert_memory_equal(R, R2, sizeof(float) * B * n); /* same key: same noise */
    /* An all-zero key is no key; a secret key changes all of the noise. */
    am_asym_cfg kc = {0};
    float *R4 = malloc(sizeof(float) * B * n);
    memcpy(R4, R3, sizeof(float) * B * n);
    assert_int_equal(am_dp_clip_noise(R4, B, n, 2.f, 1.5f, kc.noise_key, 9, 4), AM_OK);
    assert_memory_equal(R, R4, sizeof(float) * B * n);
    assert_int_equal(am_asym_secret_noise_key(&kc), AM_OK);
    am_asym_cfg kc2 = {0};
    assert_int_equal(am_asym_secret_noise_key(&kc2), AM_OK);
    assert_true(memcmp(kc.noise_key, kc2.noise_key, 32) != 0);
    memcpy(R4, R3, sizeof(float) * B * n);
    assert_int_equal(am_dp_clip_noise(R4, B, n, 2.f, 1.5f, kc.noise_key, 9, 4), AM_OK);
    size_t same = 0;
    for (size_t i = 0; i < B * n; i++) same += R4[i] == R[i];
    assert_true(same < 10);
    free(R3);
    free(R4);
    for (size_t i = 0; i < B * n; i++) R2[i] = 0;
    assert_int_equal(am_dp_clip_noise(R2, B, n, 2.f, 1.5f, NULL, 9, 5), AM_OK);
    assert_true(memcmp(R + 1, R2 + 1, 64) != 0); /* another release: other noise */
    assert_int_equal(am_dp_clip_noise(R, B, n, -1.f, 1.f, NULL, 9, 4), AM_EINVAL);
    free(R);
    free(R2);
}

/* Nothing private in the ledger: only weights, residuals and output
 * gradients cross, and no crossing equals an input image, a label, or any
 * layer's full output. */
static void t_ledger(void **st) {
    (void)st;
    const char *names[] = {"vgg11", "vgg16-imagenet", "resnet18", "resnet34-imagenet", "lenet", "resnet18", "vgg11"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        int lenet = k == 4, protect = k >= 5;
        am_shape in = lenet ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, 32, 32);
        static char desc[65536];
        assert_int_equal(am_zoo_describe(names[k], in, 10, desc, sizeof desc), AM_OK);
        am_model *m = fx_model(desc, 1, 2);
        am_asym_cfg c = am_asym_defaults();
        c.clip = 50.f, c.sigma = 0.5f;
        c.protect_grads = protect;
        assert_int_equal(am_model_set_asym(m, &c, g_be), AM_OK);
        /* Every layer's output, to compare with what crossed. */
        assert_int_equal(am_model_keep_outputs(m, 1), AM_OK);
        am_model_ledger_enable(m, 1);
        am_shape s = in;
        s.n = 2;
        am_tensor x;
        assert_int_equal(am_tensor_alloc(&x, s), AM_OK);
        for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = am_rng_normal(&rng);
        int32_t lab[2] = {3, 7};
        float loss;
        am_model_set_step(m, 0);
        assert_int_equal(am_model_forward(m, &x, 1, &rng), AM_OK);
        assert_int_equal(am_model_loss(m, lab, &loss), AM_OK);
        assert_int_equal(am_model_backward(m), AM_OK);
        int n = am_model_ledger_count(m), kinds[5] = {0};
        uint8_t h[16];
        for (int i = 0; i < n; i++) {
            const am_ledger_entry *e = am_model_ledger_entry(m, i);
            /* With protected gradients no output gradient crosses in the clear. */
            if (protect)
                assert_true(e->kind == AM_CROSS_WEIGHTS || e->kind == AM_CROSS_RESIDUAL || e->kind == AM_CROSS_GRAD_RESIDUAL);
            else
                assert_true(e->kind == AM_CROSS_WEIGHTS || e->kind == AM_CROSS_RESIDUAL || e->kind == AM_CROSS_OUTPUT_GRAD);
            kinds[e->kind]++;
            am_ledger_hash(x.d, am_shape_numel(s) * sizeof(float), h);
            assert_memory_not_equal(h, e->hash, 16);
            am_ledger_hash(lab, sizeof lab, h);
            assert_memory_not_equal(h, e->hash, 16);
            for (int l = 1; l < am_model_num_layers(m); l++) {
                const am_tensor *y = am_model_output(m, l);
                am_ledger_hash(y->d, am_shape_numel(y->s) * sizeof(float), h);
                assert_memory_not_equal(h, e->hash, 16);
            }
        }
        assert_true(kinds[AM_CROSS_RESIDUAL] > 0);
        if (lenet) assert_int_equal(kinds[AM_CROSS_RESIDUAL], 1); /* only its second conv is split */
        assert_int_equal(kinds[AM_CROSS_RESIDUAL], kinds[AM_CROSS_WEIGHTS]);
        assert_int_equal(kinds[AM_CROSS_RESIDUAL], kinds[protect ? AM_CROSS_GRAD_RESIDUAL : AM_CROSS_OUTPUT_GRAD]);
        print_message("%-18s %d crossings: %d residuals, %d weights, %d output gradients, %d gradient residuals\n",
                      names[k], n, kinds[AM_CROSS_RESIDUAL], kinds[AM_CROSS_WEIGHTS], kinds[AM_CROSS_OUTPUT_GRAD],
                      kinds[AM_CROSS_GRAD_RESIDUAL]);
        am_tensor_free(&x);
        am_model_free(m);
    }
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    am_rng_seed(&rng, 2024);
    if (am_cpu_backend_create(&g_be) != AM_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_exactness_zoo), cmocka_unit_test(t_plan), cmocka_unit_test(t_plan_first_batch), cmocka_unit_test(t_modes),
        cmocka_unit_test(t_dp),            cmocka_unit_test(t_ledger),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_be->vt->destroy(g_be);
    return rc;
}
