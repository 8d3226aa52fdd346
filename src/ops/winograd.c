/* 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering
 * F(4x4, 3x3) (Lavin and Gray, 2016): each 4x4 block of outputs is
 * A^T [(G g G^T) . (B^T d B)] A over the 6x6 block of input d around it,
 * so a conv costs 36 multiplies per 16 outputs and input channel instead
 * of 144. The 36 element-wise products, summed over the input channels,
 * are 36 GEMMs: M[p] (T x K) = V[p] (T x C) U[p] (C x K), T tiles.
 * The backward pass is the same in reverse: the input gradient is the
 * forward conv of dy with the kernels turned 180 degrees and C and K
 * exchanged; the weight gradient is G^T [sum over tiles of (A dy A^T) .
 * (B^T d B)] G, the adjoint of the forward's bilinear form, so its 36
 * GEMMs sum over tiles and the 6x6 to 3x3 transform is made once per
 * kernel.
 * A tile row (4 rows of output) at a time, its input rows are copied
 * channels last, so that every transform runs with a lane per channel
 * whatever the plane's width; the outputs go back the same way. A chunk
 * of tile rows bounds the transformed data. Each GEMM is single-threaded
 * inside a parallel loop over the 36 points, so every sum's order
 * depends on the shape only.
 * Where it is taken (am_wino_fits), measured against im2col + sgemm on 2
 * cores, forward / input gradient / weight gradient, ms: 32 x 64 x 32 x 32,
 * 64 out: 14.5 / 16.6 / 13.6 -> 5.7 / 6.3 / 6.1; 8 x 512 x 28 x 28: 89 /
 * 85 / 83 -> 40 / 41 / 35; 32 x 256 x 8 x 8: 10.1 / 10.6 / 9.8 -> 4.0 /
 * 3.9 / 3.3; 8 x 64 x 224 x 224: 223 / 193 / 196 -> 70 / 84 / 92. It was
 * slower with 8 input channels, and, but for the weight gradient alone,
 * with one side 16 times the other (a split conv's low-rank part: 16 ->
 * 256 on 56 x 56, forward 8.5 -> 9.7 ms, weight gradient 9.9 -> 8.7; 32
 * -> 512 on 28 x 28, weight gradient 8.3 -> 4.9); those stay with im2col.
 * Rounding: the transforms mix a 6x6 block's values with factors from
 * 1/24 to 8, so the error follows the block's largest values rather than
 * an output's own terms. Measured (the reviewer's harness, error over float
 * eps times the sum of the products' magnitudes): 20 to 50 on Gaussian
 * data against im2col's 1 to 2, up to about 160 for a weight gradient over
 * one sample's 4x4 or 5x5 plane, and 250 to 400 when 0.2% of the pixels
 * are 100 times the rest (im2col: 16 at most). Against the block's largest
 * value it stays a constant times eps; the tests bound it against sums in
 * double, PyTorch's fixture and finite differences.
 * The 36 GEMMs are called from several OpenMP threads at once. An earlier
 * change (9932a3b) had stopped such calls after wrong results were seen,
 * cause not found; here, Debian's OpenBLAS 0.3.21 (OpenMP build) gave the
 * same bits as one call at a time over 300 rounds of 36 concurrent calls
 * at 2, 4 and 8 threads, for both GEMM forms, and tests/test_blas_threads.c
 * checks such calls against one at a time. Every branch and address
 * depends on the shape only. */
#include "winograd.h"

#include "core/hot.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define NP 36                       /* points of a 6x6 tile */
#define MAX_TW 128                  /* tiles across: planes up to 512 wide (a thread's scratch holds a tile row) */
#define CHUNK_CAP ((size_t)4 << 20) /* floats of transformed input and output per chunk */

typedef struct wgeo {
    int B, H, W;   /* planes, in and out alike (padding 1) */
    int cin, cout; /* channels into and out of a pass */
    int th, tw;    /* tiles down and across */
    int rows;      /* tile rows per chunk */
} wgeo;

/* A 3x3, stride-1, padding-1 conv on planes 4 to 512 wide and high, 16
 * channels or more on each side, neither count more than ratio times the
 * other. */
