/* gpu-only mode's ops on the CPU: each one the trusted side's kernel on
 * the backend's buffers (which are host memory: PUT and GET move nothing).
 * See cpu_ops.h. */
#include "untrusted/cpu_ops.h"

#include <stdlib.h>
#include <string.h>

#include "asymml/nn.h"

am_status am_cpu_grow(float **work, size_t *work_n, size_t need) {
    if (need <= *work_n) return AM_OK;
    am_aligned_free(*work);
    *work = am_aligned_alloc(need * sizeof(float));
    *work_n = *work ? need : 0;
    return *work ? AM_OK : am_fail(AM_ENOMEM, "backend: out of memory for the workspace");
}

static am_status conv(const am_op *o, int accum, float **work, size_t *work_n) {
    const am_conv2d_cfg *c = &o->conv;
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(c, o->x, &ys));
    AM_TRY(am_cpu_grow(work, work_n, am_conv2d_workspace(c, o->x)));
    const size_t wn = (size_t)c->out_c * o->x.c * c->kh * c->kw;
    am_tensor x = {o->x, o->b[0]};
    if (o->kind == AM_OP_CONV_FWD) {
        am_tensor y = {ys, o->b[2]};
        return am_conv2d_forward(c, &x, o->b[1], c->bias ? o->b[1] + wn : NULL, &y, *work, *work_n);
    }
    am_tensor dy = {ys, o->b[2]}, dx = {o->x, o->b[3]};
    return am_conv2d_backward(c, &x, o->b[1], &dy, o->b[3] ? &dx : NULL, accum, o->b[4], c->bias ? o->b[4] + wn : NULL,
                              *work, *work_n);
}

static am_status pool(const am_op *o, int accum) {
    am_tensor x = {o->x, o->b[0]}, y = {o->y, o->b[1]};
    if (o->kind == AM_OP_POOL_FWD) {
        if (o->pool_kind == AM_POOL_MAX) return am_maxpool_forward(&o->pool, &x, &y, (int32_t *)o->b[2]);
        if (o->pool_kind == AM_POOL_AVG) return am_avgpool_forward(&o->pool, &x, &y);
        return am_adaptive_avgpool_forward(&x, &y);
    }
    am_tensor dy = {o->y, o->b[3]}, dx = {o->x, o->b[4]};
    if (o->pool_kind == AM_POOL_MAX) return am_maxpool_backward(&o->pool, (const int32_t *)o->b[2], &dy, &dx, accum);
    if (o->pool_kind == AM_POOL_AVG) return am_avgpool_backward(&o->pool, &dy, &dx, accum);
    return am_adaptive_avgpool_backward(&dy, &dx, accum);
}

/* The labels are copied out of the shared buffer first: checked there, they
 * could change before they are used as indices. */
static am_status loss(const am_op *o) {
    am_tensor lg = {o->x, o->b[0]}, dl = {o->x, o->b[3]};
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)o->x.n);
    if (!lab) return am_fail(AM_ENOMEM, "backend: out of memory");
    memcpy(lab, o->b[1], sizeof(int32_t) * (size_t)o->x.n);
    am_status st = am_softmax_ce_forward(&lg, lab, o->b[3], o->b[2]);
    if (st == AM_OK) st = am_softmax_ce_backward(&lg, lab, o->b[3], &dl); /* the probabilities, in place */
    free(lab);
    return st;
}

am_status am_cpu_op(const am_op *o, float **work, size_t *work_n) {
    size_t n[AM_OP_BUFS];
    int inputs;
    AM_TRY(am_op_check(o, n, &inputs));
    for (int i = 0; i < AM_OP_BUFS; i++)
        if (n[i] && !o->b[i]) return am_fail(AM_EINVAL, "backend: %s without its buffer %d", am_op_name(o->kind), i);
    const int accum = (o->flags & AM_OP_ACCUM) != 0, training = (o->flags & AM_OP_TRAINING) != 0;
    const int C = o->x.c;
    am_tensor x = {o->x, o->b[0]};
    switch (o->kind) {
    case AM_OP_PUT: case AM_OP_GET: return AM_OK;
    case AM_OP_CONV_FWD: case AM_OP_CONV_BWD: return conv(o, accum, work, work_n);
    case AM_OP_BN_FWD: {
        am_bn_cfg c = {o->eps, o->bn_momentum};
        am_tensor y = {o->x, o->b[2]};
        return am_bn_forward(&c, training, &x, o->b[1], o->b[1] + C, o->b[3], o->b[3] + C, o->b[4], o->b[4] + C, &y);
    }
    case AM_OP_BN_BWD: {
        am_bn_cfg c = {o->eps, o->bn_momentum};
        am_tensor dy = {o->x, o->b[3]}, dx = {o->x, o->b[4]};
        return am_bn_backward(&c, training, &x, o->b[1], o->b[2], o->b[2] + C, &dy, &dx, accum, o->b[5], o->b[5] + C);
    }
    case AM_OP_RELU_FWD: {
        am_tensor y = {o->x, o->b[1]};
        return am_relu_forward(&x, &y);
    }
    case AM_OP_RELU_BWD: {
        am_tensor dy = {o->x, o->b[1]}, dx = {o->x, o->b[2]};
        return am_relu_backward(&x, &dy, &dx, accum);
    }
    case AM_OP_POOL_FWD: case AM_OP_POOL_BWD: return pool(o, accum);
    case AM_OP_LINEAR_FWD: {
        const size_t wn = (size_t)o->y.c * C * o->x.h * o->x.w;
        am_tensor y = {o->y, o->b[2]};
        return am_linear_forward(&x, o->b[1], (o->flags & AM_OP_BIAS) ? o->b[1] + wn : NULL, o->y.c, &y);
    }
    case AM_OP_LINEAR_BWD: {
        const size_t wn = (size_t)o->y.c * C * o->x.h * o->x.w;
        am_tensor dy = {o->y, o->b[2]}, dx = {o->x, o->b[3]};
        return am_linear_backward(&x, o->b[1], &dy, o->b[3] ? &dx : NULL, accum, o->b[4],
                                  (o->flags & AM_OP_BIAS) ? o->b[4] + wn : NULL);
    }
    case AM_OP_ADD: {
        am_tensor b = {o->x, o->b[1]}, y = {o->x, o->b[2]};
        return am_add_forward(&x, &b, &y);
    }
    case AM_OP_MUL: {
        am_tensor y = {o->x, o->b[2]};
        return am_dropout_backward(o->b[1], &x, &y, accum); /* y (=, +=) x * mask */
    }
    case AM_OP_ACC: {
        am_tensor dst = {o->x, o->b[1]};
        return am_add_backward(&x, &dst, accum);
    }
    case AM_OP_LOSS: return loss(o);
    case AM_OP_SGD: {
        am_sgd_cfg c = {o->momentum, o->dampening, o->decay, (o->flags & AM_OP_NESTEROV) != 0};
        am_sgd_update(&c, !(o->flags & AM_OP_STARTED), o->lr, o->b[1], o->b[0], o->b[2], n[0]);
        return AM_OK;
    }
    default: break;
    }
    return am_fail(AM_EINVAL, "backend: unknown op");
}
