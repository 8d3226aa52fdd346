/* The split's object: its life, its settings (step, verification, the
 * noise's key and counter), its checkpointed state, the figures bench and
 * analyze print, and the ledger's switches. The plan is plan.c's; the
 * passes are exec.c's and the strategies'. */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trusted/split_impl.h"

double asym_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double asym_busy(const am_asym *a) { return a->be ? a->be->vt->busy_seconds(a->be) : 0; }

am_status am_asym_create(const am_asym_cfg *cfg, int n_layers, am_backend *be, am_asym **out) {
    *out = NULL;
    if (!cfg || n_layers < 1) return am_fail(AM_EINVAL, "asym: bad argument");
    if (cfg->mode < AM_MODE_TEE_ONLY || cfg->mode > AM_MODE_SLALOM || cfg->mode == AM_MODE_GPU_ONLY)
        return am_fail(AM_EINVAL, "asym: unknown mode");
    if (cfg->act_bits && (cfg->act_bits < 2 || cfg->act_bits > 16))
        return am_fail(AM_EINVAL, "asym: %d activation bits outside [2, 16]", cfg->act_bits);
    if (!be && (cfg->mode == AM_MODE_ASYMML || cfg->mode == AM_MODE_OPEN || cfg->mode == AM_MODE_SLALOM))
        return am_fail(AM_EINVAL, "asym: %s mode needs an accelerator backend", am_mode_name(cfg->mode));
    if (cfg->iters < 1 || cfg->iters > 20) return am_fail(AM_EINVAL, "asym: iterations %d outside [1, 20]", cfg->iters);
    if (!(cfg->clip >= 0.f) || !(cfg->sigma >= 0.f) || !isfinite(cfg->clip) || !isfinite(cfg->sigma))
        return am_fail(AM_EINVAL, "asym: clip and sigma must be finite and >= 0");
    if (cfg->sigma > 0.f && cfg->clip == 0.f)
        return am_fail(AM_EINVAL, "asym: noise needs a clipping bound (--clip) to mean anything");
    switch (cfg->policy) {
    case AM_RANK_RATIO:
        if (!(cfg->rank_value > 0 && cfg->rank_value <= 1)) return am_fail(AM_EINVAL, "asym: rank ratio must be in (0, 1]");
        break;
    case AM_RANK_FIXED:
        if (!(cfg->rank_value >= 1 && cfg->rank_value <= 65536)) return am_fail(AM_EINVAL, "asym: fixed rank must be >= 1");
        break;
    case AM_RANK_ENERGY:
        if (!(cfg->rank_value > 0 && cfg->rank_value < 1)) return am_fail(AM_EINVAL, "asym: energy threshold must be in (0, 1)");
        break;
    case AM_RANK_ENTROPY: break;
    case AM_RANK_LIST:
        if (cfg->n_ranks < 1 || cfg->n_ranks > AM_MAX_RANKS)
            return am_fail(AM_EINVAL, "asym: a rank list needs 1 to %d entries", AM_MAX_RANKS);
        for (int i = 0; i < cfg->n_ranks; i++)
            if (cfg->ranks[i] < 0 || cfg->ranks[i] > 65536)
                return am_fail(AM_EINVAL, "asym: rank list entry %d is %d (want 0 to 65536; 0 runs the layer whole)", i + 1,
                               cfg->ranks[i]);
        break;
    default: return am_fail(AM_EINVAL, "asym: unknown rank policy");
    }
    if (cfg->basis < AM_BASIS_SHARED || cfg->basis > AM_BASIS_AUTO) return am_fail(AM_EINVAL, "asym: unknown basis kind");
    am_asym *a = calloc(1, sizeof *a);
    if (!a) return am_fail(AM_ENOMEM, "out of memory");
    a->cfg = *cfg;
    a->n = n_layers;
    /* The pads' key: drawn here, never leaves, never stored. */
    if (cfg->mode == AM_MODE_SLALOM && (sodium_init() < 0 || (randombytes_buf(a->pad_key, sizeof a->pad_key), 0))) {
        free(a);
        return am_fail(AM_EIO, "asym: libsodium failed to initialize");
    }
    a->L = calloc((size_t)n_layers, sizeof(layer_plan));
    a->be = be;
    if (!a->L) {
        am_asym_free(a);
        return am_fail(AM_ENOMEM, "out of memory");
    }
    *out = a;
    return AM_OK;
}

void am_asym_free(am_asym *a) {
    if (!a) return;
    for (int i = 0; i < a->n && a->L; i++) {
        layer_plan *p = &a->L[i];
        am_aligned_free(p->V);
        am_aligned_free(p->Ub);
        am_aligned_free(p->Wp);
        am_aligned_free(p->dWp);
        am_aligned_free(p->vu);
        am_aligned_free(p->vRu);
        am_aligned_free(p->vRa);
        am_aligned_free(p->wc);
        am_aligned_free(p->wsc);
        am_aligned_free(p->cs);
        am_aligned_free(p->cv);
    }
    free(a->L);
    am_aligned_free(a->state);
    am_aligned_free(a->scratch);
    am_aligned_free(a->basis_work);
    am_aligned_free(a->u_eval);
    am_aligned_free(a->gs);
    am_aligned_free(a->gb);
    am_aligned_free(a->wa);
    am_aligned_free(a->crb);
    am_aligned_free(a->wt);
    am_aligned_free(a->fm);
    am_aligned_free(a->ucat);
    am_aligned_free(a->fe);
    am_aligned_free(a->vsig);
    am_aligned_free(a->vref);
    am_aligned_free(a->vmag);
    am_aligned_free(a->vcomb);
    am_aligned_free(a->vwork);
    am_aligned_free(a->qx);
    am_aligned_free(a->qw);
    am_aligned_free(a->qs);
    am_aligned_free(a->qy);
    am_aligned_free(a->qwork);
    am_aligned_free(a->qr);
    am_aligned_free(a->qwf);
    am_aligned_free(a->vf);
    am_aligned_free(a->fl);
    sodium_memzero(a->pad_key, sizeof a->pad_key);
    free(a->led);
    free(a);
}