static int shape_ok(const am_conv2d_cfg *cfg, am_shape x, int ratio) {
    return cfg->kh == 3 && cfg->kw == 3 && cfg->sh == 1 && cfg->sw == 1 && cfg->ph == 1 && cfg->pw == 1 &&
           x.h >= 4 && x.w >= 4 && x.w <= 4 * MAX_TW && x.h <= 4 * MAX_TW && x.c >= 16 && cfg->out_c >= 16 &&
           x.c <= ratio * cfg->out_c && cfg->out_c <= ratio * x.c;
}

int am_wino_fits(const am_conv2d_cfg *cfg, am_shape x) { return shape_ok(cfg, x, 8); }
int am_wino_fits_dw(const am_conv2d_cfg *cfg, am_shape x) { return shape_ok(cfg, x, 16); }

static void make_geo(am_shape x, int cin, int cout, wgeo *g) {
    g->B = x.n, g->H = x.h, g->W = x.w, g->cin = cin, g->cout = cout;
    g->th = (x.h + 3) / 4, g->tw = (x.w + 3) / 4;
    size_t rows = CHUNK_CAP / ((size_t)NP * (size_t)(cin + cout) * (size_t)g->tw);
    size_t all = (size_t)g->B * (size_t)g->th;
    g->rows = (int)(rows < 1 ? 1 : rows > all ? all : rows);
}

/* The transformed weights (or the weight gradient's sums), then the
 * chunk's transformed input and output, the same for every pass. */
static size_t floats_aligned(size_t n) { return am_align_up(n * sizeof(float)) / sizeof(float); }
static size_t u_size(const wgeo *g) { return floats_aligned((size_t)NP * g->cin * g->cout); }
static size_t v_size(const wgeo *g) { return floats_aligned((size_t)NP * g->cin * g->rows * g->tw); }
static size_t m_size(const wgeo *g) { return (size_t)NP * g->cout * g->rows * g->tw; }
/* A pass's transformed output, after its input (the input gradient's pass
 * exchanges the two sizes within the same total). */
static float *m_of(const wgeo *g, float *V) { return V + v_size(g); }

/* A thread's scratch: a tile row's input rows, channels last, and a tile's
 * temporaries; the output's rows and temporaries take no more. */
static size_t scratch_size(const wgeo *g) {
    const size_t cm = (size_t)(g->cin > g->cout ? g->cin : g->cout), wp = 4 * (size_t)g->tw + 2;
    return am_align_up(sizeof(float) * cm * (6 * wp + 36)) / sizeof(float);
}

/* Points, transformed data (either pass's order, with its alignment), then
 * each thread's scratch. */
static size_t base_size(const wgeo *g) {
    return am_align_up((u_size(g) + v_size(g) + m_size(g)) * sizeof(float) + AM_ALIGN) / sizeof(float);
}

/* For as many threads as OpenMP would run now (conv2d.c takes im2col when
 * the workspace was sized for fewer). */
size_t am_wino_workspace(const am_conv2d_cfg *cfg, am_shape x) {
    if (!am_wino_fits_dw(cfg, x)) return 0;
    wgeo g;
    make_geo(x, x.c, cfg->out_c, &g);
    return base_size(&g) + scratch_size(&g) * (size_t)omp_get_max_threads();
}

/* o[s][j] = (B^T d)[s], d[i] = a_i[j], for j < n. */
AM_HOT static void bt6(const float *restrict a0, const float *restrict a1, const float *restrict a2,
                       const float *restrict a3, const float *restrict a4, const float *restrict a5,
                       float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                       float *restrict o4, float *restrict o5, int n) {
    for (int j = 0; j < n; j++) {
        const float d0 = a0[j], d1 = a1[j], d2 = a2[j], d3 = a3[j], d4 = a4[j], d5 = a5[j];
        o0[j] = 4.f * d0 - 5.f * d2 + d4;
        o1[j] = -4.f * (d1 + d2) + (d3 + d4);
        o2[j] = 4.f * (d1 - d2) + (d4 - d3);
        o3[j] = 2.f * (d3 - d1) + (d4 - d2);
        o4[j] = 2.f * (d1 - d3) + (d4 - d2);
        o5[j] = 4.f * d1 - 5.f * d3 + d5;
    }
}

