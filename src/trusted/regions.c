/* The trusted memory a split layer's passes touch, besides the tensors
 * the model hands them: for the modelled enclave paging (am_model_paging).
 * Mirrors the split and low-rank-only strategies' passes (lowrank.c,
 * strategies/), buffer by buffer. */
#include "trusted/fold.h"
#include "trusted/strategy.h"

static void add(asym_list *l, const void *p, size_t floats) {
    if (!p || !floats || l->n == AM_ASYM_REGIONS) return;
    l->ptr[l->n] = p;
    l->bytes[l->n++] = floats * sizeof(float);
}

static size_t min_z(size_t a, size_t b) { return a < b ? a : b; }
static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* The workspace a low-rank conv pass (the forward, or the weight gradient)
 * touches out of given: per-sample bases run theirs a sample at a time
 * with OpenBLAS and OpenMP on one thread (lowrank.c), and so here. */
static size_t lowrank_used(const layer_plan *p, size_t given, int backward) {
    am_conv2d_cfg lc = p->cfg;
    lc.bias = 0;
    const int shared = p->basis == AM_BASIS_SHARED;
    const am_shape s = am_shape4(shared ? p->x.n : 1, p->r, p->x.h, p->x.w);
    if (shared) return am_conv2d_workspace_used(&lc, s, given, backward, 0);
    am_blas_serial(1);
    const size_t w = am_conv2d_workspace_used(&lc, s, given, backward, 0);
    am_blas_serial(0);
    return w;
}

static void forward(const am_asym *a, const layer_plan *p, asym_list *l, size_t *work) {
    const size_t B = (size_t)p->x.n, C = (size_t)p->C, N = (size_t)p->N, r = (size_t)p->r, kk = (size_t)p->kk;
    const size_t K = (size_t)p->K, G = (size_t)asym_group_size(a, p);
    const int shared = p->basis == AM_BASIS_SHARED;
    if (shared) {
        add(l, a->state + p->u_off, C * r);
        add(l, a->basis_work, min_z(a->basis_work_n, am_shared_basis_workspace(p->x.n, p->C, p->N, p->r)));
    } else {
        add(l, p->Ub, B * C * r);
    }
    add(l, p->V, B * r * N);
    if (!(a->cfg.mode == AM_MODE_ASYMML && asym_release_straight(a, p))) add(l, a->scratch, min_z(a->scratch_n, G * C * N));
    if (!shared || !am_fold_direct(p->kk, p->r)) {
        add(l, a->wt, a->wt_n);
        add(l, a->fm, min_z(a->fm_n, r * K * kk));
    }
    add(l, p->Wp, K * r * kk);
    *work = lowrank_used(p, *work, 0);
}

static void backward(const am_asym *a, const layer_plan *p, asym_list *l, size_t *work) {
    const size_t B = (size_t)p->x.n, C = (size_t)p->C, N = (size_t)p->N, r = (size_t)p->r, kk = (size_t)p->kk;
    const size_t K = (size_t)p->K, P = (size_t)p->P;
    const int shared = p->basis == AM_BASIS_SHARED;
    if (p->rg > 0 && a->cfg.mode == AM_MODE_ASYMML) {
        add(l, a->state + p->a_off, K * (size_t)p->rg);
        add(l, a->basis_work, min_z(a->basis_work_n, am_shared_basis_workspace(p->x.n, p->K, p->P, p->rg)));
        add(l, a->gb, B * (size_t)p->rg * P);
        add(l, a->gs, B * K * P);
        add(l, a->scratch, B * C * N);
        add(l, a->wa, a->wa_n);
        add(l, a->crb, a->crb_n);
    }
    add(l, p->V, B * r * N);
    add(l, p->dWp, K * r * kk);
    add(l, a->fm, a->fm_n);
    if (shared) add(l, a->state + p->u_off, C * r);
    else add(l, p->Ub, B * C * r), add(l, a->ucat, a->ucat_n);
    add(l, a->fe, a->fe_n);
    const size_t given = *work;
    *work = lowrank_used(p, given, 1);
    if (p->rg > 0 && a->cfg.mode == AM_MODE_ASYMML) {
        /* corr(R, B) and, but for the first conv, the transposed conv of B
         * (split.c): convs with rg outputs over the whole input. */
        am_conv2d_cfg gc = p->cfg;
        gc.bias = 0, gc.out_c = p->rg;
        *work = max_z(*work, am_conv2d_workspace_used(&gc, p->x, given, 1, 0));
        if (!p->first) *work = max_z(*work, am_conv2d_workspace_used(&gc, p->x, given, 1, 1));
    }
    if (a->cfg.mode == AM_MODE_LOWRANK_ONLY) /* dX of the whole conv in the TEE (straight through) */
        *work = max_z(*work, am_conv2d_workspace_used(&p->cfg, p->x, given, 1, 1));
}

void asym_lowrank_regions(const am_asym *a, const layer_plan *p, int backward_pass, asym_list *l, size_t *work) {
    if (backward_pass) backward(a, p, l, work);
    else forward(a, p, l, work);
}

int am_asym_regions(const am_asym *a, int layer, int backward_pass, const void **ptr, size_t *bytes, size_t *work) {
    asym_list l = {ptr, bytes, 0};
    const size_t given = *work;
    *work = 0;
    if (!a || layer < 0 || layer >= a->n || !am_asym_handles(a, layer)) return 0;
    const layer_plan *p = &a->L[layer];
    *work = given;
    if (p->strat->regions) p->strat->regions(a, p, backward_pass, &l, work);
    else *work = 0;
    return l.n;
}
