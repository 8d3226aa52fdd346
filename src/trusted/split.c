/* Split execution of conv layers (ALGORITHM.md, "Forward, per conv layer"
 * and "Backward, per conv layer"). The trusted side decomposes the input,
 * runs the low-rank conv with U folded into W, and sends only residuals
 * (clipped and noised) and weights to the accelerator; output gradients go
 * in the clear, as in the paper's scheme. Every byte that crosses goes
 * through `cross`, which copies it into the accelerator's buffer and records
 * it in the ledger. */
#include "trusted/split.h"
#include "trusted/fold.h"
#include "trusted/verify.h"

#include <cblas.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


typedef struct layer_plan {
    int active;   /* a conv layer that was planned */
    int split;    /* 1 split, 0 whole (in the TEE, or on the accelerator in open mode) */
    int first;
    int decided;  /* rank and basis known (data-driven choices wait for the first batch) */
    int coupled;  /* a BatchNorm before it already couples the batch */
    int list_r;   /* LIST policy: this layer's entry */
    am_basis_kind basis;
    am_conv2d_cfg cfg;
    am_shape x, y;
    int C, K, r, N, P, kk;
    size_t u_off; /* into state: U (C x r), shared basis */
    int warm;
    int rg;       /* protected gradients: rank of the output-gradient basis */
    size_t a_off; /* into state: A (K x rg) */
    int warm_a;
    uint64_t release; /* the release number of this layer's last residual */
    float *vu, *vRu, *vRa; /* verification: C signs; the released input combined with them, and its magnitudes */
    float *V;     /* B x r x N, kept for the backward pass */
    float *Ub;    /* per-sample bases: B x C x r */
    float *Wp;    /* K x r x kk: U folded into W (shared) */
    float *dWp;   /* K x r x kk */
    double e_kept, e_total;
    double tee_s, decomp_s, tee_flops, whole_flops;
    double xfer_s, accel_s, wait_s; /* copies across, accelerator compute, TEE blocked on it */
} layer_plan;

struct am_asym {
    am_asym_cfg cfg;
    am_backend *be;
    layer_plan *L;
    int n;
    int n_cand;     /* conv layers after the first, planned so far */
    float *state;
    size_t state_len;
    float *scratch; /* B x C x N: the residual before it leaves */
    size_t scratch_n;
    float *basis_work;
    size_t basis_work_n;
    float *u_eval; /* the basis of an evaluation batch (basis_work_n floats) */
    float *gs, *gb, *wa, *crb; /* protected gradients: S, B, W folded with A, corr(R, B) */
    size_t gs_n, gb_n, wa_n, crb_n;
    float *wt, *fm, *ucat, *fe; /* folding: W as C x (K kk), stacked factors, U stacked, C x (K kk) */
    size_t wt_n, fm_n, ucat_n, fe_n;
    uint64_t step;
    uint64_t release_next; /* the noise's release counter: only increases */
    int verify;            /* check every reply (am_model_verify) */
    float *vsig, *vref, *vmag, *vcomb, *vwork; /* verification: signs, reference, bound, the reply's combination */
    size_t vsig_n, vref_n, vwork_n;
    double blocked_s; /* total time the TEE spent blocked in submit or wait */
    int ledger_on;
    am_ledger_entry *led;
    int led_n, led_cap;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The accelerator's compute seconds so far (none without one). */
static double busy(const am_asym *a) { return a->be ? a->be->vt->busy_seconds(a->be) : 0; }

/* The accelerator's calls, timed: what the TEE spends blocked on them is not
 * TEE work. (The in-process backend computes inside submit; the host
 * process computes while the TEE goes on, and only wait blocks.) */
static am_status be_submit(am_asym *a, layer_plan *p, const am_req *q) {
    double t = now();
    am_status st = a->be->vt->submit(a->be, q);
    t = now() - t;
    p->wait_s += t;
    a->blocked_s += t;
    return st;
}

static am_status be_wait(am_asym *a, layer_plan *p) {
    double t = now();
    am_status st = a->be->vt->wait(a->be);
    t = now() - t;
    p->wait_s += t;
    a->blocked_s += t;
    return st;
}

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
static am_status grow(float **buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf) return AM_OK;
    am_aligned_free(*buf);
    *buf = am_aligned_alloc(n * sizeof(float));
    *cap = *buf ? n : 0;
    return *buf ? AM_OK : am_fail(AM_ENOMEM, "asym: cannot allocate %zu MiB", (n * sizeof(float)) >> 20);
}

