/* Slalom's unblinding factors ahead of time: for batch t and the
 * fixed-point layer of ordinal i, W r mod p with r the pad that layer will
 * draw (pads.c, number t L + i), and the identity they are valid for (the
 * batch, every layer's shapes and integer weights). Inference takes them
 * from a factor source instead of computing W r (strategies/blind.c). */
#include <sodium.h>
#include <string.h>

#include "trusted/split_impl.h"

int am_asym_fixed_layer(const am_asym *a, int ordinal) {
    if (!a || !am_mode_fixed_point(a->cfg.mode)) return -1;
    for (int l = 0; l < a->n; l++)
        if (a->L[l].active && a->L[l].strat && a->L[l].bi == ordinal) return l;
    return -1;
}

size_t am_asym_factor_len(const am_asym *a, int ordinal) {
    int l = am_asym_fixed_layer(a, ordinal);
    return l < 0 ? 0 : (size_t)a->L[l].x.n * a->L[l].K * a->L[l].P;
}

am_status am_asym_factor_identity(am_asym *a, int layer, const float *w, uint8_t out[32]) {
    layer_plan *p = &a->L[layer];
    int32_t shape[12] = {p->x.n, p->x.c, p->x.h, p->x.w, p->K, p->cfg.kh, p->cfg.kw, p->cfg.sh, p->cfg.sw, p->cfg.ph,
                         p->cfg.pw, p->bi};
    const size_t wn = (size_t)p->K * p->C * p->kk;
    asym_quantize_weights(w, p->K, (size_t)p->C * p->kk, a->qw, a->qs);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)shape, sizeof shape);
    crypto_generichash_update(&h, (const uint8_t *)a->qw, wn * sizeof(double));
    crypto_generichash_final(&h, out, 32);
    return AM_OK;
}

/* The room to compute a layer's W r here: its pad, the product, the
 * exact conv's workspace. */
static am_status factors_alloc(am_asym *a, const layer_plan *p) {
    am_conv2d_cfg c = p->cfg;
    c.bias = 0;
    AM_TRY(asym_grow_d(&a->qr, &a->qr_n, am_shape_numel(p->x)));
    AM_TRY(asym_grow_d(&a->qy, &a->qy_n, (size_t)p->x.n * p->K * p->P));
    return asym_grow_d(&a->qwork, &a->qwork_n, am_conv2d_exact_workspace(&c, p->x));
}

am_status am_asym_factors(am_asym *a, int layer, const float *w, uint64_t batch, int32_t *out) {
    layer_plan *p = &a->L[layer];
    AM_TRY(factors_alloc(a, p));
    asym_quantize_weights(w, p->K, (size_t)p->C * p->kk, a->qw, a->qs);
    asym_pad(a->pad_key, asym_pad_number(a, p, batch), am_shape_numel(p->x), a->qr);
    am_conv2d_cfg c = p->cfg;
    c.bias = 0;
    AM_TRY(am_conv2d_exact(&c, p->x, a->qr, a->qw, a->qy, a->qwork, a->qwork_n));
    const size_t n = (size_t)p->x.n * p->K * p->P;
    for (size_t i = 0; i < n; i++) out[i] = am_modp_residue(a->qy[i]); /* |W r| < 2^53: exact */
    return AM_OK;
}

void am_asym_set_pad_key(am_asym *a, const uint8_t key[32]) { memcpy(a->pad_key, key, 32); }
void am_asym_use_factors(am_asym *a, const am_factor_src *src) {
    a->src = src;
    for (int l = 0; l < a->n; l++) a->L[l].wmade = a->L[l].wsent = 0; /* the weights as they are now: the factors' */
}