/* o[a][j] = (A^T m)[a], m[q] = a_q[j], for j < n. */
AM_HOT static void at4(const float *restrict a0, const float *restrict a1, const float *restrict a2,
                       const float *restrict a3, const float *restrict a4, const float *restrict a5,
                       float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3, int n) {
    for (int j = 0; j < n; j++) {
        const float s12 = a1[j] + a2[j], d12 = a1[j] - a2[j], s34 = a3[j] + a4[j], d34 = a3[j] - a4[j];
        o0[j] = a0[j] + s12 + s34;
        o1[j] = d12 + 2.f * d34;
        o2[j] = s12 + 4.f * s34;
        o3[j] = d12 + 8.f * d34 + a5[j];
    }
}

/* o[s][j] = (A e)[s], e[b] = a_b[j], for j < n: a 4x4 output gradient block
 * to the weight gradient's 6x6 points. */
AM_HOT static void a6(const float *restrict a0, const float *restrict a1, const float *restrict a2,
                      const float *restrict a3, float *restrict o0, float *restrict o1, float *restrict o2,
                      float *restrict o3, float *restrict o4, float *restrict o5, int n) {
    for (int j = 0; j < n; j++) {
        const float s02 = a0[j] + a2[j], s13 = a1[j] + a3[j], t02 = a0[j] + 4.f * a2[j],
                    t13 = 2.f * a1[j] + 8.f * a3[j];
        o0[j] = a0[j];
        o1[j] = s02 + s13;
        o2[j] = s02 - s13;
        o3[j] = t02 + t13;
        o4[j] = t02 - t13;
        o5[j] = a3[j];
    }
}


/* d[col * ld + i] = s[i * ps + col + off] for i < 8, lo <= col < hi: 8
 * planes' rows to channels last; 4x4 blocks transposed in SSE registers. */
static void gather8(const float *s, size_t ps, int off, int lo, int hi, float *d, size_t ld) {
    int col = lo;
#ifdef __SSE2__
    for (; col + 4 <= hi; col += 4)
        for (int h = 0; h < 8; h += 4) {
            const float *q = s + (size_t)h * ps + col + off;
            __m128 r0 = _mm_loadu_ps(q), r1 = _mm_loadu_ps(q + ps), r2 = _mm_loadu_ps(q + 2 * ps),
                   r3 = _mm_loadu_ps(q + 3 * ps);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float *o = d + (size_t)col * ld + h;
            _mm_storeu_ps(o, r0), _mm_storeu_ps(o + ld, r1), _mm_storeu_ps(o + 2 * ld, r2);
            _mm_storeu_ps(o + 3 * ld, r3);
        }
#endif
    for (; col < hi; col++)
        for (int i = 0; i < 8; i++) d[(size_t)col * ld + i] = s[(size_t)i * ps + col + off];
}

/* d[i * dl + col] (+)= s[col * ld + i] + b[i] for i < 8, col < n: the
 * reverse, to 8 planes' rows. */
static void scatter8(const float *s, size_t ld, int n, const float *b, int accum, float *d, size_t dl) {
    int col = 0;
#ifdef __SSE2__
    for (; col + 4 <= n; col += 4)
        for (int h = 0; h < 8; h += 4) {
            const float *q = s + (size_t)col * ld + h;
            __m128 r[4] = {_mm_loadu_ps(q), _mm_loadu_ps(q + ld), _mm_loadu_ps(q + 2 * ld), _mm_loadu_ps(q + 3 * ld)};
            _MM_TRANSPOSE4_PS(r[0], r[1], r[2], r[3]);
            for (int i = 0; i < 4; i++) {
                float *o = d + (size_t)(h + i) * dl + col;
                const __m128 t = _mm_add_ps(r[i], _mm_set1_ps(b[h + i]));
                _mm_storeu_ps(o, accum ? _mm_add_ps(_mm_loadu_ps(o), t) : t);
            }
        }
#endif
    for (; col < n; col++)
        for (int i = 0; i < 8; i++) {
            float *o = d + (size_t)i * dl + col;
            const float t = s[(size_t)col * ld + i] + b[i];
            *o = accum ? *o + t : t;
        }
}

