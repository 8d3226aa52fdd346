/* The exact check of every blinded layer's reply (always on in slalom
 * mode; Freivalds over Z_p). With s drawn uniform in Z_p^K for each check, a reply Y (B x K x P
 * residues) passes when at every sample and position q
 *     sum_k s_k Y[k][q]  =  conv(X, s^T W)[q]   (mod p),
 * X the blinded input as the trusted side computed it. A wrong reply passes
 * with probability at most 1/p at each position where it is wrong. The
 * right side is one exact conv with four output channels: s^T W mod p in
 * four signed 8-bit limbs (each partial sum then stays below 2^53); the
 * left side one pass over Y. About 5/K of the layer's work. */
#include <sodium.h>
#include <stdint.h>

#include "trusted/split_impl.h"

#define LIMBS 4

static uint64_t modp(uint64_t v) { /* v < 2^62 */
    v = (v & AM_MODP) + (v >> 31);
    v = (v & AM_MODP) + (v >> 31);
    return v >= AM_MODP ? v - AM_MODP : v;
}

/* s^T W mod p, centered, in LIMBS signed base-256 digits: F (LIMBS x C kk). */
static void limbs(const double *qw, const uint32_t *s, int K, size_t ckk, double *F) {
    for (size_t j = 0; j < ckk; j++) {
        int64_t t = 0; /* |sum| <= K 2^31 127 < 2^54 */
        for (int k = 0; k < K; k++) t += (int64_t)s[k] * (int64_t)qw[(size_t)k * ckk + j];
        int64_t v = t % AM_MODP;
        if (v > (AM_MODP - 1) / 2) v -= AM_MODP;
        if (v < -(AM_MODP - 1) / 2) v += AM_MODP;
        for (int d = 0; d < LIMBS; d++) {
            int64_t l = ((v % 256) + 256 + 128) % 256 - 128;
            F[(size_t)d * ckk + j] = (double)l;
            v = (v - l) / 256;
        }
    }
}

am_status asym_freivalds(am_asym *a, layer_plan *p, int layer, const double *X, const int32_t *Y) {
    const int B = p->x.n, K = p->K;
    const size_t P = (size_t)p->P, ckk = (size_t)p->C * p->kk;
    am_conv2d_cfg c = p->cfg;
    c.bias = 0, c.out_c = LIMBS;
    AM_TRY(asym_grow_d(&a->vf, &a->vf_n, LIMBS * ckk + (size_t)B * LIMBS * P + am_conv2d_exact_workspace(&c, p->x)));
    uint32_t *s = (uint32_t *)a->vs;
    for (int k = 0; k < K; k++) s[k] = randombytes_uniform(AM_MODP);
    double *F = a->vf, *Z = F + LIMBS * ckk, *work = Z + (size_t)B * LIMBS * P;
    limbs(a->qw, s, K, ckk, F);
    AM_TRY(am_conv2d_exact(&c, p->x, X, F, Z, work, a->vf_n - LIMBS * ckk - (size_t)B * LIMBS * P));
    for (int n = 0; n < B; n++)
        for (size_t q = 0; q < P; q++) {
            uint64_t lhs = 0, rhs = 0;
            for (int k = 0; k < K; k++) lhs = modp(lhs + (uint64_t)s[k] * (uint32_t)Y[((size_t)n * K + k) * P + q]);
            for (int d = LIMBS - 1; d >= 0; d--) {
                double z = am_modp_center(Z[((size_t)n * LIMBS + d) * P + q]);
                rhs = modp((rhs << 8) + (uint64_t)(z < 0 ? z + AM_MODP : z));
            }
            if (lhs != rhs)
                return am_fail(AM_ENUM, "accelerator: layer %d's blinded result fails the exact check: refused", layer);
        }
    sodium_memzero(s, sizeof(uint32_t) * (size_t)K);
    return AM_OK;
}