static am_status grow_basis_work(am_asym *a, size_t n) {
    if (n <= a->basis_work_n) return AM_OK;
    size_t cap = a->basis_work_n;
    AM_TRY(grow(&a->basis_work, &cap, n));
    cap = 0;
    am_aligned_free(a->u_eval);
    a->u_eval = NULL;
    AM_TRY(grow(&a->u_eval, &cap, n));
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
        AM_TRY(grow(&a->wt, &a->wt_n, per ? (size_t)p->C * kkk : chunk));
        AM_TRY(grow(&a->fe, &a->fe_n, chunk));
        AM_TRY(grow(&a->fm, &a->fm_n, nb * r * kkk));
        AM_TRY(grow(&a->ucat, &a->ucat_n, (size_t)p->C * nb * r));
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
        AM_TRY(grow(&a->gs, &a->gs_n, B * (size_t)p->K * p->P));
        AM_TRY(grow(&a->gb, &a->gb_n, B * (size_t)p->rg * p->P));
        AM_TRY(grow(&a->wa, &a->wa_n, (size_t)p->rg * p->C * p->kk));
        AM_TRY(grow(&a->crb, &a->crb_n, (size_t)p->rg * p->C * p->kk));
    }
    return AM_OK;
}

/* Samples per group in the forward pass's residual buffer: up to 1 Mi
 * floats (4 MiB); all of them with protected gradients, whose backward pass
 * recomputes the whole residual there. */
static int group_size(const am_asym *a, const layer_plan *p) {
    size_t per = (size_t)p->x.c * p->x.h * p->x.w, cap = (size_t)1 << 20;
    if (a->cfg.protect_grads && a->cfg.mode == AM_MODE_ASYMML) return p->x.n;
    size_t g = per >= cap ? 1 : cap / per;
    return g >= (size_t)p->x.n ? p->x.n : (int)g;
}

