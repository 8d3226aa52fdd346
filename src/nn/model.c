/* The model: parse a layer description into a graph, size its buffers for a
 * batch in one arena, and run forward and backward over it.
 *
 * The graph is a list of layers in description order, which is a topological
 * order (a layer may only read earlier ones). The backward pass walks it in
 * reverse; when a layer's output is read by several layers, the first
 * gradient written to it overwrites and the rest add.
 * Three layers share memory with their input instead of copying: flatten
 * (output and gradient are views), a ReLU whose input is read by nothing
 * else (in place, as torchvision's ReLU(inplace=True)), and a residual add
 * whose first input is read by nothing else (the sum written over it; the
 * two share one gradient, which then needs no copy). */
#include "nn/model_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const kind_names[] = {"input", "conv", "bn", "relu", "maxpool", "avgpool",
                                         "adaptiveavg", "linear", "dropout", "flatten", "add"};

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static am_prof_kind prof_kind(const am_model *m, int i) {
    const layer *l = &m->L[i];
    switch (l->kind) {
    case K_CONV:
        if (l->in[0] == 0) return AM_PROF_FIRST_CONV;
        return m->asym && am_asym_handles(m->asym, i) ? AM_PROF_SPLIT_CONV : AM_PROF_WHOLE_CONV;
    case K_BN: return AM_PROF_BN;
    case K_RELU: return AM_PROF_RELU;
    case K_MAXPOOL:
    case K_AVGPOOL:
    case K_ADAPTIVE: return AM_PROF_POOL;
    case K_LINEAR: return AM_PROF_LINEAR;
    default: return AM_PROF_OTHER;
    }
}

/* Charges the time since *t0, less the accelerator's share of it, to kind k. */
static void prof_add(am_model *m, am_prof_kind k, double *t0, double *a0) {
    double t = mono_s(), a = m->asym ? am_asym_blocked_seconds(m->asym) : 0;
    m->prof[k] += (t - *t0) - (a - *a0);
    *t0 = t;
    *a0 = a;
}

/* The one layer that reads layer i, or 0. */
static int sole_reader(const am_model *m, int i) {
    if (m->L[i].consumers != 1) return 0;
    for (int j = i + 1; j < m->n; j++)
        for (int k = 0; k < m->L[j].n_in; k++)
            if (m->L[j].in[k] == i) return j;
    return 0;
}

/* Which batchnorms run the ReLU (in place) and max-pool after them, which
 * in-place adds run the ReLU after them, and which convs hand their
 * batchnorm the moments of what they wrote. */
static void plan_fusion(am_model *m) {
    for (int i = 1; i < m->n; i++) {
        layer *l = &m->L[i];
        if (l->kind == K_ADD && l->alias_y) {
            int r = sole_reader(m, i);
            if (r && m->L[r].kind == K_RELU && m->L[r].alias_y) l->act_relu = r, m->L[r].fused_into = i;
            continue;
        }
        if (l->kind == K_CONV || l->kind == K_LINEAR) {
            int r = sole_reader(m, i);
            if (r && m->L[r].kind == K_RELU && m->L[r].alias_y) l->out_relu = r;
        }
        if (l->kind != K_BN) continue;
        if (l->in[0] != 0 && m->L[l->in[0]].kind == K_CONV && sole_reader(m, l->in[0]) == i) m->L[l->in[0]].stats_to = i;
        int r = sole_reader(m, i);
        if (!r || m->L[r].kind != K_RELU || !m->L[r].alias_y) continue;
        l->act_relu = r;
        m->L[r].fused_into = i;
        int q = sole_reader(m, r);
        if (!q || m->L[q].kind != K_MAXPOOL) continue;
        l->act_pool = q;
        m->L[q].fused_into = i;
    }
}

