/* The split's plan: per conv layer, its strategy (strategy.h): split at
 * which rank with which basis, low rank only, or whole (in the TEE, or on
 * the accelerator in open mode), decided from costs and, for data-driven
 * policies, from the first batch's spectra, before that batch's step runs
 * (am_asym_decide). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trusted/strategy.h"

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

/* Samples per group in the forward pass's residual buffer: up to 1 Mi
 * floats (4 MiB); all of them with protected gradients, whose backward pass
 * recomputes the whole residual there. */
int asym_group_size(const am_asym *a, const layer_plan *p) {
    size_t per = (size_t)p->x.c * p->x.h * p->x.w, cap = (size_t)1 << 20;
    if (a->cfg.protect_grads && a->cfg.mode == AM_MODE_ASYMML) return p->x.n;
    size_t g = per >= cap ? 1 : cap / per;
    return g >= (size_t)p->x.n ? p->x.n : (int)g;
}

/* Fixes a layer's basis and rank (0: whole) and so its strategy. It splits
 * only where that saves the TEE work; a rank that covers all channels
 * leaves no residual: whole. */
static am_status settle(am_asym *a, layer_plan *p, am_basis_kind kind, int r) {
    p->basis = kind;
    p->r = r;
    p->pending = 0;
    costs(a, p, r ? r : 1);
    p->split = r > 0 && r < p->C && p->tee_flops < p->whole_flops;
    if (!p->split) {
        p->r = 0;
        costs(a, p, (p->C + 15) / 16);
        return AM_OK;
    }
    p->strat = a->cfg.mode == AM_MODE_ASYMML ? &asym_split : &asym_lowrank;
    return p->strat->plan ? p->strat->plan(a, p) : AM_OK;
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
    if (am_mode_fixed_point(a->cfg.mode)) {
        /* Every layer in fixed point; its input's scale from calibration. */
        p->strat = a->cfg.mode == AM_MODE_SLALOM ? &asym_blind : &asym_quant;
        p->pending = 1;
        return p->strat->plan(a, p);
    }
    /* Open mode: every conv whole on the accelerator. The first conv reads
     * the raw image, which never leaves. */
    if (a->cfg.mode == AM_MODE_OPEN) p->strat = &asym_whole_accel;
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
        /* Decided on the first batch, from its singular values, before
         * its step (am_asym_decide); until then it counts as split (what
         * may cross is said before the first batch). */
        p->pending = 1;
        p->split = 1;
        return AM_OK;
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

int am_asym_pending(const am_asym *a, int layer) {
    return a && layer >= 0 && layer < a->n && a->L[layer].pending;
}

/* The first batch's decisions: the rank of a data-driven policy, and with
 * AUTO the basis. Exact spectra: of the whole batch (what a shared basis can
 * keep) and of each sample (what per-sample bases can keep). */
am_status am_asym_decide(am_asym *a, int layer, const float *X) {
    if (!am_asym_pending(a, layer)) return am_fail(AM_EINVAL, "asym: layer %d has no choice pending", layer);
    layer_plan *p = &a->L[layer];
    if (am_mode_fixed_point(a->cfg.mode)) return am_asym_calibrate(a, layer, X);
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

am_status am_asym_calibrate(am_asym *a, int layer, const float *X) {
    if (!a || layer < 0 || layer >= a->n || !am_mode_fixed_point(a->cfg.mode) || !a->L[layer].strat)
        return am_fail(AM_EINVAL, "asym: layer %d is not quantized", layer);
    layer_plan *p = &a->L[layer];
    asym_quant_observe(a, p, X);
    p->pending = 0;
    return AM_OK;
}

int am_asym_handles(const am_asym *a, int layer) {
    return a && layer >= 0 && layer < a->n && a->L[layer].active && a->L[layer].strat && !a->L[layer].pending;
}

int am_asym_needs_input(const am_asym *a, int layer) {
    if (!am_asym_handles(a, layer)) return 1; /* whole in the TEE, or pending */
    const asym_strategy *s = a->L[layer].strat;
    return s->needs_input ? s->needs_input(a, &a->L[layer]) : 1;
}

int am_asym_plan_get(const am_asym *a, int *rank, int *basis, int max) {
    int n = 0;
    for (int l = 0; l < a->n; l++) {
        const layer_plan *p = &a->L[l];
        if (!p->active) continue;
        if (p->pending || n >= max) return 0;
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
        if (!p->pending) {
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