static am_status grow_scratch(am_asym *a, const layer_plan *p) {
    size_t need = (size_t)group_size(a, p) * p->x.c * p->x.h * p->x.w;
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
        return am_fail(AM_EINVAL, "asym: the rank list has %d entries; the model has %d conv layers after the first",
                       a->cfg.n_ranks, a->n_cand);
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
static am_status decide(am_asym *a, layer_plan *p, const float *X) {
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

/* ---------------------------------------------------------------- crossing */

void am_ledger_hash(const void *p, size_t n, uint8_t out[16]) {
    if (sodium_init() < 0) {
        memset(out, 0, 16);
        return;
    }
    crypto_generichash(out, 16, p, n, NULL, 0);
}

static am_status record(am_asym *a, int layer, am_cross_kind kind, am_shape s, const float *buf);

/* Copies n floats of trusted memory into the accelerator's (layer, role)
 * buffer and records the crossing. */
static am_status cross(am_asym *a, int layer, am_buf_role role, am_cross_kind kind, am_shape s,
                       const float *src, float **dst) {
    size_t n = am_shape_numel(s);
    double t0 = now();
    AM_TRY(a->be->vt->buffer(a->be, layer, role, n, dst));
    am_copy_floats(*dst, src, n);
    a->L[layer].xfer_s += now() - t0;
    return record(a, layer, kind, s, *dst);
}

/* Records in the ledger what now lies in an accelerator buffer. */
static am_status record(am_asym *a, int layer, am_cross_kind kind, am_shape s, const float *buf) {
    size_t n = am_shape_numel(s);
    if (a->ledger_on) {
        if (a->led_n == a->led_cap) {
            int nc = a->led_cap ? 2 * a->led_cap : 256;
            am_ledger_entry *ne = realloc(a->led, sizeof *ne * (size_t)nc);
            if (!ne) return am_fail(AM_ENOMEM, "ledger: out of memory");
            a->led = ne;
            a->led_cap = nc;
        }
        am_ledger_entry *e = &a->led[a->led_n++];
        e->step = (int)a->step;
        e->layer = layer;
        e->kind = kind;
        e->shape = s;
        e->bytes = n * sizeof(float);
        am_ledger_hash(buf, e->bytes, e->hash);
    }
    return AM_OK;
}

static am_status result(am_asym *a, int layer, am_buf_role role, size_t n, float **out) {
    return a->be->vt->buffer(a->be, layer, role, n, out);
}

/* ---------------------------------------------------------------- replies */

/* Merges a reply into trusted memory (am_merge_reply: each value read
 * once); a non-finite result is an error that names the layer. With coef,
 * the reply's combination goes to a->vcomb for am_verify_compare. */
static am_status merge(am_asym *a, layer_plan *p, int layer, const char *what, float *dst, const float *src, int outer,
                       int mid, size_t inner, const float *bias, int add, const float *coef) {
    double tx = now();
    int bad = am_merge_reply(dst, src, outer, mid, inner, bias, add, coef, coef ? a->vcomb : NULL);
    p->xfer_s += now() - tx;
    if (bad) return am_fail(AM_ENUM, "accelerator: a non-finite value in layer %d's %s: the reply is refused", layer, what);
    return AM_OK;
}

/* Verification's scratch: signs, reference, bound and combination of up
 * to n values, the checks' workspace, and the layer's own signs and
 * combined input (B x N). */
static am_status verify_scratch(am_asym *a, layer_plan *p, size_t n) {
    size_t cap = a->vsig_n;
    AM_TRY(grow(&a->vsig, &cap, (size_t)(p->K > p->C ? p->K : p->C)));
    a->vsig_n = cap;
    if (n > a->vref_n) {
        size_t c1 = 0, c2 = 0, c3 = 0;
        am_aligned_free(a->vref), am_aligned_free(a->vmag), am_aligned_free(a->vcomb);
        a->vref = a->vmag = a->vcomb = NULL;
        a->vref_n = 0;
        AM_TRY(grow(&a->vref, &c1, n));
        AM_TRY(grow(&a->vmag, &c2, n));
        AM_TRY(grow(&a->vcomb, &c3, n));
        a->vref_n = n;
    }
    cap = a->vwork_n;
    AM_TRY(grow(&a->vwork, &cap, am_verify_workspace(&p->cfg, p->x)));
    a->vwork_n = cap;
    if (!p->vu) {
        size_t c1 = 0, c2 = 0, c3 = 0, bn = (size_t)p->x.n * p->N;
        AM_TRY(grow(&p->vu, &c1, (size_t)p->C));
        AM_TRY(grow(&p->vRu, &c2, bn));
        AM_TRY(grow(&p->vRa, &c3, bn));
    }
    return AM_OK;
}

/* The forward check's reference for g samples of what was sent (R), and
 * the input combined for the backward filter check. */
static am_status verify_sent(am_asym *a, layer_plan *p, const float *w, const float *R, int b0, int g) {
    const size_t P = (size_t)p->P, N = (size_t)p->N;
    AM_TRY(am_verify_fwd(&p->cfg, am_shape4(1, p->C, p->x.h, p->x.w), w, a->vsig, R, g, a->vref + b0 * P,
                         a->vmag + b0 * P, a->vwork, a->vwork_n));
    am_verify_reduce_channels(R, g, p->C, N, p->vu, p->vRu + b0 * N, p->vRa + b0 * N);
    return AM_OK;
}

/* The weight gradient's check: the reply's combination over input channels
 * (a->vcomb, from merge) against corr(Ru, G) from what was sent. */
static am_status verify_dw(am_asym *a, layer_plan *p, int layer, const float *G) {
    AM_TRY(am_verify_bwd_filter(&p->cfg, p->x, p->vRu, p->vRa, G, a->vref, a->vmag, a->vwork, a->vwork_n));
    return am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)p->K * p->kk, (double)p->x.n * p->P + p->C, layer,
                             "weight gradient");
}

/* ---------------------------------------------------------------- forward */

