/* gpu-only mode: the paper's GPU-only baseline. Every layer runs on the
 * accelerator as an op (boundary/backend.h, am_op), on buffers that stay
 * there: the batch and the labels go in (PUT), the loss comes out (GET),
 * and the weights live there from the mode's start, updated there by SGD.
 * No privacy at all: the host sees the data, the labels and the model.
 * The trusted side only drives, in the model's own order, with the same
 * buffer sharing (in-place ReLU, flatten) and the same gradient
 * accumulation as model.c; it fuses nothing (one op per layer). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/model_impl.h"

typedef struct gpu_layer {
    float *y, *dy;          /* the root's buffers (a flatten or in-place ReLU shares its input's) */
    float *w, *dw, *mom;    /* trainable parameters, concatenated; gradients; momentum */
    float *stats, *saved;   /* batchnorm running statistics; batch statistics or argmax */
    float *aux;             /* dropout mask, labels (last layer) */
    size_t nw, ns;          /* floats of parameters and of statistics */
} gpu_layer;

struct am_gpu {
    am_backend *be;
    gpu_layer *L;
    float *loss;
    int sgd_started, have_loss, training;
    uint32_t step;
    double blocked, busy0;
};

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static am_status run(am_model *m, am_op *o) {
    struct am_gpu *g = m->gpu;
    o->step = g->step;
    double t0 = mono();
    am_status st = g->be->vt->op(g->be, o);
    g->blocked += mono() - t0;
    if (st != AM_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", am_last_error());
        return am_fail(st, "gpu-only, layer %d (%s): %s", o->layer, am_op_name(o->kind), msg);
    }
    return AM_OK;
}

static am_status wait_all(am_model *m) {
    struct am_gpu *g = m->gpu;
    double t0 = mono();
    am_status st = g->be->vt->wait(g->be);
    g->blocked += mono() - t0;
    return st;
}

static am_op op_of(am_op_kind k, int li, am_shape x) {
    am_op o;
    memset(&o, 0, sizeof o);
    o.kind = k, o.layer = li, o.x = x;
    return o;
}

static am_status move(am_model *m, am_op_kind k, int li, float *b, size_t n, am_cross_kind tag) {
    am_op o = op_of(k, li, am_shape4(1, (int)n, 1, 1));
    o.b[0] = b;
    o.tag = tag;
    return run(m, &o);
}

static am_status buf(struct am_gpu *g, int li, am_buf_role role, size_t n, float **out) {
    return g->be->vt->buffer(g->be, li, role, n ? n : 1, out);
}

/* The layer whose buffers layer i shares on the accelerator: a flatten's
 * and an in-place ReLU's input's. An add keeps its own there: the ReLU and
 * max-pool backward ops read their outputs (cuDNN's too), which a sum
 * written over them would change. */
static int root_of(const am_model *m, int i) {
    while (i > 0 && m->L[i].alias_y && m->L[i].kind != K_ADD) i = m->L[i].in[0];
    return i;
}

/* The layer's parameters into its buffers (trainable ones, then the
 * running statistics), and to the accelerator. */
static am_status put_params(am_model *m, int i) {
    struct am_gpu *g = m->gpu;
    gpu_layer *q = &g->L[i];
    const layer *l = &m->L[i];
    size_t nw = 0, ns = 0;
    for (int j = l->param0; j < l->param0 + l->nparam; j++) *(m->P[j].trainable ? &nw : &ns) += m->P[j].numel;
    q->nw = nw, q->ns = ns;
    if (nw) {
        AM_TRY(buf(g, i, AM_BUF_WEIGHT, nw, &q->w));
        AM_TRY(buf(g, i, AM_BUF_DW, nw, &q->dw));
    }
    if (ns) AM_TRY(buf(g, i, AM_BUF_STATS, ns, &q->stats));
    size_t ow = 0, os = 0;
    for (int j = l->param0; j < l->param0 + l->nparam; j++) {
        const am_param *p = &m->P[j];
        float *dst = p->trainable ? q->w + ow : q->stats + os;
        memcpy(dst, p->data, p->numel * sizeof(float));
        *(p->trainable ? &ow : &os) += p->numel;
    }
    if (nw) AM_TRY(move(m, AM_OP_PUT, i, q->w, nw, AM_CROSS_WEIGHTS));
    if (ns) AM_TRY(move(m, AM_OP_PUT, i, q->stats, ns, AM_CROSS_STATE));
    return AM_OK;
}