am_status am_model_create(const char *desc, am_model **out) {
    *out = NULL;
    if (!desc) return am_fail(AM_EINVAL, "model: NULL description");
    am_model *m = calloc(1, sizeof *m);
    if (!m) return am_fail(AM_ENOMEM, "out of memory");
    m->L = calloc(MAX_LAYERS, sizeof(layer));
    if (!m->L) {
        free(m);
        return am_fail(AM_ENOMEM, "out of memory");
    }
    am_status st = am_model_parse(m, desc);
    if (st == AM_OK && m->n < 2) st = am_fail(AM_EINVAL, "model: needs an input and at least one layer");
    if (st == AM_OK) {
        am_shape o = m->L[m->n - 1].os;
        if (o.h != 1 || o.w != 1)
            st = am_fail(AM_EINVAL, "model: the last layer gives %dx%dx%d, not [classes, 1, 1]", o.c, o.h, o.w);
    }
    if (st == AM_OK) {
        /* Consumers, and the in-place decisions that depend on them. */
        for (int i = 1; i < m->n; i++)
            for (int j = 0; j < m->L[i].n_in; j++) m->L[m->L[i].in[j]].consumers++;
        for (int i = 1; i < m->n; i++) {
            layer *l = &m->L[i];
            layer *src = &m->L[l->in[0]];
            if (l->kind == K_FLATTEN) {
                if (src->consumers != 1 || l->in[0] == 0) {
                    st = am_fail(AM_EINVAL, "model: flatten of layer %d, which another layer also reads", l->in[0]);
                    break;
                }
                l->alias_y = 1;
            }
            if ((l->kind == K_RELU || l->kind == K_ADD) && src->consumers == 1 && l->in[0] != 0) l->alias_y = 1;
        }
    }
    if (st == AM_OK) plan_fusion(m);
    if (st == AM_OK) {
        m->wdata = am_aligned_alloc(m->n_train * sizeof(float));
        m->gdata = am_aligned_alloc(m->n_train * sizeof(float));
        m->bdata = am_aligned_alloc((m->n_buf ? m->n_buf : 1) * sizeof(float));
        if (!m->wdata || !m->gdata || !m->bdata) st = am_fail(AM_ENOMEM, "cannot allocate parameters");
    }
    if (st != AM_OK) {
        am_model_free(m);
        return st;
    }
    for (int i = 0; i < m->np; i++) {
        am_param *p = &m->P[i];
        size_t off = (size_t)(uintptr_t)p->data;
        p->data = (p->trainable ? m->wdata : m->bdata) + off;
        p->grad = p->trainable ? m->gdata + off : NULL;
        if (p->kind == AM_P_RUNNING_VAR || p->kind == AM_P_BN_WEIGHT)
            for (size_t j = 0; j < p->numel; j++) p->data[j] = 1.f;
    }
    *out = m;
    return AM_OK;
}

void am_model_free(am_model *m) {
    if (!m) return;
    am_arena_free(&m->arena);
    am_asym_free(m->asym);
    am_gpu_free(m->gpu);
    free(m->tmp);
    free(m->tmp_sz);
    free(m->slot_base);
    am_aligned_free(m->wdata);
    am_aligned_free(m->gdata);
    am_aligned_free(m->bdata);
    free(m->P);
    free(m->L);
    free(m->desc);
    free(m);
}

const char *am_model_desc(const am_model *m) { return m->desc; }
am_shape am_model_input_shape(const am_model *m) { return m->L[0].os; }
int am_model_num_classes(const am_model *m) { return m->L[m->n - 1].os.c; }
int am_model_num_params(const am_model *m) { return m->np; }
am_param *am_model_param(am_model *m, int i) { return (i >= 0 && i < m->np) ? &m->P[i] : NULL; }
float *am_model_weights(am_model *m) { return m->wdata; }
size_t am_model_weights_len(const am_model *m) { return m->n_train; }
float *am_model_buffers(am_model *m) { return m->bdata; }
size_t am_model_buffers_len(const am_model *m) { return m->n_buf; }
float *am_model_grads(am_model *m) { return m->gdata; }
int am_model_num_layers(const am_model *m) { return m->n; }
size_t am_model_arena_bytes(const am_model *m) { return m->arena.cap; }

size_t am_model_trainable_count(const am_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->np; i++)
        if (m->P[i].trainable) n += m->P[i].numel;
    return n;
}

