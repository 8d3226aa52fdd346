/* conv2d forward and backward on the CPU: im2col + OpenBLAS sgemm.
 *
 * Samples are processed in chunks: the chunk's columns sit side by side in one
 * [C*kh*kw, nb*P] matrix so that layers with few output pixels (P = 4x4 or
 * 2x2 at the end of a CIFAR VGG) still make one wide GEMM instead of many
 * thin ones. When a chunk is one sample, the GEMM writes straight into the
 * output. A 1x1, stride-1, unpadded conv needs no im2col at all.
 * Not here: groups, dilation (no model of ours uses them). */
#include "asymml/ops.h"
#include "core/avx512.h"
#include "core/hot.h"
#include "winograd.h"

#include <cblas.h>
#include <string.h>

/* Target GEMM width (output pixels per GEMM) and the largest column buffer we
 * want, in floats; a chunk is the fewest samples that reach the width. */
#ifndef CONV_TARGET_N
#define CONV_TARGET_N 1024
#endif
#ifndef CONV_COL_CAP
#define CONV_COL_CAP ((size_t)4 << 20)
#endif

typedef struct geom {
    int B, C, H, W, K, Ho, Wo, P, CKK;
    int nb; /* samples per chunk */
    int direct; /* 1x1 stride 1 pad 0 */
} geom;

static am_status check_cfg(const am_conv2d_cfg *c) {
    if (!c || c->out_c < 1 || c->kh < 1 || c->kw < 1 || c->sh < 1 || c->sw < 1 || c->ph < 0 ||
        c->pw < 0 || c->kh > 64 || c->kw > 64 || c->sh > 64 || c->sw > 64 || c->ph >= c->kh ||
        c->pw >= c->kw)
        return am_fail(AM_EINVAL, "bad conv2d config (out %d, kernel %dx%d, stride %dx%d, pad %dx%d)",
                       c ? c->out_c : 0, c ? c->kh : 0, c ? c->kw : 0, c ? c->sh : 0,
                       c ? c->sw : 0, c ? c->ph : 0, c ? c->pw : 0);
    return AM_OK;
}

am_status am_conv2d_out_shape(const am_conv2d_cfg *cfg, am_shape x, am_shape *y) {
    AM_TRY(check_cfg(cfg));
    AM_TRY(am_shape_check(x));
    int ho = (x.h + 2 * cfg->ph - cfg->kh) / cfg->sh + 1;
    int wo = (x.w + 2 * cfg->pw - cfg->kw) / cfg->sw + 1;
    if (x.h + 2 * cfg->ph < cfg->kh || x.w + 2 * cfg->pw < cfg->kw || ho < 1 || wo < 1)
        return am_fail(AM_EINVAL, "conv2d kernel %dx%d does not fit input %dx%d with padding %dx%d",
                       cfg->kh, cfg->kw, x.h, x.w, cfg->ph, cfg->pw);
    *y = am_shape4(x.n, cfg->out_c, ho, wo);
    return AM_OK;
}

static void make_geom(const am_conv2d_cfg *cfg, am_shape x, am_shape y, geom *g) {
    g->B = x.n, g->C = x.c, g->H = x.h, g->W = x.w;
    g->K = cfg->out_c, g->Ho = y.h, g->Wo = y.w, g->P = y.h * y.w;
    g->CKK = x.c * cfg->kh * cfg->kw;
    g->direct = cfg->kh == 1 && cfg->kw == 1 && cfg->sh == 1 && cfg->sw == 1 && cfg->ph == 0 &&
                cfg->pw == 0;
    int nb = (CONV_TARGET_N + g->P - 1) / g->P;
    while (nb > 1 && (size_t)g->CKK * (size_t)nb * (size_t)g->P > CONV_COL_CAP) nb--;
    g->nb = nb < 1 ? 1 : (nb > g->B ? g->B : nb);
}

/* The weight gradient alone over 4 input channels or fewer on planes 32 or
 * more wide (a first conv over RGB; a split conv's low-rank part) is
 * computed directly (conv3x3.c), where that was measured faster than
 * im2col + sgemm, when the workspace holds its padded input:
 * am_conv2d_workspace_fast makes room for it (the model sizes its
 * workspace so); the low-rank part's, sized for the whole conv, takes it
 * when it fits. With AVX-512, on planes a multiple of 16 wide, up to 8
 * channels from 16 pixels wide: measured faster than im2col + sgemm at
 * every such low-rank shape of VGG and ResNet (2 cores of an AMD EPYC,
 * caches cold; B 32: C 4 at 32x32 1.2 -> 0.6-0.8 ms, C 4 at 16x16 to 128
 * 0.67-1.23 -> 0.50-0.70, C 8 at 16x16 0.91 -> 0.81; B 8, C 8 to 128 at
 * 112x112 8.6 -> 5.0-5.3, at 224x224 38-50 -> 29). */
