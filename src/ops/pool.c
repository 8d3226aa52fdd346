/* Max pooling, average pooling and adaptive average pooling, forward and
 * backward, with PyTorch's output-size rules (ceil_mode included). Max pooling
 * records the argmax of each window; both of its passes are branch-free and
 * touch the same addresses whatever the data (it runs on private
 * activations in the TEE).
 * Planes are independent, so every loop runs in parallel over (n, c). */
#include "asymml/ops.h"
#include "mask.h"
#include "window.h"

#include <math.h>
#include <string.h>

static int pool_len(int in, int k, int s, int p, int ceil_mode) {
    int num = in + 2 * p - k;
    int out = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
    /* PyTorch: the last window must start inside the input or left padding. */
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

am_status am_pool_out_shape(const am_pool_cfg *c, am_shape x, am_shape *y) {
    if (!c || c->kh < 1 || c->kw < 1 || c->sh < 1 || c->sw < 1 || c->ph < 0 || c->pw < 0 ||
        2 * c->ph > c->kh || 2 * c->pw > c->kw)
        return am_fail(AM_EINVAL, "bad pool config (padding must be at most half the kernel)");
    AM_TRY(am_shape_check(x));
    if (x.h + 2 * c->ph < c->kh || x.w + 2 * c->pw < c->kw)
        return am_fail(AM_EINVAL, "pool kernel %dx%d larger than padded input %dx%d", c->kh, c->kw,
                       x.h, x.w);
    *y = am_shape4(x.n, x.c, pool_len(x.h, c->kh, c->sh, c->ph, c->ceil_mode),
                   pool_len(x.w, c->kw, c->sw, c->pw, c->ceil_mode));
    return AM_OK;
}

static am_status check(const am_pool_cfg *c, const am_tensor *x, const am_tensor *y) {
    if (!x || !x->d || !y || !y->d) return am_fail(AM_EINVAL, "pool: NULL tensor");
    am_shape ys;
    AM_TRY(am_pool_out_shape(c, x->s, &ys));
    if (!am_shape_eq(ys, y->s))
        return am_fail(AM_EINVAL, "pool: output is %dx%dx%dx%d, expected %dx%dx%dx%d", y->s.n,
                       y->s.c, y->s.h, y->s.w, ys.n, ys.c, ys.h, ys.w);
    return AM_OK;
}

am_status am_maxpool_forward(const am_pool_cfg *c, const am_tensor *x, am_tensor *y,
                             int32_t *argmax) {
    AM_TRY(check(c, x, y));
    if (!argmax) return am_fail(AM_EINVAL, "maxpool: NULL argmax buffer");
    const int H = x->s.h, W = x->s.w, Ho = y->s.h, Wo = y->s.w;
    const int planes = x->s.n * x->s.c;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x->d + (size_t)pl * H * W;
        float *yp = y->d + (size_t)pl * Ho * Wo;
        int32_t *ap = argmax + (size_t)pl * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0, h1, w0, w1;
                am_max_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1);
                int bi = h0 * W + w0;
                float best = xp[bi];
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) {
                        int i = ih * W + iw;
                        float v = xp[i];
                        /* First maximum wins; NaN propagates, as in PyTorch. */
                        int take = (v > best) | (v != v);
                        best = take ? v : best;
                        bi = take ? i : bi;
                    }
                yp[oh * Wo + ow] = best;
                ap[oh * Wo + ow] = bi;
            }
    }
    return AM_OK;
}

/* Each output's gradient goes to its window's argmax: written to every
 * position of the window (masked off but the argmax), not scattered to the
 * argmax alone, so that the addresses touched do not depend on where the
 * private maxima were. */
am_status am_maxpool_backward(const am_pool_cfg *c, const int32_t *argmax, const am_tensor *dy,
                              am_tensor *dx, int accum) {
    AM_TRY(check(c, dx, dy));
    if (!argmax) return am_fail(AM_EINVAL, "maxpool backward: NULL argmax buffer");
    const int H = dx->s.h, W = dx->s.w, Ho = dy->s.h, Wo = dy->s.w;
    const size_t in_pl = (size_t)H * W, out_pl = (size_t)Ho * Wo;
    const int planes = dy->s.n * dy->s.c;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *d = dx->d + (size_t)pl * in_pl;
        const float *g = dy->d + (size_t)pl * out_pl;
        const int32_t *a = argmax + (size_t)pl * out_pl;
        if (!accum) memset(d, 0, in_pl * sizeof(float));
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0, h1, w0, w1;
                am_max_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1);
                const float go = g[oh * Wo + ow];
                const int32_t ao = a[oh * Wo + ow];
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) d[ih * W + iw] += am_keep_if(go, (uint32_t)(ih * W + iw == ao));
            }
    }
    return AM_OK;
}