static am_status attach_layer(am_model *m, int i) {
    struct am_gpu *g = m->gpu;
    gpu_layer *q = &g->L[i];
    const layer *l = &m->L[i];
    const int r = root_of(m, i);
    const size_t Y = am_shape_numel(l->y.s);
    if (r != i) {
        q->y = g->L[r].y, q->dy = g->L[r].dy;
    } else {
        AM_TRY(buf(g, i, AM_BUF_OUTPUT, Y, &q->y));
        if (i > 0) AM_TRY(buf(g, i, AM_BUF_GRAD, Y, &q->dy));
    }
    if (i == 0) return AM_OK;
    if (l->kind == K_BN) AM_TRY(buf(g, i, AM_BUF_SAVED, 2 * (size_t)l->y.s.c, &q->saved));
    if (l->kind == K_MAXPOOL) AM_TRY(buf(g, i, AM_BUF_SAVED, Y, &q->saved));
    if (l->kind == K_DROPOUT) AM_TRY(buf(g, i, AM_BUF_AUX, Y, &q->aux));
    if (i == m->n - 1) {
        AM_TRY(buf(g, i, AM_BUF_AUX, (size_t)m->B, &q->aux));
        AM_TRY(buf(g, i, AM_BUF_LOSS, 1, &g->loss));
    }
    return put_params(m, i);
}

am_status am_gpu_attach(am_model *m, am_backend *be) {
    if (!be || !be->vt->op)
        return am_fail(AM_EINVAL, "gpu-only mode needs an accelerator that runs every layer (%s runs convs only)",
                       be ? be->vt->name : "none given");
    struct am_gpu *g = calloc(1, sizeof *g);
    if (!g) return am_fail(AM_ENOMEM, "out of memory");
    g->L = calloc((size_t)m->n, sizeof *g->L);
    g->be = be;
    g->busy0 = be->vt->busy_seconds(be);
    m->gpu = g;
    am_status st = g->L ? AM_OK : am_fail(AM_ENOMEM, "out of memory");
    for (int i = 0; i < m->n && st == AM_OK; i++) st = attach_layer(m, i);
    if (st == AM_OK) st = wait_all(m);
    if (st != AM_OK) {
        am_gpu_free(g);
        m->gpu = NULL;
    }
    return st;
}

void am_gpu_free(struct am_gpu *g) {
    if (!g) return;
    free(g->L);
    free(g);
}

void am_gpu_set_step(struct am_gpu *g, uint64_t step) { g->step = (uint32_t)step; }
double am_gpu_blocked_seconds(const struct am_gpu *g) { return g->blocked; }
double am_gpu_accel_seconds(const struct am_gpu *g) { return g->be->vt->busy_seconds(g->be) - g->busy0; }

/* ------------------------------------------------------------ forward */

/* The logits into the model's own tensor (am_model_logits), once every op
 * queued so far has run. */
static am_status get_logits(am_model *m) {
    const int last = m->n - 1;
    const size_t n = am_shape_numel(m->L[last].y.s);
    AM_TRY(move(m, AM_OP_GET, last, m->gpu->L[last].y, n, AM_CROSS_STATE));
    AM_TRY(wait_all(m));
    memcpy(m->L[last].y.d, m->gpu->L[last].y, n * sizeof(float));
    return AM_OK;
}

