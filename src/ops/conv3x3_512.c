/* conv3x3.c's weight gradient with AVX-512, where the processor has it and
 * the planes are a multiple of 16 wide: 4 output channels, one input
 * channel and kernel row at a time, the 12 products summed in registers
 * over a sample's whole plane (conv3x3.c's AVX2 form keeps them a row),
 * in float over groups of samples of at least 1,024 pixels, in double
 * over the groups (lane by lane, 8 at a time), reduced at the end in a
 * fixed order: the same result at any thread count. Summing each sample's
 * lanes into doubles one by one cost as much as the products at 16x16
 * (B 32, best of 20, hot: C 8 to 128 at 16x16 1.15-1.24 -> 0.92 ms, C 4
 * to 128 0.75 -> 0.43, C 4 to 64 at 32x32 0.79 -> 0.66). See
 * conv3x3_512.h. */
#include "ops/conv3x3_512.h"

#include <string.h>

#include "core/avx512.h"

#if AM_HAVE_AVX512

/* f[t][j + i][dh][d] (16 lanes, i < JB) = (with fresh, else +=) the sums
 * over sample n's output rows of dy's row x input channel j + i's row
 * shifted by d, for channels
 * k0 .. k0 + KB - 1: the 3 KB JB sums of JB input channels and one kernel
 * row stay in registers over the whole plane (a row of 32 pixels is two
 * steps), each load of dy serving 3 JB of them. */
#define DW_PLANE16(KB, JB)                                                                         \
    do {                                                                                           \
        __m512 a[KB][JB][3];                                                                       \
        for (int t = 0; t < (KB); t++)                                                             \
            for (int i = 0; i < (JB); i++)                                                         \
                for (int d = 0; d < 3; d++)                                                        \
                    a[t][i][d] = fresh ? _mm512_setzero_ps() : f[t][j + i][dh][d];                 \
        for (int oh = 0; oh < H; oh++) {                                                           \
            const float *row = xp + (((size_t)n * C + j) * (H + 2) + oh + dh) * Wp;                \
            const float *g0 = dy + (((size_t)n * K + k0) * H + oh) * W;                            \
            for (int ow = 0; ow < W; ow += 16) {                                                   \
                __m512 v[JB][3];                                                                   \
                for (int i = 0; i < (JB); i++)                                                     \
                    for (int d = 0; d < 3; d++) v[i][d] = _mm512_loadu_ps(row + (size_t)i * ps + ow + d); \
                for (int t = 0; t < (KB); t++) {                                                   \
                    const __m512 g = _mm512_loadu_ps(g0 + (size_t)t * H * W + ow);                 \
                    for (int i = 0; i < (JB); i++)                                                 \
                        for (int d = 0; d < 3; d++) a[t][i][d] = _mm512_fmadd_ps(g, v[i][d], a[t][i][d]); \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < (KB); t++)                                                             \
            for (int i = 0; i < (JB); i++)                                                         \
                for (int d = 0; d < 3; d++) f[t][j + i][dh][d] = a[t][i][d];                       \
    } while (0)

/* A thread's sums for one block of 4 output channels. */
typedef struct dw512_sums {
    __m512 f[4][AM_DW512_MAX_C][3][3];        /* this sample's, in float */
    double d[4][AM_DW512_MAX_C][9][16];      /* over the samples so far */
} dw512_sums;

size_t am_conv3x3_dw512_scratch(void) { return sizeof(dw512_sums); }

AM_AVX512 void am_conv3x3_dw512_block(const float *xp, const float *dy, int k0, int kb, int B, int C, int H, int W,
                                      int K, void *scratch, float *dw) {
    dw512_sums *ws = scratch;
    const int Wp = W + 2;
    const size_t ps = (size_t)(H + 2) * Wp; /* a padded plane */
    __m512(*f)[AM_DW512_MAX_C][3][3] = ws->f;
    memset(ws->d, 0, sizeof ws->d);
    /* Planes under 1,024 pixels: the float sums run over S samples
     * (1,024 pixels or more) before they go into the doubles. */
    const int S = H * W >= 1024 ? 1 : (1024 + H * W - 1) / (H * W);
    for (int n = 0; n < B; n++) {
        const int fresh = n % S == 0;
        for (int j = 0; j < C; j += 2)
            for (int dh = 0; dh < 3; dh++) {
                if (kb == 4 && j + 1 < C)
                    DW_PLANE16(4, 2);
                else if (kb == 4)
                    DW_PLANE16(4, 1);
                else if (j + 1 < C)
                    DW_PLANE16(1, 2);
                else
                    DW_PLANE16(1, 1);
            }
        if (n % S != S - 1 && n != B - 1) continue;
        /* Each lane's float sum added to its double: two vectors of 8. */
        for (int t = 0; t < kb; t++)
            for (int j = 0; j < C; j++)
                for (int q = 0; q < 9; q++) {
                    const __m512 s = f[t][j][q / 3][q % 3];
                    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1));
                    double *e = ws->d[t][j][q];
                    _mm512_store_pd(e, _mm512_add_pd(_mm512_load_pd(e), _mm512_cvtps_pd(_mm512_castps512_ps256(s))));
                    _mm512_store_pd(e + 8, _mm512_add_pd(_mm512_load_pd(e + 8), _mm512_cvtps_pd(hi)));
                }
    }
    for (int t = 0; t < kb; t++)
        for (int j = 0; j < C; j++)
            for (int q = 0; q < 9; q++) {
                const double *e = ws->d[t][j][q];
                const double lo = ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
                const double hi = ((e[8] + e[9]) + (e[10] + e[11])) + ((e[12] + e[13]) + (e[14] + e[15]));
                dw[((size_t)(k0 + t) * C + j) * 9 + q] = (float)(lo + hi);
            }
}
#else
size_t am_conv3x3_dw512_scratch(void) { return 0; }
void am_conv3x3_dw512_block(const float *xp, const float *dy, int k0, int kb, int B, int C, int H, int W, int K,
                            void *scratch, float *dw) {
    (void)xp, (void)dy, (void)k0, (void)kb, (void)B, (void)C, (void)H, (void)W, (void)K, (void)scratch, (void)dw;
}
#endif