/* The window of output (oh, ow) and PyTorch's count_include_pad divisor. */
static void avg_window(const am_pool_cfg *c, int H, int W, int oh, int ow, int *h0, int *h1,
                       int *w0, int *w1, float *inv) {
    int hs = oh * c->sh - c->ph, ws = ow * c->sw - c->pw;
    int he = hs + c->kh < H + c->ph ? hs + c->kh : H + c->ph;
    int we = ws + c->kw < W + c->pw ? ws + c->kw : W + c->pw;
    *inv = 1.f / (float)((he - hs) * (we - ws));
    *h0 = hs < 0 ? 0 : hs;
    *w0 = ws < 0 ? 0 : ws;
    *h1 = he > H ? H : he;
    *w1 = we > W ? W : we;
}

am_status am_avgpool_forward(const am_pool_cfg *c, const am_tensor *x, am_tensor *y) {
    AM_TRY(check(c, x, y));
    const int H = x->s.h, W = x->s.w, Ho = y->s.h, Wo = y->s.w;
    const int planes = x->s.n * x->s.c;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x->d + (size_t)pl * H * W;
        float *yp = y->d + (size_t)pl * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0, h1, w0, w1;
                float inv, s = 0.f;
                avg_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1, &inv);
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
                yp[oh * Wo + ow] = s * inv;
            }
    }
    return AM_OK;
}

am_status am_avgpool_backward(const am_pool_cfg *c, const am_tensor *dy, am_tensor *dx,
                              int accum) {
    AM_TRY(check(c, dx, dy));
    const int H = dx->s.h, W = dx->s.w, Ho = dy->s.h, Wo = dy->s.w;
    const int planes = dy->s.n * dy->s.c;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *d = dx->d + (size_t)pl * H * W;
        const float *g = dy->d + (size_t)pl * Ho * Wo;
        if (!accum) memset(d, 0, sizeof(float) * (size_t)H * W);
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int h0, h1, w0, w1;
                float inv;
                avg_window(c, H, W, oh, ow, &h0, &h1, &w0, &w1, &inv);
                float v = g[oh * Wo + ow] * inv;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) d[ih * W + iw] += v;
            }
    }
    return AM_OK;
}

static am_status check_adaptive(const am_tensor *x, const am_tensor *y) {
    if (!x || !x->d || !y || !y->d) return am_fail(AM_EINVAL, "adaptive avgpool: NULL tensor");
    AM_TRY(am_shape_check(x->s));
    AM_TRY(am_shape_check(y->s));
    if (x->s.n != y->s.n || x->s.c != y->s.c)
        return am_fail(AM_EINVAL, "adaptive avgpool: batch or channels differ");
    return AM_OK;
}

/* nn.AdaptiveAvgPool2d's windows: [floor(i*H/O), ceil((i+1)*H/O)). */
#define ADA_START(i, in, out) (((i) * (in)) / (out))
#define ADA_END(i, in, out) ((((i) + 1) * (in) + (out) - 1) / (out))

am_status am_adaptive_avgpool_forward(const am_tensor *x, am_tensor *y) {
    AM_TRY(check_adaptive(x, y));
    const int H = x->s.h, W = x->s.w, Ho = y->s.h, Wo = y->s.w;
    const int planes = x->s.n * x->s.c;
#pragma omp parallel for schedule(static) if (planes > 64)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x->d + (size_t)pl * H * W;
        float *yp = y->d + (size_t)pl * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++) {
            int h0 = ADA_START(oh, H, Ho), h1 = ADA_END(oh, H, Ho);
            for (int ow = 0; ow < Wo; ow++) {
                int w0 = ADA_START(ow, W, Wo), w1 = ADA_END(ow, W, Wo);
                float s = 0.f;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
                yp[oh * Wo + ow] = s / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
    return AM_OK;
}

am_status am_adaptive_avgpool_backward(const am_tensor *dy, am_tensor *dx, int accum) {
    AM_TRY(check_adaptive(dx, dy));
    const int H = dx->s.h, W = dx->s.w, Ho = dy->s.h, Wo = dy->s.w;
    const int planes = dy->s.n * dy->s.c;
#pragma omp parallel for schedule(static) if (planes > 64)
    for (int pl = 0; pl < planes; pl++) {
        float *d = dx->d + (size_t)pl * H * W;
        const float *g = dy->d + (size_t)pl * Ho * Wo;
        if (!accum) memset(d, 0, sizeof(float) * (size_t)H * W);
        for (int oh = 0; oh < Ho; oh++) {
            int h0 = ADA_START(oh, H, Ho), h1 = ADA_END(oh, H, Ho);
            for (int ow = 0; ow < Wo; ow++) {
                int w0 = ADA_START(ow, W, Wo), w1 = ADA_END(ow, W, Wo);
                float v = g[oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) d[ih * W + iw] += v;
            }
        }
    }
    return AM_OK;
}
