/* 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering
 * F(4x4, 3x3) (Lavin and Gray, 2016): each 4x4 block of outputs is
 * A^T [(G g G^T) . (B^T d B)] A over the 6x6 block of input d around it,
 * so a conv costs 36 multiplies per 16 outputs and input channel instead
 * of 144. The 36 element-wise products, summed over the input channels,
 * are 36 GEMMs: M[p] (K x T) = U[p] (K x C) V[p] (C x T), T tiles.
 * The backward pass is the same in reverse: the input gradient is the
 * forward conv of dy with the kernels turned 180 degrees and C and K
 * exchanged; the weight gradient is G^T [sum over tiles of (A dy A^T) .
 * (B^T d B)] G, the adjoint of the forward's bilinear form, so its 36
 * GEMMs sum over tiles and the 6x6 to 3x3 transform is made once per
 * kernel.
 * Tiles are taken a row of tiles at a time (4 rows of output); a chunk of
 * tile rows bounds the transformed data. Transforms run along a tile row,
 * one lane per tile; each GEMM is single-threaded inside a parallel loop
 * over the 36 points, so every sum's order depends on the shape only.
 * Rounding: the transforms' constants (1/6, 1/24) and sums of up to 4
 * magnified terms make the error a few times im2col's; the tests bound it
 * against sums in double. Every branch and address depends on the shape
 * only. */
#include "winograd.h"

#include "core/hot.h"

#include <cblas.h>
#include <string.h>

#define NP 36                       /* points of a 6x6 tile */
#define MAX_TW 128                  /* tiles across: planes up to 512 wide */
#define CHUNK_CAP ((size_t)4 << 20) /* floats of transformed input and output per chunk */

typedef struct wgeo {
    int B, H, W;   /* planes, in and out alike (padding 1) */
    int cin, cout; /* channels into and out of a pass */
    int th, tw;    /* tiles down and across */
    int rows;      /* tile rows per chunk */
} wgeo;

int am_wino_fits(const am_conv2d_cfg *cfg, am_shape x) {
    return cfg->kh == 3 && cfg->kw == 3 && cfg->sh == 1 && cfg->sw == 1 && cfg->ph == 1 && cfg->pw == 1 &&
           x.h >= 16 && x.w >= 16 && x.w <= 4 * MAX_TW && x.h <= 4 * MAX_TW && x.c >= 8 && cfg->out_c >= 8;
}

static void make_geo(am_shape x, int cin, int cout, wgeo *g) {
    g->B = x.n, g->H = x.h, g->W = x.w, g->cin = cin, g->cout = cout;
    g->th = (x.h + 3) / 4, g->tw = (x.w + 3) / 4;
    size_t rows = CHUNK_CAP / ((size_t)NP * (size_t)(cin + cout) * (size_t)g->tw);
    size_t all = (size_t)g->B * (size_t)g->th;
    g->rows = (int)(rows < 1 ? 1 : rows > all ? all : rows);
}

/* The transformed weights (or the weight gradient's sums), then the
 * chunk's transformed input and output, the same for every pass. */
static size_t u_size(const wgeo *g) { return am_align_up((size_t)NP * g->cin * g->cout * sizeof(float)) / sizeof(float); }
static size_t v_size(const wgeo *g) { return am_align_up((size_t)NP * g->cin * g->rows * g->tw * sizeof(float)) / sizeof(float); }
static size_t m_size(const wgeo *g) { return (size_t)NP * g->cout * g->rows * g->tw; }
/* A pass's transformed output, after its input (the input gradient's pass
 * exchanges the two sizes within the same total). */
static float *m_of(const wgeo *g, float *V) { return V + v_size(g); }