static int direct_shape(const am_conv2d_cfg *cfg, am_shape x) {
    if (!am_conv3x3_fits(cfg, x)) return 0;
    return x.w % 16 == 0 && am_has_avx512() ? x.w >= 16 : x.c <= 4 && x.w >= 32;
}

size_t am_conv2d_workspace(const am_conv2d_cfg *cfg, am_shape x) {
    am_shape y;
    if (am_conv2d_out_shape(cfg, x, &y) != AM_OK) return 0;
    geom g;
    make_geom(cfg, x, y, &g);
    size_t cols = (size_t)g.nb * g.P;
    size_t col = (size_t)g.CKK * cols; /* im2col in forward, dcol in backward */
    size_t out = g.nb > 1 ? (size_t)g.K * cols : 0;
    return am_align_up(col * sizeof(float)) / sizeof(float) + out;
}

/* The forward pass too, with AVX-512 (conv3x3_512.c): 2.0-2.7x faster than
 * im2col + sgemm at every such low-rank shape of VGG and ResNet, the same
 * bits (2 cores of an AMD EPYC, caches cold; B 32: C 4 at 32x32 1.1-1.2 ->
 * 0.50 ms, C 4 at 16x16 to 128 0.46-0.57 -> 0.21, C 8 at 16x16 0.74-1.06
 * -> 0.36-0.78; B 8: C 4 at 224x224 10.7 -> 5.2-6.3, C 8 at 112x112
 * 8.1-8.3 -> 4.6-5.1). */
static int direct_fwd(const am_conv2d_cfg *cfg, am_shape x, size_t work_n) {
    return am_conv3x3_fwd_fits(cfg, x) && work_n >= am_conv3x3_workspace(x);
}

size_t am_conv2d_workspace_fast(const am_conv2d_cfg *cfg, am_shape x) {
    size_t need = am_conv2d_workspace(cfg, x);
    if (need && (direct_shape(cfg, x) || am_conv3x3_fwd_fits(cfg, x)) && am_conv3x3_workspace(x) > need)
        need = am_conv3x3_workspace(x);
    if (need && am_wino_workspace(cfg, x) > need) need = am_wino_workspace(cfg, x);
    return need;
}

/* The form a pass takes: Winograd's where it fits the pass (dw_only: a
 * backward pass without the input gradient) and its workspace was given;
 * else the direct weight gradient where it fits; else im2col. */
typedef enum { FORM_IM2COL, FORM_WINO, FORM_DIRECT_DW } conv_form;
static conv_form form(const am_conv2d_cfg *cfg, am_shape x, size_t work_n, int dw_only) {
    if ((dw_only ? am_wino_fits_dw(cfg, x) : am_wino_fits(cfg, x)) && work_n >= am_wino_workspace(cfg, x))
        return FORM_WINO;
    if (dw_only && direct_shape(cfg, x) && work_n >= am_conv3x3_workspace(x)) return FORM_DIRECT_DW;
    return FORM_IM2COL;
}

int am_conv2d_winograd(const am_conv2d_cfg *cfg, am_shape x, size_t work_n) {
    return form(cfg, x, work_n, 0) == FORM_WINO;
}

size_t am_conv2d_workspace_used(const am_conv2d_cfg *cfg, am_shape x, size_t work_n, int backward, int has_dx) {
    switch (form(cfg, x, work_n, backward && !has_dx)) {
    case FORM_WINO: return am_wino_workspace(cfg, x);
    case FORM_DIRECT_DW: return am_conv3x3_workspace(x);
    default: break;
    }
    if (!backward && direct_fwd(cfg, x, work_n)) return am_conv3x3_workspace(x);
    size_t need = am_conv2d_workspace(cfg, x);
    return need < work_n ? need : work_n;
}