am_status am_model_layer_info(const am_model *m, int i, am_layer_info *info) {
    if (i < 0 || i >= m->n) return am_fail(AM_EINVAL, "layer %d out of range", i);
    const layer *l = &m->L[i];
    info->kind = kind_names[l->kind];
    info->name = l->name;
    info->n_in = l->n_in;
    info->in[0] = l->in[0];
    info->in[1] = l->in[1];
    info->out = l->os;
    info->params = 0;
    for (int j = l->param0; j < l->param0 + l->nparam; j++)
        if (m->P[j].trainable) info->params += m->P[j].numel;
    double out = (double)am_shape_numel(l->os);
    am_shape xs = i ? m->L[l->in[0]].os : l->os;
    switch (l->kind) {
    case K_CONV: info->flops = out * (2.0 * xs.c * l->conv.kh * l->conv.kw + l->conv.bias); break;
    case K_LINEAR: info->flops = out * (2.0 * xs.c * xs.h * xs.w + l->lin_bias); break;
    case K_BN: info->flops = 2.0 * out; break;
    case K_MAXPOOL: case K_AVGPOOL: info->flops = out * l->pool.kh * l->pool.kw; break;
    case K_ADAPTIVE: info->flops = (double)am_shape_numel(xs); break;
    case K_RELU: case K_ADD: case K_DROPOUT: info->flops = out; break;
    default: info->flops = 0;
    }
    return AM_OK;
}

/* ------------------------------------------------------------ init */

am_status am_model_init(am_model *m, uint64_t seed) {
    am_rng r;
    am_rng_seed(&r, seed);
    for (int i = 0; i < m->np; i++) {
        am_param *p = &m->P[i];
        const layer *l = &m->L[p->layer];
        switch (p->kind) {
        case AM_P_WEIGHT:
            if (l->kind == K_CONV) {
                double fan_out = (double)p->shape.n * p->shape.h * p->shape.w;
                float sd = (float)sqrt(2.0 / fan_out);
                for (size_t j = 0; j < p->numel; j++) p->data[j] = sd * am_rng_normal(&r);
            } else {
                float b = 1.f / sqrtf((float)p->shape.c);
                for (size_t j = 0; j < p->numel; j++) p->data[j] = b * (2.f * am_rng_uniform(&r) - 1.f);
            }
            break;
        case AM_P_BIAS:
            if (l->kind == K_LINEAR) {
                float b = 1.f / sqrtf((float)m->P[i - 1].shape.c);
                for (size_t j = 0; j < p->numel; j++) p->data[j] = b * (2.f * am_rng_uniform(&r) - 1.f);
            } else {
                memset(p->data, 0, p->numel * sizeof(float));
            }
            break;
        case AM_P_BN_WEIGHT: case AM_P_RUNNING_VAR:
            for (size_t j = 0; j < p->numel; j++) p->data[j] = 1.f;
            break;
        case AM_P_BN_BIAS: case AM_P_RUNNING_MEAN:
            memset(p->data, 0, p->numel * sizeof(float));
            break;
        }
    }
    return AM_OK;
}

/* ------------------------------------------------------------ buffers */

/* What batchnorm i runs after itself. */
static am_bn_act fusion_of(const am_model *m, int i) {
    const layer *l = &m->L[i];
    return (am_bn_act){l->act_relu != 0, l->act_pool ? &m->L[l->act_pool].pool : NULL};
}

static float *pdat(am_model *m, const layer *l, int j) { return m->P[l->param0 + j].data; }
static float *pgrad(am_model *m, const layer *l, int j) { return m->P[l->param0 + j].grad; }

/* Two passes over the same code: the first (a->base == NULL) only counts. */
static void *take(am_arena *a, size_t bytes, size_t *need) {
    *need += am_align_up(bytes);
    return a->base ? am_arena_take(a, bytes) : NULL;
}

/* Best fit among the free slots: the smallest that holds bytes, else the
 * largest (which then grows); a new slot when none is free. Slot k is free
 * when mark[k] > limit (above) or mark[k] < limit (!above). */
