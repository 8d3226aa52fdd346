/* slalom's strategy (Tramer and Boneh, ICLR 2019): the layer in fixed point
 * (quant.c), its integer conv on the accelerator over Z_p. The TEE adds a
 * fresh one-time pad r (pads.c) to the quantized input x mod p and sends
 * only x + r, uniform mod p whatever x is; the accelerator returns
 * W (x + r) mod p (AM_REQ_CONV_MODP); the TEE subtracts W r mod p, which
 * it computes itself meanwhile, and has W x exactly: its magnitude is below
 * p/2 by the plan's bound. The integer weights cross in the clear.
 *
 * Every reply is checked before anything unblinded is used, always: its
 * range, then exactly (Freivalds over Z_p, freivalds.c: a product a value
 * on each side, summed in the passes that make the input and read the
 * reply). Both decisions depend only on what crossed, never on x: a
 * refusal that
 * depended on the unblinded W x (a bound on it, say) would let a hostile
 * accelerator learn one chosen bit of the input per refused run, by adding
 * a chosen offset to one value of its reply and watching for the refusal;
 * and a wrong reply let through could show in what the run reports.
 *
 * The integer weights are made and sent once, then again only when the
 * model's weights change (compared with a copy) or after a refusal: the
 * check holds whatever the accelerator did to its copy meanwhile. */
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "trusted/strategy.h"

static am_status plan(am_asym *a, layer_plan *p) {
    am_conv2d_cfg c = p->cfg;
    c.bias = 0;
    /* W x below p/2, and W (x + r) exact in double on the accelerator (the
     * check is in integers mod p: no bound of its own). */
    if (am_exact_bound(&c, p->C, (AM_MODP - 1) / 2, AM_WEIGHT_MAX) >= 9007199254740992.0)
        return am_fail(AM_EINVAL, "slalom: a layer of fan-in %d cannot be computed exactly in the field", p->C * p->kk);
    if (am_exact_bound(&c, p->C, asym_act_max(a), AM_WEIGHT_MAX) >= (AM_MODP - 1) / 2) {
        int fit = 0; /* the most activation bits this layer's W x takes below p/2 */
        for (int b = 2; b <= 16 && am_exact_bound(&c, p->C, (1 << (b - 1)) - 1, AM_WEIGHT_MAX) < (AM_MODP - 1) / 2; b++)
            fit = b;
        return am_fail(AM_EINVAL, "slalom: a layer of fan-in %d does not fit the field at %d-bit activations (at most "
                                  "%d bits here: --act-bits %d)", p->C * p->kk,
                       a->cfg.act_bits ? a->cfg.act_bits : AM_ACT_BITS, fit, fit);
    }
    if (p->kk > AM_CHECK_KMAX || p->y.w > 65536 || p->K >= 1 << 24 || am_shape_numel(p->x) >= (size_t)1 << 36)
        return am_fail(AM_EINVAL,
                       "slalom: a %dx%d kernel, %d-wide outputs, %d outputs or %zu inputs: too large for the check",
                       p->cfg.kh, p->cfg.kw, p->y.w, p->K, am_shape_numel(p->x));
    AM_TRY(asym_quant_alloc(a, p, 1));
    const size_t wn = (size_t)p->K * p->C * p->kk;
    AM_TRY(asym_grow(&a->fl, &a->fl_n, (size_t)p->x.n * p->K * p->P));
    AM_TRY(asym_grow(&a->qwf, &a->qwf_n, wn));
    size_t c1 = 0, c2 = 0;
    AM_TRY(asym_grow(&p->wc, &c1, wn));
    AM_TRY(asym_grow_d(&p->wsc, &c2, (size_t)p->K));
    am_aligned_free(p->cs), am_aligned_free(p->cv);
    p->cs = am_aligned_alloc(sizeof *p->cs * (size_t)p->K);
    p->cv = am_aligned_alloc(sizeof *p->cv * (size_t)p->C * p->kk);
    p->wsent = p->wmade = 0;
    return p->cs && p->cv ? AM_OK : am_fail(AM_ENOMEM, "slalom: out of memory");
}

