/* A handled conv layer's passes: the checks every strategy shares, its
 * timers, and the call into the layer's strategy (strategy.h), which the
 * plan fixed before the step. */
#include "trusted/strategy.h"

static am_status handled(const am_asym *a, int layer) {
    if (am_asym_handles(a, layer)) return AM_OK;
    if (a && layer >= 0 && layer < a->n && a->L[layer].pending)
        return am_fail(AM_EINVAL, "asym: layer %d's plan waits for the first batch (am_asym_decide)", layer);
    return am_fail(AM_EINVAL, "asym: layer %d runs whole in the TEE", layer);
}

/* The layer's TEE seconds: the pass's, less what it spent blocked on the
 * accelerator; the accelerator's seconds meanwhile. */
static void account(am_asym *a, layer_plan *p, double t0, double accel0, double wait0) {
    p->accel_s += asym_busy(a) - accel0;
    p->tee_s += asym_now() - t0 - (p->wait_s - wait0);
}

am_status am_asym_forward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                          const float *w, const float *b, am_tensor *y, float *work, size_t work_n,
                          int training, double *moments, int relu) {
    AM_TRY(handled(a, layer));
    layer_plan *p = &a->L[layer];
    if (!am_shape_eq(x->s, p->x)) return am_fail(AM_EINVAL, "asym: layer %d planned for another batch size", layer);
    if (cfg->bias && !b) return am_fail(AM_EINVAL, "asym: layer %d expects a bias", layer);
    if (relu && !am_asym_takes_relu(a, layer, training))
        return am_fail(AM_EINVAL, "asym: layer %d does not apply a ReLU (%s)", layer, p->strat->name);
    asym_fwd f = {cfg, x, w, b, y, work, work_n, training, moments, relu};
    double t0 = asym_now(), accel0 = asym_busy(a), wait0 = p->wait_s;
    am_status st = p->strat->forward(a, layer, p, &f);
    account(a, p, t0, accel0, wait0);
    return st;
}

int am_asym_takes_relu(const am_asym *a, int layer, int training) {
    return !training && am_mode_fixed_point(a->cfg.mode) && am_asym_handles(a, layer);
}

am_status am_asym_backward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                           const float *w, const am_tensor *dy, am_tensor *dx, int accum, float *dw,
                           float *db, float *work, size_t work_n) {
    AM_TRY(handled(a, layer));
    layer_plan *p = &a->L[layer];
    if (!p->strat->backward)
        return am_fail(AM_EINVAL, "asym: layer %d runs inference only (%s: no backward pass)", layer, p->strat->name);
    asym_bwd g = {cfg, x, w, dy, dx, accum, dw, db, work, work_n};
    double t0 = asym_now(), accel0 = asym_busy(a), wait0 = p->wait_s;
    am_status st = p->strat->backward(a, layer, p, &g);
    account(a, p, t0, accel0, wait0);
    return st;
}
