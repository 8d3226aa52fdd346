/* Checking the accelerator's replies: see verify.h.
 *
 * The bound. A float32 sum of n products, in any order, is off from the
 * exact sum by at most about n u times the sum of the products' magnitudes
 * (u = 2^-24). The reply's combination and the reference each carry such
 * an error (n the conv's fan-in), and the combination adds one over the
 * combined channels: |comb - ref| <= (2 n + channels + 16) u mag, mag the
 * same combination over magnitudes (coefficients within 1). A reply wrong
 * in any set of values moves each affected position's combination by the
 * coefficient-weighted sum of its errors: with secret random coefficients of
 * magnitude at least 1/2 that sum is near 0 only by a chance that shrinks
 * with the errors' size, and the reply is caught when it exceeds that
 * position's bound, which is the float rounding the honest sums allow there
 * (larger where the operands are: with noise on, the residual's). */
#include "trusted/verify.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int am_merge_reply(float *dst, const float *src, int outer, int mid, size_t inner, const float *bias, int add,
                   const float *coef, float *comb, double *moments) {
    int bad = 0;
    const size_t total = (size_t)outer * mid * inner;
    if (!coef) {
#pragma omp parallel for collapse(2) schedule(static) reduction(| : bad) if (total > 65536)
        for (int o = 0; o < outer; o++)
            for (int m = 0; m < mid; m++) {
                float *d = dst + ((size_t)o * mid + m) * inner;
                const float *s = src + ((size_t)o * mid + m) * inner;
                const float bk = bias ? bias[m] : 0.f;
                int b = 0;
                for (size_t i = 0; i < inner; i++) {
                    float v = (add ? d[i] : 0.f) + s[i] + bk;
                    d[i] = v;
                    b |= !(v - v == 0.f); /* inf - inf and NaN - NaN are NaN */
                }
                if (moments) am_plane_moments(d, inner, moments + 2 * ((size_t)o * mid + m));
                bad |= b;
            }
        return bad;
    }
#pragma omp parallel for schedule(static) reduction(| : bad) if (total > 65536)
    for (int o = 0; o < outer; o++) {
        float *c = comb + (size_t)o * inner;
        memset(c, 0, sizeof(float) * inner);
        int b = 0;
        for (int m = 0; m < mid; m++) {
            float *d = dst + ((size_t)o * mid + m) * inner;
            const float *s = src + ((size_t)o * mid + m) * inner;
            const float bk = bias ? bias[m] : 0.f, cm = coef[m];
            for (size_t i = 0; i < inner; i++) {
                const float r = s[i]; /* read once: what is checked is what is merged */
                float v = (add ? d[i] : 0.f) + r + bk;
                d[i] = v;
                c[i] += cm * r;
                b |= !(v - v == 0.f);
            }
            if (moments) am_plane_moments(d, inner, moments + 2 * ((size_t)o * mid + m));
        }
        bad |= b;
    }
    return bad;
}

void am_verify_coefs(float *s, int n) {
    /* A random sign times a magnitude uniform in [1/2, 1] (23 bits): a wrong
     * value moves its position's combination by at least half its error,
     * and errors the server spreads over several channels cancel only with
     * a chance that shrinks with their size (with signs alone, +e and -e on
     * two channels cancel half the time). Magnitudes stay within 1, which
     * the bound (mag) relies on. */
    for (int i = 0; i < n; i++) {
        uint32_t u = randombytes_random();
        float m = 0.5f + ((float)(u >> 9) + 0.5f) * 0x1p-24f;
        s[i] = u & 1 ? m : -m;
    }
}

/* sum_k coef[k] W[k] (coef NULL: sum_k |W[k]|) over rows of `len` floats:
 * K rows, or a C x len block inside each of K rows (stride C * len) when
 * summing over input channels (by_input). In double, rounded once. */
