/* Split execution of conv layers (ALGORITHM.md, "Forward, per conv layer"
 * and "Backward, per conv layer"). The trusted side decomposes the input,
 * runs the low-rank conv with U folded into W, and sends only residuals
 * (clipped and noised) and weights to the accelerator; output gradients go
 * in the clear, as in the paper's scheme. Every byte that crosses goes
 * through asym_cross (ledger.c), which copies it into the accelerator's
 * buffer and records it in the ledger; every reply is merged and checked
 * here (verify.c). The plan, the state and the figures are plan.c's. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trusted/fold.h"
#include "trusted/split_impl.h"
#include "trusted/verify.h"

/* ---------------------------------------------------------------- replies */

/* Merges a reply into trusted memory (am_merge_reply: each value read
 * once); a non-finite result is an error that names the layer. With coef,
 * the reply's combination goes to a->vcomb for am_verify_compare. */
static am_status merge(am_asym *a, layer_plan *p, int layer, const char *what, float *dst, const float *src, int outer,
                       int mid, size_t inner, const float *bias, int add, const float *coef, double *moments) {
    double tx = asym_now();
    int bad = am_merge_reply(dst, src, outer, mid, inner, bias, add, coef, coef ? a->vcomb : NULL, moments);
    p->xfer_s += asym_now() - tx;
    if (bad) return am_fail(AM_ENUM, "accelerator: a non-finite value in layer %d's %s: the reply is refused", layer, what);
    return AM_OK;
}

/* Verification's scratch: coefficients, reference, bound and combination of up
 * to n values, the checks' workspace, and the layer's own coefficients and
 * combined input (B x N). */
static am_status verify_scratch(am_asym *a, layer_plan *p, size_t n) {
    size_t cap = a->vsig_n;
    AM_TRY(asym_grow(&a->vsig, &cap, (size_t)(p->K > p->C ? p->K : p->C)));
    a->vsig_n = cap;
    if (n > a->vref_n) {
        size_t c1 = 0, c2 = 0, c3 = 0;
        am_aligned_free(a->vref), am_aligned_free(a->vmag), am_aligned_free(a->vcomb);
        a->vref = a->vmag = a->vcomb = NULL;
        a->vref_n = 0;
        AM_TRY(asym_grow(&a->vref, &c1, n));
        AM_TRY(asym_grow(&a->vmag, &c2, n));
        AM_TRY(asym_grow(&a->vcomb, &c3, n));
        a->vref_n = n;
    }
    cap = a->vwork_n;
    AM_TRY(asym_grow(&a->vwork, &cap, am_verify_workspace(&p->cfg, p->x)));
    a->vwork_n = cap;
    if (!p->vu) {
        size_t c1 = 0, c2 = 0, c3 = 0, bn = (size_t)p->x.n * p->N;
        AM_TRY(asym_grow(&p->vu, &c1, (size_t)p->C));
        AM_TRY(asym_grow(&p->vRu, &c2, bn));
        AM_TRY(asym_grow(&p->vRa, &c3, bn));
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
                              const float *b, am_tensor *y, double *moments) {
    float *bx, *bw, *by;
    am_shape ws = am_shape4(p->K, p->C, p->cfg.kh, p->cfg.kw);
    AM_TRY(asym_cross(a, layer, AM_BUF_INPUT, AM_CROSS_ACTIVATION, x->s, x->d, &bx));
    AM_TRY(asym_cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, ws, w, &bw));
    AM_TRY(asym_result(a, layer, AM_BUF_OUTPUT, am_shape_numel(y->s), &by));
    am_req rq = {AM_REQ_CONV_FWD, layer, p->cfg, x->s, bx, bw, by, 0, AM_CROSS_ACTIVATION, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
    rq.cfg.bias = 0;
    AM_TRY(asym_submit(a, p, &rq));
    const size_t B = (size_t)x->s.n, P = (size_t)p->P;
    if (a->verify) {
        AM_TRY(verify_scratch(a, p, B * P));
        am_verify_coefs(a->vsig, p->K);
        am_verify_coefs(p->vu, p->C);
        AM_TRY(verify_sent(a, p, w, x->d, 0, (int)B));
    }
    AM_TRY(asym_wait(a, p));
    AM_TRY(merge(a, p, layer, "forward result", y->d, by, (int)B, p->K, P, b, 0, a->verify ? a->vsig : NULL, moments));
    if (a->verify) AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, B * P, (double)p->C * p->kk + p->K, layer, "forward result"));
    return AM_OK;
}

