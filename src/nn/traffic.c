/* What a training step's trusted side must move through memory and compute,
 * layer by layer: the inputs of bench's roofline. Bytes count each operand
 * that a kernel reads or writes from memory once, with the fusion the model
 * does (src/ops/bn_act.c: two passes each way) and the split's own passes;
 * what a kernel reuses while it is in cache is not counted again. That makes
 * the roofline time a floor for this code's algorithm, not for any
 * algorithm. FLOPs are the multiply-adds (2 each) and the element-wise
 * arithmetic (for a conv by Winograd's form, its own); the accelerator's
 * part of a split conv is not the TEE's. */
#include "nn/model_impl.h"

static double numel(am_shape s, int B) {
    s.n = B;
    return (double)am_shape_numel(s);
}

/* A split conv's trusted part (per training step, floats). Forward: the
 * basis reads its sample of the input 1 + 2 iters times (gather, then two
 * GEMMs per iteration), the projection reads X and writes V and the
 * released residual; the low-rank conv reads V and writes Y^M; the merge
 * reads Y^M and the reply and writes Y. Backward: the copy across reads G
 * and writes it, the bias sum on the way; the low-rank weight gradient
 * reads V and G, the merges read the replies and write dW and dX. */
static double split_floats(const am_split_info *si, am_shape x, am_shape y, int B, int kk, int iters, int has_dx) {
    const double X = numel(x, B), Y = numel(y, B), V = (double)B * si->r * x.h * x.w;
    const double W = (double)si->K * si->C * kk, cols = (double)B * x.h * x.w;
    const double want = AM_BASIS_COLS(si->C), basis = si->basis == AM_BASIS_SHARED ? si->C * (cols < want ? cols : want) : X;
    double f = basis * (1 + 2.0 * iters) + X + V + X + V + Y + 3 * Y;
    f += 2 * Y + (V + Y) + 3 * W + (has_dx ? 2 * X : 0);
    return f;
}

/* A whole conv by Winograd's F(4x4, 3x3) (src/ops/winograd.c), per training
 * step (floats into *f, FLOPs into *fl), T tiles. Each pass reads its two
 * operands and writes its result; writes the weights' 36 points a kernel
 * (or, for the weight gradient, their sums) and reads them back; writes
 * both operands' 36 points a tile and channel and the GEMMs read them. The
 * GEMMs make 72 FLOPs a tile, input and output channel; the transforms, as
 * winograd.c's loops count, 288 a tile and channel for an input's, 146 for
 * an output's (its bias with it), 110 for an output gradient's, and 108 a
 * kernel for the weights' points (135 back from the weight gradient's). */
static void wino_cost(double C, double K, double T, double X, double Y, double W, int has_dx, double *f,
                      double *fl) {
    const double pts = 2 * 36 * (C + K) * T + 2 * 36 * C * K, gemm = 72 * C * K * T;
    *f = (X + W + Y + pts) + (X + Y + W + pts) + (has_dx ? Y + W + X + pts : 0);
    *fl = (gemm + 288 * C * T + 146 * K * T + 108 * C * K) + (gemm + 288 * C * T + 110 * K * T + 135 * C * K) +
          (has_dx ? gemm + 288 * K * T + 146 * C * T + 108 * C * K : 0);
}

am_status am_model_layer_cost(const am_model *m, int i, am_prof_kind *kind, double *bytes, double *flops) {
    if (i < 1 || i >= m->n) return am_fail(AM_EINVAL, "layer %d out of range", i);
    if (!m->B) return am_fail(AM_EINVAL, "model: no batch size yet");
    const layer *l = &m->L[i];
    const int B = m->B;
    am_layer_info li;
    AM_TRY(am_model_layer_info(m, i, &li));
    am_shape xs = m->L[l->in[0]].os;
    const double X = numel(xs, B), Y = numel(l->os, B), fw = li.flops * B;
    const int has_dx = l->in[0] != 0;
    double f = 0, fl = 0; /* floats moved, FLOPs */
    *kind = AM_PROF_OTHER;
    switch (l->kind) {
    case K_CONV: {
        const double W = (double)li.params;
        *kind = has_dx ? AM_PROF_WHOLE_CONV : AM_PROF_FIRST_CONV;
        f = X + W + Y + (Y + X + W + W) + (has_dx ? X : 0);
        fl = fw * (has_dx ? 3 : 2);
        am_shape xb = xs;
        xb.n = B;
        const int handled = m->asym && am_asym_handles(m->asym, i);
        if (!handled && am_conv2d_winograd(&l->conv, xb, m->work_n))
            wino_cost(xs.c, l->os.c, (double)B * ((xs.h + 3) / 4) * ((xs.w + 3) / 4), X, Y, W, has_dx, &f, &fl);
        if (handled) {
            am_split_info si = {.layer = -1};
            for (int c = 0; c < am_asym_num_convs(m->asym); c++)
                if (am_asym_info(m->asym, c, &si) == AM_OK && si.layer == i) break;
            if (si.layer != i || !si.split) break; /* whole on the accelerator: the TEE only copies */
            *kind = AM_PROF_SPLIT_CONV;
            f = split_floats(&si, xs, l->os, B, l->conv.kh * l->conv.kw, m->asym_cfg.iters, has_dx);
            fl = si.tee_flops;
        }
        break;
    }
    case K_BN:
        /* Forward: read x, write y (or the pool's output, argmax and mask);
         * backward: pass 1 reads x and dy, pass 2 both again and writes dx. */
        *kind = AM_PROF_BN;
        if (l->act_pool) {
            const double Pq = numel(m->L[l->act_pool].os, B);
            f = X + 2 * Pq + (2 * X + 2 * Pq + X);
        } else {
            f = X + Y + (l->act_relu ? X / 32 : 0) + (2 * X + 2 * Y + X);
        }
        fl = 14.0 * X;
        break;
    case K_RELU:
        *kind = AM_PROF_RELU;
        if (l->fused_into) break;
        f = 2 * X + 3 * Y;
        fl = 2 * Y;
        break;
    case K_MAXPOOL: case K_AVGPOOL: case K_ADAPTIVE:
        *kind = AM_PROF_POOL;
        if (l->fused_into) break;
        f = X + 2 * Y + (2 * Y + X);
        fl = 2 * fw;
        break;
    case K_ADD: {
        /* Forward reads both inputs and writes the sum (over the first,
         * in place) with the ReLU's mask. Backward, with the ReLU: one pass
         * reads dy, masks it in place (the first input's gradient shares
         * its buffer) and writes the second's; without it, the first needs
         * nothing in place (a copy if not), the second a copy. */
        const int relu = l->act_relu != 0, second = l->in[1] != 0;
        if (relu) f = 3 * Y + Y / 32 + 2 * Y + (second ? Y : 0);
        else f = 3 * Y + (l->alias_y ? 0 : 2 * Y) + (second ? 2 * Y : 0);
        fl = Y;
        break;
    }
    case K_LINEAR:
        *kind = AM_PROF_LINEAR;
        f = X + li.params + Y + (Y + X + 2.0 * li.params + X);
        fl = 3 * fw;
        break;
    default:
        f = 2 * X + 2 * Y;
        fl = fw;
    }
    *bytes = 4 * f;
    *flops = fl;
    return AM_OK;
}