/* Rows r0 to r0 + n - 1 of the C planes at x into b[i][col][c], channels
 * last, for plane columns c0 to c0 + wp - 1; zero outside the plane. */
static void rows_in(const float *x, int C, int H, int W, int r0, int n, int c0, int wp, float *b) {
    const int lo = c0 < 0 ? -c0 : 0, hi = W - c0 < wp ? W - c0 : wp; /* columns inside: [lo, hi) */
    for (int i = 0; i < n; i++) {
        float *bi = b + (size_t)i * wp * C;
        const int r = r0 + i;
        if (r < 0 || r >= H) {
            memset(bi, 0, sizeof(float) * (size_t)wp * C);
            continue;
        }
        memset(bi, 0, sizeof(float) * (size_t)lo * C);
        memset(bi + (size_t)hi * C, 0, sizeof(float) * (size_t)(wp - hi) * C);
        const float *src = x + (size_t)r * W; /* column col of the copy is the plane's col + c0 */
        int c = 0;
        for (; c + 8 <= C; c += 8)
            gather8(src + (size_t)c * H * W, (size_t)H * W, c0, lo, hi, bi + c, (size_t)C);
        for (; c < C; c++)
            for (int col = lo; col < hi; col++) bi[(size_t)col * C + c] = src[(size_t)c * H * W + col + c0];
    }
}

/* Rows r0 to r0 + 3 of o[a][col][k] (channels last, ow columns) into the K
 * planes at y (rows inside the plane, columns up to W), plus bias; added to
 * y when accum. */
static void rows_out(const float *o, int K, int H, int W, int r0, int ow, const float *b, int accum, float *y) {
    static const float zero8[8];
    for (int a = 0; a < 4 && r0 + a < H; a++) {
        int k = 0;
        for (; k + 8 <= K; k += 8)
            scatter8(o + (size_t)a * ow * K + k, (size_t)K, W, b ? b + k : zero8, accum,
                     y + ((size_t)k * H + r0 + a) * W, (size_t)H * W);
        for (; k < K; k++) {
            float *d = y + ((size_t)k * H + r0 + a) * W;
            const float *src = o + (size_t)a * ow * K + k, bk = b ? b[k] : 0.f;
            if (accum)
                for (int col = 0; col < W; col++) d[col] += src[(size_t)col * K] + bk;
            else
                for (int col = 0; col < W; col++) d[col] = src[(size_t)col * K] + bk;
        }
    }
}

/* Tile j of a tile row: its 6x6 block of b (rows channels last, wp columns
 * each, from column 4 j) to its 36 points v[p * vs + c], a lane per
 * channel; h: 36 C floats. */
static void in_tile(const float *b, int C, int wp, int j, float *h, float *v, size_t vs) {
    const size_t c = (size_t)C;
    for (int i = 0; i < 6; i++) {
        const float *e = b + ((size_t)i * wp + 4 * (size_t)j) * c;
        float *hi = h + (size_t)i * 6 * c;
        bt6(e, e + c, e + 2 * c, e + 3 * c, e + 4 * c, e + 5 * c, hi, hi + c, hi + 2 * c, hi + 3 * c, hi + 4 * c,
            hi + 5 * c, C);
    }
    for (int s = 0; s < 6; s++)
        bt6(h + s * c, h + (6 + s) * c, h + (12 + s) * c, h + (18 + s) * c, h + (24 + s) * c, h + (30 + s) * c,
            v + (size_t)s * vs, v + (size_t)(6 + s) * vs, v + (size_t)(12 + s) * vs, v + (size_t)(18 + s) * vs,
            v + (size_t)(24 + s) * vs, v + (size_t)(30 + s) * vs, C);
}

/* Tile j of an output gradient's tile row: its 4x4 block of b (4 rows
 * channels last, wp columns) to the weight gradient's 36 points; h: 24 K
 * floats. */
