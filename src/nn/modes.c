/* Split execution attached to a model: the modes, the plan and its figures,
 * the release counter and verification, the ledger, through the model's
 * API (asymml/asym.h). The work itself is src/trusted's. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_impl.h"

const char *am_mode_name(am_mode md) {
    switch (md) {
    case AM_MODE_TEE_ONLY: return "tee-only";
    case AM_MODE_ASYMML: return "asymml";
    case AM_MODE_LOWRANK_ONLY: return "lowrank-only";
    case AM_MODE_OPEN: return "open";
    case AM_MODE_GPU_ONLY: return "gpu-only";
    case AM_MODE_QUANTIZED: return "quantized";
    case AM_MODE_SLALOM: return "slalom";
    }
    return "unknown";
}

am_status am_mode_parse(const char *s, am_mode *out) {
    for (int i = AM_MODE_TEE_ONLY; i <= AM_MODE_SLALOM; i++)
        if (s && !strcmp(s, am_mode_name((am_mode)i))) {
            *out = (am_mode)i;
            return AM_OK;
        }
    return am_fail(AM_EINVAL, "unknown mode '%s' (tee-only, asymml, lowrank-only, open, gpu-only, quantized, slalom)",
                   s ? s : "");
}

int am_mode_fixed_point(am_mode md) { return md == AM_MODE_QUANTIZED || md == AM_MODE_SLALOM; }

am_asym_cfg am_asym_defaults(void) {
    am_asym_cfg c = {.mode = AM_MODE_ASYMML, .policy = AM_RANK_RATIO, .rank_value = 1.0 / 16, .basis = AM_BASIS_SHARED,
                     .iters = 2, .noise_seed = 1};
    return c;
}

am_status am_model_set_asym(am_model *m, const am_asym_cfg *cfg, am_backend *accel) {
    if (!cfg) return am_fail(AM_EINVAL, "asym: NULL configuration");
    if (!m->B) return am_fail(AM_EINVAL, "asym: call am_model_set_batch first");
    /* The release counter outlives plans: a new one must not repeat noise. */
    if (m->asym) m->noise_counter = am_asym_noise_counter(m->asym);
    /* Leaving gpu-only mode (or re-sizing it): the weights trained there first. */
    if (m->gpu) AM_TRY(am_gpu_sync(m));
    am_asym_free(m->asym);
    m->asym = NULL;
    am_gpu_free(m->gpu);
    m->gpu = NULL;
    if (cfg->mode == AM_MODE_TEE_ONLY) return am_model_relayout(m);
    if (cfg->mode == AM_MODE_GPU_ONLY) {
        AM_TRY(am_gpu_attach(m, accel));
        m->asym_cfg = *cfg;
        m->accel = accel;
        return AM_OK;
    }
    am_asym *a;
    AM_TRY(am_asym_create(cfg, m->n, accel, &a));
    int bn_seen = 0;
    am_status st = AM_OK;
    for (int i = 1; i < m->n && st == AM_OK; i++) {
        layer *l = &m->L[i];
        bn_seen |= l->kind == K_BN;
        am_shape xs = m->L[l->in[0]].os;
        xs.n = m->B;
        if (l->kind == K_LINEAR && am_mode_fixed_point(cfg->mode)) xs = am_shape4(m->B, xs.c * xs.h * xs.w, 1, 1);
        else if (l->kind != K_CONV) continue;
        st = am_asym_plan(a, i, &l->conv, xs, l->in[0] == 0, bn_seen);
    }
    if (st == AM_OK) st = am_asym_plan_done(a);
    if (st != AM_OK) {
        am_asym_free(a);
        return st;
    }
    m->asym = a;
    m->asym_cfg = *cfg;
    m->accel = accel;
    am_asym_set_noise_counter(a, m->noise_counter);
    am_asym_set_verify(a, m->verify);
    am_asym_set_noise_session(a, m->session);
    /* What the TEE keeps for the backward pass depends on the plan. */
    return am_model_relayout(m);
}

