/* The split's internals, shared by its files: asym.c (the object, its
 * settings and figures), plan.c (the plan), ledger.c (what crosses, copied
 * and recorded), exec.c (the passes' entry points), accel.c (requests and
 * replies), lowrank.c (the TEE's low-rank maths), regions.c (the trusted
 * memory a pass touches) and strategies/ (how each kind of layer runs).
 * Internal to src/trusted. */
#ifndef ASYMML_TRUSTED_SPLIT_IMPL_H
#define ASYMML_TRUSTED_SPLIT_IMPL_H

#include "core/hot.h"
#include "trusted/split.h"

typedef struct asym_strategy asym_strategy;

typedef struct layer_plan {
    int active;   /* a conv layer that was planned */
    int split;    /* 1 split, 0 whole (in the TEE, or on the accelerator in open mode) */
    int first;
    int pending;  /* a data-driven choice waits for the first batch (am_asym_decide) */
    const asym_strategy *strat; /* how it runs; NULL: whole in the TEE (the model runs it), or pending */
    int coupled;  /* a BatchNorm before it already couples the batch */
    int list_r;   /* LIST policy: this layer's entry */
    am_basis_kind basis;
    am_conv2d_cfg cfg;
    am_shape x, y;
    int C, K, r, N, P, kk;
    size_t u_off; /* into state: U (C x r), shared basis */
    size_t q_off; /* into state: quantized mode, the largest |input| seen in calibration */
    int bi;       /* fixed point: the layer's ordinal among the fixed-point layers (its factors' place) */
    int warm;
    int rg;       /* protected gradients: rank of the output-gradient basis */
    size_t a_off; /* into state: A (K x rg) */
    int warm_a;
    uint64_t release; /* the release number of this layer's last residual */
    float *vu, *vRu, *vRa; /* verification: C coefficients; the released input combined with them, and its magnitudes */
    float *V;     /* B x r x N, kept for the backward pass */
    float *Ub;    /* per-sample bases: B x C x r */
    float *Wp;    /* K x r x kk: U folded into W (shared) */
    float *dWp;   /* K x r x kk */
    /* slalom: the weights the integer weights were last made from (to tell
     * a change; wmade: they were), their scales (K), the check's s (K) and
     * s^T W (C kk), and whether the accelerator holds them (sent, not
     * refused since). */
    float *wc;
    double *wsc;
    uint32_t *cs, *cv;
    int wmade, wsent;
    double e_kept, e_total;
    double tee_s, decomp_s, tee_flops, whole_flops;
    double xfer_s, accel_s, wait_s; /* copies across, accelerator compute, TEE blocked on it */
} layer_plan;

struct am_asym {
    am_asym_cfg cfg;
    am_backend *be;
    layer_plan *L;
    int n;
    int n_cand;     /* conv layers after the first, planned so far */
    float *state;
    size_t state_len;
    float *scratch; /* B x C x N: the residual before it leaves */
    size_t scratch_n;
    float *basis_work;
    size_t basis_work_n;
    float *u_eval; /* the basis of an evaluation batch (basis_work_n floats) */
    float *gs, *gb, *wa, *crb; /* protected gradients: S, B, W folded with A, corr(R, B) */
    size_t gs_n, gb_n, wa_n, crb_n;
    float *wt, *fm, *ucat, *fe; /* folding: W as C x (K kk), stacked factors, U stacked, C x (K kk) */
    size_t wt_n, fm_n, ucat_n, fe_n;
    uint64_t step;
    uint64_t release_next; /* the noise's release counter: only increases */
    int verify;            /* check every reply (am_model_verify) */
    uint8_t noise_key[32]; /* the run's secret key mixed with the session's nonce (zeros: no secret key) */
    float *vsig, *vref, *vmag, *vcomb, *vwork; /* verification: coefficients, reference, bound, the reply's combination */
    size_t vsig_n, vref_n, vwork_n;
    double *qx, *qw, *qs, *qy, *qwork; /* quantized: input, weights, their scales, output, conv workspace */
    size_t qx_n, qw_n, qs_n, qy_n, qwork_n;
    double *qr;             /* slalom: a layer's pad, when W r is computed here */
    float *qwf;             /* slalom: the integer weights as they cross */
    double *vf;             /* slalom: the exact check's random vectors and partial sums */
    size_t qr_n, qwf_n, vf_n;
    uint8_t pad_key[32];    /* slalom: the pads' ChaCha20 key (random, or a factor store's) */
    int n_fixed;            /* fixed point: layers planned so far (their ordinals) */
    uint64_t batch_next;    /* slalom without a factor source: the next batch's number */
    uint64_t batch_cur;     /* slalom: this batch's number; pad of layer bi: batch_cur n_fixed + bi */
    const am_factor_src *src; /* slalom: where the unblinding factors come from (NULL: computed here) */
    float *fl;              /* slalom: a layer's factors, loaded (int32) */
    size_t fl_n;
    double blocked_s; /* total time the TEE spent blocked in submit or wait */
    int ledger_on;
    am_ledger_entry *led;
    int led_n, led_cap;
};

