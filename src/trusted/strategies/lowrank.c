/* lowrank-only's strategy: the split's TEE part alone (lowrank.c); the
 * residual is computed for the energy figures and dropped. Nothing leaves
 * the TEE. The backward pass takes the low-rank weight gradient and passes
 * the input gradient straight through the whole conv. */
#include "trusted/strategy.h"

static am_status forward(am_asym *a, int layer, layer_plan *p, const asym_fwd *f) {
    const am_tensor *x = f->x;
    const int B = x->s.n, K = p->K, G = asym_group_size(a, p);
    const size_t P = (size_t)p->P;
    double t0 = asym_now(), er = 0, ev = 0;
    float *U;
    AM_TRY(asym_lowrank_basis(a, p, x, f->training, &U));
    for (int b0 = 0; b0 < B; b0 += G)
        AM_TRY(asym_lowrank_group(a, p, U, x, b0, B - b0 < G ? B - b0 : G, a->scratch, &er, &ev));
    p->e_total += ev + er;
    p->e_kept += ev;
    p->decomp_s += asym_now() - t0;
    AM_TRY(asym_lowrank_conv(a, p, f->cfg, f->w, U, x, f->y, f->work, f->work_n));
    const float *bias = f->cfg->bias ? f->b : NULL;
    double *mo = f->moments;
    if (!bias && !mo) return AM_OK;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * K * P > 65536)
    for (int n = 0; n < B; n++)
        for (int k = 0; k < K; k++) {
            float *yk = f->y->d + ((size_t)n * K + k) * P, bk = bias ? bias[k] : 0.f;
            if (bias)
                for (size_t i = 0; i < P; i++) yk[i] += bk;
            if (mo) am_plane_moments(yk, P, mo + 2 * ((size_t)n * K + k));
        }
    return AM_OK;
}

static am_status backward(am_asym *a, int layer, layer_plan *p, const asym_bwd *g) {
    if (g->db) am_conv2d_bias_grad(g->dy, g->db, NULL);
    AM_TRY(asym_lowrank_dw(a, p, g->cfg, g->x, g->dy, g->dw, g->work, g->work_n));
    if (!g->dx) return AM_OK;
    am_conv2d_cfg lc = *g->cfg;
    lc.bias = 0;
    am_tensor xs = {g->x->s, NULL};
    return am_conv2d_backward(&lc, &xs, g->w, g->dy, g->dx, g->accum, NULL, NULL, g->work, g->work_n);
}

/* V is all the backward pass reads. */
static int needs_input(const am_asym *a, const layer_plan *p) { return 0; }

const asym_strategy asym_lowrank = {"low rank only", asym_lowrank_alloc, forward, backward, needs_input,
                                    asym_lowrank_regions};
