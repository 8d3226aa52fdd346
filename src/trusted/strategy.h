/* How a conv layer runs once the plan is fixed: one strategy per mechanism,
 * one file each in strategies/ (whole on the accelerator, split, low rank
 * only, quantized, blinded). The planner (plan.c) gives every layer it handles one; exec.c
 * calls it for the layer's passes. Adding a mechanism is a new file there
 * and its place in plan.c's choice. Internal to src/trusted. */
#ifndef ASYMML_TRUSTED_STRATEGY_H
#define ASYMML_TRUSTED_STRATEGY_H

#include "trusted/split_impl.h"

/* A forward pass: y = conv(x, w) + b; moments: N x K pairs for a following
 * batchnorm, or NULL. */
typedef struct asym_fwd {
    const am_conv2d_cfg *cfg;
    const am_tensor *x;
    const float *w, *b;
    am_tensor *y;
    float *work;
    size_t work_n;
    int training;
    double *moments;
    int relu; /* fixed point, inference: the ReLU that follows, applied to y (y > 0 ? y : 0) */
} asym_fwd;

/* A backward pass: dw (and db) of the layer; dx, added when accum, unless
 * NULL. */
typedef struct asym_bwd {
    const am_conv2d_cfg *cfg;
    const am_tensor *x;
    const float *w;
    const am_tensor *dy;
    am_tensor *dx;
    int accum;
    float *dw, *db;
    float *work;
    size_t work_n;
} asym_bwd;

struct asym_strategy {
    const char *name;
    /* Makes what the layer's passes need, once its rank and basis are fixed
     * (NULL: nothing). */
    am_status (*plan)(am_asym *a, layer_plan *p);
    am_status (*forward)(am_asym *a, int layer, layer_plan *p, const asym_fwd *f);
    /* NULL: inference only (exec.c refuses a backward pass). */
    am_status (*backward)(am_asym *a, int layer, layer_plan *p, const asym_bwd *g);
    /* Whether the backward pass reads the input's values (NULL: it does). */
    int (*needs_input)(const am_asym *a, const layer_plan *p);
    /* The trusted memory a pass touches besides the model's tensors
     * (am_asym_regions; *work given, then touched); NULL: none. */
    void (*regions)(const am_asym *a, const layer_plan *p, int backward, asym_list *l, size_t *work);
};

extern const asym_strategy asym_whole_accel; /* open: the whole conv on the accelerator */
extern const asym_strategy asym_split;       /* asymml: low rank in the TEE, the residual on the accelerator */
extern const asym_strategy asym_lowrank;     /* lowrank-only: low rank in the TEE, the residual dropped */
extern const asym_strategy asym_quant;       /* quantized: fixed point, exact in the TEE (inference) */
extern const asym_strategy asym_blind;       /* slalom: fixed point, blinded on the accelerator (inference) */

#endif