static int fit_slot(size_t *size, int *nslots, const int *mark, int limit, int above, size_t bytes) {
    int best = -1;
    for (int k = 0; k < *nslots; k++) {
        if (above ? mark[k] <= limit : mark[k] >= limit) continue;
        if (best < 0 || (size[k] >= bytes ? (size[best] < bytes || size[k] < size[best])
                                          : (size[best] < bytes && size[k] > size[best])))
            best = k;
    }
    if (best < 0) {
        best = (*nslots)++;
        size[best] = 0;
    }
    if (size[best] < bytes) size[best] = bytes;
    return best;
}

/* Gradient buffers are shared. The gradient of layer i (with the views that
 * share it: flatten, in-place ReLU) is live from the backward pass of its last
 * reader down to its own; layers whose lives do not overlap take the same
 * slot, which is as large as the largest of them. In a chain that is two
 * buffers instead of one per layer. */
static void plan_grads(am_model *m, size_t *need) {
    int n = m->n;
    int *root = m->tmp, *end = m->tmp + n, *slot_of = m->tmp + 2 * n, *slot_start = m->tmp + 3 * n;
    size_t *slot_size = m->tmp_sz;
    for (int i = 0; i < n; i++) {
        root[i] = m->L[i].alias_y ? root[m->L[i].in[0]] : i;
        end[i] = i;
    }
    for (int i = 1; i < n; i++)
        for (int j = 0; j < m->L[i].n_in; j++) {
            int r = root[m->L[i].in[j]];
            if (end[r] < i) end[r] = i;
        }
    if (end[root[n - 1]] < n) end[root[n - 1]] = n; /* written by the loss */
    int nslots = 0;
    /* Latest-live first (largest end): a slot is free for [i, e] when its
     * last occupant starts above e. */
    for (int e = n; e >= 1; e--)
        for (int i = 1; i < n; i++) {
            if (root[i] != i || end[i] != e) continue;
            size_t bytes = am_shape_numel(m->L[i].y.s) * sizeof(float);
            int best = fit_slot(slot_size, &nslots, slot_start, e, 1, bytes);
            slot_start[best] = m->L[i].fused_into ? m->L[i].fused_into : i; /* a fused pool's, read by its batchnorm */
            slot_of[i] = best;
        }
    for (int k = 0; k < nslots; k++) m->slot_base[k] = take(&m->arena, slot_size[k], need);
    for (int i = 1; i < n; i++) m->L[i].dy.d = m->slot_base[slot_of[root[i]]];
}

/* Whether layer j's backward pass reads its input's values. */
static int reads_input_backward(const am_model *m, int j) {
    switch (m->L[j].kind) {
    case K_CONV: return m->asym && am_asym_handles(m->asym, j) ? am_asym_needs_input(m->asym, j) : 1;
    case K_BN:
    case K_LINEAR: return 1;
    default: return 0; /* ReLU keeps bits, max-pool its argmax, dropout its mask */
    }
}

/* Activation buffers. An output that some backward pass reads (or the
 * logits, which the loss reads) has its own buffer for the whole step; the
 * others live only from their layer's forward to their last reader's, and
 * share slots as gradients do: a split conv's input, which its backward does
 * not need (V and the residual stand in for it), no longer stays in the TEE
 * for the backward pass. */
static void plan_outputs(am_model *m, int B, size_t *need) {
    int n = m->n;
    int *root = m->tmp, *end = m->tmp + n, *slot_of = m->tmp + 2 * n, *slot_end = m->tmp + 3 * n;
    size_t *slot_size = m->tmp_sz;
    char keep[MAX_LAYERS];
    for (int i = 0; i < n; i++) {
        root[i] = m->L[i].alias_y ? root[m->L[i].in[0]] : i;
        end[i] = i;
        keep[i] = m->keep_all || i == n - 1;
    }
    for (int j = 1; j < n; j++)
        for (int k = 0; k < m->L[j].n_in; k++) {
            int r = root[m->L[j].in[k]];
            if (end[r] < j) end[r] = j;
            if (reads_input_backward(m, j)) keep[r] = 1;
        }
    keep[root[n - 1]] = 1;
    int nslots = 0;
    for (int i = 1; i < n; i++) {
        layer *l = &m->L[i];
        if (root[i] != i) continue;
        am_shape s = l->os;
        s.n = B;
        size_t bytes = am_shape_numel(s) * sizeof(float);
        if (keep[i]) {
            l->y.d = take(&m->arena, bytes, need);
            continue;
        }
        /* Layers come in forward order: a slot whose last reader ran before
         * this layer is free. */
        /* A fused max-pool writes its output when its batchnorm runs. */
        int best = fit_slot(slot_size, &nslots, slot_end, l->fused_into ? l->fused_into : i, 0, bytes);
        slot_end[best] = end[i];
        slot_of[i] = best;
        l->y.d = NULL;
    }
    for (int k = 0; k < nslots; k++) m->slot_base[k] = take(&m->arena, slot_size[k], need);
    for (int i = 1; i < n; i++) {
        layer *l = &m->L[i];
        if (root[i] == i && !keep[i]) l->y.d = m->slot_base[slot_of[i]];
    }
    for (int i = 1; i < n; i++)
        if (root[i] != i) m->L[i].y.d = m->L[root[i]].y.d;
}

