/* SGD with torch.optim.SGD's exact update, and learning-rate schedules.
 *   d = g + wd * w
 *   first step:  buf = d            later: buf = momentum * buf + (1 - dampening) * d
 *   nesterov:    d = d + momentum * buf   else d = buf
 *   w -= lr * d */
#include "asymml/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct am_sgd {
    am_sgd_cfg cfg;
    size_t n;
    float *buf;
    int started;
};

am_status am_sgd_create(const am_sgd_cfg *cfg, size_t n, am_sgd **out) {
    *out = NULL;
    if (!cfg || !(cfg->momentum >= 0.f && cfg->momentum < 1.f) ||
        !(cfg->dampening >= 0.f && cfg->dampening <= 1.f) ||
        !(cfg->weight_decay >= 0.f && cfg->weight_decay < 1.f))
        return am_fail(AM_EINVAL, "sgd: momentum and weight decay must be in [0, 1), dampening in [0, 1]");
    if (cfg->nesterov && (cfg->momentum <= 0.f || cfg->dampening != 0.f))
        return am_fail(AM_EINVAL, "sgd: Nesterov momentum needs momentum > 0 and zero dampening");
    am_sgd *o = calloc(1, sizeof *o);
    if (!o) return am_fail(AM_ENOMEM, "out of memory");
    o->cfg = *cfg;
    o->n = n;
    if (cfg->momentum > 0.f) {
        o->buf = am_aligned_alloc(n * sizeof(float));
        if (!o->buf) {
            free(o);
            return am_fail(AM_ENOMEM, "sgd: cannot allocate the momentum buffer");
        }
    }
    *out = o;
    return AM_OK;
}

void am_sgd_free(am_sgd *o) {
    if (!o) return;
    am_aligned_free(o->buf);
    free(o);
}

float *am_sgd_momentum(am_sgd *o, int *started) {
    if (started) *started = o->started;
    return o->buf;
}

am_status am_sgd_restore(am_sgd *o, const float *buf, int started) {
    if (!o->buf) {
        if (buf) return am_fail(AM_EINVAL, "sgd: a momentum buffer for an optimizer without momentum");
        o->started = started;
        return AM_OK;
    }
    if (!buf) return am_fail(AM_EINVAL, "sgd: momentum buffer missing");
    memcpy(o->buf, buf, o->n * sizeof(float));
    o->started = started;
    return AM_OK;
}

void am_sgd_update(const am_sgd_cfg *cfg, int first, float lr, float *w, const float *g, float *buf, size_t n) {
    const float wd = cfg->weight_decay, mu = cfg->momentum, damp = 1.f - cfg->dampening;
    const int nest = cfg->nesterov;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (buf) {
            float b = first ? d : mu * buf[i] + damp * d;
            buf[i] = b;
            d = nest ? d + mu * b : b;
        }
        w[i] -= lr * d;
    }
}

am_status am_sgd_step(am_sgd *o, float *w, const float *g, float lr) {
    if (!w || !g) return am_fail(AM_EINVAL, "sgd: NULL weights or gradients");
    if (!(lr >= 0.f) || !isfinite(lr)) return am_fail(AM_EINVAL, "sgd: learning rate %g", (double)lr);
    am_sgd_update(&o->cfg, !o->started, lr, w, g, o->buf, o->n);
    o->started = 1;
    return AM_OK;
}

const am_sgd_cfg *am_sgd_config(const am_sgd *o) { return &o->cfg; }

am_status am_schedule_check(const am_schedule *s) {
    if (!s || !(s->base_lr > 0.f) || !isfinite(s->base_lr) || s->base_lr > 100.f)
        return am_fail(AM_EINVAL, "schedule: learning rate must be in (0, 100]");
    if (s->warmup < 0 || (s->warmup > 0 && !(s->warmup_start >= 0.f && s->warmup_start <= 1.f)))
        return am_fail(AM_EINVAL, "schedule: warm-up length must be >= 0 and its start factor in [0, 1]");
    switch (s->kind) {
    case AM_SCHED_CONSTANT: return AM_OK;
    case AM_SCHED_STEP:
        if (s->step_size < 1 || !(s->gamma > 0.f && s->gamma <= 1.f))
            return am_fail(AM_EINVAL, "schedule: step needs step_size >= 1 and gamma in (0, 1]");
        return AM_OK;
    case AM_SCHED_COSINE:
        if (s->total < 1 || !(s->min_lr >= 0.f && s->min_lr <= s->base_lr))
            return am_fail(AM_EINVAL, "schedule: cosine needs total >= 1 and 0 <= min_lr <= lr");
        return AM_OK;
    }
    return am_fail(AM_EINVAL, "schedule: unknown kind");
}

float am_schedule_lr(const am_schedule *s, int t) {
    if (t < 0) t = 0;
    if (t < s->warmup) /* torch LinearLR from warmup_start to 1 over warmup units */
        return s->base_lr * (s->warmup_start + (1.f - s->warmup_start) * (float)t / (float)s->warmup);
    t -= s->warmup;
    switch (s->kind) {
    case AM_SCHED_STEP: return s->base_lr * powf(s->gamma, (float)(t / s->step_size));
    case AM_SCHED_COSINE: {
        if (t > s->total) t = s->total;
        double c = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)s->total));
        return (float)(s->min_lr + (s->base_lr - s->min_lr) * c);
    }
    default: return s->base_lr;
    }
}
