/* The split's internals, shared by its files: plan.c (the plan, its
 * state and figures), ledger.c (what crosses, copied and recorded) and
 * split.c (the forward and backward passes). Internal to src/trusted. */
#ifndef ASYMML_TRUSTED_SPLIT_IMPL_H
#define ASYMML_TRUSTED_SPLIT_IMPL_H

#include "trusted/split.h"

typedef struct layer_plan {
    int active;   /* a conv layer that was planned */
    int split;    /* 1 split, 0 whole (in the TEE, or on the accelerator in open mode) */
    int first;
    int decided;  /* rank and basis known (data-driven choices wait for the first batch) */
    int coupled;  /* a BatchNorm before it already couples the batch */
    int list_r;   /* LIST policy: this layer's entry */
    am_basis_kind basis;
    am_conv2d_cfg cfg;
    am_shape x, y;
    int C, K, r, N, P, kk;
    size_t u_off; /* into state: U (C x r), shared basis */
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
/* Samples per group in the forward pass's residual buffer. */
int asym_group_size(const am_asym *a, const layer_plan *p);
/* The first batch's decisions (data-driven rank, AUTO basis). */
am_status asym_decide(am_asym *a, layer_plan *p, const float *X);
/* Copies n floats of trusted memory into the accelerator's (layer, role)
 * buffer and records the crossing; records what lies in a buffer already;
 * a result buffer. */
am_status asym_cross(am_asym *a, int layer, am_buf_role role, am_cross_kind kind, am_shape s, const float *src, float **dst);
am_status asym_record(am_asym *a, int layer, am_cross_kind kind, am_shape s, const float *buf);
am_status asym_result(am_asym *a, int layer, am_buf_role role, size_t n, float **out);
/* The accelerator's calls, timed. */
am_status asym_submit(am_asym *a, layer_plan *p, const am_req *q);
am_status asym_wait(am_asym *a, layer_plan *p);

#endif