static void lay_out(am_model *m, int B, size_t *need) {
    am_arena *a = &m->arena;
    *need = 0;
    size_t wn = 0;
    for (int i = 0; i < m->n; i++) {
        layer *l = &m->L[i];
        am_shape s = l->os;
        s.n = B;
        size_t bytes = am_shape_numel(s) * sizeof(float);
        l->y.s = l->dy.s = s;
        if (i == 0) {
            l->y.d = l->dy.d = NULL; /* the caller's batch; no gradient */
            continue;
        }
        l->save_mean = l->save_invstd = l->mask = NULL;
        l->argmax = NULL;
        l->bits = NULL;
        l->moments = NULL;
        if (l->kind == K_BN) {
            l->save_mean = take(a, sizeof(float) * (size_t)s.c, need);
            l->save_invstd = take(a, sizeof(float) * (size_t)s.c, need);
            if (m->L[l->in[0]].stats_to == i) l->moments = take(a, sizeof(double) * 2 * (size_t)B * s.c, need);
        } else if (l->kind == K_MAXPOOL) {
            l->argmax = take(a, am_shape_numel(s) * sizeof(int32_t), need);
        } else if (l->kind == K_DROPOUT) {
            l->mask = take(a, bytes, need);
        } else if (l->kind == K_RELU) {
            size_t words = (am_shape_numel(s) + 31) / 32;
            if (l->fused_into && m->L[l->fused_into].kind == K_BN) {
                am_bn_act act = fusion_of(m, l->fused_into);
                words = am_bn_act_bits_words(&act, s);
            }
            l->bits = take(a, sizeof(uint32_t) * words, need);
        } else if (l->kind == K_CONV) {
            am_shape xs = m->L[l->in[0]].os;
            xs.n = B;
            size_t w = am_conv2d_workspace_fast(&l->conv, xs);
            if (w > wn) wn = w;
        }
    }
    plan_outputs(m, B, need);
    plan_grads(m, need);
    int K = am_model_num_classes(m);
    m->probs = take(a, sizeof(float) * (size_t)B * K, need);
    m->labels = take(a, sizeof(int32_t) * (size_t)B, need);
    m->work = take(a, sizeof(float) * (wn ? wn : 1), need);
    m->work_n = wn;
}

/* Lays the arena out again for the current batch (after the split plan or
 * the keep-outputs setting changed). */
am_status am_model_relayout(am_model *m) {
    if (!m->B) return AM_OK;
    int B = m->B;
    am_arena_free(&m->arena);
    m->have_loss = 0;
    size_t need;
    lay_out(m, B, &need);
    AM_TRY(am_arena_init(&m->arena, need));
    lay_out(m, B, &need);
    return AM_OK;
}

am_status am_model_keep_outputs(am_model *m, int on) {
    m->keep_all = on != 0;
    return am_model_relayout(m);
}

