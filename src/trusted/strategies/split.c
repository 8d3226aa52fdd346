/* asymml's strategy (ALGORITHM.md, "Forward, per conv layer" and
 * "Backward, per conv layer"): the TEE decomposes the input (lowrank.c),
 * runs the low-rank conv with U folded into W, and sends only the residual
 * (clipped and noised) and the weights to the accelerator; the output
 * gradient goes in the clear, as in the paper's scheme, or, with protected
 * gradients, only its residual after a basis of the output channels. Every
 * byte that crosses goes through asym_cross (ledger.c); every reply is
 * merged and checked (accel.c). */
#include <cblas.h>
#include <string.h>

#include "trusted/strategy.h"
#include "trusted/verify.h"

/* The protected gradients' buffers: their basis A (K x rg) in the state. */
static am_status plan(am_asym *a, layer_plan *p) {
    AM_TRY(asym_lowrank_alloc(a, p));
    if (!a->cfg.protect_grads) return AM_OK;
    const size_t B = (size_t)p->x.n;
    p->rg = am_rank_pick(a->cfg.policy == AM_RANK_FIXED ? AM_RANK_FIXED : AM_RANK_RATIO,
                         a->cfg.policy == AM_RANK_FIXED ? a->cfg.rank_value : (double)p->r / p->C, NULL, p->K);
    AM_TRY(asym_state_add(a, (size_t)p->K * p->rg, &p->a_off));
    AM_TRY(asym_grow_basis_work(a, am_shared_basis_workspace(p->x.n, p->K, p->P, p->rg)));
    AM_TRY(asym_grow(&a->gs, &a->gs_n, B * (size_t)p->K * p->P));
    AM_TRY(asym_grow(&a->gb, &a->gb_n, B * (size_t)p->rg * p->P));
    AM_TRY(asym_grow(&a->wa, &a->wa_n, (size_t)p->rg * p->C * p->kk));
    return asym_grow(&a->crb, &a->crb_n, (size_t)p->rg * p->C * p->kk);
}

/* The residual, a group of samples at a time through a small trusted
 * buffer: projected (or decomposed per sample), clipped and noised, then
 * copied out. Only the released copy is whole. Without clipping, noise or
 * verification, a residual that the one-pass projection makes goes
 * straight into the accelerator's buffer: each value is written there once,
 * final, and never read back. */
static am_status release(am_asym *a, int layer, layer_plan *p, const asym_fwd *f, const float *U, float *bx) {
    const am_tensor *x = f->x;
    const int B = x->s.n, G = asym_group_size(a, p);
    const size_t per = (size_t)p->C * p->N;
    const int straight = asym_release_straight(a, p);
    double er = 0, ev = 0;
    p->release = a->release_next++;
    for (int b0 = 0; b0 < B; b0 += G) {
        const int g = B - b0 < G ? B - b0 : G;
        float *R = straight ? bx + (size_t)b0 * per : a->scratch;
        AM_TRY(asym_lowrank_group(a, p, U, x, b0, g, R, &er, &ev));
        if (straight) continue;
        /* Every release is clipped and noised, in evaluation too. */
        AM_TRY(am_dp_clip_noise_at(R, g, per, b0, a->cfg.clip, a->cfg.sigma, a->noise_key, a->cfg.noise_seed,
                                   p->release));
        if (a->verify) AM_TRY(asym_verify_sent(a, p, f->w, R, b0, g));
        double tx = asym_now();
        am_copy_floats(bx + (size_t)b0 * per, R, (size_t)g * per);
        p->xfer_s += asym_now() - tx;
    }
    p->e_total += ev + er;
    p->e_kept += ev;
    return asym_record(a, layer, AM_CROSS_RESIDUAL, x->s, bx);
}