am_status am_asym_forward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                          const float *w, const float *b, am_tensor *y, float *work, size_t work_n,
                          int training, double *moments) {
    layer_plan *p = &a->L[layer];
    if (!am_asym_handles(a, layer)) return am_fail(AM_EINVAL, "asym: layer %d is not split", layer);
    if (!am_shape_eq(x->s, p->x)) return am_fail(AM_EINVAL, "asym: layer %d planned for another batch size", layer);
    if (cfg->bias && !b) return am_fail(AM_EINVAL, "asym: layer %d expects a bias", layer);
    double t0 = asym_now(), accel0 = asym_busy(a), wait0 = p->wait_s;
    if (a->cfg.mode == AM_MODE_OPEN) {
        am_status st = forward_open(a, layer, p, x, w, b, y, moments);
        p->accel_s += asym_busy(a) - accel0;
        p->tee_s += asym_now() - t0 - (p->wait_s - wait0);
        return st;
    }
    if (!p->decided) {
        AM_TRY(asym_decide(a, p, x->d));
        if (!p->split) return am_conv2d_forward_moments(cfg, x, w, b, y, work, work_n, moments);
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
    const int G = asym_group_size(a, p);
    double er = 0, ev = 0;
    if (asym) p->release = a->release_next++;
    const int ver = asym && a->verify;
    if (ver) {
        AM_TRY(verify_scratch(a, p, (size_t)B * p->P));
        am_verify_coefs(a->vsig, p->K);
        am_verify_coefs(p->vu, C);
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
        AM_TRY(am_dp_clip_noise_at(R, g, per, b0, a->cfg.clip, a->cfg.sigma, a->noise_key, a->cfg.noise_seed, p->release));
        if (ver) AM_TRY(verify_sent(a, p, w, R, b0, g));
        double tx = asym_now();
        am_copy_floats(bx + (size_t)b0 * per, R, (size_t)g * per);
        p->xfer_s += asym_now() - tx;
    }
    p->e_total += ev + er;
    p->e_kept += ev;
    p->decomp_s += asym_now() - t0;
    /* Release the weights; the residual is out: record it, and submit. */
    am_shape ws = am_shape4(p->K, C, cfg->kh, cfg->kw);
    if (asym) {
        AM_TRY(asym_record(a, layer, AM_CROSS_RESIDUAL, x->s, bx));
        AM_TRY(asym_cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, ws, w, &bw));
        AM_TRY(asym_result(a, layer, AM_BUF_OUTPUT, am_shape_numel(y->s), &by));
        am_req rq = {AM_REQ_CONV_FWD, layer, *cfg, x->s, bx, bw, by, 0, AM_CROSS_RESIDUAL, AM_CROSS_WEIGHTS,
                     (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
        rq.cfg.bias = 0;
        AM_TRY(asym_submit(a, p, &rq));
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
        AM_TRY(asym_wait(a, p));
        AM_TRY(merge(a, p, layer, "forward result", y->d, by, B, p->K, (size_t)p->P, bias, 1, ver ? a->vsig : NULL,
                     moments));
        if (ver)
            AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)B * p->P, (double)C * p->kk + p->K, layer,
                                     "forward result"));
    } else if (bias || moments) {
        const int K = p->K;
        const size_t P = (size_t)p->P;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * K * P > 65536)
        for (int n = 0; n < B; n++)
            for (int k = 0; k < K; k++) {
                float *yk = y->d + ((size_t)n * K + k) * P, bk = bias ? bias[k] : 0.f;
                if (bias)
                    for (size_t i = 0; i < P; i++) yk[i] += bk;
                if (moments) am_plane_moments(yk, P, moments + 2 * ((size_t)n * K + k));
            }
    }
    p->accel_s += asym_busy(a) - accel0;
    p->tee_s += asym_now() - t0 - (p->wait_s - wait0);
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
    AM_TRY(am_dp_clip_noise(R, B, (size_t)C * N, a->cfg.clip, a->cfg.sigma, a->noise_key, a->cfg.noise_seed, p->release));
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
    double t0 = asym_now(), accel0 = asym_busy(a), wait0 = p->wait_s;
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
        AM_TRY(am_dp_clip_noise(a->gs, B, (size_t)K * p->P, a->cfg.clip, a->cfg.sigma, a->noise_key, a->cfg.noise_seed,
                                a->release_next++));
        AM_TRY(asym_cross(a, layer, AM_BUF_GRAD, AM_CROSS_GRAD_RESIDUAL, dy->s, a->gs, &bg));
    } else if (accel) {
        /* The output gradient crosses in the clear (the paper's scheme). */
        AM_TRY(asym_cross(a, layer, AM_BUF_GRAD, AM_CROSS_OUTPUT_GRAD, dy->s, dy->d, &bg));
    }
    if (accel) {
        AM_TRY(asym_result(a, layer, AM_BUF_INPUT, am_shape_numel(x->s), &bx));
        AM_TRY(asym_result(a, layer, AM_BUF_WEIGHT, wn, &bw));
        AM_TRY(asym_result(a, layer, AM_BUF_DW, wn, &bdw));
        /* The forward pass's input (residual, or X) is still in bx as it
         * was sent; the weights too. */
        const am_cross_kind xk = a->cfg.mode == AM_MODE_OPEN ? AM_CROSS_ACTIVATION : AM_CROSS_RESIDUAL;
        const am_cross_kind gk = protect ? AM_CROSS_GRAD_RESIDUAL : AM_CROSS_OUTPUT_GRAD;
        am_req rf = {AM_REQ_CONV_BWD_FILTER, layer, *cfg, x->s, bx, bg, bdw, AM_KEEP_IN0, xk, gk, (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
        rf.cfg.bias = 0;
        AM_TRY(asym_submit(a, p, &rf));
        if (dx) {
            AM_TRY(asym_result(a, layer, AM_BUF_DX, am_shape_numel(x->s), &bdx));
            am_req rd = {AM_REQ_CONV_BWD_DATA, layer, *cfg, x->s, bg, bw, bdx, AM_KEEP_IN0 | AM_KEEP_IN1, gk, AM_CROSS_WEIGHTS,
                         (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
            rd.cfg.bias = 0;
            AM_TRY(asym_submit(a, p, &rd));
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
        AM_TRY(asym_wait(a, p));
        AM_TRY(merge(a, p, layer, "weight gradient", dw, bdw, K, C, (size_t)kk, NULL, 0, ver ? p->vu : NULL, NULL));
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
            AM_TRY(asym_wait(a, p));
            AM_TRY(merge(a, p, layer, "weight gradient", dw, bdw, K, C, (size_t)kk, NULL, 1, ver ? p->vu : NULL, NULL));
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
        if (ver) am_verify_coefs(a->vsig, C);
        AM_TRY(merge(a, p, layer, "input gradient", dx->d, bdx, B, C, (size_t)p->N, NULL, add, ver ? a->vsig : NULL, NULL));
        if (ver) {
            AM_TRY(am_verify_bwd_data(cfg, x->s, w, a->vsig, Gs, a->vref, a->vmag, a->vwork, a->vwork_n));
            AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)B * p->N, (double)K * kk + C, layer,
                                     "input gradient"));
        }
    }
    p->accel_s += asym_busy(a) - accel0;
    p->tee_s += asym_now() - t0 - (p->wait_s - wait0);
    return AM_OK;
}