am_status am_model_set_batch(am_model *m, int B) {
    if (B < 1 || B > (1 << 20)) return am_fail(AM_EINVAL, "batch size %d out of range", B);
    for (int i = 0; i < m->n; i++) {
        am_shape s = m->L[i].os;
        s.n = B;
        AM_TRY(am_shape_check(s));
    }
    if (B == m->B && m->arena.base) return AM_OK;
    if (!m->tmp) {
        m->tmp = malloc(sizeof(int) * 4 * (size_t)m->n);
        m->tmp_sz = malloc(sizeof(size_t) * (size_t)m->n);
        m->slot_base = malloc(sizeof(float *) * (size_t)m->n);
        if (!m->tmp || !m->tmp_sz || !m->slot_base) return am_fail(AM_ENOMEM, "out of memory");
    }
    am_arena_free(&m->arena);
    m->B = 0;
    m->have_loss = 0;
    size_t need;
    lay_out(m, B, &need);
    AM_TRY(am_arena_init(&m->arena, need));
    lay_out(m, B, &need);
    m->B = B;
    /* A split plan (or gpu-only's buffers) is sized for a batch: make it
     * anew for this one. */
    if (m->asym || m->gpu) {
        am_asym_cfg c = m->asym_cfg;
        return am_model_set_asym(m, &c, m->accel);
    }
    return AM_OK;
}

/* ------------------------------------------------------------ forward */

/* Whether layer i (a conv or linear layer) applies the ReLU after it. */
static int relu_taken(const am_model *m, int i, int training) {
    return m->L[i].out_relu && m->asym && am_asym_takes_relu(m->asym, i, training);
}

am_status am_model_fwd_layer(am_model *m, int i, int training, am_rng *rng) {
    layer *l = &m->L[i];
    am_tensor *x = &m->L[l->in[0]].y;
    if (l->fused_into) return AM_OK; /* its batchnorm (or add) ran it */
    switch (l->kind) {
    case K_CONV: {
        double *mo = training && l->stats_to ? m->L[l->stats_to].moments : NULL;
        if (m->asym && am_asym_handles(m->asym, i))
            return am_asym_forward(m->asym, i, &l->conv, x, pdat(m, l, 0), l->conv.bias ? pdat(m, l, 1) : NULL,
                                   &l->y, m->work, m->work_n, training, mo, relu_taken(m, i, training));
        return am_conv2d_forward_moments(&l->conv, x, pdat(m, l, 0), l->conv.bias ? pdat(m, l, 1) : NULL, &l->y,
                                         m->work, m->work_n, mo);
    }
    case K_BN: {
        am_bn_act act = fusion_of(m, i);
        layer *q = l->act_pool ? &m->L[l->act_pool] : NULL;
        return am_bn_act_forward(&l->bn, &act, training, x, training ? l->moments : NULL, pdat(m, l, 0), pdat(m, l, 1),
                                 pdat(m, l, 2), pdat(m, l, 3), l->save_mean, l->save_invstd,
                                 q && !m->keep_all ? NULL : &l->y, l->act_relu ? m->L[l->act_relu].bits : NULL,
                                 q ? &q->y : NULL, q ? q->argmax : NULL);
    }
    case K_RELU:
        if (relu_taken(m, l->in[0], training) && m->L[l->in[0]].out_relu == i) return AM_OK; /* its conv applied it */
        return am_relu_forward_bits(x, &l->y, l->bits);
    case K_MAXPOOL: return am_maxpool_forward(&l->pool, x, &l->y, l->argmax);
    case K_AVGPOOL: return am_avgpool_forward(&l->pool, x, &l->y);
    case K_ADAPTIVE: return am_adaptive_avgpool_forward(x, &l->y);
    case K_LINEAR:
        if (m->asym && am_asym_handles(m->asym, i)) {
            am_tensor xv = {am_shape4(x->s.n, x->s.c * x->s.h * x->s.w, 1, 1), x->d};
            return am_asym_forward(m->asym, i, &l->conv, &xv, pdat(m, l, 0), l->lin_bias ? pdat(m, l, 1) : NULL,
                                   &l->y, m->work, m->work_n, training, NULL, relu_taken(m, i, training));
        }
        return am_linear_forward(x, pdat(m, l, 0), l->lin_bias ? pdat(m, l, 1) : NULL, l->out_f, &l->y);
    case K_DROPOUT: {
        size_t n = am_shape_numel(l->y.s);
        if (!training || l->p == 0.f) {
            for (size_t j = 0; j < n; j++) l->mask[j] = 1.f;
        } else {
            if (!rng) return am_fail(AM_EINVAL, "dropout in training needs an RNG");
            AM_TRY(am_dropout_mask(l->p, rng, l->mask, n));
        }
        return am_dropout_forward(x, l->mask, &l->y);
    }
    case K_FLATTEN: return AM_OK;
    case K_ADD:
        if (l->act_relu) return am_add_relu_forward(x, &m->L[l->in[1]].y, &l->y, m->L[l->act_relu].bits);
        return am_add_forward(x, &m->L[l->in[1]].y, &l->y);
    case K_INPUT: break;
    }
    return AM_OK;
}

