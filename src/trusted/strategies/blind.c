/* slalom's strategy (Tramer and Boneh, ICLR 2019): the layer in fixed point
 * (quant.c), its integer conv on the accelerator over Z_p. The TEE adds a
 * fresh one-time pad r (pads.c) to the quantized input x mod p and sends
 * only x + r, uniform mod p whatever x is; the accelerator returns
 * W (x + r) mod p (AM_REQ_CONV_MODP); the TEE subtracts W r mod p, which
 * it computes itself meanwhile, and has W x exactly: its magnitude is below
 * p/2 by the plan's bound. The integer weights cross in the clear.
 *
 * Every reply is checked before it is unblinded, always: its range, then
 * exactly (Freivalds over Z_p, freivalds.c: about 2/K of the layer's work).
 * Both decisions depend only on what crossed, never on x: a refusal that
 * depended on the unblinded W x (a bound on it, say) would let a hostile
 * accelerator learn one chosen bit of the input per refused run, by adding
 * a chosen offset to one value of its reply and watching for the refusal;
 * and a wrong reply let through could show in what the run reports. */
#include <stdint.h>

#include "trusted/strategy.h"

static am_status plan(am_asym *a, layer_plan *p) {
    am_conv2d_cfg c = p->cfg;
    c.bias = 0;
    /* W x below p/2, and W (x + r) exact in double on the accelerator (the
     * check is in integers mod p: no bound of its own). */
    if (am_exact_bound(&c, p->C, asym_act_max(a), AM_WEIGHT_MAX) >= (AM_MODP - 1) / 2 ||
        am_exact_bound(&c, p->C, (AM_MODP - 1) / 2, AM_WEIGHT_MAX) >= 9007199254740992.0)
        return am_fail(AM_EINVAL, "slalom: a layer of fan-in %d does not fit the field at %d-bit activations",
                       p->C * p->kk, a->cfg.act_bits ? a->cfg.act_bits : AM_ACT_BITS);
    AM_TRY(asym_quant_alloc(a, p));
    AM_TRY(asym_grow(&a->qyr, &a->qyr_n, (size_t)p->x.n * p->K * p->P));
    AM_TRY(asym_grow(&a->qxu, &a->qxu_n, am_shape_numel(p->x)));
    AM_TRY(asym_grow(&a->fl, &a->fl_n, (size_t)p->x.n * p->K * p->P));
    return asym_grow(&a->qwf, &a->qwf_n, (size_t)p->K * p->C * p->kk);
}

/* x + r mod p into the accelerator's buffer (and, as sent but in [0, p),
 * into a->qxu, for the check); the weights beside it. */
static am_status send(am_asym *a, int layer, layer_plan *p, const asym_fwd *f, float **bx, float **bw) {
    const size_t n = am_shape_numel(f->x->s), wn = (size_t)p->K * p->C * p->kk;
    asym_pad(a->pad_key, a->batch_cur * (uint64_t)a->n_fixed + (uint64_t)p->bi, n, a->qr);
    AM_TRY(a->be->vt->buffer(a->be, layer, AM_BUF_INPUT, n, bx));
    int32_t *b = (int32_t *)(void *)*bx;
    uint32_t *xu = (uint32_t *)(void *)a->qxu;
    for (size_t i = 0; i < n; i++) {
        int32_t v = (int32_t)asym_modp_add(a->qx[i], a->qr[i]);
        b[i] = v;
        xu[i] = (uint32_t)(v < 0 ? v + AM_MODP : v);
    }
    AM_TRY(asym_record(a, layer, AM_CROSS_BLINDED, f->x->s, *bx));
    for (size_t i = 0; i < wn; i++) a->qwf[i] = (float)a->qw[i];
    return asym_cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, am_shape4(p->K, p->C, p->cfg.kh, p->cfg.kw), a->qwf,
                      bw);
}

/* The reply into trusted memory, each value read once: residues only. */
static am_status copy_in(am_asym *a, int layer, const float *by, size_t n) {
    const int32_t *y = (const int32_t *)(const void *)by;
    int32_t *c = (int32_t *)(void *)a->qyr;
    for (size_t i = 0; i < n; i++) {
        int32_t v = y[i];
        if (v < 0 || v >= AM_MODP)
            return am_fail(AM_ENUM, "accelerator: layer %d's blinded result holds %d, not a residue mod p: refused", layer, v);
        c[i] = v;
    }
    return AM_OK;
}

/* W x = W (x + r) - W r mod p, centered, into a->qy (which holds W r):
 * the reply passed its checks; nothing here refuses. */
static void unblind(am_asym *a, size_t n) {
    const int32_t *y = (const int32_t *)(const void *)a->qyr;
    for (size_t i = 0; i < n; i++) {
        double vc = y[i] > (AM_MODP - 1) / 2 ? (double)y[i] - AM_MODP : (double)y[i];
        double wr = am_modp_center(a->qy[i]); /* |W r| < 2^53: exact */
        a->qy[i] = asym_modp_add(vc, -wr);
    }
}

/* W r mod p into a->qy: the factor source's set for this batch, or
 * computed here, as much work as the layer. */
static am_status factors(am_asym *a, int layer, layer_plan *p, const am_conv2d_cfg *c, am_shape x) {
    if (!a->src) return am_conv2d_exact(c, x, a->qr, a->qw, a->qy, a->qwork, a->qwork_n);
    const size_t n = (size_t)x.n * p->K * p->P;
    int32_t *u = (int32_t *)(void *)a->fl;
    AM_TRY(a->src->load(a->src->ctx, a->batch_cur, p->bi, u, n));
    for (size_t i = 0; i < n; i++) {
        if (u[i] < 0 || u[i] >= AM_MODP) return am_fail(AM_EFORMAT, "slalom: layer %d's factors are not residues", layer);
        a->qy[i] = u[i];
    }
    return AM_OK;
}

static am_status forward(am_asym *a, int layer, layer_plan *p, const asym_fwd *f) {
    if (f->training) return am_fail(AM_EINVAL, "slalom: layer %d runs inference only", layer);
    double sx;
    float *bx, *bw, *by;
    /* A new batch: its number, never one used before, names its pads. */
    if (p->bi == 0) {
        if (a->src) AM_TRY(a->src->next(a->src->ctx, &a->batch_cur));
        else a->batch_cur = a->batch_next++;
    }
    asym_quantize(a, p, f->x, f->w, &sx);
    AM_TRY(send(a, layer, p, f, &bx, &bw));
    const size_t yn = am_shape_numel(f->y->s);
    AM_TRY(asym_result(a, layer, AM_BUF_OUTPUT, yn, &by));
    am_req rq = {AM_REQ_CONV_MODP, layer, *f->cfg, f->x->s, bx, bw, by, 0, AM_CROSS_BLINDED, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, 0u};
    rq.cfg.bias = 0;
    AM_TRY(asym_submit(a, p, &rq));
    /* W r meanwhile. */
    AM_TRY(factors(a, layer, p, &rq.cfg, f->x->s));
    AM_TRY(asym_wait(a, p));
    AM_TRY(copy_in(a, layer, by, yn));
    AM_TRY(asym_freivalds(a, p, layer, (const uint32_t *)(const void *)a->qxu, (const int32_t *)(const void *)a->qyr));
    unblind(a, yn);
    asym_dequantize(a, p, sx, f->cfg->bias ? f->b : NULL, f->y);
    return AM_OK;
}

const asym_strategy asym_blind = {"blinded", plan, forward, NULL, NULL, NULL};
