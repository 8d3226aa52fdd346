/* The weight gradient of a 3x3 convolution (stride 1, padding 1) over few
 * input channels, computed directly: the split conv's low-rank part, whose
 * r input channels make im2col's column matrix and a GEMM with an inner
 * dimension of 9 r a poor fit. The input is first copied into zero-padded
 * planes, (H + 2) x (W + 2), so that every tap is an unaligned load of 8
 * pixels with no bounds to test; planes are as wide as a multiple of 8.
 * Per block of 4 output channels, input channel and kernel row, the 12
 * products (4 channels x 3 columns) are summed in registers along each
 * output row and in float over a sample, in double over the samples, and
 * reduced at the end in a fixed order: the same result at any thread count.
 * Measured against im2col + sgemm here (2 threads, batch 8): r = 4 on
 * 224x224 planes, 64 outputs, 26.5 -> 15.3 ms; 112x112, 128 outputs, 11.1
 * -> 8.5; 3x32x32 batch 32, 64 outputs: 2.4 -> 1.8; no gain at 16x16 and
 * slower at r = 8 from 56x56 down (am_conv2d_backward takes it where it
 * wins, for a first conv over RGB too). These figures are this AVX2
 * form's: on planes a multiple of 16 wide, where the processor has
 * AVX-512, conv3x3_512.c's form runs instead, up to 8 channels, and
 * am_conv2d_backward takes it from 16 pixels wide (conv2d.c's
 * direct_shape). The forward conv written the same way with AVX2 was no
 * faster than im2col + sgemm at r = 4 and slower at r = 8: only AVX-512's
 * form computes the forward pass. */
#include <omp.h>
#include <string.h>

#include "asymml/ops.h"
#include "core/avx512.h"
#include "core/hot.h"
#include "ops/conv3x3_512.h"



/* The most input channels it takes: its callers' (am_conv2d_backward takes
 * it up to 4); its per-thread sums are sized by it. */
#define DW_MAX_C 4

/* A thread's sums for the weight gradient of one block of 4 channels. */
typedef struct dw_sums {
    v8 f[4][DW_MAX_C][3][3];      /* this sample's, in float */
    double d[4][DW_MAX_C][9][8]; /* over the samples so far */
} dw_sums;

/* Output channels in blocks of 4, the last K % 4 one at a time: block b's
 * first channel and its width. */
static inline void block_of(int b, int K, int *k0, int *kb) {
    const int full = K / 4;
    *k0 = b < full ? 4 * b : 4 * full + (b - full);
    *kb = b < full ? 4 : 1;
}

/* Planes a multiple of 16 wide take conv3x3_512.c's form where the
 * processor has AVX-512, up to its 8 channels. */
static int wide(am_shape x) { return x.w % 16 == 0 && am_has_avx512(); }

int am_conv3x3_fits(const am_conv2d_cfg *cfg, am_shape x) {
    return cfg->kh == 3 && cfg->kw == 3 && cfg->sh == 1 && cfg->sw == 1 && cfg->ph == 1 && cfg->pw == 1 &&
           x.w % 8 == 0 && x.w >= 8 && x.c <= (wide(x) ? AM_DW512_MAX_C : DW_MAX_C);
}

size_t am_conv3x3_workspace(am_shape x) { return (size_t)x.n * x.c * (x.h + 2) * (x.w + 2); }

/* Every input plane into its zero-padded copy. */
static void pad(const am_tensor *x, float *xp) {
    const int H = x->s.h, W = x->s.w, Wp = W + 2;
    const size_t planes = (size_t)x->s.n * x->s.c, ps = (size_t)(H + 2) * Wp;
#pragma omp parallel for schedule(static) if (planes * ps > 65536)
    for (size_t pl = 0; pl < planes; pl++) {
        float *d = xp + pl * ps;
        const float *s = x->d + pl * (size_t)H * W;
        memset(d, 0, sizeof(float) * (size_t)Wp);
        for (int h = 0; h < H; h++) {
            float *row = d + (size_t)(h + 1) * Wp;
            row[0] = row[W + 1] = 0.f;
            memcpy(row + 1, s + (size_t)h * W, sizeof(float) * (size_t)W);
        }
        memset(d + (size_t)(H + 1) * Wp, 0, sizeof(float) * (size_t)Wp);
    }
}

static am_status check(const am_conv2d_cfg *cfg, const am_tensor *x, const am_tensor *y, size_t work_n) {
    if (!x || !y || !x->d || !y->d) return am_fail(AM_EINVAL, "conv3x3: NULL tensor");
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(cfg, x->s, &ys));
    if (!am_conv3x3_fits(cfg, x->s) || !am_shape_eq(ys, y->s) || work_n < am_conv3x3_workspace(x->s))
        return am_fail(AM_EINVAL, "conv3x3: not a 3x3 stride-1 padding-1 conv of planes a multiple of 8 wide, "
                                  "with at most %d channels and its workspace",
                       wide(x->s) ? AM_DW512_MAX_C : DW_MAX_C);
    return AM_OK;
}

/* Weight gradient of channels k0 .. k0 + KB - 1: f[t][j][dh][dw] (8 lanes)
 * += dy's row x the input row shifted by dw, in registers along the row. */