/* Monotonic seconds. */
double asym_now(void);
/* The accelerator's compute seconds so far (none without one). */
double asym_busy(const am_asym *a);
/* Grows a trusted scratch buffer to at least n floats. */
am_status asym_grow(float **buf, size_t *cap, size_t n);
am_status asym_grow_d(double **buf, size_t *cap, size_t n);
/* Appends n floats (aligned) to the checkpointed state; *off: where. */
am_status asym_state_add(am_asym *a, size_t n, size_t *off);
/* Samples per group in the forward pass's residual buffer. */
int asym_group_size(const am_asym *a, const layer_plan *p);
/* Copies n floats of trusted memory into the accelerator's (layer, role)
 * buffer and records the crossing; records what lies in a buffer already;
 * a result buffer. */
am_status asym_cross(am_asym *a, int layer, am_buf_role role, am_cross_kind kind, am_shape s, const float *src, float **dst);
/* The same for an output gradient dy, with its bias gradient db (if not
 * NULL) summed in the same pass. */
am_status asym_cross_grad(am_asym *a, int layer, const am_tensor *dy, float *db, float **dst);
am_status asym_record(am_asym *a, int layer, am_cross_kind kind, am_shape s, const float *buf);
am_status asym_result(am_asym *a, int layer, am_buf_role role, size_t n, float **out);
/* The accelerator's calls, timed. */
am_status asym_submit(am_asym *a, layer_plan *p, const am_req *q);
am_status asym_wait(am_asym *a, layer_plan *p);

/* ---- accel.c: the accelerator's part of a layer, requested and merged */
/* Merges a reply into trusted memory (each value read once); a non-finite
 * value is an error that names the layer. With coef, the reply's
 * combination goes to a->vcomb for am_verify_compare. */
am_status asym_merge(am_asym *a, layer_plan *p, int layer, const char *what, float *dst, const float *src, int outer,
                     int mid, size_t inner, const float *bias, int add, const float *coef, double *moments);
/* The error for a reply (layer's what) with a non-finite value. */
am_status asym_refused(int layer, const char *what);
/* Verification's scratch for up to n values, and the layer's own. */
am_status asym_verify_scratch(am_asym *a, layer_plan *p, size_t n);
/* The forward check's reference for g samples of what was sent (R, from
 * sample b0), and the input combined for the backward filter check. */
am_status asym_verify_sent(am_asym *a, layer_plan *p, const float *w, const float *R, int b0, int g);
/* The weight gradient's check against what was sent (G). */
am_status asym_verify_dw(am_asym *a, layer_plan *p, int layer, const float *G);
/* Requests the backward pass of what the accelerator holds (its input xk,
 * sent in the forward pass, and the weights) against the gradient bg of
 * kind gk: the weight gradient into *bdw, the input gradient into *bdx when
 * bdx is not NULL. */
am_status asym_request_backward(am_asym *a, int layer, layer_plan *p, const am_conv2d_cfg *cfg, am_shape x,
                                const float *bg, am_cross_kind xk, am_cross_kind gk, float **bdw, float **bdx);
/* Merges the input gradient's reply (added when add), checked against what
 * was sent (G) when ver. */