/* The last layer the float pass must reach: whose plan is pending, or, to
 * calibrate (quantized mode), any conv or linear layer; 0 if none. */
static int last_to_see(const am_model *m, int calibrate) {
    int last = 0;
    for (int i = 1; i < m->n; i++) {
        int lin = m->L[i].kind == K_CONV || m->L[i].kind == K_LINEAR;
        if (am_asym_pending(m->asym, i) || (calibrate && lin)) last = i;
    }
    return last;
}

/* A forward pass of x as tee-only runs it (every layer in the TEE, in
 * float), which shows each layer up to `last` its input: pending choices
 * are decided on it; with calibrate, every quantized layer's range also
 * takes it in. Nothing crosses and the model does not move: the running
 * statistics and the dropout generator are as they were. */
static am_status float_pass(am_model *m, const am_tensor *x, int training, am_rng *rng, int last, int calibrate) {
    /* Only a training pass moves the running statistics. */
    float *stats = training && m->n_buf ? malloc(sizeof(float) * m->n_buf) : NULL;
    if (training && m->n_buf && !stats) return am_fail(AM_ENOMEM, "model: out of memory");
    if (stats) memcpy(stats, m->bdata, sizeof(float) * m->n_buf);
    am_rng r = rng ? *rng : (am_rng){0};
    am_asym *a = m->asym;
    m->asym = NULL; /* every layer whole in the TEE */
    m->L[0].y.d = x->d;
    am_status st = AM_OK;
    for (int i = 1; i <= last && st == AM_OK; i++) {
        const float *in = m->L[m->L[i].in[0]].y.d;
        if (am_asym_pending(a, i)) st = am_asym_decide(a, i, in);
        else if (calibrate && (m->L[i].kind == K_CONV || m->L[i].kind == K_LINEAR)) st = am_asym_calibrate(a, i, in);
        if (st == AM_OK && i < last) st = am_model_fwd_layer(m, i, training, rng ? &r : NULL);
    }
    m->asym = a;
    if (stats) memcpy(m->bdata, stats, sizeof(float) * m->n_buf);
    free(stats);
    return st;
}

/* Data-driven choices (a rank from the spectrum, AUTO's basis, a quantized
 * layer's range) wait for the first batch. They are made before its step
 * runs, on a pass of that batch as tee-only runs it: every conv whole in
 * the TEE, so nothing crosses and nothing is released, and both private
 * modes choose the same plan from the same data. */
am_status am_model_plan_batch(am_model *m, const am_tensor *x, int training, am_rng *rng) {
    int last = last_to_see(m, 0);
    if (!last) return AM_OK;
    AM_TRY(float_pass(m, x, training, rng, last, 0));
    /* What the TEE keeps for the backward pass depends on the plan. */
    return am_model_relayout(m);
}

am_status am_model_calibrate(am_model *m, const am_tensor *x) {
    if (!m || !x || !x->d) return am_fail(AM_EINVAL, "calibrate: NULL argument");
    if (!m->asym || !am_mode_fixed_point(m->asym_cfg.mode))
        return am_fail(AM_EINVAL, "calibrate: not in a fixed-point mode (quantized, slalom)");
    if (!am_shape_eq(x->s, m->L[0].y.s)) return am_fail(AM_EINVAL, "calibrate: the batch's shape is not the model's");
    return float_pass(m, x, 0, NULL, last_to_see(m, 1), 1);
}