static am_status forward_open(am_asym *a, int layer, layer_plan *p, const am_tensor *x, const float *w,
                              const float *b, am_tensor *y) {
    float *bx, *bw, *by;
    am_shape ws = am_shape4(p->K, p->C, p->cfg.kh, p->cfg.kw);
    AM_TRY(cross(a, layer, AM_BUF_INPUT, AM_CROSS_ACTIVATION, x->s, x->d, &bx));
    AM_TRY(cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, ws, w, &bw));
    AM_TRY(result(a, layer, AM_BUF_OUTPUT, am_shape_numel(y->s), &by));
    am_req rq = {AM_REQ_CONV_FWD, layer, p->cfg, x->s, bx, bw, by, 0, AM_CROSS_ACTIVATION, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
    rq.cfg.bias = 0;
    AM_TRY(be_submit(a, p, &rq));
    const size_t B = (size_t)x->s.n, P = (size_t)p->P;
    if (a->verify) {
        AM_TRY(verify_scratch(a, p, B * P));
        am_verify_signs(a->vsig, p->K);
        am_verify_signs(p->vu, p->C);
        AM_TRY(verify_sent(a, p, w, x->d, 0, (int)B));
    }
    AM_TRY(be_wait(a, p));
    AM_TRY(merge(a, p, layer, "forward result", y->d, by, (int)B, p->K, P, b, 0, a->verify ? a->vsig : NULL));
    if (a->verify) AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, B * P, (double)p->C * p->kk + p->K, layer, "forward result"));
    return AM_OK;
}