am_status asym_merge_dx(am_asym *a, layer_plan *p, int layer, const am_conv2d_cfg *cfg, am_shape x, const float *w,
                        am_tensor *dx, const float *bdx, int add, int ver, const float *G);

/* ---- lowrank.c: the TEE's part of a split layer */
/* Grows the basis workspace (and the evaluation basis) to n floats. */
am_status asym_grow_basis_work(am_asym *a, size_t n);
/* The buffers of a layer split at its rank and basis. */
am_status asym_lowrank_alloc(am_asym *a, layer_plan *p);
/* The shared basis of this batch (moved on only in training); *U: where it
 * is. Per-sample bases: nothing to do. */
am_status asym_lowrank_basis(am_asym *a, layer_plan *p, const am_tensor *x, int training, float **U);
/* Samples b0..b0+g-1: V into p->V, the residual into R (g x C x N); adds
 * their energies, residual and kept, to *er and *ev. Where
 * asym_lowrank_fused, R is written once and never read: it may be the
 * accelerator's buffer when the residual leaves as it is. */
int asym_lowrank_fused(const layer_plan *p);
/* The split's residual leaves as it is computed (no clipping, noise or
 * verification, and the one-pass projection): written straight into the
 * accelerator's buffer, never through the trusted scratch. */
int asym_release_straight(const am_asym *a, const layer_plan *p);
am_status asym_lowrank_group(am_asym *a, layer_plan *p, const float *U, const am_tensor *x, int b0, int g, float *R,
                             double *er, double *ev);
/* y = conv(W U, V), without bias. */
am_status asym_lowrank_conv(am_asym *a, layer_plan *p, const am_conv2d_cfg *cfg, const float *w, const float *U,
                            const am_tensor *x, am_tensor *y, float *work, size_t work_n);
/* dw = U (x) corr(V, dy): the low-rank part of the weight gradient. */
am_status asym_lowrank_dw(am_asym *a, layer_plan *p, const am_conv2d_cfg *cfg, const am_tensor *x,
                          const am_tensor *dy, float *dw, float *work, size_t work_n);
/* A shared basis's dW' = corr(V, dy), stacked for the unfold; then
 * dw = U dW' + reply, the accelerator's weight gradient merged in the
 * unfold's pass, each reply value read once (non-finite: refused). */
am_status asym_lowrank_dwp(am_asym *a, layer_plan *p, const am_conv2d_cfg *cfg, const am_tensor *x,
                           const am_tensor *dy, float *work, size_t work_n);
am_status asym_lowrank_dw_merge(am_asym *a, layer_plan *p, int layer, float *dw, const float *reply);

/* ---- quant.c: fixed point (quantized mode and blinding) */
/* The largest activation integer: 2^(bits-1) - 1. */
int asym_act_max(const am_asym *a);
/* A layer's buffers (blinded: those slalom shares with quantized mode)
 * and its calibration slot in the state. */
am_status asym_quant_alloc(am_asym *a, layer_plan *p, int blinded);
/* Calibration: the largest |x| of this batch joins the layer's. */
void asym_quant_observe(am_asym *a, layer_plan *p, const float *x);
/* The input's scale: its calibrated largest |x| over the largest integer. */
double asym_input_scale(const am_asym *a, const layer_plan *p);
/* The layer's input (a->qx) and weights (a->qw, scales a->qs) as
 * integers; *sx: the input's scale. */
void asym_quantize(am_asym *a, layer_plan *p, const am_tensor *x, const float *w, double *sx);
/* W (K rows of per) as 8-bit integers wq, a scale per row sk. */
void asym_quantize_weights(const float *w, int K, size_t per, double *wq, double *sk);
/* y = sx s_k (the integers in a->qy) + b_k, output channel by channel
 * (then y > 0 ? y : 0 when relu). */
void asym_dequantize(am_asym *a, layer_plan *p, double sx, const float *b, int relu, am_tensor *y);

/* One value's integer: round(x / s) (inv = 1 / s) clamped to [-M, M], NaN
 * to 0. Clamped before rounding, so that the rounding (to nearest, ties to
 * even, as rint: adding and taking away 1.5 2^52) sees |v| < 2^51. */