#define DW_ROW(KB)                                                                                 \
    do {                                                                                           \
        for (int j = 0; j < C; j++)                                                                \
            for (int dh = 0; dh < 3; dh++) {                                                       \
                const float *row = xp + (((size_t)n * C + j) * (H + 2) + oh + dh) * Wp;            \
                v8 a[KB][3];                                                                       \
                for (int t = 0; t < (KB); t++)                                                     \
                    for (int d = 0; d < 3; d++) a[t][d] = f[t][j][dh][d];                          \
                for (int ow = 0; ow < W; ow += 8) {                                                \
                    v8 v[3];                                                                       \
                    for (int d = 0; d < 3; d++) v[d] = LD8(row + ow + d);                          \
                    for (int t = 0; t < (KB); t++) {                                               \
                        const v8 g = LD8(g0 + (size_t)t * H * W + ow);                             \
                        for (int d = 0; d < 3; d++) a[t][d] += g * v[d];                           \
                    }                                                                              \
                }                                                                                  \
                for (int t = 0; t < (KB); t++)                                                     \
                    for (int d = 0; d < 3; d++) f[t][j][dh][d] = a[t][d];                          \
            }                                                                                      \
    } while (0)

/* One block: each sample's sums in float, added across samples in double. */
AM_HOT static void dw_block(const float *xp, const am_tensor *dy, int k0, int kb, int B, int C, int H, int W, int K,
                            dw_sums *ws, float *dw) {
    const int Wp = W + 2;
    v8(*f)[DW_MAX_C][3][3] = ws->f;
    memset(ws->d, 0, sizeof ws->d);
    for (int n = 0; n < B; n++) {
        memset(ws->f, 0, sizeof ws->f);
        for (int oh = 0; oh < H; oh++) {
            const float *g0 = dy->d + (((size_t)n * K + k0) * H + oh) * W;
            if (kb == 4)
                DW_ROW(4);
            else
                DW_ROW(1);
        }
        for (int t = 0; t < kb; t++)
            for (int j = 0; j < C; j++)
                for (int q = 0; q < 9; q++)
                    for (int l = 0; l < 8; l++) ws->d[t][j][q][l] += f[t][j][q / 3][q % 3][l];
    }
    for (int t = 0; t < kb; t++)
        for (int j = 0; j < C; j++)
            for (int q = 0; q < 9; q++) {
                const double *e = ws->d[t][j][q];
                dw[((size_t)(k0 + t) * C + j) * 9 + q] =
                    (float)(((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7])));
            }
}

am_status am_conv3x3_dw(const am_conv2d_cfg *cfg, const am_tensor *x, const am_tensor *dy, float *dw, float *work,
                        size_t work_n) {
    AM_TRY(check(cfg, x, dy, work_n));
    const int B = x->s.n, C = x->s.c, H = x->s.h, W = x->s.w, K = cfg->out_c;
    pad(x, work);
    const int blocks = K / 4 + K % 4, w512 = wide(x->s);
    const size_t per = w512 ? am_align_up(am_conv3x3_dw512_scratch()) : sizeof(dw_sums);
    char *sums = am_aligned_alloc(per * (size_t)omp_get_max_threads());
    if (!sums) return am_fail(AM_ENOMEM, "conv3x3: out of memory");
#pragma omp parallel for schedule(static) if ((size_t)B * K * H * W > 65536)
    for (int b = 0; b < blocks; b++) {
        int k0, kb;
        block_of(b, K, &k0, &kb);
        void *s = sums + per * (size_t)omp_get_thread_num();
        if (w512)
            am_conv3x3_dw512_block(work, dy->d, k0, kb, B, C, H, W, K, s, dw);
        else
            dw_block(work, dy, k0, kb, B, C, H, W, K, s, dw);
    }
    am_aligned_free(sums);
    return AM_OK;
}

int am_conv3x3_fwd_fits(const am_conv2d_cfg *cfg, am_shape x) {
    return am_conv3x3_fits(cfg, x) && wide(x) && x.w >= 16;
}

/* A block's planes: the bias added and the moments taken while in cache. */
static void finish_planes(float *y, int n, int k0, int kb, int K, size_t P, const float *b, double *moments) {
    for (int t = 0; t < kb; t++) {
        float *yk = y + ((size_t)n * K + k0 + t) * P;
        if (b)
            for (size_t p = 0; p < P; p++) yk[p] += b[k0 + t];
        if (moments) am_plane_moments(yk, P, moments + 2 * ((size_t)n * K + k0 + t));
    }
}

am_status am_conv3x3_forward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const float *b,
                             am_tensor *y, float *work, size_t work_n, double *moments) {
    AM_TRY(check(cfg, x, y, work_n));
    if (!am_conv3x3_fwd_fits(cfg, x->s)) return am_fail(AM_EINVAL, "conv3x3: no direct forward for this shape here");
    if (cfg->bias && !b) return am_fail(AM_EINVAL, "conv3x3: bias expected");
    const int B = x->s.n, C = x->s.c, H = x->s.h, W = x->s.w, K = cfg->out_c;
    pad(x, work);
    const int blocks = K / 4 + K % 4;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * K * H * W > 65536)
    for (int n = 0; n < B; n++)
        for (int bl = 0; bl < blocks; bl++) {
            int k0, kb;
            block_of(bl, K, &k0, &kb);
            am_conv3x3_fwd512_block(work, w, n, k0, kb, C, H, W, K, y->d);
            if (cfg->bias || moments) finish_planes(y->d, n, k0, kb, K, (size_t)H * W, cfg->bias ? b : NULL, moments);
        }
    return AM_OK;
}
