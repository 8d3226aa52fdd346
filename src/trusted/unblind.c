/* A blinded reply's one pass (slalom, strategies/blind.c): each value the
 * accelerator wrote is copied once into trusted memory, a stretch of a
 * row at a time, and everything is done from that copy: the range check
 * (a residue in [0, p)), the exact check's partial sum over the row (the
 * reply's side of freivalds.c), and the unblinding W x = Y - W r mod p,
 * dequantized into the layer's output. Nothing here decides on the
 * unblinded values; the caller refuses the whole reply when it fails the
 * check, and no output of a refused reply is used. */
#include <string.h>

#include "trusted/split_impl.h"

#define STRETCH 1024 /* reply values copied in at a time */

/* Adds sum_i c_i y_i (n of them, c as 16-bit halves, y below 2^31 each)
 * to the halves' running sums: at most 2^16 terms between reductions. */
static inline void dot_acc(const uint32_t *clo, const uint32_t *chi, const uint32_t *y, size_t n, uint64_t *lo,
                           uint64_t *hi) {
    uint64_t l = *lo, h = *hi;
    for (size_t i = 0; i < n; i++) l += (uint64_t)clo[i] * y[i], h += (uint64_t)chi[i] * y[i];
    *lo = l, *hi = h;
}

/* The halves' sums as one residue. */
static uint64_t dot_fold(uint64_t lo, uint64_t hi) { return asym_modp((asym_modp(hi) << 16) + asym_modp(lo)); }

/* One stretch of a reply row, Y: copied in, then dequantized W x into y
 * and its dot product with c added to *lo, *hi; returns whether a value or
 * a factor is out of range (bit 1: the reply's, bit 2: a factor's). */
AM_HOT static int stretch(const int32_t *Y, const int32_t *f, size_t n, double s, double bk, int relu, float *y,
                          const uint32_t *clo, const uint32_t *chi, uint64_t *lo, uint64_t *hi) {
    uint32_t r[STRETCH];
    memcpy(r, Y, n * sizeof *r);
#ifdef __GNUC__
    __asm__ volatile("" ::: "memory"); /* the copy is made, and all that follows reads it, never Y again */
#endif
    unsigned bad = 0, badf = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= r[i] >= AM_MODP;
        badf |= (uint32_t)f[i] >= AM_MODP;
        /* both residues: r - f in (-p, p), in 32 bits (wrapping otherwise:
         * then refused, never used) */
        int32_t d = (int32_t)(r[i] - (uint32_t)f[i]);
        d += d < 0 ? AM_MODP : 0;
        d -= d > (AM_MODP - 1) / 2 ? AM_MODP : 0;
        const float v = (float)((double)d * s + bk);
        y[i] = relu ? (v > 0.f ? v : 0.f) : v;
    }
    dot_acc(clo, chi, r, n, lo, hi);
    return (int)(bad | badf << 1);
}

/* Row (n, k)'s Ho rows of Wo: the sum over them of b_oh c . row, mod p. */
static int block(const layer_plan *p, const asym_tvec *t, const int32_t *Y, const int32_t *F, double s, double bk,
                 int relu, float *y, uint32_t *acc) {
    const size_t Wo = (size_t)p->y.w;
    uint64_t sum = 0;
    int bad = 0;
    for (int oh = 0; oh < p->y.h; oh++) {
        uint64_t lo = 0, hi = 0;
        for (size_t q0 = 0; q0 < Wo; q0 += STRETCH) {
            const size_t m = Wo - q0 < STRETCH ? Wo - q0 : STRETCH, o = (size_t)oh * Wo + q0;
            bad |= stretch(Y + o, F + o, m, s, bk, relu, y + o, t->clo + q0, t->chi + q0, &lo, &hi);
        }
        sum = asym_modp(sum + t->b[oh] * dot_fold(lo, hi));
    }
    *acc = (uint32_t)sum;
    return bad;
}

am_status asym_unblind(const layer_plan *p, int layer, const int32_t *reply, const int32_t *fl, double sx,
                       const float *bias, int relu, const asym_tvec *t, uint32_t *acc, am_tensor *y) {
    const int B = y->s.n, K = p->K;
    const size_t P = (size_t)p->P;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if ((size_t)B * K * P > 65536)
    for (int nk = 0; nk < B * K; nk++) {
        const int k = nk % K;
        const size_t o = (size_t)nk * P;
        bad |= block(p, t, reply + o, fl + o, sx * p->wsc[k], bias ? bias[k] : 0.0, relu, y->d + o, acc + nk);
    }
    if (bad & 1) return am_fail(AM_ENUM, "accelerator: layer %d's blinded result holds a value that is not a residue "
                                         "mod p: refused", layer);
    if (bad & 2) return am_fail(AM_EFORMAT, "slalom: layer %d's factors are not residues", layer);
    return AM_OK;
}