/* Grows a trusted scratch buffer to at least n floats. */
am_status asym_grow(float **buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf) return AM_OK;
    am_aligned_free(*buf);
    *buf = am_aligned_alloc(n * sizeof(float));
    *cap = *buf ? n : 0;
    return *buf ? AM_OK : am_fail(AM_ENOMEM, "asym: cannot allocate %zu MiB", (n * sizeof(float)) >> 20);
}

am_status asym_grow_d(double **buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf) return AM_OK;
    am_aligned_free(*buf);
    *buf = am_aligned_alloc(n * sizeof(double));
    *cap = *buf ? n : 0;
    return *buf ? AM_OK : am_fail(AM_ENOMEM, "asym: cannot allocate %zu MiB", (n * sizeof(double)) >> 20);
}

/* Appends n floats (aligned) to the checkpointed state; *off receives where. */
am_status asym_state_add(am_asym *a, size_t n, size_t *off) {
    size_t add = am_align_up(n * sizeof(float)) / sizeof(float);
    float *ns = am_aligned_alloc((a->state_len + add) * sizeof(float));
    if (!ns) return am_fail(AM_ENOMEM, "asym: out of memory");
    if (a->state) memcpy(ns, a->state, a->state_len * sizeof(float));
    am_aligned_free(a->state);
    a->state = ns;
    *off = a->state_len;
    a->state_len += add;
    return AM_OK;
}

/* ---------------------------------------------------------------- queries */

void am_asym_set_step(am_asym *a, uint64_t step) { a->step = step; }
uint64_t am_asym_noise_counter(const am_asym *a) { return a->release_next; }
void am_asym_set_verify(am_asym *a, int on) { a->verify = on; }

void am_asym_set_noise_session(am_asym *a, const uint8_t *nonce) {
    if (sodium_init() < 0 || sodium_is_zero(a->cfg.noise_key, sizeof a->cfg.noise_key)) {
        memset(a->noise_key, 0, sizeof a->noise_key); /* no secret: the seed alone, as documented */
        return;
    }
    crypto_generichash(a->noise_key, sizeof a->noise_key, nonce, 16, a->cfg.noise_key, sizeof a->cfg.noise_key);
}
void am_asym_set_noise_counter(am_asym *a, uint64_t next) { a->release_next = next; }
const am_asym_cfg *am_asym_config(const am_asym *a) { return &a->cfg; }

int am_asym_num_convs(const am_asym *a) {
    int n = 0;
    for (int i = 0; i < a->n; i++) n += a->L[i].active;
    return n;
}

am_status am_asym_info(const am_asym *a, int i, am_split_info *out) {
    for (int l = 0, k = 0; l < a->n; l++) {
        const layer_plan *p = &a->L[l];
        if (!p->active) continue;
        if (k++ != i) continue;
        *out = (am_split_info){l, p->split, p->C, p->K, p->r, p->basis, p->e_total > 0 ? p->e_kept / p->e_total : 0,
                               p->e_total, p->split ? p->tee_flops : p->whole_flops, p->whole_flops, p->tee_s,
                               p->decomp_s, p->xfer_s, p->accel_s, p->wait_s};
        if (!p->split && a->cfg.mode == AM_MODE_OPEN) out->tee_flops = 0;
        return AM_OK;
    }
    return am_fail(AM_EINVAL, "asym: conv %d out of range", i);
}

double am_asym_accel_seconds(const am_asym *a) { return asym_busy(a); }
double am_asym_blocked_seconds(const am_asym *a) { return a->blocked_s; }

void am_asym_reset_timers(am_asym *a) {
    for (int i = 0; i < a->n; i++) {
        a->L[i].tee_s = a->L[i].decomp_s = a->L[i].xfer_s = a->L[i].accel_s = a->L[i].wait_s = 0;
        a->L[i].e_kept = a->L[i].e_total = 0;
    }
}

size_t am_asym_state_len(const am_asym *a) { return a->state_len; }
void am_asym_state_restored(am_asym *a) {
    for (int i = 0; i < a->n; i++)
        if (a->L[i].active && a->L[i].split && a->L[i].r) a->L[i].warm = 1;
}
float *am_asym_state(am_asym *a) { return a->state; }

void am_asym_ledger_enable(am_asym *a, int on) { a->ledger_on = on; }
int am_asym_ledger_count(const am_asym *a) { return a->led_n; }
const am_ledger_entry *am_asym_ledger_entry(const am_asym *a, int i) {
    return i >= 0 && i < a->led_n ? &a->led[i] : NULL;
}
void am_asym_ledger_clear(am_asym *a) { a->led_n = 0; }

