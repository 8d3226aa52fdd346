/* quantized mode's strategy: the layer in fixed point (quant.c), its
 * integer conv exact in the TEE (am_conv2d_exact). Inference only; nothing
 * crosses. It is the reference that a blinded layer's result must equal. */
#include "trusted/strategy.h"

static am_status forward(am_asym *a, int layer, layer_plan *p, const asym_fwd *f) {
    if (f->training) return am_fail(AM_EINVAL, "quantized: layer %d runs inference only", layer);
    double sx;
    asym_quantize(a, p, f->x, f->w, &sx);
    am_conv2d_cfg c = *f->cfg;
    c.bias = 0;
    AM_TRY(am_conv2d_exact(&c, f->x->s, a->qx, a->qw, a->qy, a->qwork, a->qwork_n));
    asym_dequantize(a, p, sx, f->cfg->bias ? f->b : NULL, f->relu, f->y);
    return AM_OK;
}

static am_status plan(am_asym *a, layer_plan *p) { return asym_quant_alloc(a, p, 0); }

const asym_strategy asym_quant = {"quantized", plan, forward, NULL, NULL, NULL};