/* Whether n floats are the same bits, compared a stretch a thread. */
static int same(const float *a, const float *b, size_t n) {
    const size_t step = (size_t)1 << 18, parts = (n + step - 1) / step;
    int diff = 0;
#pragma omp parallel for schedule(static) reduction(| : diff) if (parts > 1)
    for (size_t j = 0; j < parts; j++) {
        const size_t m = n - j * step < step ? n - j * step : step;
        diff |= memcmp(a + j * step, b + j * step, m * sizeof *a) != 0;
    }
    return !diff;
}

/* The integer weights, their scales and the check's s^T W, made again and
 * sent when the weights are not those they were made from; else the
 * accelerator is told to keep its copy (*keep). With a factor source,
 * whose factors were made for the weights of the layer's first pass after
 * it was set, a change is refused. */
static am_status weights(am_asym *a, int layer, layer_plan *p, const float *w, float **bw, unsigned *keep) {
    const size_t wn = (size_t)p->K * p->C * p->kk;
    const int unchanged = p->wmade && same(p->wc, w, wn);
    if (unchanged && p->wsent) {
        *keep = AM_KEEP_IN1;
        return asym_result(a, layer, AM_BUF_WEIGHT, wn, bw);
    }
    if (!unchanged && p->wmade && a->src)
        return am_fail(AM_EINVAL, "slalom: layer %d's weights changed since its factors were made: refused (factors "
                                  "hold for the weights they were made from)", layer);
    p->wsent = p->wmade = 0;
    asym_quantize_weights(w, p->K, (size_t)p->C * p->kk, a->qw, p->wsc);
    for (size_t i = 0; i < wn; i++)
        if (!isfinite(a->qw[i])) return am_fail(AM_EINVAL, "slalom: layer %d's weights are not finite", layer);
    memcpy(p->wc, w, wn * sizeof *w);
    p->wmade = 1;
    AM_TRY(asym_check_keys(a, p));
    for (size_t i = 0; i < wn; i++) a->qwf[i] = (float)a->qw[i];
    AM_TRY(asym_cross(a, layer, AM_BUF_WEIGHT, AM_CROSS_WEIGHTS, am_shape4(p->K, p->C, p->cfg.kh, p->cfg.kw), a->qwf,
                      bw));
    p->wsent = 1;
    *keep = 0;
    return AM_OK;
}

/* One segment: x + r mod p centered into b; returns the input's side of
 * the check over it, sum a_n g_e (x + r mod p) (e: the value's place in
 * its sample, chw of them), mod p. */
AM_HOT static uint64_t segment(const float *x, const uint32_t *r, size_t i0, size_t m, double inv, double M, size_t chw,
                               const asym_tvec *t, int32_t *b) {
    const int32_t H = (AM_MODP - 1) / 2;
    int32_t q[ASYM_PAD_SEG];
    for (size_t i = 0; i < m; i++) q[i] = (int32_t)asym_quant1(x[i0 + i], inv, M);
    uint64_t sum = 0;
    for (size_t i = 0; i < m;) { /* a run of one sample */
        const size_t n = (i0 + i) / chw, e0 = (i0 + i) % chw, run = chw - e0 < m - i ? chw - e0 : m - i;
        const uint32_t *g = t->g + e0;
        uint64_t s = 0;
        for (size_t k = 0; k < run; k++) { /* centered: |r| < 2^30, |q| < 2^15 */
            const size_t o = i + k;
            /* r centered before q is added: q + r could pass 2^31 - 1 */
            int32_t v = q[o] + ((int32_t)r[o] - (r[o] > (uint32_t)H ? AM_MODP : 0));
            v -= v > H ? AM_MODP : 0;
            v += v < -H ? AM_MODP : 0;
            b[i0 + o] = v;
            const uint64_t gv = (uint64_t)g[k] * (uint32_t)(v + (v < 0 ? AM_MODP : 0));
            s += (gv & AM_MODP) + (gv >> 31); /* below 2^32 each: ASYM_PAD_SEG of them */
        }
        sum = asym_modp(sum + t->a[n] * asym_modp(s));
        i += run;
    }
    return sum;
}

