/* The trusted side of split execution: per conv layer, the plan (how it
 * runs: split, low rank only, whole on the accelerator, or whole in the
 * TEE), the decomposition, the low-rank conv in the TEE, the requests to
 * the accelerator, the merge, DP noise and the ledger. model.c calls in here
 * for every conv layer once a mode other than tee-only is set. */
#ifndef ASYMML_TRUSTED_SPLIT_H
#define ASYMML_TRUSTED_SPLIT_H

#include "asymml/asym.h"
#include "boundary/backend.h"

typedef struct am_asym am_asym;

/* be: the accelerator (borrowed; asymml and open modes need one). */
am_status am_asym_create(const am_asym_cfg *cfg, int n_layers, am_backend *be, am_asym **out);
void am_asym_free(am_asym *a);
/* Plans conv layer `layer` reading input shape x (x.n = batch). first: it
 * reads the input image; coupled: a BatchNorm before it mixes the batch.
 * Quantized mode plans linear layers too, as 1x1 convs of x = B x in x 1 x 1.
 * Call in model order, then am_asym_plan_done. */
am_status am_asym_plan(am_asym *a, int layer, const am_conv2d_cfg *cfg, am_shape x, int first, int coupled);
am_status am_asym_plan_done(am_asym *a);
/* 1 if the layer's plan waits for data (a data-driven rank, or AUTO's
 * basis): am_asym_decide it on the layer's input of the first batch
 * before that batch's step runs. Until then the layer is not handled. */
int am_asym_pending(const am_asym *a, int layer);
am_status am_asym_decide(am_asym *a, int layer, const float *x);
/* Quantized mode: the layer's input x (of a calibration batch) widens its
 * range; the first call settles a pending layer. */
am_status am_asym_calibrate(am_asym *a, int layer, const float *x);
int am_asym_plan_get(const am_asym *a, int *rank, int *basis, int max);
am_status am_asym_plan_set(am_asym *a, const int *rank, const int *basis, int n);
/* 1 if the layer runs through here (split, low rank only, or whole on the
 * accelerator), 0 if it runs whole in the TEE as usual (or is pending). */
int am_asym_handles(const am_asym *a, int layer);
/* 1 if the layer's backward pass reads its input's values (whole convs do;
 * a split conv needs only V and the accelerator's copy of the residual). */
int am_asym_needs_input(const am_asym *a, int layer);
/* moments: N x K pairs for a following batchnorm (am_plane_moments of each
 * output plane, taken as the output is merged), or NULL. */
am_status am_asym_forward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                          const float *w, const float *b, am_tensor *y, float *work, size_t work_n,
                          int training, double *moments, int relu);
/* Whether layer's forward applies the in-place ReLU after it itself
 * (relu in am_asym_forward): fixed-point modes, in inference. */
int am_asym_takes_relu(const am_asym *a, int layer, int training);
am_status am_asym_backward(am_asym *a, int layer, const am_conv2d_cfg *cfg, const am_tensor *x,
                           const float *w, const am_tensor *dy, am_tensor *dx, int accum, float *dw,
                           float *db, float *work, size_t work_n);

/* The trusted memory that a handled layer's forward (backward) pass
 * touches besides its input, output, weights and their gradients, which
 * the caller knows: V, the folded weights, the basis and its scratch, the
 * residual's buffer before it leaves, the fold's scratch. Fills up to
 * AM_ASYM_REGIONS (pointer, bytes) pairs in the order the pass touches
 * them and returns how many; *work: on entry, the floats of workspace the
 * pass is given; on return, those it touches. A layer whole on the accelerator touches none of them. The
 * accelerator's buffers are not trusted memory and are not listed. */
#define AM_ASYM_REGIONS 16
int am_asym_regions(const am_asym *a, int layer, int backward, const void **ptr, size_t *bytes, size_t *work);

void am_asym_set_step(am_asym *a, uint64_t step);
uint64_t am_asym_noise_counter(const am_asym *a);
void am_asym_set_verify(am_asym *a, int on);
/* The session's nonce (16 bytes): the noise is keyed by the run's secret
 * key mixed with it. */
void am_asym_set_noise_session(am_asym *a, const uint8_t *nonce);
void am_asym_set_noise_counter(am_asym *a, uint64_t next);
const am_asym_cfg *am_asym_config(const am_asym *a);
int am_asym_num_convs(const am_asym *a);
am_status am_asym_info(const am_asym *a, int i, am_split_info *out);
double am_asym_accel_seconds(const am_asym *a);
double am_asym_blocked_seconds(const am_asym *a);
void am_asym_reset_timers(am_asym *a);
size_t am_asym_state_len(const am_asym *a);
float *am_asym_state(am_asym *a);
/* The bases were loaded (from a checkpoint): start from them. */
void am_asym_state_restored(am_asym *a);

void am_asym_ledger_enable(am_asym *a, int on);
int am_asym_ledger_count(const am_asym *a);
const am_ledger_entry *am_asym_ledger_entry(const am_asym *a, int i);
void am_asym_ledger_clear(am_asym *a);

/* Slalom's factors (precompute.c; asymml/asym.h): the fixed-point layer of
 * an ordinal (-1: none), its factors' length per batch, its part of the
 * identity (32 bytes), its factors for a batch; the pads' key; where
 * inference takes factors from. w: the layer's weights. */
int am_asym_fixed_layer(const am_asym *a, int ordinal);
size_t am_asym_factor_len(const am_asym *a, int ordinal);
am_status am_asym_factor_identity(am_asym *a, int layer, const float *w, uint8_t out[32]);
am_status am_asym_factors(am_asym *a, int layer, const float *w, uint64_t batch, int32_t *out);
void am_asym_set_pad_key(am_asym *a, const uint8_t key[32]);
void am_asym_use_factors(am_asym *a, const am_factor_src *src);

#endif
