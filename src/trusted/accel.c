/* The accelerator's part of a layer, from the trusted side: the backward
 * requests over what it already holds, and every reply merged into trusted
 * memory (each value read once, non-finite values refused) and, with
 * verification on, checked against what was sent (verify.c). What goes out
 * is ledger.c's. */
#include <stdlib.h>
#include <string.h>

#include "trusted/split_impl.h"
#include "trusted/verify.h"

am_status asym_refused(int layer, const char *what) {
    return am_fail(AM_ENUM, "accelerator: a non-finite value in layer %d's %s: the reply is refused", layer, what);
}

am_status asym_merge(am_asym *a, layer_plan *p, int layer, const char *what, float *dst, const float *src, int outer,
                     int mid, size_t inner, const float *bias, int add, const float *coef, double *moments) {
    double tx = asym_now();
    int bad = am_merge_reply(dst, src, outer, mid, inner, bias, add, coef, coef ? a->vcomb : NULL, moments);
    p->xfer_s += asym_now() - tx;
    return bad ? asym_refused(layer, what) : AM_OK;
}

/* Coefficients, reference, bound and combination of up to n values, the
 * checks' workspace, and the layer's own coefficients and combined input
 * (B x N). */
am_status asym_verify_scratch(am_asym *a, layer_plan *p, size_t n) {
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

am_status asym_verify_sent(am_asym *a, layer_plan *p, const float *w, const float *R, int b0, int g) {
    const size_t P = (size_t)p->P, N = (size_t)p->N;
    AM_TRY(am_verify_fwd(&p->cfg, am_shape4(1, p->C, p->x.h, p->x.w), w, a->vsig, R, g, a->vref + b0 * P,
                         a->vmag + b0 * P, a->vwork, a->vwork_n));
    am_verify_reduce_channels(R, g, p->C, N, p->vu, p->vRu + b0 * N, p->vRa + b0 * N);
    return AM_OK;
}

/* The reply's combination over input channels (a->vcomb, from the merge)
 * against corr(Ru, G) from what was sent. */
am_status asym_verify_dw(am_asym *a, layer_plan *p, int layer, const float *G) {
    AM_TRY(am_verify_bwd_filter(&p->cfg, p->x, p->vRu, p->vRa, G, a->vref, a->vmag, a->vwork, a->vwork_n));
    return am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)p->K * p->kk, (double)p->x.n * p->P + p->C, layer,
                             "weight gradient");
}

am_status asym_request_backward(am_asym *a, int layer, layer_plan *p, const am_conv2d_cfg *cfg, am_shape x,
                                const float *bg, am_cross_kind xk, am_cross_kind gk, float **bdw, float **bdx) {
    const size_t wn = (size_t)p->K * p->C * p->kk;
    const uint32_t exact = a->verify ? AM_REQ_EXACT : 0u;
    float *bx, *bw;
    /* The forward pass's input (residual, or X) is still in bx as it was
     * sent; the weights too. */
    AM_TRY(asym_result(a, layer, AM_BUF_INPUT, am_shape_numel(x), &bx));
    AM_TRY(asym_result(a, layer, AM_BUF_WEIGHT, wn, &bw));
    AM_TRY(asym_result(a, layer, AM_BUF_DW, wn, bdw));
    am_req rf = {AM_REQ_CONV_BWD_FILTER, layer, *cfg, x, bx, bg, *bdw, AM_KEEP_IN0, xk, gk, (uint32_t)a->step, exact};
    rf.cfg.bias = 0;
    AM_TRY(asym_submit(a, p, &rf));
    if (!bdx) return AM_OK;
    AM_TRY(asym_result(a, layer, AM_BUF_DX, am_shape_numel(x), bdx));
    am_req rd = {AM_REQ_CONV_BWD_DATA, layer, *cfg, x, bg, bw, *bdx, AM_KEEP_IN0 | AM_KEEP_IN1, gk, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, exact};
    rd.cfg.bias = 0;
    return asym_submit(a, p, &rd);
}

am_status asym_merge_dx(am_asym *a, layer_plan *p, int layer, const am_conv2d_cfg *cfg, am_shape x, const float *w,
                        am_tensor *dx, const float *bdx, int add, int ver, const float *G) {
    if (ver) am_verify_coefs(a->vsig, p->C);
    AM_TRY(asym_merge(a, p, layer, "input gradient", dx->d, bdx, x.n, p->C, (size_t)p->N, NULL, add,
                      ver ? a->vsig : NULL, NULL));
    if (!ver) return AM_OK;
    AM_TRY(am_verify_bwd_data(cfg, x, w, a->vsig, G, a->vref, a->vmag, a->vwork, a->vwork_n));
    return am_verify_compare(a->vcomb, a->vref, a->vmag, (size_t)x.n * p->N, (double)p->K * p->kk + p->C, layer,
                             "input gradient");
}
