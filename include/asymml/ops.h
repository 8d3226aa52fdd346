/* asymml CPU ops: forward and backward of every layer the models use.
 *
 * Conventions, the same in every op:
 * - tensors are NCHW float32 (am_tensor); shapes are checked and a mismatch is
 *   AM_EINVAL with a message, never a crash;
 * - backward functions take `accum`: 0 overwrites the input gradient, 1 adds
 *   to it (a tensor read by several layers sums their gradients). Parameter
 *   gradients are always overwritten;
 * - an op that needs scratch memory says how much (in floats) through its
 *   *_workspace function and takes it as an argument: ops never allocate. */
#ifndef ASYMML_OPS_H
#define ASYMML_OPS_H

#include "asymml/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- conv2d: cross-correlation as PyTorch's nn.Conv2d (groups = 1) ---- */
typedef struct am_conv2d_cfg {
    int out_c;          /* K */
    int kh, kw;         /* kernel */
    int sh, sw;         /* stride */
    int ph, pw;         /* zero padding */
    int bias;           /* 1: has a bias */
} am_conv2d_cfg;

am_status am_conv2d_out_shape(const am_conv2d_cfg *cfg, am_shape x, am_shape *y);
/* Floats of scratch the forward and backward need for input shape x. */
/* Exact integer conv2d over doubles (fixed-point inference): x (x.n x C x
 * H x W) and w (K x C x kh x kw) hold integers, y gets their exact integer
 * conv while am_exact_bound stays below 2^53 (checked by the caller). No
 * bias. work: am_conv2d_exact_workspace doubles. */
size_t am_conv2d_exact_workspace(const am_conv2d_cfg *cfg, am_shape x);
am_status am_conv2d_exact(const am_conv2d_cfg *cfg, am_shape x, const double *xd, const double *w, double *y,
                          double *work, size_t work_n);
/* The largest magnitude any partial sum of that conv can reach with inputs
 * of magnitude at most max_x and weights at most max_w: its fan-in times
 * both bounds. */
double am_exact_bound(const am_conv2d_cfg *cfg, int in_c, double max_x, double max_w);
size_t am_conv2d_workspace(const am_conv2d_cfg *cfg, am_shape x);
/* At least as much, and room for the faster forms where they fit: the
 * weight gradient's direct form (the padded input) and Winograd's
 * (see conv2d.c). */
size_t am_conv2d_workspace_fast(const am_conv2d_cfg *cfg, am_shape x);
/* The floats of a work_n-float workspace that a pass of this conv touches,
 * the forward or (backward) the backward, which computes the input gradient
 * or (!has_dx) the weight gradient only: the form it takes depends on
 * work_n (for the modelled enclave paging). */
size_t am_conv2d_workspace_used(const am_conv2d_cfg *cfg, am_shape x, size_t work_n, int backward, int has_dx);
/* Whether its passes take Winograd's F(4x4, 3x3) then (src/ops/winograd.c;
 * for the roofline's count, src/nn/traffic.c). */
int am_conv2d_winograd(const am_conv2d_cfg *cfg, am_shape x, size_t work_n);
/* db[k] = the sum of dy's channel k over the batch, in an order fixed by the
 * shape; with copy, dy is copied there in the same pass. */
void am_conv2d_bias_grad(const am_tensor *dy, float *db, float *copy);
/* w: [K, C, kh, kw]; b: [K] or NULL when !cfg->bias. */
am_status am_conv2d_forward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w,
                            const float *b, am_tensor *y, float *work, size_t work_n);
/* The same, and the moments of each output plane for a following batchnorm
 * (am_plane_moments; N x K pairs), taken while the plane is in cache. */
am_status am_conv2d_forward_moments(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const float *b,
                                    am_tensor *y, float *work, size_t work_n, double *moments);
/* dx may be NULL (first layer: no input gradient); db NULL when !cfg->bias;
 * dw NULL computes no weight gradient, and then x->d may be NULL too (only
 * its shape is used). */
am_status am_conv2d_backward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w,
                             const am_tensor *dy, am_tensor *dx, int accum, float *dw,
                             float *db, float *work, size_t work_n);

