/* The exact check of every blinded layer's reply (always on in slalom
 * mode; Freivalds over Z_p). With t_{n,oh,ow} = a_n b_oh c_ow, a reply Y
 * (B x K x Ho x Wo residues) passes when
 *     sum_{n,oh,ow} t_{n,oh,ow} sum_k s_k Y[n][k][oh][ow]
 *         = sum_{n,c,h,w} a_n g_chw X[n][c][h][w]   (mod p),
 * g_chw = sum_{i,j} v_cij b_oh c_ow over the (i, j) that read X[.][c][h][w]
 * into output (oh, ow), v = s^T W (C x kh x kw), X the blinded input as the
 * trusted side made it: both sides equal t . (s^T (W * X)). A wrong reply,
 * Y - W * X = E != 0, passes with probability at most 4/p: s^T E is a
 * nonzero vector but with probability at most 1/p; then t . (s^T E) is a
 * nonzero polynomial of degree 3 in (a, b, c), zero with probability at
 * most 3/p (Schwartz-Zippel).
 *
 * s is secret and drawn afresh whenever the layer's weights change and
 * after every refusal; a, b, c are drawn for every check. A correct reply
 * passes whatever s is, so the accelerator learns nothing of s before its
 * first wrong reply, which is refused but with probability 4/p; with s
 * drawn again after a refusal, every further try has the same odds.
 *
 * In integers: products of two residues (below 2^62) folded or reduced mod
 * p; dot products against c split c into 16-bit halves, so that up to 2^16
 * terms sum without overflow. g costs about kh of C H W (one sample's
 * input); the input's side is one product a value, summed as the blinded
 * input is made (strategies/blind.c); the reply's side is a dot product a
 * value, in the reply's own pass (unblind.c). */
#include <omp.h>
#include <sodium.h>
#include <stdint.h>

#include "trusted/split_impl.h"

/* n values uniform in [0, p): 31 bits of random words, p itself drawn again. */
static void uniform(uint32_t *out, size_t n) {
    randombytes_buf(out, n * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        out[i] &= AM_MODP;
        while (out[i] == AM_MODP) out[i] = randombytes_uniform(AM_MODP);
    }
}

am_status asym_check_keys(am_asym *a, layer_plan *p) {
    const int K = p->K;
    const size_t ckk = (size_t)p->C * p->kk;
    AM_TRY(asym_grow_d(&a->vf, &a->vf_n, ckk)); /* int64 sums */
    int64_t *acc = (int64_t *)(void *)a->vf;
    uniform(p->cs, (size_t)K);
    /* Each partial sum below K 2^31 127 < 2^63. */
    for (size_t j = 0; j < ckk; j++) acc[j] = 0;
    for (int k = 0; k < K; k++) {
        const double *w = a->qw + (size_t)k * ckk;
        const int64_t sk = p->cs[k];
        for (size_t j = 0; j < ckk; j++) acc[j] += sk * (int64_t)w[j];
    }
    for (size_t j = 0; j < ckk; j++) {
        int64_t m = acc[j] % AM_MODP;
        p->cv[j] = (uint32_t)(m < 0 ? m + AM_MODP : m);
    }
    return AM_OK;
}

static void weights_of_inputs(const layer_plan *p, const asym_tvec *t);

am_status asym_check_draw(am_asym *a, layer_plan *p, asym_tvec *t, uint32_t **acc) {
    const size_t B = (size_t)p->x.n, Ho = (size_t)p->y.h, Wo = (size_t)p->y.w, K = (size_t)p->K;
    const size_t chw = am_shape_numel(p->x) / B, rows = (size_t)omp_get_max_threads() * (p->cfg.kh + 1) * p->x.w;
    AM_TRY(asym_grow_d(&a->vf, &a->vf_n, rows + (B + Ho + 3 * Wo + B * K + chw + 1) / 2));
    t->rows = (uint64_t *)(void *)a->vf;
    uint32_t *u = (uint32_t *)(void *)(a->vf + rows);
    t->a = u, t->b = u + B, t->c = t->b + Ho, t->clo = t->c + Wo, t->chi = t->clo + Wo;
    *acc = t->chi + Wo;
    t->g = *acc + B * K;
    uniform(u, B + Ho + Wo);
    for (size_t i = 0; i < Wo; i++) t->clo[i] = t->c[i] & 0xffff, t->chi[i] = t->c[i] >> 16;
    weights_of_inputs(p, t);
    return AM_OK;
}

/* acc += b u, each product folded below 2^32 (kh of them: no overflow). */
AM_HOT static void row_acc(uint64_t b, const uint64_t *u, size_t n, uint64_t *acc) {
    for (size_t w = 0; w < n; w++) {
        const uint64_t v = b * u[w];
        acc[w] += (v & AM_MODP) + (v >> 31);
    }
}

/* g = G (C x H x W): the weight of X[n][ch][h][w] in t . (s^T (W * X)),
 * over a_n, which it does not depend on: sum_{i,j} v_chij b_oh c_ow with
 * oh sh - ph + i = h and ow sw - pw + j = w. Row by row: u_i[w] =
 * sum_j v_chij c_ow first. */
static void weights_of_input(const layer_plan *p, const asym_tvec *t, int ch, uint32_t *g, uint64_t *u) {
    const am_conv2d_cfg *q = &p->cfg;
    const int H = p->x.h, W = p->x.w, Ho = p->y.h, Wo = p->y.w, kh = q->kh, kw = q->kw;
    const uint32_t *v = p->cv + (size_t)ch * kh * kw;
    for (int i = 0; i < kh; i++)
        for (int w = 0; w < W; w++) {
            uint64_t sum = 0;
            for (int j = 0; j < kw; j++) {
                const int num = w + q->pw - j;
                if (num < 0 || num % q->sw || num / q->sw >= Wo) continue;
                sum = asym_modp(sum + (uint64_t)v[i * kw + j] * t->c[num / q->sw]);
            }
            u[(size_t)i * W + w] = sum;
        }
    uint64_t *acc = u + (size_t)kh * W;
    for (int h = 0; h < H; h++) {
        for (int w = 0; w < W; w++) acc[w] = 0;
        for (int i = 0; i < kh; i++) {
            const int num = h + q->ph - i;
            if (num < 0 || num % q->sh || num / q->sh >= Ho) continue;
            row_acc(t->b[num / q->sh], u + (size_t)i * W, (size_t)W, acc);
        }
        for (int w = 0; w < W; w++) g[(size_t)h * W + w] = (uint32_t)asym_modp(acc[w]);
    }
}

static void weights_of_inputs(const layer_plan *p, const asym_tvec *t) {
    const size_t plane = (size_t)p->x.h * p->x.w;
#pragma omp parallel for schedule(static) if (am_shape_numel(p->x) > 65536)
    for (int c = 0; c < p->C; c++)
        weights_of_input(p, t, c, t->g + (size_t)c * plane,
                         t->rows + (size_t)omp_get_thread_num() * (p->cfg.kh + 1) * p->x.w);
}

uint64_t asym_check_lhs(const layer_plan *p, const asym_tvec *t, const uint32_t *acc) {
    uint64_t lhs = 0;
    for (int n = 0; n < p->x.n; n++) {
        uint64_t sn = 0;
        for (int k = 0; k < p->K; k++) sn = asym_modp(sn + (uint64_t)p->cs[k] * acc[(size_t)n * p->K + k]);
        lhs = asym_modp(lhs + t->a[n] * sn);
    }
    return lhs;
}