/* Row r = (c*kh+i)*kw+j of one sample's column matrix, into dst (Ho*Wo). */
static void im2col_row(const am_conv2d_cfg *cfg, const geom *g, const float *x, int r, float *dst) {
    const int kh = cfg->kh, kw = cfg->kw, sh = cfg->sh, sw = cfg->sw, ph = cfg->ph, pw = cfg->pw;
    int c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
    const float *xc = x + (size_t)c * g->H * g->W;
    for (int oh = 0; oh < g->Ho; oh++) {
        int ih = oh * sh - ph + i;
        float *d = dst + (size_t)oh * g->Wo;
        if (ih < 0 || ih >= g->H) {
            memset(d, 0, sizeof(float) * (size_t)g->Wo);
            continue;
        }
        const float *xr = xc + (size_t)ih * g->W;
        if (sw == 1) {
            /* Contiguous span: zero the padded ends, copy the middle. */
            int lo = pw - j, hi = g->W + pw - j; /* valid ow in [lo, hi) */
            if (lo < 0) lo = 0;
            if (lo > g->Wo) lo = g->Wo; /* a plane narrower than the padding */
            if (hi > g->Wo) hi = g->Wo;
            if (hi < lo) hi = lo;
            for (int ow = 0; ow < lo; ow++) d[ow] = 0.f;
            for (int ow = lo; ow < hi; ow++) d[ow] = xr[ow - pw + j];
            for (int ow = hi; ow < g->Wo; ow++) d[ow] = 0.f;
        } else {
            /* Valid ow: 0 <= ow*sw - pw + j < W; the middle without a test. */
            int lo = pw - j > 0 ? (pw - j + sw - 1) / sw : 0;
            int hi = g->W - 1 + pw - j >= 0 ? (g->W - 1 + pw - j) / sw + 1 : 0;
            if (lo > g->Wo) lo = g->Wo;
            if (hi > g->Wo) hi = g->Wo;
            if (hi < lo) hi = lo;
            const int off = j - pw;
            for (int ow = 0; ow < lo; ow++) d[ow] = 0.f;
            if (sw == 2)
                for (int ow = lo; ow < hi; ow++) d[ow] = xr[2 * ow + off];
            else
                for (int ow = lo; ow < hi; ow++) d[ow] = xr[ow * sw + off];
            for (int ow = hi; ow < g->Wo; ow++) d[ow] = 0.f;
        }
    }
}

/* dx[c] += col2im(dcol) for channel c of one sample: the kh*kw rows of that
 * channel scatter into its plane only, so (sample, channel) pairs run in
 * parallel without write races. */
static void col2im_channel(const am_conv2d_cfg *cfg, const geom *g, const float *col, size_t ld, int c,
                           float *dxc) {
    const int kh = cfg->kh, kw = cfg->kw, sh = cfg->sh, sw = cfg->sw, ph = cfg->ph, pw = cfg->pw;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
            const float *src = col + (size_t)((c * kh + i) * kw + j) * ld;
            /* Valid output columns: 0 <= ow*sw - pw + j < W. */
            int lo = pw - j > 0 ? (pw - j + sw - 1) / sw : 0;
            int hi = (g->W - 1 + pw - j) >= 0 ? (g->W - 1 + pw - j) / sw + 1 : 0;
            if (hi > g->Wo) hi = g->Wo;
            for (int oh = 0; oh < g->Ho; oh++) {
                int ih = oh * sh - ph + i;
                if (ih < 0 || ih >= g->H) continue;
                float *xr = dxc + (size_t)ih * g->W;
                const float *s = src + (size_t)oh * g->Wo;
                const int off = j - pw;
                if (sw == 1)
                    for (int ow = lo; ow < hi; ow++) xr[ow + off] += s[ow];
                else
                    for (int ow = lo; ow < hi; ow++) xr[ow * sw + off] += s[ow];
            }
        }
}

/* Work big enough to be worth a parallel region. */
#define PAR_MIN 32768

/* db[k]: the sum of channel k of dy over the batch, eight running sums a
 * plane (the loop vectorizes; the order is fixed, so the result is the same
 * from run to run), added in double; with copy, dy is copied there in the
 * same pass. */
AM_HOT void am_conv2d_bias_grad(const am_tensor *dy, float *db, float *copy) {
    const int B = dy->s.n, K = dy->s.c;
    const size_t P = (size_t)dy->s.h * dy->s.w;
#pragma omp parallel for schedule(static) if ((size_t)B * K * P > 65536)
    for (int k = 0; k < K; k++) {
        double t = 0;
        for (int n = 0; n < B; n++) {
            const size_t o = ((size_t)n * K + k) * P;
            const float *restrict g = dy->d + o;
            float *restrict d = copy ? copy + o : NULL;
            float s[8] = {0};
            size_t i = 0;
            if (d)
                for (; i + 8 <= P; i += 8)
                    for (int l = 0; l < 8; l++) s[l] += g[i + l], d[i + l] = g[i + l];
            else
                for (; i + 8 <= P; i += 8)
                    for (int l = 0; l < 8; l++) s[l] += g[i + l];
            for (; i < P; i++) {
                s[i % 8] += g[i];
                if (d) d[i] = g[i];
            }
            t += (double)((s[0] + s[1]) + (s[2] + s[3])) + (double)((s[4] + s[5]) + (s[6] + s[7]));
        }
        db[k] = (float)t;
    }
}