static void combine_rows(const float *W, int K, int C, int kk, const float *coef, int by_input, float *out) {
    if (!by_input) {
        for (size_t j = 0; j < (size_t)C * kk; j++) {
            double a = 0;
            for (int k = 0; k < K; k++) {
                const double w = W[(size_t)k * C * kk + j];
                a += coef ? coef[k] * w : fabs(w);
            }
            out[j] = (float)a;
        }
        return;
    }
    for (int k = 0; k < K; k++)
        for (int t = 0; t < kk; t++) {
            double a = 0;
            for (int c = 0; c < C; c++) {
                const double w = W[((size_t)k * C + c) * kk + t];
                a += coef ? coef[c] * w : fabs(w);
            }
            out[(size_t)k * kk + t] = (float)a;
        }
}

static void absolute(const float *x, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = fabsf(x[i]);
}

size_t am_verify_workspace(const am_conv2d_cfg *cfg, am_shape x) {
    am_conv2d_cfg c1 = *cfg;
    c1.out_c = 1, c1.bias = 0;
    am_shape one = x, flat = x;
    one.n = 1, flat.c = 1;
    size_t a = am_conv2d_workspace(&c1, one), b = am_conv2d_workspace(cfg, flat);
    return a > b ? a : b;
}

am_status am_verify_fwd(const am_conv2d_cfg *cfg, am_shape x1, const float *W, const float *s, const float *R, int g,
                        float *ref, float *mag, float *work, size_t work_n) {
    const int K = cfg->out_c, C = x1.c, kk = cfg->kh * cfg->kw;
    const size_t N = (size_t)x1.h * x1.w;
    am_conv2d_cfg c1 = *cfg;
    c1.out_c = 1, c1.bias = 0;
    x1.n = 1;
    am_shape y1;
    AM_TRY(am_conv2d_out_shape(&c1, x1, &y1));
    const size_t P = (size_t)y1.h * y1.w;
    float *ws = malloc(sizeof(float) * 2 * (size_t)C * kk), *ra = malloc(sizeof(float) * C * N);
    am_status st = ws && ra ? AM_OK : am_fail(AM_ENOMEM, "verify: out of memory");
    if (st == AM_OK) {
        combine_rows(W, K, C, kk, s, 0, ws);
        combine_rows(W, K, C, kk, NULL, 0, ws + (size_t)C * kk);
    }
    for (int b = 0; b < g && st == AM_OK; b++) {
        am_tensor xb = {x1, (float *)R + (size_t)b * C * N}, yr = {y1, ref + b * P}, ym = {y1, mag + b * P};
        st = am_conv2d_forward(&c1, &xb, ws, NULL, &yr, work, work_n);
        absolute(xb.d, (size_t)C * N, ra);
        am_tensor xa = {x1, ra};
        if (st == AM_OK) st = am_conv2d_forward(&c1, &xa, ws + (size_t)C * kk, NULL, &ym, work, work_n);
    }
    free(ws);
    free(ra);
    return st;
}

am_status am_verify_bwd_data(const am_conv2d_cfg *cfg, am_shape x, const float *W, const float *u, const float *G,
                             float *ref, float *mag, float *work, size_t work_n) {
    const int K = cfg->out_c, C = x.c, kk = cfg->kh * cfg->kw;
    am_conv2d_cfg c1 = *cfg;
    c1.bias = 0;
    am_shape x1 = am_shape4(1, 1, x.h, x.w), y1;
    AM_TRY(am_conv2d_out_shape(&c1, x1, &y1));
    const size_t P = (size_t)y1.h * y1.w, N = (size_t)x.h * x.w;
    float *wu = malloc(sizeof(float) * 2 * (size_t)K * kk), *ga = malloc(sizeof(float) * K * P);
    am_status st = wu && ga ? AM_OK : am_fail(AM_ENOMEM, "verify: out of memory");
    if (st == AM_OK) {
        combine_rows(W, K, C, kk, u, 1, wu);
        combine_rows(W, K, C, kk, NULL, 1, wu + (size_t)K * kk);
    }
    am_tensor none = {x1, NULL};
    for (int b = 0; b < x.n && st == AM_OK; b++) {
        am_tensor gb = {y1, (float *)G + (size_t)b * K * P}, dr = {x1, ref + b * N}, dm = {x1, mag + b * N};
        gb.s.c = K;
        st = am_conv2d_backward(&c1, &none, wu, &gb, &dr, 0, NULL, NULL, work, work_n);
        absolute(gb.d, (size_t)K * P, ga);
        am_tensor gab = {gb.s, ga};
        if (st == AM_OK) st = am_conv2d_backward(&c1, &none, wu + (size_t)K * kk, &gab, &dm, 0, NULL, NULL, work, work_n);
    }
    free(wu);
    free(ga);
    return st;
}