/* The weight gradient of a 3x3 conv with stride 1 and padding 1 over at
 * most 4 input channels on planes whose width is a multiple of 8,
 * computed directly (no im2col): the split conv's low-rank part
 * (src/ops/conv3x3.c). dw is written, not added to. The workspace
 * (am_conv3x3_workspace floats) holds the input padded. */
int am_conv3x3_fits(const am_conv2d_cfg *cfg, am_shape x);
size_t am_conv3x3_workspace(am_shape x);
/* The forward pass computed the same way (conv3x3_512.c: AVX-512 only, on
 * planes a multiple of 16 wide, up to 8 input channels), its bias added and
 * its planes' moments taken (moments may be NULL) as
 * am_conv2d_forward_moments does; the same workspace. */
int am_conv3x3_fwd_fits(const am_conv2d_cfg *cfg, am_shape x);
am_status am_conv3x3_forward(const am_conv2d_cfg *cfg, const am_tensor *x, const float *w, const float *b,
                             am_tensor *y, float *work, size_t work_n, double *moments);
am_status am_conv3x3_dw(const am_conv2d_cfg *cfg, const am_tensor *x, const am_tensor *dy, float *dw, float *work,
                        size_t work_n);

/* ---- batchnorm2d: PyTorch semantics (biased variance to normalize, unbiased
 * variance into the running estimate, running = (1-m) running + m batch) ---- */
typedef struct am_bn_cfg {
    float eps;      /* 1e-5 in PyTorch */
    float momentum; /* 0.1 in PyTorch */
} am_bn_cfg;

/* training: uses batch statistics, writes save_mean/save_invstd [C] and updates
 * running_mean/var [C]; !training: uses the running statistics (and writes
 * them to save_mean/save_invstd when those are not NULL). The backward pass
 * reads save_mean/save_invstd in both modes. */
am_status am_bn_forward(const am_bn_cfg *cfg, int training, const am_tensor *x,
                        const float *gamma, const float *beta, float *running_mean,
                        float *running_var, float *save_mean, float *save_invstd,
                        am_tensor *y);
am_status am_bn_backward(const am_bn_cfg *cfg, int training, const am_tensor *x,
                         const float *gamma, const float *save_mean, const float *save_invstd,
                         const am_tensor *dy, am_tensor *dx, int accum, float *dgamma,
                         float *dbeta);

/* ---- relu (branch-free) ---- */
am_status am_relu_forward(const am_tensor *x, am_tensor *y);
/* Uses the output y (y > 0 exactly where x > 0). */
am_status am_relu_backward(const am_tensor *y, const am_tensor *dy, am_tensor *dx, int accum);
/* The same with the mask kept as bits ((n + 31) / 32 words): the backward
 * pass then needs neither x nor y. y may be x (in place). */
am_status am_relu_forward_bits(const am_tensor *x, am_tensor *y, uint32_t *bits);
am_status am_relu_backward_bits(const uint32_t *bits, const am_tensor *dy, am_tensor *dx, int accum);

/* ---- pooling ---- */
typedef struct am_pool_cfg {
    int kh, kw, sh, sw, ph, pw;
    int ceil_mode; /* PyTorch's ceil_mode */
} am_pool_cfg;

am_status am_pool_out_shape(const am_pool_cfg *cfg, am_shape x, am_shape *y);
/* argmax: one int32 per output element (index into the input plane). */
am_status am_maxpool_forward(const am_pool_cfg *cfg, const am_tensor *x, am_tensor *y,
                             int32_t *argmax);
am_status am_maxpool_backward(const am_pool_cfg *cfg, const int32_t *argmax,
                              const am_tensor *dy, am_tensor *dx, int accum);
/* Average pool, count_include_pad = True (PyTorch's default). */
am_status am_avgpool_forward(const am_pool_cfg *cfg, const am_tensor *x, am_tensor *y);
am_status am_avgpool_backward(const am_pool_cfg *cfg, const am_tensor *dy, am_tensor *dx,
                              int accum);
/* Adaptive average pool to oh x ow (nn.AdaptiveAvgPool2d); global = 1 x 1. */
am_status am_adaptive_avgpool_forward(const am_tensor *x, am_tensor *y);
am_status am_adaptive_avgpool_backward(const am_tensor *dy, am_tensor *dx, int accum);

