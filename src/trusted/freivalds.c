/* The exact check of every blinded layer's reply (always on in slalom
 * mode; Freivalds over Z_p, twice). With s drawn uniform in Z_p^K and t
 * uniform in Z_p over the output's samples and positions, fresh for each
 * check, a reply Y (B x K x P residues) passes when
 *     sum_{n,q} t_nq sum_k s_k Y[n][k][q]  =  sum_{c,i,j} v_cij Z_cij   (mod p),
 * v = s^T W (C x kh x kw) and Z = corr(X, t), X the blinded input as the
 * trusted side computed it: both sides equal t . (s^T (W * X)). A wrong
 * reply passes with probability at most 2/p: s^T E is a nonzero vector but
 * with probability at most 1/p, and then t . (s^T E) vanishes with
 * probability at most 1/p. All in integers: products of two residues
 * (below 2^62) reduced mod p; Z's terms split t into 16-bit halves so that
 * a row of them sums without overflow. One pass over X and one over Y:
 * about 2/K of the layer's multiply-adds, with no im2col. */
#include <sodium.h>
#include <stdint.h>

#include "trusted/split_impl.h"

static uint64_t modp(uint64_t v) { /* any v: two folds of 31 bits, then one subtraction */
    v = (v & AM_MODP) + (v >> 31);
    v = (v & AM_MODP) + (v >> 31);
    return v >= AM_MODP ? v - AM_MODP : v;
}

/* sum_{n,q} t_nq sum_k s_k Y[n][k][q] mod p; u: P of scratch. */
static uint64_t lhs(const uint32_t *s, const uint32_t *t, const int32_t *Y, int B, int K, size_t P, uint64_t *u) {
    uint64_t total = 0;
    for (int n = 0; n < B; n++) {
        for (size_t q = 0; q < P; q++) u[q] = 0;
        for (int k = 0; k < K; k++) {
            const int32_t *y = Y + ((size_t)n * K + k) * P;
            const uint64_t sk = s[k];
            for (size_t q = 0; q < P; q++) u[q] = modp(u[q] + sk * (uint32_t)y[q]);
        }
        for (size_t q = 0; q < P; q++) total = modp(total + u[q] * t[(size_t)n * P + q]);
    }
    return total;
}

/* n values uniform in [0, p): 31 bits of random words, p itself drawn again. */
static void uniform(uint32_t *out, size_t n) {
    randombytes_buf(out, n * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        out[i] &= AM_MODP;
        while (out[i] == AM_MODP) out[i] = randombytes_uniform(AM_MODP);
    }
}

/* v = s^T W mod p (W: K rows of ckk integers of at most 127; each partial
 * sum below K 2^31 127 < 2^63); acc: ckk of scratch. */
static void fold(const uint32_t *s, const double *W, int K, size_t ckk, int64_t *acc, uint32_t *v) {
    for (size_t j = 0; j < ckk; j++) acc[j] = 0;
    for (int k = 0; k < K; k++) {
        const double *w = W + (size_t)k * ckk;
        const int64_t sk = s[k];
        for (size_t j = 0; j < ckk; j++) acc[j] += sk * (int64_t)w[j];
    }
    for (size_t j = 0; j < ckk; j++) {
        int64_t m = acc[j] % AM_MODP;
        v[j] = (uint32_t)(m < 0 ? m + AM_MODP : m);
    }
}

/* Z_cij = sum_{n, oh, ow} t[n][oh][ow] X[n][c][oh sh - ph + i][ow sw - pw + j] mod p, for one c (Xu: X in
 * [0, p)); then sum_ij v_cij Z_cij mod p. */
static uint64_t channel(const layer_plan *p, const uint32_t *Xu, const uint32_t *tl, const uint32_t *th,
                        const uint32_t *v, int c) {
    const am_conv2d_cfg *g = &p->cfg;
    const int H = p->x.h, W = p->x.w, Ho = p->y.h, Wo = p->y.w, C = p->C;
    uint64_t sum = 0;
    for (int i = 0; i < g->kh; i++)
        for (int j = 0; j < g->kw; j++) {
            uint64_t lo = 0, hi = 0;
            for (int n = 0; n < p->x.n; n++)
                for (int oh = 0; oh < Ho; oh++) {
                    const int ih = oh * g->sh - g->ph + i;
                    if (ih < 0 || ih >= H) continue;
                    const uint32_t *xr = Xu + (((size_t)n * C + c) * H + ih) * W;
                    const size_t to = ((size_t)n * Ho + oh) * Wo;
                    uint64_t rl = 0, rh = 0; /* a row: each term below 2^47, at most 2^16 of them */
                    for (int ow = 0; ow < Wo; ow++) {
                        const int iw = ow * g->sw - g->pw + j;
                        if (iw < 0 || iw >= W) continue;
                        rl += (uint64_t)tl[to + ow] * xr[iw];
                        rh += (uint64_t)th[to + ow] * xr[iw];
                    }
                    lo = modp(lo + modp(rl));
                    hi = modp(hi + modp(rh));
                }
            uint64_t z = modp((hi << 16) + lo);
            sum = modp(sum + z * v[(size_t)c * g->kh * g->kw + (size_t)i * g->kw + j]);
        }
    return sum;
}

am_status asym_freivalds(am_asym *a, layer_plan *p, int layer, const uint32_t *Xu, const int32_t *Y) {
    const int B = p->x.n, K = p->K, C = p->C;
    const size_t P = (size_t)p->P, ckk = (size_t)C * p->kk, nx = am_shape_numel(p->x), nt = (size_t)B * P;
    (void)nx;
    /* In 8-byte words: acc (ckk), u (P); then s (K), t, its halves (nt each), v (ckk) in 4-byte ones. */
    size_t words = ckk + P + (K + 3 * nt + ckk + 1) / 2;
    AM_TRY(asym_grow_d(&a->vf, &a->vf_n, words));
    int64_t *acc = (int64_t *)(void *)a->vf;
    uint64_t *u = (uint64_t *)(void *)(a->vf + ckk);
    uint32_t *s = (uint32_t *)(void *)(a->vf + ckk + P), *t = s + K, *tl = t + nt, *th = tl + nt, *v = th + nt;
    uniform(s, (size_t)K);
    uniform(t, nt);
    for (size_t i = 0; i < nt; i++) tl[i] = t[i] & 0xffff, th[i] = t[i] >> 16;
    fold(s, a->qw, K, ckk, acc, v);
    uint64_t rhs = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : rhs) if (nx > 65536)
    for (int c = 0; c < C; c++) rhs += channel(p, Xu, tl, th, v, c); /* each < p: no overflow over C terms */
    int ok = modp(rhs) == lhs(s, t, Y, B, K, P, u);
    sodium_memzero(s, sizeof(uint32_t) * ((size_t)K + 3 * nt));
    if (!ok) return am_fail(AM_ENUM, "accelerator: layer %d's blinded result fails the exact check: refused", layer);
    return AM_OK;
}