#if AM_HAVE_AVX512
/* Output channels k0 .. k0 + KB - 1 of sample n at the PX 16-pixel vectors
 * from v (planes in row-major vectors): the 3 x 3 x C taps, each input
 * load serving KB outputs and each broadcast weight PX vectors. */
#define FWD_TILE(KB, PX)                                                                           \
    do {                                                                                           \
        __m512 acc[KB][PX];                                                                        \
        const float *src[PX];                                                                      \
        for (int p = 0; p < (PX); p++) {                                                           \
            const int oh = (v + p) / vr, ow = ((v + p) % vr) * 16;                                 \
            src[p] = xs + (size_t)oh * Wp + ow;                                                    \
            for (int t = 0; t < (KB); t++) acc[t][p] = _mm512_setzero_ps();                        \
        }                                                                                          \
        for (int c = 0; c < C; c++)                                                                \
            for (int q = 0; q < 9; q++) {                                                          \
                const size_t off = (size_t)c * ps + (size_t)(q / 3) * Wp + q % 3;                  \
                __m512 in[PX];                                                                     \
                for (int p = 0; p < (PX); p++) in[p] = _mm512_loadu_ps(src[p] + off);              \
                for (int t = 0; t < (KB); t++) {                                                   \
                    const __m512 wv = _mm512_set1_ps(wk[(size_t)t * C * 9 + (size_t)c * 9 + q]);   \
                    for (int p = 0; p < (PX); p++) acc[t][p] = _mm512_fmadd_ps(wv, in[p], acc[t][p]); \
                }                                                                                  \
            }                                                                                      \
        for (int t = 0; t < (KB); t++)                                                             \
            for (int p = 0; p < (PX); p++) _mm512_storeu_ps(yk + (size_t)t * H * W + (size_t)(v + p) * 16, acc[t][p]); \
    } while (0)

AM_AVX512 void am_conv3x3_fwd512_block(const float *xp, const float *w, int n, int k0, int kb, int C, int H, int W,
                                       int K, float *y) {
    const int Wp = W + 2, vr = W / 16, nv = H * vr;
    const size_t ps = (size_t)(H + 2) * Wp;
    const float *xs = xp + (size_t)n * C * ps, *wk = w + (size_t)k0 * C * 9;
    float *yk = y + ((size_t)n * K + k0) * H * W;
    int v = 0;
    if (kb == 4) {
        for (; v + 4 <= nv; v += 4) FWD_TILE(4, 4);
        for (; v < nv; v++) FWD_TILE(4, 1);
    } else {
        for (; v + 4 <= nv; v += 4) FWD_TILE(1, 4);
        for (; v < nv; v++) FWD_TILE(1, 1);
    }
}
#else
void am_conv3x3_fwd512_block(const float *xp, const float *w, int n, int k0, int kb, int C, int H, int W, int K,
                             float *y) {
    (void)xp, (void)w, (void)n, (void)k0, (void)kb, (void)C, (void)H, (void)W, (void)K, (void)y;
}
#endif
