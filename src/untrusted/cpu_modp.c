/* Blinded inference's request on the CPU (AM_REQ_CONV_MODP): the conv of
 * int32 residues by integer weights, exact in double (am_conv2d_exact),
 * reduced mod p into [0, p). The untrusted side computes on what it is
 * sent and nothing else: the residues are uniform mod p to it. */
#include <stdint.h>
#include <string.h>

#include "untrusted/cpu_ops.h"

static am_status grow(double **work, size_t *work_n, size_t need) {
    if (need <= *work_n) return AM_OK;
    am_aligned_free(*work);
    *work = am_aligned_alloc(need * sizeof(double));
    *work_n = *work ? need : 0;
    return *work ? AM_OK : am_fail(AM_ENOMEM, "backend: cannot allocate %zu MiB", (need * sizeof(double)) >> 20);
}

am_status am_cpu_conv_modp(const am_req *r, double **work, size_t *work_n) {
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(&r->cfg, r->x, &ys));
    const size_t xn = am_shape_numel(r->x), yn = am_shape_numel(ys);
    const size_t wn = (size_t)r->cfg.out_c * r->x.c * r->cfg.kh * r->cfg.kw;
    const size_t cw = am_conv2d_exact_workspace(&r->cfg, r->x);
    AM_TRY(grow(work, work_n, xn + wn + yn + cw));
    double *x = *work, *w = x + xn, *y = w + wn, *cwork = y + yn;
    const int32_t *in = (const int32_t *)(const void *)r->in0;
    for (size_t i = 0; i < xn; i++) x[i] = in[i];
    for (size_t i = 0; i < wn; i++) w[i] = r->in1[i];
    AM_TRY(am_conv2d_exact(&r->cfg, r->x, x, w, y, cwork, cw));
    int32_t *out = (int32_t *)(void *)r->out;
    for (size_t i = 0; i < yn; i++) out[i] = am_modp_residue(y[i]);
    return AM_OK;
}
