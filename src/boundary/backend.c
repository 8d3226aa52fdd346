/* Helpers every backend shares: its (layer, role) table, a request's
 * shapes. See backend.h. */
#include "boundary/backend.h"

#include <stdlib.h>
#include <string.h>

am_status am_backend_slot(int layer, am_buf_role role, size_t n, size_t elem, void **table, int *layers,
                          void **entry) {
    if (layer < 0 || layer > 65535 || role < 0 || role >= AM_BUF_ROLES || !n)
        return am_fail(AM_EINVAL, "backend: bad buffer request (layer %d, role %d)", layer, (int)role);
    *entry = NULL;
    if (layer >= *layers) {
        int nl = layer + 16;
        char *t = realloc(*table, elem * (size_t)nl * AM_BUF_ROLES);
        if (!t) return am_fail(AM_ENOMEM, "backend: out of memory");
        memset(t + elem * (size_t)*layers * AM_BUF_ROLES, 0, elem * (size_t)(nl - *layers) * AM_BUF_ROLES);
        *table = t;
        *layers = nl;
    }
    *entry = (char *)*table + elem * ((size_t)layer * AM_BUF_ROLES + role);
    return AM_OK;
}

am_status am_req_shapes(const am_req *r, am_shape *in0, am_shape *in1, am_shape *out) {
    am_shape y, w = am_shape4(r->cfg.out_c, r->x.c, r->cfg.kh, r->cfg.kw);
    AM_TRY(am_conv2d_out_shape(&r->cfg, r->x, &y));
    switch (r->kind) {
    case AM_REQ_CONV_FWD:
    case AM_REQ_CONV_MODP: *in0 = r->x, *in1 = w, *out = y; return AM_OK;
    case AM_REQ_CONV_BWD_DATA: *in0 = y, *in1 = w, *out = r->x; return AM_OK;
    case AM_REQ_CONV_BWD_FILTER: *in0 = r->x, *in1 = y, *out = w; return AM_OK;
    }
    return am_fail(AM_EINVAL, "backend: unknown request kind %d", (int)r->kind);
}

const char *am_op_name(am_op_kind k) {
    static const char *const names[AM_OP_KINDS] = {
        "put",       "get",     "conv-forward", "conv-backward", "batchnorm-forward", "batchnorm-backward",
        "relu-forward", "relu-backward", "pool-forward", "pool-backward", "linear-forward", "linear-backward",
        "add",       "mul",     "accumulate",   "loss",          "sgd"};
    return k >= 0 && k < AM_OP_KINDS ? names[k] : "unknown";
}

#define MAX_FLOATS ((size_t)1 << 36)

static int bad_dim(int v, int lo, int hi) { return v < lo || v > hi; }
/* Out of range, or more than MAX_FLOATS elements (each partial product is
 * checked: four dimensions in range could still wrap a 64-bit product). */
static int bad_shape(am_shape s) {
    if (bad_dim(s.n, 1, 65536) || bad_dim(s.c, 1, 1 << 30) || bad_dim(s.h, 1, 65536) || bad_dim(s.w, 1, 65536))
        return 1;
    size_t p = (size_t)s.n * (size_t)s.c; /* < 2^47 */
    if (p > MAX_FLOATS || (p *= (size_t)s.h) > MAX_FLOATS || p * (size_t)s.w > MAX_FLOATS) return 1;
    return 0;
}
static size_t numel(am_shape s) { return (size_t)s.n * s.c * s.h * s.w; } /* after bad_shape */

/* A pool's output shape for the op, checked against o->y. */
static am_status pool_shape(const am_op *o) {
    const am_pool_cfg *p = &o->pool;
    if (bad_shape(o->y) || o->y.n != o->x.n || o->y.c != o->x.c)
        return am_fail(AM_EINVAL, "op: pool output shape out of range");
    if (o->pool_kind == AM_POOL_ADAPTIVE) return AM_OK; /* any output size, as nn.AdaptiveAvgPool2d */
    if (o->pool_kind != AM_POOL_MAX && o->pool_kind != AM_POOL_AVG) return am_fail(AM_EINVAL, "op: unknown pool kind");
    if (bad_dim(p->kh, 1, 64) || bad_dim(p->kw, 1, 64) || bad_dim(p->sh, 1, 64) || bad_dim(p->sw, 1, 64) ||
        bad_dim(p->ph, 0, 32) || bad_dim(p->pw, 0, 32) || bad_dim(p->ceil_mode, 0, 1))
        return am_fail(AM_EINVAL, "op: pool settings out of range");
    am_shape y;
    AM_TRY(am_pool_out_shape(p, o->x, &y));
    return am_shape_eq(y, o->y) ? AM_OK : am_fail(AM_EINVAL, "op: pool output shape differs from its settings'");
}

static am_status op_scalars(const am_op *o) {
    if (o->kind == AM_OP_BN_FWD || o->kind == AM_OP_BN_BWD) {
        if (!(o->eps > 0.f && o->eps < 1.f) || !(o->bn_momentum >= 0.f && o->bn_momentum <= 1.f))
            return am_fail(AM_EINVAL, "op: batchnorm settings out of range");
    }
    if (o->kind == AM_OP_SGD) {
        if (!(o->lr >= 0.f && o->lr <= 1e6f) || !(o->momentum >= 0.f && o->momentum < 1.f) ||
            !(o->dampening >= 0.f && o->dampening <= 1.f) || !(o->decay >= 0.f && o->decay < 1.f))
            return am_fail(AM_EINVAL, "op: SGD settings out of range");
        if ((o->flags & AM_OP_NESTEROV) && (o->momentum <= 0.f || o->dampening != 0.f))
            return am_fail(AM_EINVAL, "op: Nesterov momentum needs momentum > 0 and no dampening");
    }
    return AM_OK;
}