am_status am_verify_bwd_filter(const am_conv2d_cfg *cfg, am_shape x, const float *Ru, const float *Ra, const float *G,
                               float *ref, float *mag, float *work, size_t work_n) {
    const int K = cfg->out_c, kk = cfg->kh * cfg->kw;
    am_conv2d_cfg c1 = *cfg;
    c1.bias = 0;
    am_shape x1 = am_shape4(1, 1, x.h, x.w), y1;
    AM_TRY(am_conv2d_out_shape(&c1, x1, &y1));
    const size_t P = (size_t)y1.h * y1.w, N = (size_t)x.h * x.w;
    float *ga = malloc(sizeof(float) * K * P), *part = malloc(sizeof(float) * 2 * (size_t)K * kk);
    am_status st = ga && part ? AM_OK : am_fail(AM_ENOMEM, "verify: out of memory");
    memset(ref, 0, sizeof(float) * (size_t)K * kk);
    memset(mag, 0, sizeof(float) * (size_t)K * kk);
    for (int b = 0; b < x.n && st == AM_OK; b++) {
        am_tensor gb = {y1, (float *)G + (size_t)b * K * P}, xu = {x1, (float *)Ru + b * N}, xa = {x1, (float *)Ra + b * N};
        gb.s.c = K;
        st = am_conv2d_backward(&c1, &xu, ga, &gb, NULL, 0, part, NULL, work, work_n);
        absolute(gb.d, (size_t)K * P, ga);
        am_tensor gab = {gb.s, ga};
        if (st == AM_OK) st = am_conv2d_backward(&c1, &xa, ga, &gab, NULL, 0, part + (size_t)K * kk, NULL, work, work_n);
        for (size_t i = 0; st == AM_OK && i < (size_t)K * kk; i++) ref[i] += part[i], mag[i] += part[(size_t)K * kk + i];
    }
    free(ga);
    free(part);
    return st;
}

void am_verify_reduce_channels(const float *R, int g, int C, size_t N, const float *u, float *Ru, float *Ra) {
#pragma omp parallel for schedule(static) if ((size_t)g * C * N > 65536)
    for (int b = 0; b < g; b++) {
        float *ru = Ru + (size_t)b * N, *ra = Ra + (size_t)b * N;
        memset(ru, 0, sizeof(float) * N);
        memset(ra, 0, sizeof(float) * N);
        for (int c = 0; c < C; c++) {
            const float *r = R + ((size_t)b * C + c) * N, uc = u[c];
            for (size_t p = 0; p < N; p++) ru[p] += uc * r[p], ra[p] += fabsf(r[p]);
        }
    }
}

am_status am_verify_compare(const float *comb, const float *ref, const float *mag, size_t n, double terms, int layer,
                            const char *what) {
    const double tol = (2 * terms + 16) * 0x1p-24 * 1.01;
    size_t worst = 0;
    double excess = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)comb[i] - ref[i]) - (tol * mag[i] + 1e-30);
        if (!(e <= excess)) excess = e, worst = i; /* NaN counts too */
    }
    if (excess > 0 || excess != excess)
        return am_fail(AM_EIO, "accelerator: layer %d's %s failed verification at value %zu (off by %.3g beyond the float "
                               "bound): the reply was wrong",
                       layer, what, worst, excess);
    return AM_OK;
}
