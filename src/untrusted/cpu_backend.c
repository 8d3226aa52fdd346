/* CPU accelerator backend: runs each request when it is submitted, with the
 * same im2col + sgemm kernels as the trusted side, in buffers it owns; and
 * gpu-only mode's ops (cpu_ops.c). */
#include "untrusted/cpu_backend.h"

#include "untrusted/cpu_ops.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    float *p;
    size_t n;
} slot;

typedef struct cpu_be {
    am_backend base;
    slot *slots; /* layers x roles */
    int layers;
    float *work;
    size_t work_n;
    double *dwork; /* blinded inference's exact conv */
    size_t dwork_n;
    double busy;
} cpu_be;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static am_status cpu_buffer(am_backend *b, int layer, am_buf_role role, size_t n, float **out) {
    cpu_be *be = (cpu_be *)b;
    slot *s;
    AM_TRY(am_backend_slot(layer, role, n, sizeof(slot), (void **)&be->slots, &be->layers, (void **)&s));
    if (s->n < n) {
        am_aligned_free(s->p);
        s->p = am_aligned_alloc(n * sizeof(float));
        s->n = s->p ? n : 0;
        if (!s->p) return am_fail(AM_ENOMEM, "backend: cannot allocate %zu MiB", (n * sizeof(float)) >> 20);
    }
    *out = s->p;
    return AM_OK;
}

static am_status cpu_submit(am_backend *b, const am_req *r) {
    cpu_be *be = (cpu_be *)b;
    if (!r || !r->in0 || !r->in1 || !r->out) return am_fail(AM_EINVAL, "backend: incomplete request");
    size_t need = am_conv2d_workspace(&r->cfg, r->x);
    if (!need) return am_fail(AM_EINVAL, "backend: bad conv request for layer %d", r->layer);
    AM_TRY(am_cpu_grow(&be->work, &be->work_n, need));
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(&r->cfg, r->x, &ys));
    double t0 = now();
    am_tensor x = {r->x, (float *)r->in0}, y = {ys, r->out};
    am_status st;
    switch (r->kind) {
    case AM_REQ_CONV_FWD:
        st = am_conv2d_forward(&r->cfg, &x, r->in1, NULL, &y, be->work, be->work_n);
        break;
    case AM_REQ_CONV_BWD_DATA: {
        am_tensor dy = {ys, (float *)r->in0}, dx = {r->x, r->out}, xs = {r->x, NULL};
        st = am_conv2d_backward(&r->cfg, &xs, r->in1, &dy, &dx, 0, NULL, NULL, be->work, be->work_n);
        break;
    }
    case AM_REQ_CONV_BWD_FILTER: {
        am_tensor dy = {ys, (float *)r->in1};
        st = am_conv2d_backward(&r->cfg, &x, r->in0, &dy, NULL, 0, r->out, NULL, be->work, be->work_n);
        break;
    }
    case AM_REQ_CONV_MODP: st = am_cpu_conv_modp(r, &be->dwork, &be->dwork_n); break;
    default: st = am_fail(AM_EINVAL, "backend: unknown request kind %d", (int)r->kind);
    }
    be->busy += now() - t0;
    return st;
}

static am_status cpu_wait(am_backend *b) {
    (void)b;
    return AM_OK;
}

static double cpu_busy(am_backend *b) { return ((cpu_be *)b)->busy; }

static void cpu_destroy(am_backend *b) {
    cpu_be *be = (cpu_be *)b;
    if (!be) return;
    for (size_t i = 0; i < (size_t)be->layers * AM_BUF_ROLES; i++) am_aligned_free(be->slots[i].p);
    free(be->slots);
    am_aligned_free(be->work);
    am_aligned_free(be->dwork);
    free(be);
}

static am_status cpu_op(am_backend *b, const am_op *o) {
    cpu_be *be = (cpu_be *)b;
    double t0 = now();
    am_status st = am_cpu_op(o, &be->work, &be->work_n);
    be->busy += now() - t0;
    return st;
}

static const am_backend_vt cpu_vt = {"cpu", cpu_buffer, cpu_submit, cpu_wait, cpu_busy, cpu_destroy, NULL, cpu_op};

am_status am_cpu_backend_create(am_backend **out) {
    cpu_be *be = calloc(1, sizeof *be);
    if (!be) return am_fail(AM_ENOMEM, "backend: out of memory");
    be->base.vt = &cpu_vt;
    *out = &be->base;
    return AM_OK;
}