static am_status forward(am_asym *a, int layer, layer_plan *p, const asym_fwd *f) {
    const am_tensor *x = f->x;
    const int B = x->s.n;
    double t0 = asym_now();
    float *U, *bx, *bw, *by;
    AM_TRY(asym_lowrank_basis(a, p, x, f->training, &U));
    AM_TRY(a->be->vt->buffer(a->be, layer, AM_BUF_INPUT, am_shape_numel(x->s), &bx));
    if (a->verify) {
        AM_TRY(asym_verify_scratch(a, p, (size_t)B * p->P));
        am_verify_coefs(a->vsig, p->K);
        am_verify_coefs(p->vu, p->C);
    }
    AM_TRY(release(a, layer, p, f, U, bx));
    p->decomp_s += asym_now() - t0;
    /* The residual is out: release the weights, and submit. */
    am_shape ws = am_shape4(p->K, p->C, f->cfg->kh, f->cfg->kw);
    AM_TRY(asym_cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, ws, f->w, &bw));
    AM_TRY(asym_result(a, layer, AM_BUF_OUTPUT, am_shape_numel(f->y->s), &by));
    am_req rq = {AM_REQ_CONV_FWD, layer, *f->cfg, x->s, bx, bw, by, 0, AM_CROSS_RESIDUAL, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
    rq.cfg.bias = 0;
    AM_TRY(asym_submit(a, p, &rq));
    /* The low-rank conv in the TEE meanwhile; the bias goes in with the
     * accelerator's part, in one pass over the output. */
    AM_TRY(asym_lowrank_conv(a, p, f->cfg, f->w, U, x, f->y, f->work, f->work_n));
    AM_TRY(asym_wait(a, p));
    AM_TRY(asym_merge(a, p, layer, "forward result", f->y->d, by, B, p->K, (size_t)p->P,
                      f->cfg->bias ? f->b : NULL, 1, a->verify ? a->vsig : NULL, f->moments));
    if (!a->verify) return AM_OK;
    return am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)B * p->P, (double)p->C * p->kk + p->K, layer,
                             "forward result");
}

/* Protected gradients: G = A B + S with a basis A of the output channels;
 * only S, clipped and noised like the residual, leaves (into *bg). */
static am_status protect(am_asym *a, int layer, layer_plan *p, const am_tensor *dy, float **bg) {
    const int B = dy->s.n;
    float *A = a->state + p->a_off;
    int warm = p->warm_a && a->cfg.sigma == 0.f;
    AM_TRY(am_shared_basis(dy->d, B, p->K, p->P, p->rg, a->cfg.iters, warm, A, a->basis_work, a->basis_work_n));
    p->warm_a = 1;
    AM_TRY(am_project(dy->d, B, p->K, p->P, p->rg, A, a->gb, a->gs));
    AM_TRY(am_dp_clip_noise(a->gs, B, (size_t)p->K * p->P, a->cfg.clip, a->cfg.sigma, a->noise_key, a->cfg.noise_seed,
                            a->release_next++));
    return asym_cross(a, layer, AM_BUF_GRAD, AM_CROSS_GRAD_RESIDUAL, dy->s, a->gs, bg);
}

/* The terms of a protected backward pass that touch A B, in the TEE, all of
 * rank rg:  dW += A (x) corr(R, B)  and  dX (=/+=) conv_transpose(W A, B).
 * R is the residual the accelerator holds: recomputed from X and the bases,
 * clipped and noised again with the forward pass's release number (the same
 * release: the accelerator holds it already). */
