/* Slalom's unblinding factors through the model (asymml/asym.h): which
 * layers are in fixed point, what the factors are valid for, computing
 * them, and where inference takes them from. The work is src/trusted's. */
#include <sodium.h>
#include <string.h>

#include "nn/model_impl.h"

static am_status fixed(const am_model *m) {
    if (!m || !m->asym || !am_mode_fixed_point(m->asym_cfg.mode))
        return am_fail(AM_EINVAL, "factors: the model is not in a fixed-point mode (quantized, slalom)");
    return AM_OK;
}

static float *weights(am_model *m, int li) { return m->P[m->L[li].param0].data; }

int am_model_fixed_layers(const am_model *m) {
    int n = 0;
    while (fixed(m) == AM_OK && am_asym_fixed_layer(m->asym, n) >= 0) n++;
    return n;
}

size_t am_model_factor_len(const am_model *m, int ordinal) {
    return fixed(m) == AM_OK ? am_asym_factor_len(m->asym, ordinal) : 0;
}

am_status am_model_factor_identity(am_model *m, uint8_t out[32]) {
    AM_TRY(fixed(m));
    if (sodium_init() < 0) return am_fail(AM_EIO, "factors: libsodium failed to initialize");
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    for (int i = 0, l; (l = am_asym_fixed_layer(m->asym, i)) >= 0; i++) {
        uint8_t part[32];
        AM_TRY(am_asym_factor_identity(m->asym, l, weights(m, l), part));
        crypto_generichash_update(&h, part, sizeof part);
    }
    crypto_generichash_final(&h, out, 32);
    return AM_OK;
}

am_status am_model_set_pad_key(am_model *m, const uint8_t key[32]) {
    AM_TRY(fixed(m));
    am_asym_set_pad_key(m->asym, key);
    return AM_OK;
}

am_status am_model_factors(am_model *m, uint64_t batch, int ordinal, int32_t *out) {
    AM_TRY(fixed(m));
    int l = am_asym_fixed_layer(m->asym, ordinal);
    if (l < 0 || !out) return am_fail(AM_EINVAL, "factors: no fixed-point layer of ordinal %d", ordinal);
    return am_asym_factors(m->asym, l, weights(m, l), batch, out);
}

am_status am_model_use_factors(am_model *m, const am_factor_src *src) {
    AM_TRY(fixed(m));
    if (m->asym_cfg.mode != AM_MODE_SLALOM) return am_fail(AM_EINVAL, "factors: only slalom mode unblinds");
    am_asym_use_factors(m->asym, src);
    return AM_OK;
}