static am_status fwd(am_model *m, int i, int training, am_rng *rng) {
    struct am_gpu *g = m->gpu;
    const layer *l = &m->L[i];
    gpu_layer *q = &g->L[i], *in = &g->L[l->in[0]];
    const am_shape xs = m->L[l->in[0]].y.s;
    am_op o = op_of(AM_OP_PUT, i, xs);
    switch (l->kind) {
    case K_CONV:
        o.kind = AM_OP_CONV_FWD, o.conv = l->conv, o.flags = l->conv.bias ? AM_OP_BIAS : 0;
        o.b[0] = in->y, o.b[1] = q->w, o.b[2] = q->y;
        break;
    case K_BN:
        o.kind = AM_OP_BN_FWD, o.eps = l->bn.eps, o.bn_momentum = l->bn.momentum;
        o.flags = training ? AM_OP_TRAINING : 0;
        o.b[0] = in->y, o.b[1] = q->w, o.b[2] = q->y, o.b[3] = q->stats, o.b[4] = q->saved;
        break;
    case K_RELU: o.kind = AM_OP_RELU_FWD, o.b[0] = in->y, o.b[1] = q->y; break;
    case K_MAXPOOL: case K_AVGPOOL: case K_ADAPTIVE:
        o.kind = AM_OP_POOL_FWD, o.pool = l->pool, o.y = l->y.s;
        o.pool_kind = l->kind == K_MAXPOOL ? AM_POOL_MAX : l->kind == K_AVGPOOL ? AM_POOL_AVG : AM_POOL_ADAPTIVE;
        o.b[0] = in->y, o.b[1] = q->y, o.b[2] = q->saved;
        break;
    case K_LINEAR:
        o.kind = AM_OP_LINEAR_FWD, o.y = l->y.s, o.flags = l->lin_bias ? AM_OP_BIAS : 0;
        o.b[0] = in->y, o.b[1] = q->w, o.b[2] = q->y;
        break;
    case K_DROPOUT: {
        const size_t n = am_shape_numel(l->y.s);
        if (!training || l->p == 0.f) {
            o.kind = AM_OP_ACC, o.b[0] = in->y, o.b[1] = q->y;
            break;
        }
        if (!rng) return am_fail(AM_EINVAL, "dropout in training needs an RNG");
        AM_TRY(am_dropout_mask(l->p, rng, q->aux, n));
        AM_TRY(move(m, AM_OP_PUT, i, q->aux, n, AM_CROSS_STATE));
        o.kind = AM_OP_MUL, o.b[0] = in->y, o.b[1] = q->aux, o.b[2] = q->y;
        break;
    }
    case K_ADD: o.kind = AM_OP_ADD, o.b[0] = in->y, o.b[1] = g->L[l->in[1]].y, o.b[2] = q->y; break;
    default: return AM_OK; /* input, flatten */
    }
    return run(m, &o);
}

am_status am_gpu_forward(am_model *m, const am_tensor *x, int training, am_rng *rng) {
    struct am_gpu *g = m->gpu;
    const size_t n = am_shape_numel(x->s);
    memcpy(g->L[0].y, x->d, n * sizeof(float));
    am_op o = op_of(AM_OP_PUT, 0, x->s);
    o.b[0] = g->L[0].y, o.tag = AM_CROSS_ACTIVATION;
    AM_TRY(run(m, &o));
    g->have_loss = 0;
    g->training = training;
    for (int i = 1; i < m->n; i++) AM_TRY(fwd(m, i, training, rng));
    /* Inference: the logits come out, and the pass is over when they have;
     * in training the loss comes out next. */
    return training ? AM_OK : get_logits(m);
}

am_status am_gpu_loss(am_model *m, const int32_t *labels, float *loss) {
    struct am_gpu *g = m->gpu;
    const int last = m->n - 1;
    gpu_layer *q = &g->L[last];
    const int K = m->L[last].y.s.c;
    for (int b = 0; b < m->B; b++)
        if (labels[b] < 0 || labels[b] >= K) return am_fail(AM_EINVAL, "label %d out of range [0, %d)", labels[b], K);
    memcpy(q->aux, labels, sizeof(int32_t) * (size_t)m->B);
    AM_TRY(move(m, AM_OP_PUT, last, q->aux, (size_t)m->B, AM_CROSS_LABELS));
    am_op o = op_of(AM_OP_LOSS, last, m->L[last].y.s);
    o.b[0] = q->y, o.b[1] = q->aux, o.b[2] = g->loss, o.b[3] = q->dy;
    AM_TRY(run(m, &o));
    AM_TRY(move(m, AM_OP_GET, last, g->loss, 1, AM_CROSS_STATE));
    AM_TRY(wait_all(m));
    *loss = g->loss[0];
    if (!isfinite(*loss)) return am_fail(AM_ENUM, "gpu-only: the loss is not finite");
    g->have_loss = 1;
    return AM_OK;
}