am_status am_model_forward(am_model *m, const am_tensor *x, int training, am_rng *rng) {
    if (!m->B) return am_fail(AM_EINVAL, "model: call am_model_set_batch first");
    if (!x || !x->d) return am_fail(AM_EINVAL, "model: NULL input");
    am_shape want = m->L[0].y.s;
    if (!am_shape_eq(x->s, want))
        return am_fail(AM_EINVAL, "model: input is %dx%dx%dx%d, expected %dx%dx%dx%d", x->s.n, x->s.c,
                       x->s.h, x->s.w, want.n, want.c, want.h, want.w);
    if (m->gpu) return am_gpu_forward(m, x, training, rng);
    if (m->asym) AM_TRY(am_model_plan_batch(m, x, training, rng));
    m->L[0].y.d = x->d;
    m->have_loss = 0;
    m->training = training;
    double t0 = mono_s(), a0 = m->asym ? am_asym_blocked_seconds(m->asym) : 0;
    for (int i = 1; i < m->n; i++) {
        am_status st = am_model_fwd_layer(m, i, training, rng);
        prof_add(m, prof_kind(m, i), &t0, &a0);
        if (st != AM_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", am_last_error());
            return am_fail(st, "layer %d (%s): %s", i, kind_names[m->L[i].kind], msg);
        }
    }
    return AM_OK;
}

const am_tensor *am_model_logits(const am_model *m) { return &m->L[m->n - 1].y; }
const am_tensor *am_model_output(const am_model *m, int i) { return i >= 0 && i < m->n ? &m->L[i].y : NULL; }

am_status am_model_loss(am_model *m, const int32_t *labels, float *loss) {
    if (!labels || !loss) return am_fail(AM_EINVAL, "model loss: NULL argument");
    if (m->gpu) return am_gpu_loss(m, labels, loss);
    double t0 = mono_s();
    AM_TRY(am_softmax_ce_forward(&m->L[m->n - 1].y, labels, m->probs, loss));
    memcpy(m->labels, labels, sizeof(int32_t) * (size_t)m->B);
    m->prof[AM_PROF_OTHER] += mono_s() - t0;
    m->have_loss = 1;
    return AM_OK;
}

/* ------------------------------------------------------------ backward */

/* An in-place add with its ReLU: the first input's gradient is dy itself
 * (one buffer), masked in place; the second's takes the masked values. */
static am_status add_relu_backward(am_model *m, int i, am_tensor *dx, int acc, char *written) {
    layer *l = &m->L[i];
    if (!dx || dx->d != l->dy.d || acc) return am_fail(AM_EINVAL, "add: its first input's gradient is not its own");
    const int b = l->in[1];
    const int acc_b = b ? written[b] : 0;
    if (b) written[b] = 1;
    return am_add_relu_backward(m->L[l->act_relu].bits, &l->dy, b ? &m->L[b].dy : NULL, acc_b);
}

