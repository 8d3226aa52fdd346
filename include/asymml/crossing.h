/* What crosses the trust boundary, by kind: the vocabulary that the trusted
 * side's ledger, the boundary's requests and the untrusted side's recorder
 * share. Public, and included by both sides. */
#ifndef ASYMML_CROSSING_H
#define ASYMML_CROSSING_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum am_cross_kind {
    AM_CROSS_WEIGHTS = 0,   /* a conv layer's weights (the host sees them every step) */
    AM_CROSS_RESIDUAL,      /* a residual R (clipped and noised when DP is on) */
    AM_CROSS_OUTPUT_GRAD,   /* dL/dY of a split conv, in the clear (the paper's scheme) */
    AM_CROSS_ACTIVATION,    /* a full activation: open mode only */
    AM_CROSS_GRAD_RESIDUAL, /* the residual S of an output gradient (protected gradients) */
    AM_CROSS_LABELS,        /* a batch's labels: gpu-only mode only */
    AM_CROSS_STATE,         /* optimizer and batchnorm state, dropout masks: gpu-only mode only */
    AM_CROSS_BLINDED,       /* slalom: a layer's quantized input plus a one-time pad mod p (int32) */
    AM_CROSS_KINDS
} am_cross_kind;

/* "weights", "residual", "output-gradient", "activation", "gradient-residual",
 * "labels", "state", "blinded". */
const char *am_cross_kind_name(am_cross_kind k);

#ifdef __cplusplus
}
#endif
#endif
