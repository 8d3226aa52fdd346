/* The split's plan: per conv layer, split (at which rank, with which basis)
 * or whole, decided from costs and, for data-driven policies, from the
 * first batch's spectra; the checkpointed state (warm-started bases); the
 * figures bench and analyze print; the object's life. */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trusted/fold.h"
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
    if (cfg->mode < AM_MODE_TEE_ONLY || cfg->mode > AM_MODE_OPEN) return am_fail(AM_EINVAL, "asym: unknown mode");
    if (!be && (cfg->mode == AM_MODE_ASYMML || cfg->mode == AM_MODE_OPEN))
        return am_fail(AM_EINVAL, "asym: %s mode needs an accelerator backend", cfg->mode == AM_MODE_OPEN ? "open" : "asymml");
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
    free(a->led);
    free(a);
}

/* TEE flops per training step of a split layer with rank r (forward and
 * backward), and of the same layer whole (forward, dW, dX). */
static double split_flops(const am_asym *a, const layer_plan *p, am_basis_kind kind, int r) {
    double B = p->x.n, N = p->N, C = p->C, K = p->K, kk = p->kk, P = p->P;
    double basis = kind == AM_BASIS_PER_SAMPLE ? a->cfg.iters * 4.0 * B * N * C * r + 2 * B * N * C * r
                                               : a->cfg.iters * 4.0 * B * N * C * r;
    double folds = (kind == AM_BASIS_PER_SAMPLE ? B : 1) * 2 * (2.0 * K * C * kk * r);
    double lowrank = 2 * (2.0 * K * r * kk * B * P);
    return basis + 4.0 * B * N * C * r + folds + lowrank;
}

static void costs(am_asym *a, layer_plan *p, int r) {
    p->tee_flops = split_flops(a, p, p->basis, r);
    p->whole_flops = 3 * 2.0 * p->K * p->C * p->kk * p->x.n * p->P;
}

/* Grows a trusted scratch buffer to at least n floats. */
am_status asym_grow(float **buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf) return AM_OK;
    am_aligned_free(*buf);
    *buf = am_aligned_alloc(n * sizeof(float));
    *cap = *buf ? n : 0;
    return *buf ? AM_OK : am_fail(AM_ENOMEM, "asym: cannot allocate %zu MiB", (n * sizeof(float)) >> 20);
}

static am_status grow_basis_work(am_asym *a, size_t n) {
    if (n <= a->basis_work_n) return AM_OK;
    size_t cap = a->basis_work_n;
    AM_TRY(asym_grow(&a->basis_work, &cap, n));
    cap = 0;
    am_aligned_free(a->u_eval);
    a->u_eval = NULL;
    AM_TRY(asym_grow(&a->u_eval, &cap, n));
    a->basis_work_n = n;
    return AM_OK;
}