/* ---- batchnorm fused with what follows it: a ReLU, and a max-pool after
 * the ReLU (src/ops/bn_act.c; two passes over the activations each way) ---- */
typedef struct am_bn_act {
    int relu;                  /* a ReLU follows the batchnorm */
    const am_pool_cfg *pool;   /* and a max-pool the ReLU (needs relu), or NULL */
} am_bn_act;

/* One plane's moments for a following batchnorm: out[0] the sum of its len
 * values, out[1] their squared deviations from the plane's own mean. Taken
 * by the layer that writes the plane, while it is in cache. */
void am_plane_moments(const float *x, size_t len, double out[2]);
/* Mask words the fused ReLU needs (its own words per plane). */
size_t am_bn_act_bits_words(const am_bn_act *act, am_shape x);
/* As am_bn_forward (save_mean and save_invstd required), then the ReLU and
 * the pool. moments: N x C planes' am_plane_moments of x (training; NULL:
 * taken here). y: the batchnorm's (ReLU's) output; NULL with a pool, which
 * then writes only pooled and argmax. bits: the ReLU's mask, per pooled
 * value with a pool. */
am_status am_bn_act_forward(const am_bn_cfg *cfg, const am_bn_act *act, int training, const am_tensor *x,
                            const double *moments, const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd, am_tensor *y,
                            uint32_t *bits, am_tensor *pooled, int32_t *argmax);
/* dy: the gradient of the last fused op's output (the pool's with a pool). */
am_status am_bn_act_backward(const am_bn_cfg *cfg, const am_bn_act *act, int training, const am_tensor *x,
                             const float *gamma, const float *save_mean, const float *save_invstd,
                             const uint32_t *bits, const int32_t *argmax, const am_tensor *dy, am_tensor *dx,
                             int accum, float *dgamma, float *dbeta);

/* ---- linear: y = x W^T + b, W [out, in] as nn.Linear; x is [N, in] (any
 * C*H*W that equals in: flatten is implicit) ---- */
am_status am_linear_forward(const am_tensor *x, const float *w, const float *b, int out_f,
                            am_tensor *y);
am_status am_linear_backward(const am_tensor *x, const float *w, const am_tensor *dy,
                             am_tensor *dx, int accum, float *dw, float *db);

/* ---- dropout: y = x * mask, mask in {0, 1/(1-p)} ---- */
/* Fill mask (numel floats) from the RNG with keep probability 1-p. */
am_status am_dropout_mask(float p, am_rng *rng, float *mask, size_t n);
am_status am_dropout_forward(const am_tensor *x, const float *mask, am_tensor *y);
am_status am_dropout_backward(const float *mask, const am_tensor *dy, am_tensor *dx, int accum);

/* ---- residual add ---- */
am_status am_add_forward(const am_tensor *a, const am_tensor *b, am_tensor *y);
/* d(a) and d(b) are both dy; this adds dy into one gradient buffer. */
am_status am_add_backward(const am_tensor *dy, am_tensor *dx, int accum);
/* The add with the ReLU after it, in one pass each way (the residual
 * block's end): y = max(a + b, 0) with its mask in bits as
 * am_relu_forward_bits keeps it (y may be a or b); backward masks dy in
 * place (then a's gradient, where a's gradient shares dy's buffer) and puts
 * the masked values into db (=, or += with accum_b; NULL: none). */
am_status am_add_relu_forward(const am_tensor *a, const am_tensor *b, am_tensor *y, uint32_t *bits);
am_status am_add_relu_backward(const uint32_t *bits, am_tensor *dy, am_tensor *db, int accum_b);

/* ---- softmax cross-entropy, mean over the batch ---- */
/* logits [N, classes]; labels in [0, classes). probs [N*classes] is saved for
 * the backward pass. Fails with AM_EINVAL on a label out of range and AM_ENUM
 * on non-finite logits. */
am_status am_softmax_ce_forward(const am_tensor *logits, const int32_t *labels, float *probs,
                                float *loss);
am_status am_softmax_ce_backward(const am_tensor *logits, const int32_t *labels,
                                 const float *probs, am_tensor *dlogits);

#ifdef __cplusplus
}
#endif
#endif