/* ------------------------------------------------------------ backward */

/* Layer i's backward: its input's gradient (=, or += when acc) and its
 * parameters' gradients. */
static am_status bwd(am_model *m, int i, int acc) {
    struct am_gpu *g = m->gpu;
    const layer *l = &m->L[i];
    gpu_layer *q = &g->L[i], *in = &g->L[l->in[0]];
    const am_shape xs = m->L[l->in[0]].y.s;
    const int has_dx = l->in[0] != 0;
    float *dx = has_dx ? in->dy : NULL;
    am_op o = op_of(AM_OP_PUT, i, xs);
    o.flags = (has_dx ? AM_OP_HAS_DX : 0) | (acc ? AM_OP_ACCUM : 0);
    switch (l->kind) {
    case K_CONV:
        o.kind = AM_OP_CONV_BWD, o.conv = l->conv, o.flags |= l->conv.bias ? AM_OP_BIAS : 0;
        o.b[0] = in->y, o.b[1] = q->w, o.b[2] = q->dy, o.b[3] = dx, o.b[4] = q->dw;
        return run(m, &o);
    case K_BN:
        o.kind = AM_OP_BN_BWD, o.eps = l->bn.eps, o.bn_momentum = l->bn.momentum;
        o.flags = (acc ? AM_OP_ACCUM : 0) | (g->training ? AM_OP_TRAINING : 0);
        if (!has_dx) return am_fail(AM_EINVAL, "gpu-only: a batchnorm on the input image");
        o.b[0] = in->y, o.b[1] = q->w, o.b[2] = q->saved, o.b[3] = q->dy, o.b[4] = dx, o.b[5] = q->dw;
        return run(m, &o);
    case K_LINEAR:
        o.kind = AM_OP_LINEAR_BWD, o.y = l->y.s, o.flags |= l->lin_bias ? AM_OP_BIAS : 0;
        o.b[0] = in->y, o.b[1] = q->w, o.b[2] = q->dy, o.b[3] = dx, o.b[4] = q->dw;
        return run(m, &o);
    case K_FLATTEN: return AM_OK;
    default: break;
    }
    if (!has_dx) return AM_OK;
    o.flags = acc ? AM_OP_ACCUM : 0;
    switch (l->kind) {
    case K_RELU: o.kind = AM_OP_RELU_BWD, o.b[0] = q->y, o.b[1] = q->dy, o.b[2] = dx; break;
    case K_MAXPOOL: case K_AVGPOOL: case K_ADAPTIVE:
        o.kind = AM_OP_POOL_BWD, o.pool = l->pool, o.y = l->y.s;
        o.pool_kind = l->kind == K_MAXPOOL ? AM_POOL_MAX : l->kind == K_AVGPOOL ? AM_POOL_AVG : AM_POOL_ADAPTIVE;
        o.b[0] = in->y, o.b[1] = q->y, o.b[2] = q->saved, o.b[3] = q->dy, o.b[4] = dx;
        break;
    case K_DROPOUT:
        if (!g->training || l->p == 0.f) o.kind = AM_OP_ACC, o.b[0] = q->dy, o.b[1] = dx;
        else o.kind = AM_OP_MUL, o.b[0] = q->dy, o.b[1] = q->aux, o.b[2] = dx;
        break;
    case K_ADD: o.kind = AM_OP_ACC, o.b[0] = q->dy, o.b[1] = dx; break;
    default: return AM_OK;
    }
    return run(m, &o);
}

/* The second input of an add: its gradient too. */
static am_status bwd_add_b(am_model *m, int i, char *written) {
    const layer *l = &m->L[i];
    const int b = l->in[1];
    if (l->kind != K_ADD || b == 0) return AM_OK;
    am_op o = op_of(AM_OP_ACC, i, l->y.s);
    o.flags = written[b] ? AM_OP_ACCUM : 0;
    written[b] = 1;
    o.b[0] = m->gpu->L[i].dy, o.b[1] = m->gpu->L[b].dy;
    return run(m, &o);
}