static void dy_tile(const float *b, int K, int wp, int j, float *h, float *v, size_t vs) {
    const size_t k = (size_t)K;
    for (int i = 0; i < 4; i++) {
        const float *e = b + ((size_t)i * wp + 4 * (size_t)j) * k;
        float *hi = h + (size_t)i * 6 * k;
        a6(e, e + k, e + 2 * k, e + 3 * k, hi, hi + k, hi + 2 * k, hi + 3 * k, hi + 4 * k, hi + 5 * k, K);
    }
    for (int s = 0; s < 6; s++)
        a6(h + s * k, h + (6 + s) * k, h + (12 + s) * k, h + (18 + s) * k, v + (size_t)s * vs,
           v + (size_t)(6 + s) * vs, v + (size_t)(12 + s) * vs, v + (size_t)(18 + s) * vs, v + (size_t)(24 + s) * vs,
           v + (size_t)(30 + s) * vs, K);
}

/* Tile j: its 36 products m[p * ms + k] to its 4x4 block of o (rows
 * channels last, ow columns); t: 24 K floats. */
static void out_tile(const float *m, size_t ms, int K, int ow, int j, float *t, float *o) {
    const size_t k = (size_t)K;
    for (int s = 0; s < 6; s++)
        at4(m + (size_t)s * ms, m + (size_t)(6 + s) * ms, m + (size_t)(12 + s) * ms, m + (size_t)(18 + s) * ms,
            m + (size_t)(24 + s) * ms, m + (size_t)(30 + s) * ms, t + s * k, t + (6 + s) * k, t + (12 + s) * k,
            t + (18 + s) * k, K);
    for (int a = 0; a < 4; a++) {
        float *oa = o + ((size_t)a * ow + 4 * (size_t)j) * k;
        const float *ta = t + (size_t)a * 6 * k;
        at4(ta, ta + k, ta + 2 * k, ta + 3 * k, ta + 4 * k, ta + 5 * k, oa, oa + k, oa + 2 * k, oa + 3 * k, K);
    }
}

#define KB 64 /* kernels transformed together, one per lane */

/* o = G a: a kernel's row or column of 3 taps to 6 points, for j < n. */
AM_HOT static void g6(const float *restrict a0, const float *restrict a1, const float *restrict a2,
                      float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                      float *restrict o4, float *restrict o5, int n) {
    for (int j = 0; j < n; j++) {
        const float s02 = a0[j] + a2[j], t02 = a0[j] * (1.f / 24) + a2[j] * (1.f / 6), t1 = a1[j] * (1.f / 12);
        o0[j] = a0[j] * 0.25f;
        o1[j] = (s02 + a1[j]) * (-1.f / 6);
        o2[j] = (s02 - a1[j]) * (-1.f / 6);
        o3[j] = t02 + t1;
        o4[j] = t02 - t1;
        o5[j] = a2[j];
    }
}

/* o = G^T s: 6 points back to 3 taps, for j < n. */
AM_HOT static void gt3(const float *restrict s0, const float *restrict s1, const float *restrict s2,
                       const float *restrict s3, const float *restrict s4, const float *restrict s5,
                       float *restrict o0, float *restrict o1, float *restrict o2, int n) {
    for (int j = 0; j < n; j++) {
        const float s12 = s1[j] + s2[j], s34 = s3[j] + s4[j];
        o0[j] = s0[j] * 0.25f - s12 * (1.f / 6) + s34 * (1.f / 24);
        o1[j] = (s2[j] - s1[j]) * (1.f / 6) + (s3[j] - s4[j]) * (1.f / 12);
        o2[j] = (s34 - s12) * (1.f / 6) + s5[j];
    }
}

/* u[p * ld + d] = (G k G^T)[p] for the n kernels d0 <= d < d0 + n of a
 * pass's weights, [in channel][out channel]: the forward's, w's kernel
 * (k, c) for d = c K + k, or with back the input gradient's, w's kernel d
 * itself turned 180 degrees. */