/* x + r mod p, in one pass a segment of the pad at a time, centered into
 * the accelerator's buffer b; returns the input's side of the check,
 * t . (s^T (W * X)) mod p, from the values as they are made. */
static uint64_t blind(am_asym *a, const layer_plan *p, const asym_tvec *t, const float *x, double sx, int32_t *b) {
    const double M = asym_act_max(a), inv = 1.0 / sx;
    const uint64_t number = asym_pad_number(a, p, a->batch_cur);
    const size_t n = am_shape_numel(p->x), chw = n / (size_t)p->x.n, segs = (n + ASYM_PAD_SEG - 1) / ASYM_PAD_SEG;
    uint64_t rhs = 0;
#pragma omp parallel for schedule(static) reduction(+ : rhs) if (segs > 16)
    for (size_t j = 0; j < segs; j++) {
        uint32_t r[ASYM_PAD_SEG];
        asym_pad_seg(a->pad_key, number, j, r);
        const size_t i0 = j * ASYM_PAD_SEG, m = n - i0 < ASYM_PAD_SEG ? n - i0 : ASYM_PAD_SEG;
        rhs += segment(x, r, i0, m, inv, M, chw, t, b); /* each below p */
        sodium_memzero(r, sizeof r);
    }
    return asym_modp(rhs);
}

/* W r mod p, in [0, p), into a->fl: the factor source's set for this
 * batch, or computed here as precompute does, as much work as the layer. */
static am_status factors(am_asym *a, int layer, const layer_plan *p, const float *w) {
    int32_t *u = (int32_t *)(void *)a->fl;
    if (a->src) return a->src->load(a->src->ctx, a->batch_cur, p->bi, u, (size_t)p->x.n * p->K * p->P);
    return am_asym_factors(a, layer, w, a->batch_cur, u);
}

static am_status forward(am_asym *a, int layer, layer_plan *p, const asym_fwd *f) {
    if (f->training) return am_fail(AM_EINVAL, "slalom: layer %d runs inference only", layer);
    float *bx, *bw, *by;
    unsigned keep;
    /* A new batch: its number, never one used before, names its pads. */
    if (p->bi == 0) {
        if (a->src) AM_TRY(a->src->next(a->src->ctx, &a->batch_cur));
        else a->batch_cur = a->batch_next++;
    }
    const double sx = asym_input_scale(a, p);
    const size_t xn = am_shape_numel(f->x->s), yn = am_shape_numel(f->y->s);
    AM_TRY(weights(a, layer, p, f->w, &bw, &keep));
    asym_tvec t;
    uint32_t *acc;
    AM_TRY(asym_check_draw(a, p, &t, &acc));
    AM_TRY(a->be->vt->buffer(a->be, layer, AM_BUF_INPUT, xn, &bx));
    const uint64_t rhs = blind(a, p, &t, f->x->d, sx, (int32_t *)(void *)bx);
    AM_TRY(asym_record(a, layer, AM_CROSS_BLINDED, f->x->s, bx));
    AM_TRY(asym_result(a, layer, AM_BUF_OUTPUT, yn, &by));
    am_req rq = {AM_REQ_CONV_MODP, layer, *f->cfg, f->x->s, bx, bw, by, keep, AM_CROSS_BLINDED, AM_CROSS_WEIGHTS,
                 (uint32_t)a->step, 0u};
    rq.cfg.bias = 0;
    AM_TRY(asym_submit(a, p, &rq));
    AM_TRY(factors(a, layer, p, f->w)); /* meanwhile */
    AM_TRY(asym_wait(a, p));
    am_status st = asym_unblind(p, layer, (const int32_t *)(const void *)by, (const int32_t *)(const void *)a->fl, sx,
                                f->cfg->bias ? f->b : NULL, f->relu, &t, acc, f->y);
    if (st == AM_OK && asym_check_lhs(p, &t, acc) != rhs)
        st = am_fail(AM_ENUM, "accelerator: layer %d's blinded result fails the exact check: refused", layer);
    if (st == AM_ENUM) p->wsent = 0; /* a refusal: s drawn again, the weights sent again */
    return st;
}

const asym_strategy asym_blind = {"blinded", plan, forward, NULL, NULL, NULL};