am_status am_gpu_backward(am_model *m) {
    struct am_gpu *g = m->gpu;
    if (!g->have_loss) return am_fail(AM_EINVAL, "model: backward needs a forward pass and a loss");
    char written[MAX_LAYERS];
    memset(written, 0, (size_t)m->n);
    written[m->n - 1] = 1;
    for (int i = m->n - 1; i >= 1; i--) {
        gpu_layer *q = &g->L[i];
        if (!written[i]) {
            /* A layer the loss does not depend on: its parameters get zero. */
            if (q->nw) {
                memset(q->dw, 0, q->nw * sizeof(float));
                AM_TRY(move(m, AM_OP_PUT, i, q->dw, q->nw, AM_CROSS_STATE));
            }
            continue;
        }
        const int src = m->L[i].in[0], acc = written[src];
        if (src != 0) written[src] = 1;
        AM_TRY(bwd(m, i, acc));
        AM_TRY(bwd_add_b(m, i, written));
    }
    return AM_OK;
}

/* ------------------------------------------------------------ SGD, sync */

am_status am_gpu_sgd(am_model *m, const am_sgd_cfg *c, float lr) {
    struct am_gpu *g = m->gpu;
    if (!(lr >= 0.f) || !isfinite(lr)) return am_fail(AM_EINVAL, "sgd: learning rate %g", (double)lr);
    for (int i = 1; i < m->n; i++) {
        gpu_layer *q = &g->L[i];
        if (!q->nw) continue;
        if (c->momentum > 0.f && !q->mom) AM_TRY(buf(g, i, AM_BUF_MOMENTUM, q->nw, &q->mom));
        am_op o = op_of(AM_OP_SGD, i, am_shape4(1, (int)q->nw, 1, 1));
        o.lr = lr, o.momentum = c->momentum, o.dampening = c->dampening, o.decay = c->weight_decay;
        o.flags = (c->nesterov ? AM_OP_NESTEROV : 0) | (g->sgd_started ? AM_OP_STARTED : 0);
        o.b[0] = q->dw, o.b[1] = q->w, o.b[2] = c->momentum > 0.f ? q->mom : NULL;
        AM_TRY(run(m, &o));
    }
    g->sgd_started = 1;
    return wait_all(m); /* the step is over when its update is */
}

am_status am_gpu_sync(am_model *m) {
    struct am_gpu *g = m->gpu;
    for (int i = 1; i < m->n; i++) {
        gpu_layer *q = &g->L[i];
        if (q->nw) {
            AM_TRY(move(m, AM_OP_GET, i, q->w, q->nw, AM_CROSS_STATE));
            AM_TRY(move(m, AM_OP_GET, i, q->dw, q->nw, AM_CROSS_STATE));
        }
        if (q->ns) AM_TRY(move(m, AM_OP_GET, i, q->stats, q->ns, AM_CROSS_STATE));
    }
    AM_TRY(get_logits(m)); /* waits for the GETs above too */
    /* What comes back is the host's: refuse what no training could give. */
    for (int i = 1; i < m->n; i++) {
        const gpu_layer *q = &g->L[i];
        for (size_t k = 0; k < q->nw; k++)
            if (!isfinite(q->w[k]) || !isfinite(q->dw[k])) return am_fail(AM_ENUM, "gpu-only: layer %d's weights came back not finite", i);
        for (size_t k = 0; k < q->ns; k++)
            if (!isfinite(q->stats[k])) return am_fail(AM_ENUM, "gpu-only: layer %d's statistics came back not finite", i);
    }
    for (int i = 1; i < m->n; i++) {
        const gpu_layer *q = &g->L[i];
        const layer *l = &m->L[i];
        size_t ow = 0, os = 0;
        for (int j = l->param0; j < l->param0 + l->nparam; j++) {
            am_param *p = &m->P[j];
            if (p->trainable) {
                memcpy(p->data, q->w + ow, p->numel * sizeof(float));
                memcpy(p->grad, q->dw + ow, p->numel * sizeof(float));
                ow += p->numel;
            } else {
                memcpy(p->data, q->stats + os, p->numel * sizeof(float));
                os += p->numel;
            }
        }
    }
    return AM_OK;
}
