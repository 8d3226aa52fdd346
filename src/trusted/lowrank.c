/* The TEE's part of a split conv layer (ALGORITHM.md, "Forward, per conv
 * layer" and "Backward, per conv layer"): the decomposition X = U V + R, a
 * group of samples at a time; the low-rank conv with U folded into W; the
 * low-rank part of the weight gradient. The split and low-rank-only
 * strategies share it; what happens to R is theirs. */
#include <stdlib.h>
#include <string.h>

#include "trusted/fold.h"
#include "trusted/split_impl.h"

am_status asym_grow_basis_work(am_asym *a, size_t n) {
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

/* The folding's scratch: W transposed, the stacked factors, U stacked. */
static am_status grow_fold(am_asym *a, const layer_plan *p) {
    const int per = p->basis == AM_BASIS_PER_SAMPLE;
    size_t r = (size_t)p->r, nb = per ? (size_t)am_unfold_group(p->x.n, p->K, p->r, p->kk) : 1;
    size_t kkk = (size_t)p->K * p->kk, chunk = (size_t)p->C * am_fold_chunk(p->K, p->C, p->kk) * p->kk;
    AM_TRY(asym_grow(&a->wt, &a->wt_n, per ? (size_t)p->C * kkk : chunk));
    AM_TRY(asym_grow(&a->fe, &a->fe_n, chunk));
    AM_TRY(asym_grow(&a->fm, &a->fm_n, nb * r * kkk));
    return asym_grow(&a->ucat, &a->ucat_n, (size_t)p->C * nb * r);
}

am_status asym_lowrank_alloc(am_asym *a, layer_plan *p) {
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
    AM_TRY(grow_fold(a, p));
    /* The basis state: one U per layer, contiguous for checkpoints. */
    if (p->basis == AM_BASIS_SHARED) {
        AM_TRY(asym_state_add(a, (size_t)p->C * r, &p->u_off));
        AM_TRY(asym_grow_basis_work(a, am_shared_basis_workspace(p->x.n, p->C, p->N, p->r)));
        AM_TRY(asym_grow_basis_work(a, am_project_workspace(p->x.n, p->C, p->N, p->r)));
    }
    /* The residual, a group of samples at a time. */
    size_t need = (size_t)asym_group_size(a, p) * p->x.c * p->x.h * p->x.w;
    if (need <= a->scratch_n) return AM_OK;
    am_aligned_free(a->scratch);
    a->scratch = am_aligned_alloc(need * sizeof(float));
    a->scratch_n = a->scratch ? need : 0;
    return a->scratch ? AM_OK : am_fail(AM_ENOMEM, "asym: out of memory for the residual");
}

am_status asym_lowrank_basis(am_asym *a, layer_plan *p, const am_tensor *x, int training, float **U) {
    const int C = p->C, r = p->r;
    *U = a->state + p->u_off;
    if (p->basis != AM_BASIS_SHARED) return AM_OK;
    /* An evaluation batch starts from the training basis but does not move
     * it: training (and a resumed run) sees the same bases either way. */
    if (!training && p->warm && a->cfg.sigma == 0.f) {
        memcpy(a->u_eval, *U, sizeof(float) * (size_t)C * r); /* u_eval holds basis_work_n >= C*r floats */
        *U = a->u_eval;
    }
    /* With noise on, every batch starts cold: a basis warm-started from
     * earlier batches would carry one sample's influence into the residuals
     * of every later batch, which the accountant does not count (see
     * am_dp_epsilon). */
    int warm = p->warm && a->cfg.sigma == 0.f;
    AM_TRY(am_shared_basis(x->d, x->s.n, C, p->N, r, a->cfg.iters, warm, *U, a->basis_work, a->basis_work_n));
    if (training) p->warm = 1;
    return AM_OK;
}

/* Planes of 16 pixels or more: the one-pass projection with its energies
 * was as fast as the GEMMs' and their sums of squares, or faster (measured
 * here: 1.0x at 7x7 and C 512, 1.5-1.7x at 4x4 and C 512 and at 224x224
 * and C 64, 2.2x at 32x32 and C 64); at 2x2 the GEMMs over the gathered
 * batch were faster (0.4x). */
int asym_lowrank_fused(const layer_plan *p) { return p->basis == AM_BASIS_SHARED && p->N >= 16; }

int asym_release_straight(const am_asym *a, const layer_plan *p) {
    return a->cfg.clip == 0.f && a->cfg.sigma == 0.f && !a->verify && asym_lowrank_fused(p);
}

am_status asym_lowrank_group(am_asym *a, layer_plan *p, const float *U, const am_tensor *x, int b0, int g, float *R,
                             double *er, double *ev) {
    const int C = p->C, N = p->N, r = p->r;
    const size_t per = (size_t)C * N;
    const float *Xg = x->d + (size_t)b0 * per;
    float *Vg = p->V + (size_t)b0 * r * N;
    if (asym_lowrank_fused(p)) /* one pass, the energies with it */
        return am_project_fused(Xg, g, C, N, r, U, Vg, R, er, ev);
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
    *er += eg;
    *ev += p->basis == AM_BASIS_SHARED ? am_sumsq(Vg, (size_t)g * r * N) : am_sumsq(Xg, (size_t)g * per) - eg;
    return AM_OK;
}

am_status asym_lowrank_conv(am_asym *a, layer_plan *p, const am_conv2d_cfg *cfg, const float *w, const float *U,
                            const am_tensor *x, am_tensor *y, float *work, size_t work_n) {
    const int B = x->s.n, C = p->C, r = p->r;
    am_conv2d_cfg lc = *cfg;
    lc.bias = 0;
    if (p->basis == AM_BASIS_SHARED) {
        am_fold_chunked(w, U, p->K, C, r, p->kk, a->wt, a->fm, p->Wp);
        am_tensor v = {am_shape4(B, r, x->s.h, x->s.w), p->V};
        return am_conv2d_forward(&lc, &v, p->Wp, NULL, y, work, work_n);
    }
    am_to_ck(w, p->K, C, p->kk, a->wt);
    am_blas_serial(1);
    am_status st = AM_OK;
    for (int s = 0; s < B && st == AM_OK; s++) {
        am_fold(a->wt, p->Ub + (size_t)s * C * r, p->K, C, r, p->kk, a->fm, p->Wp);
        am_tensor v = {am_shape4(1, r, x->s.h, x->s.w), p->V + (size_t)s * r * p->N};
        am_tensor ys = {am_shape4(1, p->K, p->y.h, p->y.w), y->d + (size_t)s * p->K * p->P};
        st = am_conv2d_forward(&lc, &v, p->Wp, NULL, &ys, work, work_n);
    }
    am_blas_serial(0);
    return st;
}

/* Per-sample bases: a group of samples at a time, their dW'_s stacked,
 * then unfolded. */
static am_status dw_per_sample(am_asym *a, layer_plan *p, const am_conv2d_cfg *lc, const am_tensor *x,
                               const am_tensor *dy, float *dw, float *work, size_t work_n) {
    const int B = x->s.n, C = p->C, K = p->K, r = p->r, kk = p->kk;
    const int G = am_unfold_group(B, K, r, kk);
    am_status st = AM_OK;
    for (int s0 = 0; s0 < B && st == AM_OK; s0 += G) {
        const int g = B - s0 < G ? B - s0 : G;
        am_blas_serial(1);
        for (int i = 0; i < g && st == AM_OK; i++) {
            const int s = s0 + i;
            am_tensor v = {am_shape4(1, r, x->s.h, x->s.w), p->V + (size_t)s * r * p->N};
            am_tensor gs = {am_shape4(1, K, p->y.h, p->y.w), dy->d + (size_t)s * K * p->P};
            st = am_conv2d_backward(lc, &v, p->Wp, &gs, NULL, 0, p->dWp, NULL, work, work_n);
            am_stack_grad(p->dWp, K, r, kk, i, a->fm);
            /* Ucat[c][i r + j] = U_s[c][j] */
            for (int c = 0; c < C; c++)
                memcpy(a->ucat + ((size_t)c * g + i) * r, p->Ub + ((size_t)s * C + c) * r, sizeof(float) * (size_t)r);
        }
        am_blas_serial(0);
        if (st == AM_OK) am_unfold(a->ucat, a->fm, g, K, C, r, kk, a->fe, dw, s0 > 0);
    }
    return st;
}

am_status asym_lowrank_dwp(am_asym *a, layer_plan *p, const am_conv2d_cfg *cfg, const am_tensor *x,
                           const am_tensor *dy, float *work, size_t work_n) {
    am_conv2d_cfg lc = *cfg;
    lc.bias = 0;
    am_tensor v = {am_shape4(x->s.n, p->r, x->s.h, x->s.w), p->V};
    AM_TRY(am_conv2d_backward(&lc, &v, p->Wp, dy, NULL, 0, p->dWp, NULL, work, work_n));
    am_stack_grad(p->dWp, p->K, p->r, p->kk, 0, a->fm);
    return AM_OK;
}

am_status asym_lowrank_dw(am_asym *a, layer_plan *p, const am_conv2d_cfg *cfg, const am_tensor *x,
                          const am_tensor *dy, float *dw, float *work, size_t work_n) {
    if (p->basis != AM_BASIS_SHARED) {
        am_conv2d_cfg lc = *cfg;
        lc.bias = 0;
        return dw_per_sample(a, p, &lc, x, dy, dw, work, work_n);
    }
    AM_TRY(asym_lowrank_dwp(a, p, cfg, x, dy, work, work_n));
    am_unfold(a->state + p->u_off, a->fm, 1, p->K, p->C, p->r, p->kk, a->fe, dw, 0);
    return AM_OK;
}

am_status asym_lowrank_dw_merge(am_asym *a, layer_plan *p, int layer, float *dw, const float *reply) {
    if (am_unfold_merge(a->state + p->u_off, a->fm, p->K, p->C, p->r, p->kk, a->fe, dw, reply))
        return asym_refused(layer, "weight gradient");
    return AM_OK;
}
