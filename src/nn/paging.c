/* A step's trusted memory, region by region in the order the code touches
 * it, through a modelled enclave page cache (asymml/asym.h,
 * am_model_paging). Mirrors model.c's fwd_layer and bwd_layer. */
#include "core/pagesim.h"
#include "nn/model_impl.h"

/* A stand-in address, above any user-space pointer, for the input batch
 * before the model has seen one. */
#define FAKE_INPUT ((uintptr_t)1 << 56)

typedef struct walk {
    const am_model *m;
    am_pagesim *sim;
    am_status st;
} walk;

static void touch(walk *w, const void *p, size_t bytes) {
    if (w->st == AM_OK && p) w->st = am_pagesim_touch(w->sim, (uintptr_t)p, bytes);
}
static void touch_t(walk *w, const am_tensor *t) {
    if (t->d) touch(w, t->d, am_shape_numel(t->s) * sizeof(float));
}
static void touch_params(walk *w, const layer *l, int grads) {
    for (int j = l->param0; j < l->param0 + l->nparam; j++) {
        const am_param *p = &w->m->P[j];
        touch(w, grads ? (const void *)p->grad : (const void *)p->data, p->numel * sizeof(float));
    }
}
static size_t bits_bytes(const layer *l) { return (am_shape_numel(l->y.s) + 31) / 32 * sizeof(uint32_t); }

/* A conv: the split's own buffers, or the whole conv's workspace. */
static void conv_extra(walk *w, int i, int backward) {
    const am_model *m = w->m;
    const layer *l = &m->L[i];
    const void *ptr[AM_ASYM_REGIONS];
    size_t bytes[AM_ASYM_REGIONS], work = m->work_n;
    if (m->asym && am_asym_handles(m->asym, i)) {
        int n = am_asym_regions(m->asym, i, backward, ptr, bytes, &work);
        for (int k = 0; k < n; k++) touch(w, ptr[k], bytes[k]);
    } else {
        work = am_conv2d_workspace_used(&l->conv, m->L[l->in[0]].y.s, m->work_n, backward, l->in[0] != 0);
    }
    touch(w, m->work, (work < m->work_n ? work : m->work_n) * sizeof(float));
}

static void forward(walk *w, int i, int training) {
    const am_model *m = w->m;
    const layer *l = &m->L[i];
    const am_tensor *x = &m->L[l->in[0]].y;
    if (l->fused_into || l->kind == K_FLATTEN || l->kind == K_INPUT) return;
    touch_t(w, x);
    if (l->kind == K_ADD) touch_t(w, &m->L[l->in[1]].y);
    if (l->kind == K_ADD && l->act_relu) touch(w, m->L[l->act_relu].bits, bits_bytes(&m->L[l->act_relu]));
    touch_params(w, l, 0);
    if (l->kind == K_CONV) conv_extra(w, i, 0);
    if (l->kind == K_BN) {
        const size_t c = (size_t)l->y.s.c * sizeof(float);
        if (training && l->moments) touch(w, l->moments, 2 * sizeof(double) * (size_t)l->y.s.n * l->y.s.c);
        touch(w, l->save_mean, c), touch(w, l->save_invstd, c);
        if (l->act_relu) touch(w, m->L[l->act_relu].bits, bits_bytes(&m->L[l->act_relu]));
        if (l->act_pool) {
            const layer *q = &m->L[l->act_pool];
            touch_t(w, &q->y);
            touch(w, q->argmax, am_shape_numel(q->y.s) * sizeof(int32_t));
            if (m->keep_all) touch_t(w, &l->y);
            return;
        }
    }
    if (l->kind == K_RELU) touch(w, l->bits, bits_bytes(l));
    if (l->kind == K_MAXPOOL) touch(w, l->argmax, am_shape_numel(l->y.s) * sizeof(int32_t));
    if (l->kind == K_DROPOUT) touch(w, l->mask, am_shape_numel(l->y.s) * sizeof(float));
    touch_t(w, &l->y);
}