/* Appends n floats (aligned) to the checkpointed state; *off receives where. */
static am_status state_add(am_asym *a, size_t n, size_t *off) {
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

static am_status alloc_layer(am_asym *a, layer_plan *p) {
    size_t B = (size_t)p->x.n, r = (size_t)p->r;
    am_aligned_free(p->V);
    am_aligned_free(p->Ub);
    am_aligned_free(p->Wp);
    am_aligned_free(p->dWp);
    p->V = am_aligned_alloc(sizeof(float) * B * r * (size_t)p->N);
    p->Wp = am_aligned_alloc(sizeof(float) * (size_t)p->K * r * (size_t)p->kk);
    p->dWp = am_aligned_alloc(sizeof(float) * (size_t)p->K * r * (size_t)p->kk);
    p->Ub = p->basis == AM_BASIS_PER_SAMPLE ? am_aligned_alloc(sizeof(float) * B * (size_t)p->C * r) : NULL;
    if (!p->V || !p->Wp || !p->dWp || (p->basis == AM_BASIS_PER_SAMPLE && !p->Ub))
        return am_fail(AM_ENOMEM, "asym: out of memory for a split layer (%d channels, rank %d)", p->C, p->r);
    {
        const int per = p->basis == AM_BASIS_PER_SAMPLE;
        size_t nb = per ? (size_t)am_unfold_group(p->x.n, p->K, p->r, p->kk) : 1, kkk = (size_t)p->K * p->kk;
        size_t chunk = (size_t)p->C * am_fold_chunk(p->K, p->C, p->kk) * p->kk;
        AM_TRY(asym_grow(&a->wt, &a->wt_n, per ? (size_t)p->C * kkk : chunk));
        AM_TRY(asym_grow(&a->fe, &a->fe_n, chunk));
        AM_TRY(asym_grow(&a->fm, &a->fm_n, nb * r * kkk));
        AM_TRY(asym_grow(&a->ucat, &a->ucat_n, (size_t)p->C * nb * r));
    }
    /* The basis state: one U (and A) per layer, contiguous for checkpoints. */
    if (p->basis == AM_BASIS_SHARED) {
        AM_TRY(state_add(a, (size_t)p->C * r, &p->u_off));
        AM_TRY(grow_basis_work(a, am_shared_basis_workspace(p->x.n, p->C, p->N, p->r)));
        AM_TRY(grow_basis_work(a, am_project_workspace(p->x.n, p->C, p->N, p->r)));
    }
    if (a->cfg.protect_grads && a->cfg.mode == AM_MODE_ASYMML) {
        p->rg = am_rank_pick(a->cfg.policy == AM_RANK_FIXED ? AM_RANK_FIXED : AM_RANK_RATIO,
                             a->cfg.policy == AM_RANK_FIXED ? a->cfg.rank_value : (double)p->r / p->C, NULL, p->K);
        AM_TRY(state_add(a, (size_t)p->K * p->rg, &p->a_off));
        AM_TRY(grow_basis_work(a, am_shared_basis_workspace(p->x.n, p->K, p->P, p->rg)));
        AM_TRY(asym_grow(&a->gs, &a->gs_n, B * (size_t)p->K * p->P));
        AM_TRY(asym_grow(&a->gb, &a->gb_n, B * (size_t)p->rg * p->P));
        AM_TRY(asym_grow(&a->wa, &a->wa_n, (size_t)p->rg * p->C * p->kk));
        AM_TRY(asym_grow(&a->crb, &a->crb_n, (size_t)p->rg * p->C * p->kk));
    }
    return AM_OK;
}

/* Samples per group in the forward pass's residual buffer: up to 1 Mi
 * floats (4 MiB); all of them with protected gradients, whose backward pass
 * recomputes the whole residual there. */
int asym_group_size(const am_asym *a, const layer_plan *p) {
    size_t per = (size_t)p->x.c * p->x.h * p->x.w, cap = (size_t)1 << 20;
    if (a->cfg.protect_grads && a->cfg.mode == AM_MODE_ASYMML) return p->x.n;
    size_t g = per >= cap ? 1 : cap / per;
    return g >= (size_t)p->x.n ? p->x.n : (int)g;
}

static am_status grow_scratch(am_asym *a, const layer_plan *p) {
    size_t need = (size_t)asym_group_size(a, p) * p->x.c * p->x.h * p->x.w;
    if (need <= a->scratch_n) return AM_OK;
    am_aligned_free(a->scratch);
    a->scratch = am_aligned_alloc(need * sizeof(float));
    a->scratch_n = a->scratch ? need : 0;
    return a->scratch ? AM_OK : am_fail(AM_ENOMEM, "asym: out of memory for the residual");
}

/* Fixes a layer's basis and rank (0: whole). It splits only where that saves
 * the TEE work; a rank that covers all channels leaves no residual: whole. */
static am_status settle(am_asym *a, layer_plan *p, am_basis_kind kind, int r) {
    p->basis = kind;
    p->r = r;
    p->decided = 1;
    costs(a, p, r ? r : 1);
    p->split = r > 0 && r < p->C && p->tee_flops < p->whole_flops;
    if (!p->split) {
        p->r = 0;
        costs(a, p, (p->C + 15) / 16);
        return AM_OK;
    }
    AM_TRY(alloc_layer(a, p));
    return grow_scratch(a, p);
}

am_status am_asym_plan(am_asym *a, int layer, const am_conv2d_cfg *cfg, am_shape x, int first, int coupled) {
    if (layer < 0 || layer >= a->n) return am_fail(AM_EINVAL, "asym: layer %d out of range", layer);
    layer_plan *p = &a->L[layer];
    memset(p, 0, sizeof *p);
    p->active = 1;
    p->first = first;
    p->coupled = coupled;
    p->cfg = *cfg;
    p->x = x;
    AM_TRY(am_conv2d_out_shape(cfg, x, &p->y));
    p->C = x.c, p->K = cfg->out_c, p->N = x.h * x.w, p->P = p->y.h * p->y.w, p->kk = cfg->kh * cfg->kw;
    p->basis = a->cfg.basis == AM_BASIS_AUTO ? AM_BASIS_SHARED : a->cfg.basis;
    costs(a, p, (p->C + 15) / 16); /* whole_flops for every layer */
    p->decided = 1;
    /* Open mode: every conv whole on the accelerator. The first conv reads
     * the raw image, which never leaves. */
    if (a->cfg.mode == AM_MODE_OPEN || first) return AM_OK;
    int k = a->n_cand++;
    double value = a->cfg.rank_value;
    if (a->cfg.policy == AM_RANK_LIST) {
        if (k >= a->cfg.n_ranks) return AM_OK; /* am_asym_plan_done reports it */
        p->list_r = a->cfg.ranks[k];
        if (p->list_r == 0) return AM_OK; /* whole, as the list says */
        value = p->list_r;
    }
    if (a->cfg.policy == AM_RANK_ENTROPY || a->cfg.policy == AM_RANK_ENERGY || a->cfg.basis == AM_BASIS_AUTO) {
        /* Decided on the first batch, from its singular values. */
        p->decided = 0;
        p->split = 1;
        return grow_scratch(a, p);
    }
    return settle(a, p, p->basis, am_rank_pick(a->cfg.policy, value, NULL, p->C));
}

am_status am_asym_plan_done(am_asym *a) {
    if (a->cfg.mode != AM_MODE_OPEN && a->cfg.policy == AM_RANK_LIST && a->n_cand != a->cfg.n_ranks)
        return am_fail(AM_EINVAL, "asym: the rank list has %d entr%s; the model has %d conv layer%s after the first",
                       a->cfg.n_ranks, a->cfg.n_ranks == 1 ? "y" : "ies", a->n_cand, a->n_cand == 1 ? "" : "s");
    return AM_OK;
}

/* Smallest rank whose share of the energy (cumulative e, e[C] the total) is
 * at least want. */
static int rank_for_energy(const double *e, int C, double want) {
    for (int r = 1; r <= C; r++)
        if (e[r] >= want * e[C] * (1 - 1e-12)) return r;
    return C;
}

/* The first batch's decisions: the rank of a data-driven policy, and with
 * AUTO the basis. Exact spectra: of the whole batch (what a shared basis can
 * keep) and of each sample (what per-sample bases can keep). */
am_status asym_decide(am_asym *a, layer_plan *p, const float *X) {
    const int B = p->x.n, C = p->C, N = p->N;
    float *s = malloc(sizeof(float) * (size_t)C * 2);
    double *esh = calloc((size_t)(C + 1) * 2, sizeof(double)), *eps = esh + C + 1;
    am_status st = s && esh ? am_exact_basis(X, B, C, N, 1, NULL, s) : am_fail(AM_ENOMEM, "asym: out of memory");
    for (int j = 0; st == AM_OK && j < C; j++) esh[j + 1] = esh[j] + (double)s[j] * s[j];
    const double value = a->cfg.policy == AM_RANK_LIST ? p->list_r : a->cfg.rank_value;
    am_basis_kind kind = a->cfg.basis;
    int r = st == AM_OK ? am_rank_pick(a->cfg.policy, value, s, C) : 0;
    if (st == AM_OK && kind == AM_BASIS_AUTO) {
        float *sb = s + C;
        for (int b = 0; b < B && st == AM_OK; b++) {
            st = am_exact_basis(X + (size_t)b * C * N, 1, C, N, 1, NULL, sb);
            double acc = 0;
            for (int j = 0; st == AM_OK && j < C; j++) {
                acc += (double)sb[j] * sb[j];
                eps[j + 1] += acc;
            }
        }
        /* eps[j] sums, over samples, the energy of each sample's top j. */
        int r_ps = r;
        if (a->cfg.policy == AM_RANK_ENERGY) r_ps = rank_for_energy(eps, C, 1.0 - a->cfg.rank_value + 1e-12);
        int r_sh = a->cfg.policy == AM_RANK_ENERGY ? r : rank_for_energy(esh, C, eps[C] > 0 ? eps[r_ps] / eps[C] : 1.0);
        if (a->cfg.sigma > 0.f && !p->coupled && !a->cfg.protect_grads) {
            kind = AM_BASIS_PER_SAMPLE; /* a shared basis would couple the batch */
        } else {
            double fs = r_sh < C ? split_flops(a, p, AM_BASIS_SHARED, r_sh) : INFINITY;
            double fp = r_ps < C ? split_flops(a, p, AM_BASIS_PER_SAMPLE, r_ps) : INFINITY;
            kind = fs <= fp ? AM_BASIS_SHARED : AM_BASIS_PER_SAMPLE;
        }
        r = kind == AM_BASIS_SHARED ? r_sh : r_ps;
    }
    free(s);
    free(esh);
    AM_TRY(st);
    return settle(a, p, kind, r);
}

int am_asym_handles(const am_asym *a, int layer) {
    if (!a || layer < 0 || layer >= a->n) return 0;
    const layer_plan *p = &a->L[layer];
    return p->active && (p->split || a->cfg.mode == AM_MODE_OPEN);
}

int am_asym_needs_input(const am_asym *a, int layer) {
    if (!a || layer < 0 || layer >= a->n) return 1;
    const layer_plan *p = &a->L[layer];
    if (!am_asym_handles(a, layer)) return 1;
    if (a->cfg.mode == AM_MODE_OPEN) return 0; /* the accelerator kept what it was sent */
    if (!p->decided) return 1;                 /* may still run whole */
    /* Protected gradients recompute the residual from X; otherwise V and the
     * accelerator's copy of R are all the backward pass reads. */
    return p->rg > 0 && a->cfg.mode == AM_MODE_ASYMML;
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

int am_asym_plan_get(const am_asym *a, int *rank, int *basis, int max) {
    int n = 0;
    for (int l = 0; l < a->n; l++) {
        const layer_plan *p = &a->L[l];
        if (!p->active) continue;
        if (!p->decided || n >= max) return 0;
        rank[n] = p->split ? p->r : 0;
        basis[n++] = (int)p->basis;
    }
    return n;
}

am_status am_asym_plan_set(am_asym *a, const int *rank, const int *basis, int n) {
    int k = 0;
    for (int l = 0; l < a->n; l++) {
        layer_plan *p = &a->L[l];
        if (!p->active) continue;
        if (k >= n) return am_fail(AM_EINVAL, "asym: the stored plan covers %d conv layers, the model has more", n);
        int r = rank[k], bk = basis[k++];
        if (r < 0 || r > p->C || (bk != AM_BASIS_SHARED && bk != AM_BASIS_PER_SAMPLE))
            return am_fail(AM_EINVAL, "asym: stored plan entry %d (rank %d, basis %d) is out of range", k, r, bk);
        if (p->decided) {
            if ((p->split ? p->r : 0) != r || (p->split && (int)p->basis != bk))
                return am_fail(AM_EINVAL, "asym: the stored plan (conv %d: rank %d) does not match this configuration's (rank %d)",
                               k, r, p->split ? p->r : 0);
            continue;
        }
        AM_TRY(settle(a, p, (am_basis_kind)bk, r));
        if ((p->split ? p->r : 0) != r)
            return am_fail(AM_EINVAL, "asym: stored plan entry %d (rank %d) does not fit this model", k, r);
    }
    if (k != n) return am_fail(AM_EINVAL, "asym: the stored plan covers %d conv layers, the model has %d", n, k);
    return AM_OK;
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