static am_status protected_terms(am_asym *a, layer_plan *p, const asym_bwd *g) {
    const am_tensor *x = g->x;
    const int B = x->s.n, C = p->C, N = p->N, K = p->K, r = p->r, rg = p->rg;
    const size_t ckk = (size_t)C * p->kk;
    const float *A = a->state + p->a_off;
    float *R = a->scratch;
    if (asym_lowrank_fused(p)) { /* as the forward pass made it, bit for bit */
        double e1 = 0, e2 = 0;
        AM_TRY(am_project_fused(x->d, B, C, N, r, a->state + p->u_off, p->V, R, &e1, &e2));
    } else if (p->basis == AM_BASIS_SHARED) {
        AM_TRY(am_project(x->d, B, C, N, r, a->state + p->u_off, p->V, R));
    } else {
        memcpy(R, x->d, sizeof(float) * (size_t)B * C * N);
        for (int s = 0; s < B; s++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, N, r, -1.f, p->Ub + (size_t)s * C * r, r,
                        p->V + (size_t)s * r * N, N, 1.f, R + (size_t)s * C * N, N);
    }
    AM_TRY(am_dp_clip_noise(R, B, (size_t)C * N, a->cfg.clip, a->cfg.sigma, a->noise_key, a->cfg.noise_seed, p->release));
    am_conv2d_cfg gc = *g->cfg;
    gc.bias = 0;
    gc.out_c = rg;
    am_tensor rt = {x->s, R}, gb = {am_shape4(B, rg, p->y.h, p->y.w), a->gb};
    /* corr(R, B): the weight gradient of a conv with rg outputs. */
    AM_TRY(am_conv2d_backward(&gc, &rt, a->wa, &gb, NULL, 0, a->crb, NULL, g->work, g->work_n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, (int)ckk, rg, 1.f, A, rg, a->crb, (int)ckk, 1.f, g->dw,
                (int)ckk);
    if (!g->dx) return AM_OK;
    /* W A (rg x C x kk) = A^T W, then its transposed conv of B. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rg, (int)ckk, K, 1.f, A, rg, g->w, (int)ckk, 0.f, a->wa,
                (int)ckk);
    am_tensor xs = {x->s, NULL};
    return am_conv2d_backward(&gc, &xs, a->wa, &gb, g->dx, g->accum, NULL, NULL, g->work, g->work_n);
}

static am_status backward(am_asym *a, int layer, layer_plan *p, const asym_bwd *g) {
    const am_tensor *x = g->x, *dy = g->dy;
    const int prot = p->rg > 0;
    float *bg, *bdw, *bdx = NULL;
    if (prot) AM_TRY(protect(a, layer, p, dy, &bg));
    else AM_TRY(asym_cross_grad(a, layer, dy, g->db, &bg)); /* the paper's scheme; db summed on the way */
    const am_cross_kind gk = prot ? AM_CROSS_GRAD_RESIDUAL : AM_CROSS_OUTPUT_GRAD;
    AM_TRY(asym_request_backward(a, layer, p, g->cfg, x->s, bg, AM_CROSS_RESIDUAL, gk, &bdw, g->dx ? &bdx : NULL));
    if (g->db && prot) am_conv2d_bias_grad(dy, g->db, NULL);
    const int ver = a->verify && p->vu;
    const float *Gs = prot ? a->gs : dy->d; /* what was sent */
    if (ver) {
        size_t bn = (size_t)x->s.n * p->N, kk2 = (size_t)p->K * p->kk;
        AM_TRY(asym_verify_scratch(a, p, bn > kk2 ? bn : kk2));
    }
    /* The low-rank part of dW in the TEE meanwhile: U (x) corr(V, G); with
     * one basis and nothing else to add or check, its unfold waits for the
     * reply and merges it in the same pass (a pass over dW the less). */
    const int fuse = !ver && !prot && p->basis == AM_BASIS_SHARED;
    if (fuse) AM_TRY(asym_lowrank_dwp(a, p, g->cfg, x, dy, g->work, g->work_n));
    else AM_TRY(asym_lowrank_dw(a, p, g->cfg, x, dy, g->dw, g->work, g->work_n));
    if (prot) AM_TRY(protected_terms(a, p, g));
    AM_TRY(asym_wait(a, p));
    if (fuse) AM_TRY(asym_lowrank_dw_merge(a, p, layer, g->dw, bdw));
    else AM_TRY(asym_merge(a, p, layer, "weight gradient", g->dw, bdw, p->K, p->C, (size_t)p->kk, NULL, 1,
                           ver ? p->vu : NULL, NULL));
    if (ver) AM_TRY(asym_verify_dw(a, p, layer, Gs));
    if (!g->dx) return AM_OK;
    /* With protected gradients the TEE's conv_T(W A, B) is already in dx. */
    return asym_merge_dx(a, p, layer, g->cfg, x->s, g->w, g->dx, bdx, g->accum || prot, ver, Gs);
}

/* Protected gradients recompute the residual from X; otherwise V and the
 * accelerator's copy of R are all the backward pass reads. */
static int needs_input(const am_asym *a, const layer_plan *p) { return p->rg > 0; }

const asym_strategy asym_split = {"split", plan, forward, backward, needs_input, asym_lowrank_regions};
