/* Fixed point for inference (quantized mode, and blinding's operands):
 * a layer's input as act_bits-bit integers, x_q = round(x / s_x) clamped to
 * [-M, M] with M = 2^(act_bits-1) - 1 and s_x = (the largest |x| seen in
 * calibration) / M; its weights as 8-bit integers, one symmetric scale per
 * output channel, s_k = max_i |W_k,i| / 127. The integer products are exact
 * (am_conv2d_exact); the output is s_x s_k y_q + b_k. BatchNorm folds into
 * the conv before it first (am_model_fold_bn): with a scale per output
 * channel that fold changes no integer weight. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "trusted/split_impl.h"

#if FLT_EVAL_METHOD != 0
#error "asym_quant1's rounding needs double arithmetic in double (FLT_EVAL_METHOD 0)"
#endif

int asym_act_max(const am_asym *a) { return (1 << ((a->cfg.act_bits ? a->cfg.act_bits : AM_ACT_BITS) - 1)) - 1; }

am_status asym_quant_alloc(am_asym *a, layer_plan *p, int blinded) {
    const size_t B = (size_t)p->x.n, in = B * p->C * p->N, out = B * p->K * p->P, wn = (size_t)p->K * p->C * p->kk;
    am_conv2d_cfg c = p->cfg;
    c.bias = 0;
    /* Every partial sum an integer below 2^53: exact in double. */
    double bound = am_exact_bound(&c, p->C, asym_act_max(a), AM_WEIGHT_MAX);
    if (bound >= 9007199254740992.0)
        return am_fail(AM_EINVAL, "quantized: layer of fan-in %d at %d-bit activations can exceed 2^53", p->C * p->kk,
                       a->cfg.act_bits ? a->cfg.act_bits : AM_ACT_BITS);
    AM_TRY(asym_state_add(a, 1, &p->q_off));
    p->bi = a->n_fixed++;
    a->state[p->q_off] = 0.f;
    AM_TRY(asym_grow_d(&a->qw, &a->qw_n, wn));
    AM_TRY(asym_grow_d(&a->qs, &a->qs_n, (size_t)p->K));
    if (blinded) return AM_OK; /* its own buffers (strategies/blind.c) */
    AM_TRY(asym_grow_d(&a->qx, &a->qx_n, in));
    AM_TRY(asym_grow_d(&a->qy, &a->qy_n, out));
    return asym_grow_d(&a->qwork, &a->qwork_n, am_conv2d_exact_workspace(&c, p->x));
}

void asym_quant_observe(am_asym *a, layer_plan *p, const float *x) {
    const size_t n = am_shape_numel(p->x);
    float m = a->state[p->q_off];
    for (size_t i = 0; i < n; i++) {
        float v = fabsf(x[i]);
        if (v > m) m = v; /* a NaN never compares greater: it is left out */
    }
    if (isfinite(m)) a->state[p->q_off] = m;
}

void asym_quantize_weights(const float *w, int K, size_t per, double *wq, double *sk) {
    for (int k = 0; k < K; k++) {
        const float *wk = w + (size_t)k * per;
        double m = 0;
        for (size_t i = 0; i < per; i++) m = fmax(m, fabs((double)wk[i]));
        double s = m > 0 ? m / AM_WEIGHT_MAX : 1.0;
        sk[k] = s;
        for (size_t i = 0; i < per; i++) wq[(size_t)k * per + i] = rint(wk[i] / s);
    }
}

double asym_input_scale(const am_asym *a, const layer_plan *p) {
    const double top = a->state[p->q_off];
    return top > 0 ? top / asym_act_max(a) : 1.0;
}

void asym_quantize(am_asym *a, layer_plan *p, const am_tensor *x, const float *w, double *sx) {
    const double M = asym_act_max(a), s = asym_input_scale(a, p), inv = 1.0 / s;
    const size_t n = am_shape_numel(x->s);
    double *q = a->qx;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) q[i] = asym_quant1(x->d[i], inv, M);
    asym_quantize_weights(w, p->K, (size_t)p->C * p->kk, a->qw, a->qs);
    *sx = s;
}

void asym_dequantize(am_asym *a, layer_plan *p, double sx, const float *b, int relu, am_tensor *y) {
    const int B = y->s.n, K = p->K;
    const size_t P = (size_t)p->P;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * K * P > 65536)
    for (int n = 0; n < B; n++)
        for (int k = 0; k < K; k++) {
            const double s = sx * a->qs[k], bk = b ? b[k] : 0.0;
            const double *q = a->qy + ((size_t)n * K + k) * P;
            float *yk = y->d + ((size_t)n * K + k) * P;
            for (size_t i = 0; i < P; i++) {
                const float v = (float)(q[i] * s + bk);
                yk[i] = relu ? (v > 0.f ? v : 0.f) : v;
            }
        }
}