static am_status check_io(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w,
                          const am_tensor *y, geom *g) {
    if (!x || !w || !y || !y->d) return am_fail(AM_EINVAL, "conv2d: NULL tensor");
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(cfg, x->s, &ys));
    if (!am_shape_eq(ys, y->s))
        return am_fail(AM_EINVAL, "conv2d: output is %dx%dx%dx%d, expected %dx%dx%dx%d", y->s.n,
                       y->s.c, y->s.h, y->s.w, ys.n, ys.c, ys.h, ys.w);
    make_geom(cfg, x->s, ys, g);
    return AM_OK;
}

/* im2col's workspace, checked after Winograd's form was not taken. */
static am_status check_work(const am_conv2d_cfg *cfg, am_shape x, size_t work_n) {
    if (work_n < am_conv2d_workspace(cfg, x))
        return am_fail(AM_EINVAL, "conv2d: workspace of %zu floats, need %zu", work_n, am_conv2d_workspace(cfg, x));
    return AM_OK;
}

/* Gather a chunk of nb samples' [rows, P] planes into [rows, nb*P]. */
static void gather(const float *src, int nb, int rows, int P, float *dst) {
    size_t ld = (size_t)nb * P;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * rows * P > PAR_MIN)
    for (int s = 0; s < nb; s++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + r * ld + (size_t)s * P, src + ((size_t)s * rows + r) * P,
                   sizeof(float) * (size_t)P);
}

/* The [C*kh*kw, nb*P] input matrix of a chunk of nb samples starting at x:
 * the input itself for a 1x1 conv on one sample, else built in col. */
static const float *chunk_cols(const am_conv2d_cfg *cfg, const geom *g, const float *x, int nb,
                               float *col) {
    size_t in_sz = (size_t)g->C * g->H * g->W, ld = (size_t)nb * g->P;
    if (g->direct && nb == 1) return x;
    if (g->direct) {
        gather(x, nb, g->C, g->P, col);
        return col;
    }
    const int rows = g->CKK;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * rows * g->P > PAR_MIN)
    for (int s = 0; s < nb; s++)
        for (int r = 0; r < rows; r++)
            im2col_row(cfg, g, x + s * in_sz, r, col + (size_t)r * ld + (size_t)s * g->P);
    return col;
}

am_status am_conv2d_forward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w,
                            const float *b, am_tensor *y, float *work, size_t work_n) {
    return am_conv2d_forward_moments(cfg, x, w, b, y, work, work_n, NULL);
}

/* The output plane by plane, bias added, moments taken while it is in cache. */
am_status am_conv2d_forward_moments(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const float *b,
                                    am_tensor *y, float *work, size_t work_n, double *moments) {
    geom g;
    AM_TRY(check_io(cfg, x, w, y, &g));
    if (!x->d) return am_fail(AM_EINVAL, "conv2d: NULL input");
    if (cfg->bias && !b) return am_fail(AM_EINVAL, "conv2d: bias expected");
    if (form(cfg, x->s, work_n, 0) == FORM_WINO) return am_wino_forward(cfg, x, w, b, y, work, work_n, moments);
    if (direct_fwd(cfg, x->s, work_n)) return am_conv3x3_forward(cfg, x, w, b, y, work, work_n, moments);
    AM_TRY(check_work(cfg, x->s, work_n));
    size_t in_sz = (size_t)g.C * g.H * g.W, out_sz = (size_t)g.K * g.P;
    float *col = work;
    float *out = work + am_align_up((size_t)g.CKK * g.nb * g.P * sizeof(float)) / sizeof(float);
    for (int b0 = 0; b0 < g.B; b0 += g.nb) {
        int nb = g.B - b0 < g.nb ? g.B - b0 : g.nb;
        size_t ld = (size_t)nb * g.P;
        const float *A = chunk_cols(cfg, &g, x->d + b0 * in_sz, nb, col);
        float *C = nb == 1 ? y->d + b0 * out_sz : out;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.K, (int)ld, g.CKK, 1.f, w, g.CKK,
                    A, (int)ld, 0.f, C, (int)ld);
        if (nb == 1) {
            if (b || moments) {
#pragma omp parallel for schedule(static) if ((size_t)g.K * g.P > PAR_MIN)
                for (int k = 0; k < g.K; k++) {
                    float *yk = C + (size_t)k * g.P, bk = b ? b[k] : 0.f;
                    if (b)
                        for (int p = 0; p < g.P; p++) yk[p] += bk;
                    if (moments) am_plane_moments(yk, (size_t)g.P, moments + 2 * ((size_t)b0 * g.K + k));
                }
            }
        } else {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * g.K * g.P > PAR_MIN)
            for (int s = 0; s < nb; s++)
                for (int k = 0; k < g.K; k++) {
                    float *dst = y->d + (b0 + s) * out_sz + (size_t)k * g.P;
                    const float *src = out + (size_t)k * ld + (size_t)s * g.P;
                    float bk = b ? b[k] : 0.f;
                    for (int p = 0; p < g.P; p++) dst[p] = src[p] + bk;
                    if (moments) am_plane_moments(dst, (size_t)g.P, moments + 2 * ((size_t)(b0 + s) * g.K + k));
                }
        }
    }
    return AM_OK;
}