am_status am_asym_forward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                          const float *w, const float *b, am_tensor *y, float *work, size_t work_n,
                          int training) {
    layer_plan *p = &a->L[layer];
    if (!am_asym_handles(a, layer)) return am_fail(AM_EINVAL, "asym: layer %d is not split", layer);
    if (!am_shape_eq(x->s, p->x)) return am_fail(AM_EINVAL, "asym: layer %d planned for another batch size", layer);
    if (cfg->bias && !b) return am_fail(AM_EINVAL, "asym: layer %d expects a bias", layer);
    double t0 = now(), accel0 = busy(a), wait0 = p->wait_s;
    if (a->cfg.mode == AM_MODE_OPEN) {
        am_status st = forward_open(a, layer, p, x, w, b, y);
        p->accel_s += busy(a) - accel0;
        p->tee_s += now() - t0 - (p->wait_s - wait0);
        return st;
    }
    if (!p->decided) {
        AM_TRY(decide(a, p, x->d));
        if (!p->split) return am_conv2d_forward(cfg, x, w, b, y, work, work_n);
    }
    const int B = x->s.n, C = p->C, N = p->N;
    const int r = p->r;
    float *R = a->scratch;
    /* Decompose: X = U V + R. */
    /* An evaluation batch starts from the training basis but does not move
     * it: training (and a resumed run) sees the same bases either way. */
    float *U = a->state + p->u_off;
    if (p->basis == AM_BASIS_SHARED) {
        if (!training && p->warm && a->cfg.sigma == 0.f) {
            memcpy(a->u_eval, U, sizeof(float) * (size_t)C * r); /* u_eval holds basis_work_n >= C*r floats */
            U = a->u_eval;
        }
        /* With noise on, every batch starts cold: a basis warm-started from
         * earlier batches would carry one sample's influence into the
         * residuals of every later batch, which the accountant does not
         * count (see am_dp_epsilon). */
        int warm = p->warm && a->cfg.sigma == 0.f;
        AM_TRY(am_shared_basis(x->d, B, C, N, r, a->cfg.iters, warm, U, a->basis_work, a->basis_work_n));
        if (training) p->warm = 1;
    }
    /* The residual, a group of samples at a time through a small trusted
     * buffer: projected (or decomposed per sample), clipped and noised, then
     * copied out. Only the released copy is whole. */
    float *bx = NULL, *by = NULL, *bw;
    const int asym = a->cfg.mode == AM_MODE_ASYMML;
    if (asym) AM_TRY(a->be->vt->buffer(a->be, layer, AM_BUF_INPUT, am_shape_numel(x->s), &bx));
    const size_t per = (size_t)C * N;
    const int G = group_size(a, p);
    double er = 0, ev = 0;
    if (asym) p->release = a->release_next++;
    const int ver = asym && a->verify;
    if (ver) {
        AM_TRY(verify_scratch(a, p, (size_t)B * p->P));
        am_verify_signs(a->vsig, p->K);
        am_verify_signs(p->vu, C);
    }
    for (int b0 = 0; b0 < B; b0 += G) {
        const int g = B - b0 < G ? B - b0 : G;
        const float *Xg = x->d + (size_t)b0 * per;
        float *Vg = p->V + (size_t)b0 * r * N;
        if (p->basis == AM_BASIS_SHARED) {
            AM_TRY(am_project_ws(Xg, g, C, N, r, U, Vg, R, a->basis_work, a->basis_work_n));
        } else {
            memcpy(R, Xg, sizeof(float) * (size_t)g * per);
            am_blas_serial(1);
            am_status st = AM_OK;
            for (int s = 0; s < g && st == AM_OK; s++)
                st = am_light_svd(R + (size_t)s * per, C, N, r, a->cfg.iters, p->Ub + (size_t)(b0 + s) * C * r,
                                  Vg + (size_t)s * r * N);
            am_blas_serial(0);
            AM_TRY(st);
        }
        /* Energy: with an orthonormal U, ||X||^2 = ||V||^2 + ||R||^2. */
        double eg = am_sumsq(R, (size_t)g * per);
        er += eg;
        ev += p->basis == AM_BASIS_SHARED ? am_sumsq(Vg, (size_t)g * r * N) : am_sumsq(Xg, (size_t)g * per) - eg;
        if (!asym) continue;
        /* Every release is clipped and noised, in evaluation too. */
        AM_TRY(am_dp_clip_noise_at(R, g, per, b0, a->cfg.clip, a->cfg.sigma, a->cfg.noise_key, a->cfg.noise_seed, p->release));
        if (ver) AM_TRY(verify_sent(a, p, w, R, b0, g));
        double tx = now();
        am_copy_floats(bx + (size_t)b0 * per, R, (size_t)g * per);
        p->xfer_s += now() - tx;
    }
    p->e_total += ev + er;
    p->e_kept += ev;
    p->decomp_s += now() - t0;
    /* Release the weights; the residual is out: record it, and submit. */
    am_shape ws = am_shape4(p->K, C, cfg->kh, cfg->kw);
    if (asym) {
        AM_TRY(record(a, layer, AM_CROSS_RESIDUAL, x->s, bx));
        AM_TRY(cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, ws, w, &bw));
        AM_TRY(result(a, layer, AM_BUF_OUTPUT, am_shape_numel(y->s), &by));
        am_req rq = {AM_REQ_CONV_FWD, layer, *cfg, x->s, bx, bw, by, 0, AM_CROSS_RESIDUAL, AM_CROSS_WEIGHTS,
                     (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
        rq.cfg.bias = 0;
        AM_TRY(be_submit(a, p, &rq));
    }
    /* The low-rank conv in the TEE: conv(W U, V); the bias goes in with the
     * accelerator's part, in one pass over the output. */
    am_conv2d_cfg lc = *cfg;
    lc.bias = 0;
    if (p->basis == AM_BASIS_SHARED) {
        am_fold_chunked(w, U, p->K, C, r, p->kk, a->wt, a->fm, p->Wp);
        am_tensor v = {am_shape4(B, r, x->s.h, x->s.w), p->V};
        AM_TRY(am_conv2d_forward(&lc, &v, p->Wp, NULL, y, work, work_n));
    } else {
        am_to_ck(w, p->K, C, p->kk, a->wt);
        am_blas_serial(1);
        am_status st = AM_OK;
        for (int s = 0; s < B && st == AM_OK; s++) {
            am_fold(a->wt, p->Ub + (size_t)s * C * r, p->K, C, r, p->kk, a->fm, p->Wp);
            am_tensor v = {am_shape4(1, r, x->s.h, x->s.w), p->V + (size_t)s * r * N};
            am_tensor ys = {am_shape4(1, p->K, p->y.h, p->y.w), y->d + (size_t)s * p->K * p->P};
            st = am_conv2d_forward(&lc, &v, p->Wp, NULL, &ys, work, work_n);
        }
        am_blas_serial(0);
        AM_TRY(st);
    }
    const float *bias = cfg->bias ? b : NULL;
    if (asym) {
        AM_TRY(be_wait(a, p));
        AM_TRY(merge(a, p, layer, "forward result", y->d, by, B, p->K, (size_t)p->P, bias, 1, ver ? a->vsig : NULL));
        if (ver)
            AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)B * p->P, (double)C * p->kk + p->K, layer,
                                     "forward result"));
    } else if (bias) {
        const int K = p->K;
        const size_t P = (size_t)p->P;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * K * P > 65536)
        for (int n = 0; n < B; n++)
            for (int k = 0; k < K; k++) {
                float *yk = y->d + ((size_t)n * K + k) * P, bk = bias[k];
                for (size_t i = 0; i < P; i++) yk[i] += bk;
            }
    }
    p->accel_s += busy(a) - accel0;
    p->tee_s += now() - t0 - (p->wait_s - wait0);
    return AM_OK;
}

