/* Softmax cross-entropy averaged over the batch (nn.CrossEntropyLoss with
 * reduction='mean'). The probabilities are kept for the backward pass. */
#include "asymml/ops.h"

#include <math.h>

static am_status check(const am_tensor *logits, const int32_t *labels, const float *probs) {
    if (!logits || !logits->d || !labels || !probs)
        return am_fail(AM_EINVAL, "cross-entropy: NULL argument");
    AM_TRY(am_shape_check(logits->s));
    if (logits->s.h != 1 || logits->s.w != 1)
        return am_fail(AM_EINVAL, "cross-entropy: logits must be [N, classes]");
    for (int n = 0; n < logits->s.n; n++)
        if (labels[n] < 0 || labels[n] >= logits->s.c)
            return am_fail(AM_EINVAL, "cross-entropy: label %d of sample %d outside [0, %d)",
                           (int)labels[n], n, logits->s.c);
    return AM_OK;
}

am_status am_softmax_ce_forward(const am_tensor *logits, const int32_t *labels, float *probs,
                                float *loss) {
    AM_TRY(check(logits, labels, probs));
    if (!loss) return am_fail(AM_EINVAL, "cross-entropy: NULL loss");
    const int N = logits->s.n, K = logits->s.c;
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *z = logits->d + (size_t)n * K;
        float *p = probs + (size_t)n * K;
        float m = z[0];
        for (int k = 0; k < K; k++) {
            if (!isfinite(z[k]))
                return am_fail(AM_ENUM, "cross-entropy: non-finite logit in sample %d", n);
            m = z[k] > m ? z[k] : m;
        }
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)(z[k] - m));
        double lse = (double)m + log(s);
        for (int k = 0; k < K; k++) p[k] = (float)exp((double)z[k] - lse);
        total += lse - (double)z[labels[n]];
    }
    *loss = (float)(total / N);
    return AM_OK;
}

am_status am_softmax_ce_backward(const am_tensor *logits, const int32_t *labels,
                                 const float *probs, am_tensor *dlogits) {
    AM_TRY(check(logits, labels, probs));
    if (!dlogits || !dlogits->d || !am_shape_eq(dlogits->s, logits->s))
        return am_fail(AM_EINVAL, "cross-entropy backward: gradient shape differs from logits");
    const int N = logits->s.n, K = logits->s.c;
    const float inv = 1.f / (float)N;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            size_t i = (size_t)n * K + k;
            dlogits->d[i] = (probs[i] - (k == labels[n] ? 1.f : 0.f)) * inv;
        }
    return AM_OK;
}