am_status am_op_check(const am_op *o, size_t n[AM_OP_BUFS], int *inputs) {
    for (int i = 0; i < AM_OP_BUFS; i++) n[i] = 0;
    *inputs = 0;
    if (!o || (int)o->kind < 0 || o->kind >= AM_OP_KINDS) return am_fail(AM_EINVAL, "op: unknown kind");
    if (o->flags & ~(unsigned)AM_OP_FLAGS) return am_fail(AM_EINVAL, "op: unknown flags %#x", o->flags);
    if (o->layer < 0 || o->layer > 65535) return am_fail(AM_EINVAL, "op: layer %d", o->layer);
    if (bad_shape(o->x)) return am_fail(AM_EINVAL, "op: input shape out of range");
    AM_TRY(op_scalars(o));
    const size_t X = numel(o->x), C2 = 2 * (size_t)o->x.c, dx = (o->flags & AM_OP_HAS_DX) ? X : 0;
    const int bias = (o->flags & AM_OP_BIAS) != 0;
    switch (o->kind) {
    case AM_OP_PUT: case AM_OP_GET: n[0] = X; *inputs = 1; return AM_OK;
    case AM_OP_CONV_FWD: case AM_OP_CONV_BWD: {
        const am_conv2d_cfg *c = &o->conv;
        if (bad_dim(c->out_c, 1, 65536) || bad_dim(c->kh, 1, 64) || bad_dim(c->kw, 1, 64) || bad_dim(c->sh, 1, 64) ||
            bad_dim(c->sw, 1, 64) || bad_dim(c->ph, 0, 64) || bad_dim(c->pw, 0, 64) || c->bias != bias)
            return am_fail(AM_EINVAL, "op: conv settings out of range");
        am_shape y;
        AM_TRY(am_conv2d_out_shape(c, o->x, &y));
        if (bad_shape(y)) return am_fail(AM_EINVAL, "op: conv output out of range");
        const size_t W = (size_t)c->out_c * o->x.c * c->kh * c->kw + (bias ? (size_t)c->out_c : 0);
        if (W > MAX_FLOATS) return am_fail(AM_EINVAL, "op: conv weights too large");
        if (o->kind == AM_OP_CONV_FWD) {
            n[0] = X, n[1] = W, n[2] = numel(y), *inputs = 2;
        } else {
            n[0] = X, n[1] = W, n[2] = numel(y), n[3] = dx, n[4] = W, *inputs = 3;
        }
        return AM_OK;
    }
    case AM_OP_BN_FWD: n[0] = X, n[1] = C2, n[2] = X, n[3] = C2, n[4] = C2, *inputs = 2; return AM_OK;
    case AM_OP_BN_BWD: n[0] = X, n[1] = C2, n[2] = C2, n[3] = X, n[4] = X, n[5] = C2, *inputs = 4; return AM_OK;
    case AM_OP_RELU_FWD: n[0] = X, n[1] = X, *inputs = 1; return AM_OK;
    case AM_OP_RELU_BWD: n[0] = X, n[1] = X, n[2] = X, *inputs = 2; return AM_OK;
    case AM_OP_POOL_FWD: case AM_OP_POOL_BWD: {
        AM_TRY(pool_shape(o));
        const size_t Y = numel(o->y), S = o->pool_kind == AM_POOL_MAX ? Y : 0;
        if (o->kind == AM_OP_POOL_FWD) n[0] = X, n[1] = Y, n[2] = S, *inputs = 1;
        else n[0] = X, n[1] = Y, n[2] = S, n[3] = Y, n[4] = X, *inputs = 4;
        return AM_OK;
    }
    case AM_OP_LINEAR_FWD: case AM_OP_LINEAR_BWD: {
        const size_t in = (size_t)o->x.c * o->x.h * o->x.w;
        if (bad_shape(o->y) || o->y.n != o->x.n || o->y.h != 1 || o->y.w != 1)
            return am_fail(AM_EINVAL, "op: linear output shape out of range");
        if ((size_t)o->y.c > MAX_FLOATS / in) return am_fail(AM_EINVAL, "op: linear weights too large");
        const size_t W = (size_t)o->y.c * in + (bias ? (size_t)o->y.c : 0), Y = numel(o->y);
        if (o->kind == AM_OP_LINEAR_FWD) n[0] = X, n[1] = W, n[2] = Y, *inputs = 2;
        else n[0] = X, n[1] = W, n[2] = Y, n[3] = dx, n[4] = W, *inputs = 3;
        return AM_OK;
    }
    case AM_OP_ADD: case AM_OP_MUL: n[0] = X, n[1] = X, n[2] = X, *inputs = 2; return AM_OK;
    case AM_OP_ACC: n[0] = X, n[1] = X, *inputs = 1; return AM_OK;
    case AM_OP_LOSS:
        if (o->x.h != 1 || o->x.w != 1 || o->x.c < 2) return am_fail(AM_EINVAL, "op: logits are not N x classes");
        n[0] = X, n[1] = (size_t)o->x.n, n[2] = 1, n[3] = X, *inputs = 2;
        return AM_OK;
    case AM_OP_SGD: n[0] = X, n[1] = X, n[2] = o->momentum > 0.f ? X : 0, *inputs = 1; return AM_OK;
    default: break;
    }
    return am_fail(AM_EINVAL, "op: unknown kind");
}