/* ---------------------------------------------------------------- backward */

/* The terms of a protected backward pass that touch A B, in the TEE, all of
 * rank rg:  dW += A (x) corr(R, B)  and  dX (=/+=) conv_transpose(W A, B).
 * R is the residual the accelerator holds: recomputed from X and the bases,
 * clipped and noised again with the forward pass's release number (the same
 * release: the accelerator holds it already). */
static am_status protected_terms(am_asym *a, layer_plan *p, int layer, const am_conv2d_cfg *lc,
                                 const am_tensor *x, const float *w, const am_tensor *gb, am_tensor *dx,
                                 int accum, float *dw, float *work, size_t work_n) {
    const int B = x->s.n, C = p->C, N = p->N, K = p->K, r = p->r, rg = p->rg;
    const size_t ckk = (size_t)C * p->kk;
    const float *A = a->state + p->a_off;
    float *R = a->scratch;
    if (p->basis == AM_BASIS_SHARED) {
        AM_TRY(am_project(x->d, B, C, N, r, a->state + p->u_off, p->V, R));
    } else {
        memcpy(R, x->d, sizeof(float) * (size_t)B * C * N);
        for (int s = 0; s < B; s++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, N, r, -1.f, p->Ub + (size_t)s * C * r, r,
                        p->V + (size_t)s * r * N, N, 1.f, R + (size_t)s * C * N, N);
    }
    AM_TRY(am_dp_clip_noise(R, B, (size_t)C * N, a->cfg.clip, a->cfg.sigma, a->cfg.noise_key, a->cfg.noise_seed, p->release));
    am_conv2d_cfg gc = *lc;
    gc.out_c = rg;
    am_tensor rt = {x->s, R};
    /* corr(R, B): the weight gradient of a conv with rg outputs. */
    AM_TRY(am_conv2d_backward(&gc, &rt, a->wa, gb, NULL, 0, a->crb, NULL, work, work_n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, (int)ckk, rg, 1.f, A, rg, a->crb, (int)ckk, 1.f, dw,
                (int)ckk);
    if (dx) {
        /* W A (rg x C x kk) = A^T W, then its transposed conv of B. */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rg, (int)ckk, K, 1.f, A, rg, w, (int)ckk, 0.f, a->wa,
                    (int)ckk);
        am_tensor xs = {x->s, NULL};
        AM_TRY(am_conv2d_backward(&gc, &xs, a->wa, gb, dx, accum, NULL, NULL, work, work_n));
    }
    return AM_OK;
}