static void backward(walk *w, int i) {
    const am_model *m = w->m;
    const layer *l = &m->L[i];
    const layer *src = &m->L[l->in[0]];
    if (l->fused_into || l->kind == K_FLATTEN || l->kind == K_INPUT) return;
    const int reads_x = l->kind == K_BN || l->kind == K_LINEAR ||
                        (l->kind == K_CONV && (!m->asym || am_asym_needs_input(m->asym, i)));
    if (reads_x) touch_t(w, &src->y);
    if (l->kind == K_CONV || l->kind == K_BN || l->kind == K_LINEAR) touch_params(w, l, 0);
    if (l->kind == K_BN) {
        const size_t c = (size_t)l->y.s.c * sizeof(float);
        touch(w, l->save_mean, c), touch(w, l->save_invstd, c);
        if (l->act_relu) touch(w, m->L[l->act_relu].bits, bits_bytes(&m->L[l->act_relu]));
        if (l->act_pool) touch(w, m->L[l->act_pool].argmax, am_shape_numel(m->L[l->act_pool].y.s) * sizeof(int32_t));
        touch_t(w, l->act_pool ? &m->L[l->act_pool].dy : &l->dy);
    } else {
        if (l->kind == K_RELU) touch(w, l->bits, bits_bytes(l));
        if (l->kind == K_ADD && l->act_relu) touch(w, m->L[l->act_relu].bits, bits_bytes(&m->L[l->act_relu]));
        if (l->kind == K_MAXPOOL) touch(w, l->argmax, am_shape_numel(l->y.s) * sizeof(int32_t));
        if (l->kind == K_DROPOUT) touch(w, l->mask, am_shape_numel(l->y.s) * sizeof(float));
        touch_t(w, &l->dy);
    }
    if (l->kind == K_CONV) conv_extra(w, i, 1);
    touch_params(w, l, 1);
    if (l->in[0] != 0) touch_t(w, &src->dy);
    if (l->kind == K_ADD && l->in[1] != 0) touch_t(w, &m->L[l->in[1]].dy);
}

static void step(walk *w, int training, const void *opt, size_t opt_bytes) {
    const am_model *m = w->m;
    const am_tensor *in = &m->L[0].y;
    if (in->d) touch_t(w, in);
    else if (w->st == AM_OK) w->st = am_pagesim_touch(w->sim, FAKE_INPUT, am_shape_numel(in->s) * sizeof(float));
    if (m->gpu) return; /* gpu-only: the trusted side only hands over the batch */
    for (int i = 1; i < m->n; i++) forward(w, i, training);
    if (!training) return;
    const size_t BK = (size_t)m->B * am_model_num_classes(m);
    touch_t(w, &m->L[m->n - 1].y);
    touch(w, m->probs, BK * sizeof(float));
    touch(w, m->labels, (size_t)m->B * sizeof(int32_t));
    touch_t(w, &m->L[m->n - 1].dy);
    for (int i = m->n - 1; i >= 1; i--) backward(w, i);
    /* SGD: weights, gradients and the optimizer's state in one pass. */
    touch(w, m->wdata, m->n_train * sizeof(float));
    touch(w, m->gdata, m->n_train * sizeof(float));
    touch(w, opt, opt_bytes);
}

am_status am_model_paging(const am_model *m, int training, const void *opt, size_t opt_bytes, size_t epc_bytes,
                          am_paging *out) {
    if (!m || !out) return am_fail(AM_EINVAL, "paging: NULL argument");
    if (!m->B) return am_fail(AM_EINVAL, "paging: no batch size yet");
    if (epc_bytes < AM_PAGE_BYTES) return am_fail(AM_EINVAL, "paging: an EPC of %zu bytes holds no page", epc_bytes);
    walk w = {m, NULL, AM_OK};
    AM_TRY(am_pagesim_create(epc_bytes / AM_PAGE_BYTES, &w.sim));
    step(&w, training, opt, opt_bytes);
    am_pagesim_reset_counts(w.sim);
    step(&w, training, opt, opt_bytes);
    if (w.st == AM_OK) {
        out->working_set = (double)am_pagesim_distinct(w.sim) * AM_PAGE_BYTES;
        out->touches = (double)am_pagesim_touches(w.sim);
        out->swaps = (double)am_pagesim_misses(w.sim);
    }
    am_pagesim_free(w.sim);
    return w.st;
}
