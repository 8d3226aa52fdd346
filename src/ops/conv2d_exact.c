/* Exact integer convolution: conv2d over integers held in doubles (im2col +
 * OpenBLAS dgemm), for fixed-point inference. Every product and partial sum
 * is an integer; while their magnitudes stay below 2^53 every one is exact
 * in double, in any order of summation, so the result is the exact integer
 * sum. The caller bounds the operands (am_exact_bound): 8-bit weights,
 * b-bit activations, or values mod p on the accelerator's side of blinding.
 * Samples go in chunks whose columns sit side by side, as in conv2d.c, so
 * that a linear layer (a 1x1 conv on a 1x1 plane) is one GEMM. */
#include "asymml/ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define CHUNK_COLS 1024                /* output pixels per GEMM */
#define CHUNK_CAP ((size_t)2 << 20)    /* doubles in the column buffer */

typedef struct geom {
    int C, H, W, K, Ho, Wo, P, CKK, nb;
} geom;

static am_status make_geom(const am_conv2d_cfg *cfg, am_shape x, geom *g) {
    am_shape y;
    AM_TRY(am_conv2d_out_shape(cfg, x, &y));
    g->C = x.c, g->H = x.h, g->W = x.w, g->K = cfg->out_c, g->Ho = y.h, g->Wo = y.w, g->P = y.h * y.w;
    g->CKK = x.c * cfg->kh * cfg->kw;
    int nb = (CHUNK_COLS + g->P - 1) / g->P;
    while (nb > 1 && (size_t)g->CKK * nb * g->P > CHUNK_CAP) nb--;
    g->nb = nb > x.n ? x.n : nb;
    return AM_OK;
}

size_t am_conv2d_exact_workspace(const am_conv2d_cfg *cfg, am_shape x) {
    geom g;
    if (make_geom(cfg, x, &g) != AM_OK) return 0;
    return (size_t)g.nb * g.P * ((size_t)g.CKK + g.K);
}

/* Row r = (c kh + i) kw + j of one sample's columns, into dst (Ho x Wo). */
static void im2col_row(const am_conv2d_cfg *cfg, const geom *g, const double *x, int r, double *dst) {
    const int kh = cfg->kh, kw = cfg->kw;
    const int c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
    const double *xc = x + (size_t)c * g->H * g->W;
    for (int oh = 0; oh < g->Ho; oh++) {
        const int ih = oh * cfg->sh - cfg->ph + i;
        double *d = dst + (size_t)oh * g->Wo;
        for (int ow = 0; ow < g->Wo; ow++) {
            const int iw = ow * cfg->sw - cfg->pw + j;
            d[ow] = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W ? xc[(size_t)ih * g->W + iw] : 0.0;
        }
    }
}

/* One chunk of nb samples from x: columns, one GEMM, the result scattered
 * into y sample by sample. */
static void chunk(const am_conv2d_cfg *cfg, const geom *g, const double *x, const double *w, double *y, int nb,
                  double *col, double *out) {
    const size_t in_sz = (size_t)g->C * g->H * g->W, ld = (size_t)nb * g->P;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * g->CKK * g->P > 65536)
    for (int s = 0; s < nb; s++)
        for (int r = 0; r < g->CKK; r++) im2col_row(cfg, g, x + s * in_sz, r, col + (size_t)r * ld + (size_t)s * g->P);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->K, (int)ld, g->CKK, 1.0, w, g->CKK, col, (int)ld, 0.0,
                out, (int)ld);
    for (int s = 0; s < nb; s++)
        for (int k = 0; k < g->K; k++)
            memcpy(y + ((size_t)s * g->K + k) * g->P, out + (size_t)k * ld + (size_t)s * g->P,
                   sizeof(double) * (size_t)g->P);
}

am_status am_conv2d_exact(const am_conv2d_cfg *cfg, am_shape x, const double *xd, const double *w, double *y,
                          double *work, size_t work_n) {
    geom g;
    AM_TRY(make_geom(cfg, x, &g));
    if (!xd || !w || !y || !work) return am_fail(AM_EINVAL, "exact conv: NULL argument");
    if (work_n < am_conv2d_exact_workspace(cfg, x)) return am_fail(AM_EINVAL, "exact conv: workspace too small");
    double *col = work, *out = work + (size_t)g.nb * g.P * g.CKK;
    const size_t in_sz = (size_t)g.C * g.H * g.W, out_sz = (size_t)g.K * g.P;
    for (int s0 = 0; s0 < x.n; s0 += g.nb) {
        const int nb = x.n - s0 < g.nb ? x.n - s0 : g.nb;
        chunk(cfg, &g, xd + (size_t)s0 * in_sz, w, y + (size_t)s0 * out_sz, nb, col, out);
    }
    return AM_OK;
}

double am_exact_bound(const am_conv2d_cfg *cfg, int in_c, double max_x, double max_w) {
    return (double)in_c * cfg->kh * cfg->kw * fabs(max_x) * fabs(max_w);
}