am_status am_asym_backward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                           const float *w, const am_tensor *dy, am_tensor *dx, int accum, float *dw,
                           float *db, float *work, size_t work_n) {
    layer_plan *p = &a->L[layer];
    if (!am_asym_handles(a, layer)) return am_fail(AM_EINVAL, "asym: layer %d is not split", layer);
    double t0 = now(), accel0 = busy(a), wait0 = p->wait_s;
    const int B = x->s.n, C = p->C, K = p->K, kk = p->kk;
    const size_t wn = (size_t)K * C * kk;
    const int accel = a->cfg.mode == AM_MODE_ASYMML || a->cfg.mode == AM_MODE_OPEN;
    float *bg = NULL, *bdw = NULL, *bdx = NULL, *bx = NULL, *bw = NULL;
    const int protect = p->rg > 0 && a->cfg.mode == AM_MODE_ASYMML;
    am_tensor gb = {am_shape4(B, p->rg, p->y.h, p->y.w), a->gb};
    if (protect) {
        /* Protected gradients: G = A B + S with a basis A of the output
         * channels; only S, clipped and noised like the residual, leaves. */
        float *A = a->state + p->a_off;
        int warm = p->warm_a && a->cfg.sigma == 0.f;
        AM_TRY(am_shared_basis(dy->d, B, K, p->P, p->rg, a->cfg.iters, warm, A, a->basis_work, a->basis_work_n));
        p->warm_a = 1;
        AM_TRY(am_project(dy->d, B, K, p->P, p->rg, A, a->gb, a->gs));
        AM_TRY(am_dp_clip_noise(a->gs, B, (size_t)K * p->P, a->cfg.clip, a->cfg.sigma, a->cfg.noise_key, a->cfg.noise_seed,
                                a->release_next++));
        AM_TRY(cross(a, layer, AM_BUF_GRAD, AM_CROSS_GRAD_RESIDUAL, dy->s, a->gs, &bg));
    } else if (accel) {
        /* The output gradient crosses in the clear (the paper's scheme). */
        AM_TRY(cross(a, layer, AM_BUF_GRAD, AM_CROSS_OUTPUT_GRAD, dy->s, dy->d, &bg));
    }
    if (accel) {
        AM_TRY(result(a, layer, AM_BUF_INPUT, am_shape_numel(x->s), &bx));
        AM_TRY(result(a, layer, AM_BUF_WEIGHT, wn, &bw));
        AM_TRY(result(a, layer, AM_BUF_DW, wn, &bdw));
        /* The forward pass's input (residual, or X) is still in bx as it
         * was sent; the weights too. */
        const am_cross_kind xk = a->cfg.mode == AM_MODE_OPEN ? AM_CROSS_ACTIVATION : AM_CROSS_RESIDUAL;
        const am_cross_kind gk = protect ? AM_CROSS_GRAD_RESIDUAL : AM_CROSS_OUTPUT_GRAD;
        am_req rf = {AM_REQ_CONV_BWD_FILTER, layer, *cfg, x->s, bx, bg, bdw, AM_KEEP_IN0, xk, gk, (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
        rf.cfg.bias = 0;
        AM_TRY(be_submit(a, p, &rf));
        if (dx) {
            AM_TRY(result(a, layer, AM_BUF_DX, am_shape_numel(x->s), &bdx));
            am_req rd = {AM_REQ_CONV_BWD_DATA, layer, *cfg, x->s, bg, bw, bdx, AM_KEEP_IN0 | AM_KEEP_IN1, gk, AM_CROSS_WEIGHTS,
                         (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
            rd.cfg.bias = 0;
            AM_TRY(be_submit(a, p, &rd));
        }
    }
    if (db) {
#pragma omp parallel for schedule(static) if ((size_t)B * K * p->P > 65536)
        for (int k = 0; k < K; k++) {
            float t = 0.f;
            for (int n = 0; n < B; n++) {
                const float *g = dy->d + ((size_t)n * K + k) * p->P;
                for (int i = 0; i < p->P; i++) t += g[i];
            }
            db[k] = t;
        }
    }
    const int ver = accel && a->verify && p->vu;
    const float *Gs = protect ? a->gs : dy->d; /* what was sent */
    if (ver) {
        size_t bn = (size_t)B * p->N, kk2 = (size_t)K * kk;
        AM_TRY(verify_scratch(a, p, bn > kk2 ? bn : kk2));
    }
    if (a->cfg.mode == AM_MODE_OPEN) {
        AM_TRY(be_wait(a, p));
        AM_TRY(merge(a, p, layer, "weight gradient", dw, bdw, K, C, (size_t)kk, NULL, 0, ver ? p->vu : NULL));
        if (ver) AM_TRY(verify_dw(a, p, layer, Gs));
    } else {
        /* The low-rank part of dW in the TEE: U (x) corr(V, G). */
        am_conv2d_cfg lc = *cfg;
        lc.bias = 0;
        const int r = p->r;
        if (p->basis == AM_BASIS_SHARED) {
            am_tensor v = {am_shape4(B, r, x->s.h, x->s.w), p->V};
            AM_TRY(am_conv2d_backward(&lc, &v, p->Wp, dy, NULL, 0, p->dWp, NULL, work, work_n));
            am_stack_grad(p->dWp, K, r, kk, 0, a->fm);
            am_unfold(a->state + p->u_off, a->fm, 1, K, C, r, kk, a->fe, dw, 0);
        } else {
            /* A group of samples at a time: their dW'_s stacked, then unfolded. */
            const int G = am_unfold_group(B, K, r, kk);
            am_status st = AM_OK;
            for (int s0 = 0; s0 < B && st == AM_OK; s0 += G) {
                const int g = B - s0 < G ? B - s0 : G;
                am_blas_serial(1);
                for (int i = 0; i < g && st == AM_OK; i++) {
                    const int s = s0 + i;
                    am_tensor v = {am_shape4(1, r, x->s.h, x->s.w), p->V + (size_t)s * r * p->N};
                    am_tensor gs = {am_shape4(1, K, p->y.h, p->y.w), dy->d + (size_t)s * K * p->P};
                    st = am_conv2d_backward(&lc, &v, p->Wp, &gs, NULL, 0, p->dWp, NULL, work, work_n);
                    am_stack_grad(p->dWp, K, r, kk, i, a->fm);
                    /* Ucat[c][i r + j] = U_s[c][j] */
                    for (int c = 0; c < C; c++)
                        memcpy(a->ucat + ((size_t)c * g + i) * r, p->Ub + ((size_t)s * C + c) * r,
                               sizeof(float) * (size_t)r);
                }
                am_blas_serial(0);
                if (st == AM_OK) am_unfold(a->ucat, a->fm, g, K, C, r, kk, a->fe, dw, s0 > 0);
            }
            AM_TRY(st);
        }
        if (protect) AM_TRY(protected_terms(a, p, layer, &lc, x, w, &gb, dx, accum, dw, work, work_n));
        if (accel) {
            AM_TRY(be_wait(a, p));
            AM_TRY(merge(a, p, layer, "weight gradient", dw, bdw, K, C, (size_t)kk, NULL, 1, ver ? p->vu : NULL));
            if (ver) AM_TRY(verify_dw(a, p, layer, Gs));
        } else if (dx) {
            /* lowrank-only: nothing leaves; dX in the TEE (straight through). */
            am_tensor xs = {x->s, NULL};
            AM_TRY(am_conv2d_backward(&lc, &xs, w, dy, dx, accum, NULL, NULL, work, work_n));
        }
    }
    if (accel && dx) {
        /* With protected gradients the TEE's conv_T(W A, B) is already in dx. */
        const int add = accum || protect;
        if (ver) am_verify_signs(a->vsig, C);
        AM_TRY(merge(a, p, layer, "input gradient", dx->d, bdx, B, C, (size_t)p->N, NULL, add, ver ? a->vsig : NULL));
        if (ver) {
            AM_TRY(am_verify_bwd_data(cfg, x->s, w, a->vsig, Gs, a->vref, a->vmag, a->vwork, a->vwork_n));
            AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)B * p->N, (double)K * kk + C, layer,
                                     "input gradient"));
        }
    }
    p->accel_s += busy(a) - accel0;
    p->tee_s += now() - t0 - (p->wait_s - wait0);
    return AM_OK;
}

/* ---------------------------------------------------------------- queries */

void am_asym_set_step(am_asym *a, uint64_t step) { a->step = step; }
uint64_t am_asym_noise_counter(const am_asym *a) { return a->release_next; }
void am_asym_set_verify(am_asym *a, int on) { a->verify = on; }
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

double am_asym_accel_seconds(const am_asym *a) { return busy(a); }
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
