/* batchnorm2d forward and backward with PyTorch's semantics: the batch is
 * normalized with the biased variance, the running variance is updated with
 * the unbiased one, running = (1 - momentum) * running + momentum * batch.
 * The backward pass recomputes x_hat from the saved mean and 1/std rather than
 * storing it: one tensor less to keep per layer. Statistics accumulate in
 * double, so large batches of large planes stay accurate. */
#include "asymml/ops.h"

#include <math.h>
#include <string.h>

static am_status check(const am_bn_cfg *cfg, const am_tensor *x, const am_tensor *y) {
    if (!cfg || !(cfg->eps > 0.f) || !(cfg->momentum >= 0.f && cfg->momentum <= 1.f))
        return am_fail(AM_EINVAL, "batchnorm: bad eps or momentum");
    if (!x || !x->d || !y || !y->d) return am_fail(AM_EINVAL, "batchnorm: NULL tensor");
    if (!am_shape_eq(x->s, y->s)) return am_fail(AM_EINVAL, "batchnorm: input and output shapes differ");
    return am_shape_check(x->s);
}

am_status am_bn_forward(const am_bn_cfg *cfg, int training, const am_tensor *x,
                        const float *gamma, const float *beta, float *running_mean,
                        float *running_var, float *save_mean, float *save_invstd,
                        am_tensor *y) {
    AM_TRY(check(cfg, x, y));
    if (!gamma || !beta || !running_mean || !running_var)
        return am_fail(AM_EINVAL, "batchnorm: NULL parameter");
    if (training && (!save_mean || !save_invstd))
        return am_fail(AM_EINVAL, "batchnorm: training needs buffers for the batch statistics");
    if (!training)
        for (int c = 0; c < x->s.c; c++)
            if (!(running_var[c] >= 0.f))
                return am_fail(AM_ENUM, "batchnorm: running variance of channel %d is %g", c,
                               (double)running_var[c]);
    const int N = x->s.n, C = x->s.c;
    const size_t HW = (size_t)x->s.h * x->s.w, M = (size_t)N * HW;
    if (training && M < 2)
        return am_fail(AM_EINVAL, "batchnorm: training needs more than one value per channel");
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (training) {
            double s = 0.0, ss = 0.0;
            for (int n = 0; n < N; n++) {
                const float *p = x->d + ((size_t)n * C + c) * HW;
                float fs = 0.f;
                for (size_t i = 0; i < HW; i++) fs += p[i];
                s += fs;
            }
            double m = s / (double)M;
            for (int n = 0; n < N; n++) {
                const float *p = x->d + ((size_t)n * C + c) * HW;
                float fss = 0.f, fm = (float)m;
                for (size_t i = 0; i < HW; i++) {
                    float d = p[i] - fm;
                    fss += d * d;
                }
                ss += fss;
            }
            double var = ss / (double)M;
            mean = (float)m;
            invstd = (float)(1.0 / sqrt(var + (double)cfg->eps));
            save_mean[c] = mean;
            save_invstd[c] = invstd;
            double unbiased = ss / (double)(M - 1);
            running_mean[c] = (1.f - cfg->momentum) * running_mean[c] + cfg->momentum * mean;
            running_var[c] = (1.f - cfg->momentum) * running_var[c] + cfg->momentum * (float)unbiased;
        } else {
            mean = running_mean[c];
            invstd = 1.f / sqrtf(running_var[c] + cfg->eps);
            if (save_mean) save_mean[c] = mean;
            if (save_invstd) save_invstd[c] = invstd;
        }
        float a = gamma[c] * invstd, bb = beta[c] - mean * a;
        for (int n = 0; n < N; n++) {
            const float *p = x->d + ((size_t)n * C + c) * HW;
            float *q = y->d + ((size_t)n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) q[i] = p[i] * a + bb;
        }
    }
    return AM_OK;
}

am_status am_bn_backward(const am_bn_cfg *cfg, int training, const am_tensor *x,
                         const float *gamma, const float *save_mean, const float *save_invstd,
                         const am_tensor *dy, am_tensor *dx, int accum, float *dgamma,
                         float *dbeta) {
    AM_TRY(check(cfg, x, dy));
    if (!gamma || !dgamma || !dbeta) return am_fail(AM_EINVAL, "batchnorm backward: NULL parameter");
    if (dx && (!dx->d || !am_shape_eq(dx->s, x->s)))
        return am_fail(AM_EINVAL, "batchnorm backward: input gradient shape differs from input");
    if (!save_mean || !save_invstd)
        return am_fail(AM_EINVAL, "batchnorm backward: missing statistics");
    const int N = x->s.n, C = x->s.c;
    const size_t HW = (size_t)x->s.h * x->s.w, M = (size_t)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        /* In evaluation mode the statistics are constants: dx is only the
         * scale (m1 = m2 = 0 below). */
        float mean = save_mean[c], invstd = save_invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < N; n++) {
            const float *p = x->d + ((size_t)n * C + c) * HW;
            const float *g = dy->d + ((size_t)n * C + c) * HW;
            float fs = 0.f, fsx = 0.f;
            for (size_t i = 0; i < HW; i++) {
                fs += g[i];
                fsx += g[i] * (p[i] - mean);
            }
            sdy += fs;
            sdyx += fsx;
        }
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)(sdyx * invstd);
        if (!dx) continue;
        float k = gamma[c] * invstd;
        float m1 = training ? (float)(sdy / (double)M) : 0.f;
        float m2 = training ? (float)(sdyx / (double)M) * invstd * invstd : 0.f;
        for (int n = 0; n < N; n++) {
            const float *p = x->d + ((size_t)n * C + c) * HW;
            const float *g = dy->d + ((size_t)n * C + c) * HW;
            float *q = dx->d + ((size_t)n * C + c) * HW;
            if (accum)
                for (size_t i = 0; i < HW; i++) q[i] += k * (g[i] - m1 - (p[i] - mean) * m2);
            else
                for (size_t i = 0; i < HW; i++) q[i] = k * (g[i] - m1 - (p[i] - mean) * m2);
        }
    }
    return AM_OK;
}