static void points_block(const float *w, int K, int C, int back, size_t d0, int n, float *u, size_t ld) {
    float g[9][KB], r[6][3][KB];
    for (int l = 0; l < n; l++) {
        const size_t d = d0 + (size_t)l, src = back ? d : (d % (size_t)K) * C + d / (size_t)K;
        for (int t = 0; t < 9; t++) g[back ? 8 - t : t][l] = w[src * 9 + (size_t)t];
    }
    for (int j = 0; j < 3; j++)
        g6(g[j], g[3 + j], g[6 + j], r[0][j], r[1][j], r[2][j], r[3][j], r[4][j], r[5][j], n);
    for (int q = 0; q < 6; q++) {
        float *o = u + (size_t)(6 * q) * ld + d0;
        g6(r[q][0], r[q][1], r[q][2], o, o + ld, o + 2 * ld, o + 3 * ld, o + 4 * ld, o + 5 * ld, n);
    }
}

/* The weights' points for a pass: the forward's (w as K x C) or, with back,
 * the input gradient's (C from K, turned). */
static void weight_points(const float *w, int K, int C, int back, float *u) {
    const size_t ld = (size_t)K * C;
#pragma omp parallel for schedule(static) if (ld > 4096)
    for (size_t d0 = 0; d0 < ld; d0 += KB)
        points_block(w, K, C, back, d0, ld - d0 < KB ? (int)(ld - d0) : KB, u, ld);
}

/* dw's kernels d0 <= d < d0 + n = G^T S_d G, S_d's points at S[p * ld + d]. */
static void grad_block(const float *S, size_t ld, size_t d0, int n, float *dw) {
    float r[6][3][KB], o[3][3][KB];
    for (int q = 0; q < 6; q++) {
        const float *s = S + (size_t)(6 * q) * ld + d0;
        gt3(s, s + ld, s + 2 * ld, s + 3 * ld, s + 4 * ld, s + 5 * ld, r[q][0], r[q][1], r[q][2], n);
    }
    for (int j = 0; j < 3; j++) gt3(r[0][j], r[1][j], r[2][j], r[3][j], r[4][j], r[5][j], o[0][j], o[1][j], o[2][j], n);
    for (int l = 0; l < n; l++)
        for (int t = 0; t < 9; t++) dw[(d0 + (size_t)l) * 9 + (size_t)t] = o[t / 3][t % 3][l];
}

/* The chunk's tile rows g0 to g0 + nr - 1 of the cin planes at in to
 * their points V[p][t][c], T = nr tw tiles. */
static void inputs(const wgeo *g, const float *in, int g0, int nr, float *scr, float *V) {
    const int tw = g->tw, wp = 4 * tw + 2, T = nr * tw;
    const size_t ip = (size_t)g->H * g->W, sc = scratch_size(g);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < nr; r++) {
        const int n = (g0 + r) / g->th, ti = (g0 + r) % g->th;
        float *rows = scr + sc * (size_t)omp_get_thread_num(), *h = rows + (size_t)6 * wp * g->cin;
        rows_in(in + (size_t)n * g->cin * ip, g->cin, g->H, g->W, 4 * ti - 1, 6, -1, wp, rows);
        for (int j = 0; j < tw; j++)
            in_tile(rows, g->cin, wp, j, h, V + (size_t)(r * tw + j) * g->cin, (size_t)T * g->cin);
    }
}

/* One pass: out's cout planes (+ b) = the conv of in's cin planes with the
 * points u[p][cin][cout]; added to out when accum. */
static void pass(const wgeo *g, const float *in, const float *u, const float *b, float *out, int accum, float *V,
                 float *M, float *scr) {
    const size_t ip = (size_t)g->H * g->W, sc = scratch_size(g);
    const int all = g->B * g->th, tw = g->tw, ow = 4 * tw, cin = g->cin, cout = g->cout;
    for (int g0 = 0; g0 < all; g0 += g->rows) {
        const int nr = all - g0 < g->rows ? all - g0 : g->rows, T = nr * tw;
        inputs(g, in, g0, nr, scr, V);
#pragma omp parallel for schedule(dynamic)
        for (int p = 0; p < NP; p++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, cout, cin, 1.f, V + (size_t)p * T * cin, cin,
                        u + (size_t)p * cin * cout, cout, 0.f, M + (size_t)p * T * cout, cout);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < nr; r++) {
            const int n = (g0 + r) / g->th, ti = (g0 + r) % g->th;
            float *o = scr + sc * (size_t)omp_get_thread_num(), *t = o + (size_t)4 * ow * cout;
            for (int j = 0; j < tw; j++)
                out_tile(M + (size_t)(r * tw + j) * cout, (size_t)T * cout, cout, ow, j, t, o);
            rows_out(o, cout, g->H, g->W, 4 * ti, ow, b, accum, out + (size_t)n * cout * ip);
        }
    }
}