am_mode am_model_mode(const am_model *m) { return m->asym || m->gpu ? m->asym_cfg.mode : AM_MODE_TEE_ONLY; }
void am_model_set_step(am_model *m, uint64_t step) {
    if (m->asym) am_asym_set_step(m->asym, step);
    if (m->gpu) am_gpu_set_step(m->gpu, step);
}
am_status am_model_sgd_step(am_model *m, am_sgd *opt, float lr) {
    if (!m || !opt) return am_fail(AM_EINVAL, "sgd: NULL argument");
    if (m->gpu) return am_gpu_sgd(m, am_sgd_config(opt), lr);
    return am_sgd_step(opt, m->wdata, m->gdata, lr);
}
am_status am_model_sync(am_model *m) { return m->gpu ? am_gpu_sync(m) : AM_OK; }
am_status am_model_new_noise_session(am_model *m) {
    if (sodium_init() < 0) return am_fail(AM_EIO, "model: libsodium failed to initialize");
    randombytes_buf(m->session, sizeof m->session);
    if (m->asym) am_asym_set_noise_session(m->asym, m->session);
    return AM_OK;
}

void am_model_verify(am_model *m, int on) {
    m->verify = on;
    if (m->asym) am_asym_set_verify(m->asym, on);
}
uint64_t am_model_noise_counter(const am_model *m) { return m->asym ? am_asym_noise_counter(m->asym) : m->noise_counter; }
void am_model_set_noise_counter(am_model *m, uint64_t next) {
    m->noise_counter = next;
    if (m->asym) am_asym_set_noise_counter(m->asym, next);
}
int am_model_num_convs(const am_model *m) { return m->asym ? am_asym_num_convs(m->asym) : 0; }
am_status am_model_split_info(const am_model *m, int i, am_split_info *out) {
    if (!m->asym) return am_fail(AM_EINVAL, "model: no split plan (tee-only mode)");
    return am_asym_info(m->asym, i, out);
}
double am_model_accel_seconds(const am_model *m) {
    return m->gpu ? am_gpu_accel_seconds(m->gpu) : m->asym ? am_asym_accel_seconds(m->asym) : 0;
}
double am_model_blocked_seconds(const am_model *m) {
    return m->gpu ? am_gpu_blocked_seconds(m->gpu) : m->asym ? am_asym_blocked_seconds(m->asym) : 0;
}
void am_model_reset_timers(am_model *m) {
    memset(m->prof, 0, sizeof m->prof);
    if (m->asym) am_asym_reset_timers(m->asym);
}
double am_model_profile(const am_model *m, am_prof_kind k) { return k >= 0 && k < AM_PROF_KINDS ? m->prof[k] : 0; }
const char *am_prof_kind_name(am_prof_kind k) {
    static const char *const names[AM_PROF_KINDS] = {"first conv", "split convs", "whole convs", "batchnorm",
                                                     "relu",       "pooling",     "linear",      "other"};
    return k >= 0 && k < AM_PROF_KINDS ? names[k] : "unknown";
}
int am_model_plan_get(const am_model *m, int *rank, int *basis, int max) {
    return m->asym ? am_asym_plan_get(m->asym, rank, basis, max) : 0;
}
am_status am_model_plan_set(am_model *m, const int *rank, const int *basis, int n) {
    if (!m->asym) return n ? am_fail(AM_EINVAL, "model: a stored split plan, but the mode is tee-only") : AM_OK;
    AM_TRY(am_asym_plan_set(m->asym, rank, basis, n));
    return am_model_relayout(m);
}
size_t am_model_asym_state_len(const am_model *m) { return m->asym ? am_asym_state_len(m->asym) : 0; }
float *am_model_asym_state(am_model *m) { return m->asym ? am_asym_state(m->asym) : NULL; }
void am_model_asym_state_restored(am_model *m) {
    if (m->asym) am_asym_state_restored(m->asym);
}
void am_model_ledger_enable(am_model *m, int on) {
    if (m->asym) am_asym_ledger_enable(m->asym, on);
}
int am_model_ledger_count(const am_model *m) { return m->asym ? am_asym_ledger_count(m->asym) : 0; }
const am_ledger_entry *am_model_ledger_entry(const am_model *m, int i) {
    return m->asym ? am_asym_ledger_entry(m->asym, i) : NULL;
}
void am_model_ledger_clear(am_model *m) {
    if (m->asym) am_asym_ledger_clear(m->asym);
}