am_status am_conv2d_backward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w,
                             const am_tensor *dy, am_tensor *dx, int accum, float *dw,
                             float *db, float *work, size_t work_n) {
    geom g;
    AM_TRY(check_io(cfg, x, w, dy, &g));
    if (dw && !x->d) return am_fail(AM_EINVAL, "conv2d backward: the weight gradient needs the input");
    if (cfg->bias && !db) return am_fail(AM_EINVAL, "conv2d backward: bias gradient expected");
    if (dx && (!dx->d || !am_shape_eq(dx->s, x->s)))
        return am_fail(AM_EINVAL, "conv2d backward: input gradient shape differs from input");
    const conv_form f = dw || dx ? form(cfg, x->s, work_n, !dx) : FORM_IM2COL;
    if (f != FORM_IM2COL) {
        if (f == FORM_WINO) AM_TRY(am_wino_backward(cfg, x, w, dy, dx, accum, dw, work, work_n));
        else AM_TRY(am_conv3x3_dw(cfg, x, dy, dw, work, work_n));
        if (db) am_conv2d_bias_grad(dy, db, NULL);
        return AM_OK;
    }
    AM_TRY(check_work(cfg, x->s, work_n));
    size_t in_sz = (size_t)g.C * g.H * g.W, out_sz = (size_t)g.K * g.P;
    float *col = work;
    float *out = work + am_align_up((size_t)g.CKK * g.nb * g.P * sizeof(float)) / sizeof(float);
    if (db) memset(db, 0, sizeof(float) * (size_t)g.K);
    if (dx && !accum) memset(dx->d, 0, sizeof(float) * am_shape_numel(x->s));
    for (int b0 = 0; b0 < g.B; b0 += g.nb) {
        int nb = g.B - b0 < g.nb ? g.B - b0 : g.nb;
        size_t ld = (size_t)nb * g.P;
        const float *G; /* [K, ld] */
        if (nb == 1) {
            G = dy->d + b0 * out_sz;
        } else {
            gather(dy->d + b0 * out_sz, nb, g.K, g.P, out);
            G = out;
        }
        if (dw) {
            const float *A = chunk_cols(cfg, &g, x->d + b0 * in_sz, nb, col);
            /* dW (+)= G A^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.K, g.CKK, (int)ld, 1.f, G, (int)ld,
                        A, (int)ld, b0 == 0 ? 0.f : 1.f, dw, g.CKK);
        }
        if (db)
#pragma omp parallel for schedule(static) if ((size_t)g.K * ld > PAR_MIN)
            for (int k = 0; k < g.K; k++) {
                const float *gk = G + (size_t)k * ld;
                float s = 0.f;
                for (size_t p = 0; p < ld; p++) s += gk[p];
                db[k] += s;
            }
        if (!dx) continue;
        /* dcol = W^T G, into the column buffer (A is no longer needed). */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.CKK, (int)ld, g.K, 1.f, w, g.CKK,
                    G, (int)ld, 0.f, col, (int)ld);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * g.CKK * g.P > PAR_MIN)
        for (int s = 0; s < nb; s++)
            for (int c = 0; c < g.C; c++) {
                float *dxc = dx->d + (b0 + s) * in_sz + (size_t)c * g.H * g.W;
                if (g.direct) {
                    const float *src = col + (size_t)c * ld + (size_t)s * g.P;
                    for (int p = 0; p < g.P; p++) dxc[p] += src[p];
                } else {
                    col2im_channel(cfg, &g, col + (size_t)s * g.P, ld, c, dxc);
                }
            }
    }
    return AM_OK;
}