static inline double asym_quant1(float x, double inv, double M) {
    double v = x * inv;
    v = v > M + 1 ? M + 1 : v < -M - 1 ? -M - 1 : v != v ? 0 : v;
    v = (v + 6755399441055744.0) - 6755399441055744.0;
    return v > M ? M : v < -M ? -M : v;
}

/* ---- pads.c: blinding's one-time pads */
/* Residues per segment of a pad. */
#define ASYM_PAD_SEG 4096
/* Segment seg of pad number: residues uniform in [0, p), from ChaCha20
 * under key (seg below 2^24: pads of up to 2^36 residues). */
void asym_pad_seg(const uint8_t key[32], uint64_t number, uint64_t seg, uint32_t out[ASYM_PAD_SEG]);
/* The first n residues of pad number, centered in [-(p-1)/2, (p-1)/2]. */
void asym_pad(const uint8_t key[32], uint64_t number, size_t n, double *out);
/* The pad of the fixed-point layer p in batch t: a number no other layer
 * or batch has (precompute's factors are made for the same numbers). */
static inline uint64_t asym_pad_number(const am_asym *a, const layer_plan *p, uint64_t t) {
    return t * (uint64_t)a->n_fixed + (uint64_t)p->bi;
}
/* A residue in [0, p), centered. */
static inline double asym_center(uint32_t v) { return v > (AM_MODP - 1) / 2 ? (double)v - AM_MODP : (double)v; }

/* ---- freivalds.c: blinding's exact check of every reply */
/* The largest kernel (kh kw) the check takes. */
#define AM_CHECK_KMAX 256
/* A check's random vectors: t over samples (a, B), output rows (b, Ho) and
 * columns (c, Wo; and its 16-bit halves). */
typedef struct asym_tvec {
    uint32_t *a, *b, *c, *clo, *chi;
    uint32_t *g;    /* C x H x W: each input value's weight in the check, but for a_n */
    uint64_t *rows; /* (kh + 1) x W a thread: g's making */
} asym_tvec;
/* The layer's s, drawn afresh, and v = s^T W (W: the integer weights in
 * a->qw): after every change of its weights and every refusal. */
am_status asym_check_keys(am_asym *a, layer_plan *p);
/* A fresh t for one check, in a->vf, and g from it; with room for the
 * B x K partial sums (*acc) that the reply's pass leaves. The input's side,
 * t . (s^T (W * X)) = sum_{n,e} a_n g_e X[n][e], is summed as X is made
 * (strategies/blind.c). */
am_status asym_check_draw(am_asym *a, layer_plan *p, asym_tvec *t, uint32_t **acc);
/* The reply's side from its rows' partial sums: sum_n a_n sum_k s_k acc_nk. */
uint64_t asym_check_lhs(const layer_plan *p, const asym_tvec *t, const uint32_t *acc);
/* x mod p, for any 64-bit x. */
static inline uint64_t asym_modp(uint64_t v) {
    v = (v & AM_MODP) + (v >> 31);
    v = (v & AM_MODP) + (v >> 31);
    return v >= AM_MODP ? v - AM_MODP : v;
}
/* ---- unblind.c: a blinded reply's one pass */
/* Reads each value of the reply once (range, the check's partial sums
 * into acc, W x = reply - W r mod p with fl holding W r in [0, p)) and
 * writes y = sx s_k W x + b_k (then y > 0 ? y : 0 when relu). Refuses a value that is not a residue; a
 * factor that is not one is an error. */
am_status asym_unblind(const layer_plan *p, int layer, const int32_t *reply, const int32_t *fl, double sx,
                       const float *bias, int relu, const asym_tvec *t, uint32_t *acc, am_tensor *y);

/* ---- regions.c */
typedef struct asym_list {
    const void **ptr;
    size_t *bytes;
    int n;
} asym_list;
/* A split layer's trusted regions, in the order its pass touches them. */
void asym_lowrank_regions(const am_asym *a, const layer_plan *p, int backward, asym_list *l, size_t *work);

#endif