am_status am_wino_forward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const float *b,
                          am_tensor *y, float *work, size_t work_n, double *moments) {
    wgeo g;
    make_geo(x->s, x->s.c, cfg->out_c, &g);
    if (!am_wino_fits(cfg, x->s) || work_n < am_wino_workspace(cfg, x->s))
        return am_fail(AM_EINVAL, "winograd conv: shape or workspace does not fit");
    float *U = work, *V = U + u_size(&g);
    weight_points(w, g.cout, g.cin, 0, U);
    pass(&g, x->d, U, b, y->d, 0, V, m_of(&g, V), work + base_size(&g));
    if (moments) {
        const size_t planes = (size_t)g.B * g.cout, ip = (size_t)g.H * g.W;
#pragma omp parallel for schedule(static)
        for (size_t pl = 0; pl < planes; pl++) am_plane_moments(y->d + pl * ip, ip, moments + 2 * pl);
    }
    return AM_OK;
}

/* dw = G^T [sum over tiles of (A dy A^T) . (B^T x B)] G, the sums in S. */
static void weight_grad(const wgeo *g, const float *x, const float *dy, float *dw, float *S, float *V, float *D,
                        float *scr) {
    const size_t ip = (size_t)g->H * g->W, sc = scratch_size(g);
    const int all = g->B * g->th, tw = g->tw, ow = 4 * tw, C = g->cin, K = g->cout;
    for (int g0 = 0; g0 < all; g0 += g->rows) {
        const int nr = all - g0 < g->rows ? all - g0 : g->rows, T = nr * tw;
        inputs(g, x, g0, nr, scr, V);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < nr; r++) {
            const int n = (g0 + r) / g->th, ti = (g0 + r) % g->th;
            float *rows = scr + sc * (size_t)omp_get_thread_num(), *h = rows + (size_t)4 * ow * K;
            rows_in(dy + (size_t)n * K * ip, K, g->H, g->W, 4 * ti, 4, 0, ow, rows);
            for (int j = 0; j < tw; j++) dy_tile(rows, K, ow, j, h, D + (size_t)(r * tw + j) * K, (size_t)T * K);
        }
#pragma omp parallel for schedule(dynamic)
        for (int p = 0; p < NP; p++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, C, T, 1.f, D + (size_t)p * T * K, K,
                        V + (size_t)p * T * C, C, g0 == 0 ? 0.f : 1.f, S + (size_t)p * K * C, C);
    }
    const size_t ld = (size_t)K * C;
#pragma omp parallel for schedule(static) if (ld > 4096)
    for (size_t d0 = 0; d0 < ld; d0 += KB) grad_block(S, ld, d0, ld - d0 < KB ? (int)(ld - d0) : KB, dw);
}

am_status am_wino_backward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const am_tensor *dy,
                           am_tensor *dx, int accum, float *dw, float *work, size_t work_n) {
    wgeo g;
    make_geo(x->s, x->s.c, cfg->out_c, &g);
    if (!(dx ? am_wino_fits(cfg, x->s) : am_wino_fits_dw(cfg, x->s)) || work_n < am_wino_workspace(cfg, x->s))
        return am_fail(AM_EINVAL, "winograd conv: shape or workspace does not fit");
    float *U = work, *V = U + u_size(&g);
    if (dw) weight_grad(&g, x->d, dy->d, dw, U, V, m_of(&g, V), work + base_size(&g));
    if (!dx) return AM_OK;
    wgeo gb;
    make_geo(x->s, cfg->out_c, x->s.c, &gb); /* the same sizes, in and out exchanged */
    weight_points(w, g.cout, g.cin, 1, U);
    pass(&gb, dy->d, U, NULL, dx->d, accum, V, m_of(&gb, V), work + base_size(&g));
    return AM_OK;
}