static am_status bwd_layer(am_model *m, int i, char *written) {
    layer *l = &m->L[i];
    layer *src = &m->L[l->in[0]];
    /* No gradient for the input image. */
    am_tensor *dx = l->in[0] == 0 ? NULL : &src->dy;
    int acc = written[l->in[0]];
    if (l->in[0] != 0) written[l->in[0]] = 1;
    if (l->fused_into) return AM_OK; /* its batchnorm's (or add's) backward does it */
    if (l->kind == K_ADD && l->act_relu) return add_relu_backward(m, i, dx, acc, written);
    switch (l->kind) {
    case K_CONV:
        if (m->asym && am_asym_handles(m->asym, i))
            return am_asym_backward(m->asym, i, &l->conv, &src->y, pdat(m, l, 0), &l->dy, dx, acc, pgrad(m, l, 0),
                                    l->conv.bias ? pgrad(m, l, 1) : NULL, m->work, m->work_n);
        return am_conv2d_backward(&l->conv, &src->y, pdat(m, l, 0), &l->dy, dx, acc, pgrad(m, l, 0),
                                  l->conv.bias ? pgrad(m, l, 1) : NULL, m->work, m->work_n);
    case K_BN: {
        am_bn_act act = fusion_of(m, i);
        const am_tensor *dy = l->act_pool ? &m->L[l->act_pool].dy : &l->dy;
        return am_bn_act_backward(&l->bn, &act, m->training, &src->y, pdat(m, l, 0), l->save_mean, l->save_invstd,
                                  l->act_relu ? m->L[l->act_relu].bits : NULL,
                                  l->act_pool ? m->L[l->act_pool].argmax : NULL, dy, dx, acc, pgrad(m, l, 0),
                                  pgrad(m, l, 1));
    }
    case K_LINEAR:
        return am_linear_backward(&src->y, pdat(m, l, 0), &l->dy, dx, acc, pgrad(m, l, 0),
                                  l->lin_bias ? pgrad(m, l, 1) : NULL);
    case K_FLATTEN: return AM_OK; /* the gradient is already in place */
    default: break;
    }
    if (!dx) return AM_OK;
    switch (l->kind) {
    case K_RELU: return am_relu_backward_bits(l->bits, &l->dy, dx, acc);
    case K_MAXPOOL: return am_maxpool_backward(&l->pool, l->argmax, &l->dy, dx, acc);
    case K_AVGPOOL: return am_avgpool_backward(&l->pool, &l->dy, dx, acc);
    case K_ADAPTIVE: return am_adaptive_avgpool_backward(&l->dy, dx, acc);
    case K_DROPOUT: return am_dropout_backward(l->mask, &l->dy, dx, acc);
    case K_ADD: {
        AM_TRY(am_add_backward(&l->dy, dx, acc));
        int b = l->in[1];
        if (b == 0) return AM_OK;
        int acc_b = written[b];
        written[b] = 1;
        return am_add_backward(&l->dy, &m->L[b].dy, acc_b);
    }
    default: return AM_OK;
    }
}

am_status am_model_backward(am_model *m) {
    if (m->gpu) return am_gpu_backward(m);
    if (!m->have_loss) return am_fail(AM_EINVAL, "model: backward needs a forward pass and a loss");
    if (m->asym && am_mode_fixed_point(m->asym_cfg.mode))
        return am_fail(AM_EINVAL, "model: %s mode is inference only", am_mode_name(m->asym_cfg.mode));
    layer *last = &m->L[m->n - 1];
    double t0 = mono_s(), a0 = m->asym ? am_asym_blocked_seconds(m->asym) : 0;
    AM_TRY(am_softmax_ce_backward(&last->y, m->labels, m->probs, &last->dy));
    prof_add(m, AM_PROF_OTHER, &t0, &a0);
    char written[MAX_LAYERS];
    memset(written, 0, (size_t)m->n);
    written[m->n - 1] = 1;
    for (int i = m->n - 1; i >= 1; i--) {
        if (!written[i]) {
            /* A layer the loss does not depend on: its parameters get zero. */
            for (int j = m->L[i].param0; j < m->L[i].param0 + m->L[i].nparam; j++)
                if (m->P[j].grad) memset(m->P[j].grad, 0, m->P[j].numel * sizeof(float));
            continue;
        }
        /* A flatten or in-place ReLU shares its gradient with its input:
         * that input's gradient is "written" once this layer's is. */
        am_status st = bwd_layer(m, i, written);
        prof_add(m, prof_kind(m, i), &t0, &a0);
        if (st != AM_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", am_last_error());
            return am_fail(st, "layer %d (%s) backward: %s", i, kind_names[m->L[i].kind], msg);
        }
    }
    return AM_OK;
}
