/* Linear layer (nn.Linear): y = x W^T + b through sgemm, or for a batch of
 * 8 or fewer against a large W through skinny.c's kernels (forward and
 * weight gradient). The input may be any [N, C, H, W] whose C*H*W equals
 * the layer's input width: flatten is free. */
#include "asymml/ops.h"
#include "skinny.h"

#include <cblas.h>
#include <string.h>

static am_status check(const am_tensor *x, const float *w, const am_tensor *y) {
    if (!x || !x->d || !w || !y || !y->d) return am_fail(AM_EINVAL, "linear: NULL argument");
    AM_TRY(am_shape_check(x->s));
    AM_TRY(am_shape_check(y->s));
    if (y->s.n != x->s.n || y->s.h != 1 || y->s.w != 1)
        return am_fail(AM_EINVAL, "linear: output must be [%d, out]", x->s.n);
    return AM_OK;
}

am_status am_linear_forward(const am_tensor *x, const float *w, const float *b, int out_f,
                            am_tensor *y) {
    AM_TRY(check(x, w, y));
    if (y->s.c != out_f) return am_fail(AM_EINVAL, "linear: output width %d, expected %d", y->s.c, out_f);
    const int N = x->s.n, IN = x->s.c * x->s.h * x->s.w;
    if (am_skinny_fits(N, IN, out_f)) return am_skinny_forward(x->d, w, b, y->d, N, IN, out_f);
    if (b)
        for (int n = 0; n < N; n++) memcpy(y->d + (size_t)n * out_f, b, sizeof(float) * (size_t)out_f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out_f, IN, 1.f, x->d, IN, w, IN,
                b ? 1.f : 0.f, y->d, out_f);
    return AM_OK;
}

am_status am_linear_backward(const am_tensor *x, const float *w, const am_tensor *dy,
                             am_tensor *dx, int accum, float *dw, float *db) {
    AM_TRY(check(x, w, dy));
    if (!dw) return am_fail(AM_EINVAL, "linear backward: NULL weight gradient");
    if (dx && (!dx->d || !am_shape_eq(dx->s, x->s)))
        return am_fail(AM_EINVAL, "linear backward: input gradient shape differs from input");
    const int N = x->s.n, IN = x->s.c * x->s.h * x->s.w, O = dy->s.c;
    const int skinny = am_skinny_fits(N, IN, O);
    /* dW = dy^T x  [O, IN] */
    if (skinny) AM_TRY(am_skinny_weight_grad(x->d, dy->d, dw, N, IN, O));
    else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, IN, N, 1.f, dy->d, O, x->d, IN, 0.f, dw, IN);
    if (db) {
        for (int o = 0; o < O; o++) db[o] = 0.f;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) db[o] += dy->d[(size_t)n * O + o];
    }
    /* dx = dy W  [N, IN] */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, O, 1.f, dy->d, O, w, IN,
                    accum ? 1.f : 0.f, dx->d, IN);
    return AM_OK;
}