size_t am_wino_workspace(const am_conv2d_cfg *cfg, am_shape x) {
    if (!am_wino_fits(cfg, x)) return 0;
    wgeo g;
    make_geo(x, x.c, cfg->out_c, &g);
    return u_size(&g) + v_size(&g) + m_size(&g) + AM_ALIGN / sizeof(float); /* either order's alignment */
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

/* One tile row of an input plane, rows r0 to r0 + 5 and columns -1 to
 * 4 tw + 2 (zero outside the plane), into v[p * vs + j] for the 36 points
 * p and the tw tiles j. Columns are first split by their phase mod 4, so
 * that tile j's six columns are e[0..3][j] and e[0..1][j + 1]. */
static void in_row(const float *plane, int H, int W, int r0, int tw, float *v, size_t vs) {
    float e[6][4][MAX_TW + 1], h[6][6][MAX_TW];
    for (int i = 0; i < 6; i++) {
        const int r = r0 + i, in = r >= 0 && r < H;
        const float *row = plane + (size_t)(in ? r : 0) * W;
        for (int x = 0; x < 4 * (tw + 1); x++) {
            const int c = x - 1;
            e[i][x & 3][x >> 2] = in && c >= 0 && c < W ? row[c] : 0.f;
        }
        bt6(e[i][0], e[i][1], e[i][2], e[i][3], e[i][0] + 1, e[i][1] + 1, h[i][0], h[i][1], h[i][2], h[i][3],
            h[i][4], h[i][5], tw);
    }
    for (int s = 0; s < 6; s++)
        bt6(h[0][s], h[1][s], h[2][s], h[3][s], h[4][s], h[5][s], v + (size_t)s * vs, v + (size_t)(6 + s) * vs,
            v + (size_t)(12 + s) * vs, v + (size_t)(18 + s) * vs, v + (size_t)(24 + s) * vs,
            v + (size_t)(30 + s) * vs, tw);
}

/* One tile row of an output gradient plane, rows r0 to r0 + 3 and columns 0
 * to 4 tw - 1 (zero outside the plane), to the weight gradient's points. */
static void dy_row(const float *plane, int H, int W, int r0, int tw, float *v, size_t vs) {
    float f[4][4][MAX_TW], h[4][6][MAX_TW];
    for (int i = 0; i < 4; i++) {
        const int r = r0 + i, in = r < H;
        const float *row = plane + (size_t)(in ? r : 0) * W;
        for (int x = 0; x < 4 * tw; x++) f[i][x & 3][x >> 2] = in && x < W ? row[x] : 0.f;
        a6(f[i][0], f[i][1], f[i][2], f[i][3], h[i][0], h[i][1], h[i][2], h[i][3], h[i][4], h[i][5], tw);
    }
    for (int s = 0; s < 6; s++)
        a6(h[0][s], h[1][s], h[2][s], h[3][s], v + (size_t)s * vs, v + (size_t)(6 + s) * vs,
           v + (size_t)(12 + s) * vs, v + (size_t)(18 + s) * vs, v + (size_t)(24 + s) * vs,
           v + (size_t)(30 + s) * vs, tw);
}

/* One tile row of products m[p * ms + j] to output rows r0 to r0 + 3 of a
 * plane (those inside it), plus bias; added to the plane when accum. */
static void out_row(const float *m, size_t ms, int tw, float *plane, int H, int W, int r0, float bias, int accum) {
    float t[4][6][MAX_TW], o[4][MAX_TW];
    for (int s = 0; s < 6; s++)
        at4(m + (size_t)s * ms, m + (size_t)(6 + s) * ms, m + (size_t)(12 + s) * ms, m + (size_t)(18 + s) * ms,
            m + (size_t)(24 + s) * ms, m + (size_t)(30 + s) * ms, t[0][s], t[1][s], t[2][s], t[3][s], tw);
    for (int a = 0; a < 4 && r0 + a < H; a++) {
        at4(t[a][0], t[a][1], t[a][2], t[a][3], t[a][4], t[a][5], o[0], o[1], o[2], o[3], tw);
        float *row = plane + (size_t)(r0 + a) * W;
        if (accum)
            for (int x = 0; x < W; x++) row[x] += o[x & 3][x >> 2] + bias;
        else
            for (int x = 0; x < W; x++) row[x] = o[x & 3][x >> 2] + bias;
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
 * pass's weights (d = out * in + in channel): w's kernel d itself, or with
 * back the input gradient's, w's kernel (k, c) for d = c K + k turned 180
 * degrees. */
static void points_block(const float *w, int K, int C, int back, size_t d0, int n, float *u, size_t ld) {
    float g[9][KB], r[6][3][KB];
    for (int l = 0; l < n; l++) {
        const size_t d = d0 + (size_t)l, src = back ? (d % (size_t)K) * C + d / (size_t)K : d;
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

/* One pass: out's cout planes (+ b) = the conv of in's cin planes with the
 * points u; added to out when accum. */
static void pass(const wgeo *g, const float *in, const float *u, const float *b, float *out, int accum, float *V,
                 float *M) {
    const size_t ip = (size_t)g->H * g->W;
    const int all = g->B * g->th, tw = g->tw, cin = g->cin, cout = g->cout;
    for (int g0 = 0; g0 < all; g0 += g->rows) {
        const int nr = all - g0 < g->rows ? all - g0 : g->rows, T = nr * tw;
#pragma omp parallel for collapse(2) schedule(static)
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < cin; c++) {
                const int n = (g0 + r) / g->th, ti = (g0 + r) % g->th;
                in_row(in + ((size_t)n * cin + c) * ip, g->H, g->W, 4 * ti - 1, tw, V + (size_t)c * T + (size_t)r * tw,
                       (size_t)cin * T);
            }
#pragma omp parallel for schedule(dynamic)
        for (int p = 0; p < NP; p++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, T, cin, 1.f, u + (size_t)p * cout * cin, cin,
                        V + (size_t)p * cin * T, T, 0.f, M + (size_t)p * cout * T, T);
#pragma omp parallel for collapse(2) schedule(static)
        for (int r = 0; r < nr; r++)
            for (int k = 0; k < cout; k++) {
                const int n = (g0 + r) / g->th, ti = (g0 + r) % g->th;
                out_row(M + (size_t)k * T + (size_t)r * tw, (size_t)cout * T, tw, out + ((size_t)n * cout + k) * ip,
                        g->H, g->W, 4 * ti, b ? b[k] : 0.f, accum);
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
    pass(&g, x->d, U, b, y->d, 0, V, m_of(&g, V));
    if (moments) {
        const size_t planes = (size_t)g.B * g.cout, ip = (size_t)g.H * g.W;
#pragma omp parallel for schedule(static)
        for (size_t pl = 0; pl < planes; pl++) am_plane_moments(y->d + pl * ip, ip, moments + 2 * pl);
    }
    return AM_OK;
}

/* dw = G^T [sum over tiles of (A dy A^T) . (B^T x B)] G, the sums in S. */
static void weight_grad(const wgeo *g, const float *x, const float *dy, float *dw, float *S, float *V, float *D) {
    const size_t ip = (size_t)g->H * g->W;
    const int all = g->B * g->th, tw = g->tw, C = g->cin, K = g->cout;
    for (int g0 = 0; g0 < all; g0 += g->rows) {
        const int nr = all - g0 < g->rows ? all - g0 : g->rows, T = nr * tw;
#pragma omp parallel for collapse(2) schedule(static)
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < C + K; c++) {
                const int n = (g0 + r) / g->th, ti = (g0 + r) % g->th;
                if (c < C)
                    in_row(x + ((size_t)n * C + c) * ip, g->H, g->W, 4 * ti - 1, tw, V + (size_t)c * T + (size_t)r * tw,
                           (size_t)C * T);
                else
                    dy_row(dy + ((size_t)n * K + c - C) * ip, g->H, g->W, 4 * ti, tw,
                           D + (size_t)(c - C) * T + (size_t)r * tw, (size_t)K * T);
            }
#pragma omp parallel for schedule(dynamic)
        for (int p = 0; p < NP; p++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, C, T, 1.f, D + (size_t)p * K * T, T,
                        V + (size_t)p * C * T, T, g0 == 0 ? 0.f : 1.f, S + (size_t)p * K * C, C);
    }
    const size_t ld = (size_t)K * C;
#pragma omp parallel for schedule(static) if (ld > 4096)
    for (size_t d0 = 0; d0 < ld; d0 += KB) grad_block(S, ld, d0, ld - d0 < KB ? (int)(ld - d0) : KB, dw);
}

am_status am_wino_backward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const am_tensor *dy,
                           am_tensor *dx, int accum, float *dw, float *work, size_t work_n) {
    wgeo g;
    make_geo(x->s, x->s.c, cfg->out_c, &g);
    if (!am_wino_fits(cfg, x->s) || work_n < am_wino_workspace(cfg, x->s))
        return am_fail(AM_EINVAL, "winograd conv: shape or workspace does not fit");
    float *U = work, *V = U + u_size(&g);
    if (dw) weight_grad(&g, x->d, dy->d, dw, U, V, m_of(&g, V));
    if (!dx) return AM_OK;
    wgeo gb;
    make_geo(x->s, cfg->out_c, x->s.c, &gb); /* the same sizes, in and out exchanged */
    weight_points(w, g.cout, g.cin, 1, U);
    pass(&gb, dy->d, U, NULL, dx->d, accum, V, m_of(&gb, V));
    return AM_OK;
}
