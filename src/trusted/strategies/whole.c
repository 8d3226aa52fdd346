/* open mode's strategy: the whole conv on the accelerator. The input, the
 * weights and the output gradient cross in the clear; the trusted side adds
 * the bias, merges and (with verification) checks every reply. */
#include "trusted/strategy.h"
#include "trusted/verify.h"

static am_status forward(am_asym *a, int layer, layer_plan *p, const asym_fwd *f) {
    float *bx, *bw, *by;
    const am_tensor *x = f->x;
    am_shape ws = am_shape4(p->K, p->C, p->cfg.kh, p->cfg.kw);
    AM_TRY(asym_cross(a, layer, AM_BUF_INPUT, AM_CROSS_ACTIVATION, x->s, x->d, &bx));
    AM_TRY(asym_cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, ws, f->w, &bw));
    AM_TRY(asym_result(a, layer, AM_BUF_OUTPUT, am_shape_numel(f->y->s), &by));
    am_req rq = {AM_REQ_CONV_FWD, layer, p->cfg, x->s, bx, bw, by, 0, AM_CROSS_ACTIVATION, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, a->verify ? AM_REQ_EXACT : 0u};
    rq.cfg.bias = 0;
    AM_TRY(asym_submit(a, p, &rq));
    const size_t B = (size_t)x->s.n, P = (size_t)p->P;
    if (a->verify) {
        AM_TRY(asym_verify_scratch(a, p, B * P));
        am_verify_coefs(a->vsig, p->K);
        am_verify_coefs(p->vu, p->C);
        AM_TRY(asym_verify_sent(a, p, f->w, x->d, 0, (int)B));
    }
    AM_TRY(asym_wait(a, p));
    AM_TRY(asym_merge(a, p, layer, "forward result", f->y->d, by, (int)B, p->K, P, f->b, 0,
                      a->verify ? a->vsig : NULL, f->moments));
    if (a->verify)
        AM_TRY(am_verify_compare(a->vcomb, a->vref, a->vmag, B * P, (double)p->C * p->kk + p->K, layer,
                                 "forward result"));
    return AM_OK;
}

static am_status backward(am_asym *a, int layer, layer_plan *p, const asym_bwd *g) {
    const am_tensor *x = g->x, *dy = g->dy;
    float *bg, *bdw, *bdx = NULL;
    /* The output gradient crosses in the clear. */
    AM_TRY(asym_cross_grad(a, layer, dy, g->db, &bg));
    AM_TRY(asym_request_backward(a, layer, p, g->cfg, x->s, bg, AM_CROSS_ACTIVATION, AM_CROSS_OUTPUT_GRAD, &bdw,
                                 g->dx ? &bdx : NULL));
    const int ver = a->verify && p->vu;
    if (ver) {
        size_t bn = (size_t)x->s.n * p->N, kk2 = (size_t)p->K * p->kk;
        AM_TRY(asym_verify_scratch(a, p, bn > kk2 ? bn : kk2));
    }
    AM_TRY(asym_wait(a, p));
    AM_TRY(asym_merge(a, p, layer, "weight gradient", g->dw, bdw, p->K, p->C, (size_t)p->kk, NULL, 0,
                      ver ? p->vu : NULL, NULL));
    if (ver) AM_TRY(asym_verify_dw(a, p, layer, dy->d));
    if (!g->dx) return AM_OK;
    return asym_merge_dx(a, p, layer, g->cfg, x->s, g->w, g->dx, bdx, g->accum, ver, dy->d);
}

/* The accelerator kept what it was sent. */
static int needs_input(const am_asym *a, const layer_plan *p) { return 0; }

const asym_strategy asym_whole_accel = {"whole on the accelerator", NULL, forward, backward, needs_input, NULL};
