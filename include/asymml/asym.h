/* asymml's split execution (ALGORITHM.md): the modes, the per-layer plan,
 * differential-privacy noise on the residuals and its accountant, and the
 * boundary ledger.
 *
 * In asymml mode every conv layer that the planner splits computes
 *     TEE:          U from the batch (shared basis), V_b = U^T X_b, R_b = X_b - U V_b
 *                   R_b <- clip(R_b, c) + N(0, (sigma c)^2)      (when sigma > 0)
 *     accelerator:  Y^R = conv(W, R)                  [forward]
 *                   dX = conv_transpose(W, G), dW^R = corr(R, G)   [backward]
 *     TEE:          Y = conv(W U, V) + Y^R + b,  dW = U (x) corr(V, G) + dW^R
 * and everything else (the first conv, BatchNorm, ReLU, pooling, the shortcut
 * add, the classifier, the loss and the labels) stays in the TEE. */
#ifndef ASYMML_ASYM_H
#define ASYMML_ASYM_H

#include "asymml/core.h"
#include "asymml/crossing.h"
#include "asymml/decomp.h"
#include "asymml/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum am_mode {
    AM_MODE_TEE_ONLY = 0, /* everything in the TEE (the paper's SGX-only baseline) */
    AM_MODE_ASYMML,       /* split convs: residuals to the accelerator */
    AM_MODE_LOWRANK_ONLY, /* split convs, residuals dropped (accuracy ablation) */
    AM_MODE_OPEN,         /* every conv whole on the accelerator: no privacy */
    AM_MODE_GPU_ONLY,     /* every layer, the batch and the labels on the accelerator: no privacy
                           * (the paper's GPU-only baseline; am_model_sgd_step updates there) */
    AM_MODE_QUANTIZED,    /* inference only, everything in the TEE, in fixed point: every conv and
                           * linear layer's input quantized to act_bits (a scale per layer, from
                           * calibration), its weights to 8 bits (a scale per output channel), the
                           * integer products exact; the reference that blinding must match */
    AM_MODE_SLALOM,       /* inference only: quantized mode with every conv and linear layer on the
                           * accelerator, its input one-time padded mod AM_MODP (ChaCha20 under a
                           * key drawn in the TEE, a fresh pad per batch and layer), unpadded in the
                           * TEE (Slalom, Tramer and Boneh, ICLR 2019); the weights cross in the clear */
} am_mode;

const char *am_mode_name(am_mode m);
/* Quantized and slalom: fixed point, inference only. */
int am_mode_fixed_point(am_mode m);
am_status am_mode_parse(const char *s, am_mode *out);

typedef enum am_basis_kind {
    AM_BASIS_SHARED = 0, /* one U per batch (subspace iteration) */
    AM_BASIS_PER_SAMPLE, /* one U_b per sample (the paper's light SVD) */
    AM_BASIS_AUTO,       /* the planner picks per layer, on the first batch (see am_asym_cfg) */
} am_basis_kind;

/* At most this many conv layers take a rank from a list. */
#define AM_MAX_RANKS 256

typedef struct am_asym_cfg {
    am_mode mode;
    am_rank_policy policy; /* RATIO (default), FIXED, LIST, ENTROPY, ENERGY */
    double rank_value;     /* ratio (default 1/16), fixed rank, or tau */
    int n_ranks;           /* LIST: one rank per conv layer after the first, in model order; */
    int ranks[AM_MAX_RANKS]; /* 0 runs that layer whole in the TEE */
    /* SHARED, PER_SAMPLE, or AUTO: on the first batch, per layer, the one
     * that costs the TEE fewer FLOPs for the same energy: the per-sample
     * basis at the policy's rank, or a shared basis at the smallest rank
     * that keeps at least as much energy (exact spectra of that batch).
     * With noise on, AUTO takes the per-sample basis wherever the layer's
     * residuals would otherwise each depend on their own sample only (no
     * BatchNorm before it, no protected gradients): a shared basis couples
     * the batch and multiplies the sensitivity by sqrt(batch). */
    am_basis_kind basis;
    int iters;             /* subspace iterations per batch (shared, warm-started) or T (per sample) */
    float clip;            /* c: per-sample L2 bound of a residual (0: no clipping) */
    float sigma;           /* noise multiplier: noise std is sigma * c (0: no noise) */
    uint64_t noise_seed;   /* seeds the cryptographic noise generator, with noise_key */
    uint8_t noise_key[32]; /* the noise generator's secret key: all zeros (the noise then follows
                            * from noise_seed alone, and anyone who knows it can remove the
                            * noise) unless am_asym_secret_noise_key drew one */
    int protect_grads;     /* asymml mode: split each output gradient G = A B + S too and
                            * send only S (clipped and noised like R): no clear G crosses */
    int act_bits;          /* quantized mode: activation bits, 2 to 16 (0: AM_ACT_BITS) */
} am_asym_cfg;

/* Quantized inference's defaults: 8-bit weights (symmetric, a scale per
 * output channel) and 8-bit activations (a scale per layer), Slalom's
 * 8-bit fixed point (Tramer and Boneh, ICLR 2019). */
#define AM_ACT_BITS 8
#define AM_WEIGHT_MAX 127

/* An accelerator backend (src/boundary/backend.h): the in-process CPU
 * backend (a simulation: nothing is isolated), or the trusted process's
 * channel to the accelerator server. Whoever builds the model makes one and
 * hands it to am_model_set_asym; it must outlive the model's use of it. */
typedef struct am_backend am_backend;

/* The defaults: asymml mode, ratio 1/16, shared basis, 2 iterations, no
 * clipping, no noise. */
am_asym_cfg am_asym_defaults(void);

/* Converts m to the given mode: any model, no per-model code. Plans every
 * conv layer (split, or whole in the TEE where splitting would cost the TEE
 * more, and always the first conv). accel runs what leaves the trusted side
 * (asymml and open modes need one; lowrank-only and tee-only take NULL); the
 * model keeps the pointer and never frees it. Call after am_model_set_batch,
 * with the batch size the model will run at; calling it again replaces the
 * plan. AM_MODE_TEE_ONLY removes it. */
am_status am_model_set_asym(am_model *m, const am_asym_cfg *cfg, am_backend *accel);
/* Slalom's unblinding factors ahead of time (Slalom precomputes them in the
 * enclave and stores them sealed). A factor set is one batch's: for each
 * fixed-point layer (conv and linear, in model order: its ordinal), W r mod
 * p as int32 residues in [0, p), r the pad that layer draws for that batch
 * from the pad key. Batch t's pad of the layer of ordinal i is number
 * t L + i (L layers): one set per batch number, never two. */
typedef struct am_factor_src {
    void *ctx;
    /* The next unused set's number, never one handed out before; an error
     * when none is left. */
    am_status (*next)(void *ctx, uint64_t *batch);
    /* Set `batch`'s factors of the layer of that ordinal: n residues. */
    am_status (*load)(void *ctx, uint64_t batch, int ordinal, int32_t *out, size_t n);
} am_factor_src;
/* Fixed-point layers, and a layer's factors per batch (int32 values). */
int am_model_fixed_layers(const am_model *m);
size_t am_model_factor_len(const am_model *m, int ordinal);
/* What the factors are valid for: the batch size, each fixed-point layer's
 * shapes and integer weights (BLAKE2b). */
am_status am_model_factor_identity(am_model *m, uint8_t out[32]);
/* The pads' key (a factor store's) instead of the one drawn at random. */
am_status am_model_set_pad_key(am_model *m, const uint8_t key[32]);
/* Computes set `batch`'s factors of the layer of that ordinal. */
am_status am_model_factors(am_model *m, uint64_t batch, int ordinal, int32_t *out);
/* Slalom from now on takes every batch's factors from src (NULL: computes
 * them itself, as much work as the layer); src must outlive that use. */
am_status am_model_use_factors(am_model *m, const am_factor_src *src);

/* Quantized mode: x (a batch of the model's input shape, from data that
 * is not the evaluation's) widens every quantized layer's input range, on
 * a float pass that moves nothing. Without it, the first batch the model
 * runs calibrates it. */
am_status am_model_calibrate(am_model *m, const am_tensor *x);
/* Integrity (--verify): every reply of the accelerator is checked against a
 * random combination of its output channels (or input channels, for the
 * input gradient) recomputed in the trusted side, Freivalds-style, within a
 * float error bound derived from the operands' magnitudes; a reply that
 * fails is an error that names the layer. It costs the trusted side about
 * 1/K of each conv. Off by default; kept across new plans. */
void am_model_verify(am_model *m, int on);
/* The mode in force (AM_MODE_TEE_ONLY when none was set). */
am_mode am_model_mode(const am_model *m);
/* The training step the next forward pass belongs to: labels the ledger
 * and the requests (the host sees steps anyway). */
void am_model_set_step(am_model *m, uint64_t step);
/* The release counter: every residual (and protected gradient) that leaves
 * draws its noise from the next number, in training and evaluation alike,
 * so that no two releases share noise. It only increases; a new plan for
 * the same model (am_model_set_asym, am_model_set_batch) keeps it, and a
 * checkpoint keeps it (am_model_set_noise_counter on resume). */
uint64_t am_model_noise_counter(const am_model *m);
void am_model_set_noise_counter(am_model *m, uint64_t next);
/* A session of a run: every process that trains or evaluates the model
 * draws a fresh random nonce, mixed into the noise's secret key (with no
 * secret key, as with --noise-seed, it has no effect). Two sessions never
 * share noise, whatever their counters: a resumed run releases the steps
 * after its checkpoint again with new noise, which counts as more releases
 * (am_trainer_releases), never as the same noise on what may be other
 * residuals (the server's replies decide them, and it may change them). A
 * new plan keeps the session. */
am_status am_model_new_noise_session(am_model *m);

/* Per-layer plan and figures, for `asymml analyze`, bench and the logs. */
typedef struct am_split_info {
    int layer;          /* index in the model */
    int split;          /* 1: split; 0: whole in the TEE (first conv, or cheaper) */
    int C, K, r;        /* input channels, output channels, rank (0: not decided yet) */
    am_basis_kind basis; /* SHARED or PER_SAMPLE (AUTO: not decided yet) */
    double energy_kept; /* share of ||X||^2 in U V, over the batches since the timers' reset */
    double energy_total; /* ||X||^2 summed over those batches */
    double tee_flops, whole_flops; /* per training step: TEE side if split, and whole */
    double tee_s, decomp_s;       /* seconds spent in the TEE on this layer, and in the decomposition */
    double xfer_s;                /* of tee_s: copying across (releases out, results back; not a weight
                                     gradient merged in its unfold's pass) */
    double accel_s;               /* the accelerator's compute for this layer */
    double wait_s;                /* the TEE blocked on the accelerator: accel_s - wait_s overlapped */
} am_split_info;

int am_model_num_convs(const am_model *m);
am_status am_model_split_info(const am_model *m, int i, am_split_info *out);
/* Seconds the accelerator spent computing, in total; and seconds the TEE
 * spent blocked on it (the rest of the accelerator's time overlapped with
 * TEE work). */
/* One SGD step of the model's weights with opt's settings: in gpu-only
 * mode on the accelerator, with a momentum buffer there (opt's own is then
 * neither used nor updated), else am_sgd_step on the model's weights and
 * gradients. Leaving gpu-only mode (am_model_set_asym, or a new batch
 * size) brings the weights back first; the momentum stays behind. */
am_status am_model_sgd_step(am_model *m, am_sgd *opt, float lr);
/* gpu-only mode: brings the accelerator's weights, statistics, gradients
 * and last logits back into the model's (after steps there, before reading
 * them: until then the model's own are those the mode started from); a
 * no-op in other modes. What comes back is the host's: AM_ENUM if any of it
 * is not finite, and a model trained in gpu-only mode is not a trusted one. */
am_status am_model_sync(am_model *m);
double am_model_accel_seconds(const am_model *m);
double am_model_blocked_seconds(const am_model *m);
void am_model_reset_timers(am_model *m);

/* Where the trusted side's time goes: seconds per kind of work in forward and
 * backward passes since the timers' reset, the accelerator's time excluded.
 * "other" is the loss, flatten, dropout and the shortcut add. */
typedef enum am_prof_kind {
    AM_PROF_FIRST_CONV, AM_PROF_SPLIT_CONV, AM_PROF_WHOLE_CONV, AM_PROF_BN, AM_PROF_RELU, AM_PROF_POOL,
    AM_PROF_LINEAR, AM_PROF_OTHER, AM_PROF_KINDS
} am_prof_kind;
double am_model_profile(const am_model *m, am_prof_kind k);
/* What one training step's trusted side must move (bytes) and compute
 * (FLOPs) for layer i, at the batch size and plan in force, and the kind
 * its time is charged to (src/nn/traffic.c says what is counted). */
am_status am_model_layer_cost(const am_model *m, int i, am_prof_kind *kind, double *bytes, double *flops);
const char *am_prof_kind_name(am_prof_kind k);

/* The trusted working set of a step and a *modelled* SGX1 enclave's paging
 * (bench --epc). The regions that a training step (training != 0: forward,
 * loss, backward, and the SGD update over weights, gradients and the
 * optimizer's opt_bytes of state at opt) or an inference pass touches in trusted memory,
 * layer by layer in the order the code touches them (the model's tensors
 * at their real addresses, so that reused buffers share pages; the split's
 * own buffers; the accelerator's buffers are outside and not counted),
 * every page of a region once per touch, run twice through an LRU cache of
 * 4 KiB pages holding epc_bytes; the second run is counted. A model of
 * page traffic, not a measurement: repeated passes inside one kernel (a
 * GEMM's blocks) count once. Call after a step of the same kind ran (the
 * plan and the input's address are the step's). In gpu-only mode the
 * trusted side touches only the batch it hands over. */
typedef struct am_paging {
    double working_set; /* bytes: distinct pages touched, x 4 KiB */
    double touches;     /* page touches in one step */
    double swaps;       /* of them, misses in the second step: pages swapped in */
} am_paging;
am_status am_model_paging(const am_model *m, int training, const void *opt, size_t opt_bytes, size_t epc_bytes,
                          am_paging *out);

/* The plan as decided, one entry per conv layer in model order: rank (0:
 * whole) and basis. Data-driven choices (entropy, energy, AUTO) are made on
 * the first batch; am_model_plan_get returns 0 entries before that. Set it
 * (from a checkpoint) right after am_model_set_asym, before any batch, to
 * replay those choices. */
int am_model_plan_get(const am_model *m, int *rank, int *basis, int max);
am_status am_model_plan_set(am_model *m, const int *rank, const int *basis, int n);

/* State that resuming needs bit-exactly: the warm-started bases (floats). */
size_t am_model_asym_state_len(const am_model *m);
float *am_model_asym_state(am_model *m);
/* After writing the state (from a checkpoint): the next batch starts from it. */
void am_model_asym_state_restored(am_model *m);

/* ---- the boundary ledger ---- */

typedef struct am_ledger_entry {
    int step, layer;
    am_cross_kind kind;
    am_shape shape;
    size_t bytes;
    uint8_t hash[16]; /* BLAKE2b-128 of the bytes that crossed */
} am_ledger_entry;

/* Recording is off by default (hashing costs time); on, every crossing of
 * every step is kept. */
void am_model_ledger_enable(am_model *m, int on);
int am_model_ledger_count(const am_model *m);
const am_ledger_entry *am_model_ledger_entry(const am_model *m, int i);
void am_model_ledger_clear(am_model *m);
/* The hash the ledger would record for these bytes. */
void am_ledger_hash(const void *p, size_t n, uint8_t out[16]);

/* ---- differential privacy ---- */
/* Per-sample clipping to L2 norm c (if c > 0; every sample is scaled, by 1
 * when within the bound) and Gaussian noise of std sigma*c (if sigma > 0
 * and c > 0) on B samples of n floats each. The noise comes from
 * libsodium's ChaCha20 generator keyed by BLAKE2b(seed, release), a keyed
 * BLAKE2b under key (32 bytes) unless key is NULL or all zeros: with a
 * secret key, unpredictable to whoever knows the seed. release numbers the
 * release: each number must be used for one release only (the model's
 * release counter does that; see am_model_noise_counter). */
am_status am_dp_clip_noise(float *R, int B, size_t n, float clip, float sigma, const uint8_t *key, uint64_t seed,
                           uint64_t release);
/* The same for samples first .. first + B - 1 of a release (R holds just
 * them): they get exactly the noise one call over the whole batch gives. */
am_status am_dp_clip_noise_at(float *R, int B, size_t n, int first, float clip, float sigma, const uint8_t *key,
                              uint64_t seed, uint64_t release);
/* Draws a->noise_key from the operating system's generator (libsodium's
 * randombytes): call it in the trusted process, so that only it knows the
 * key; the noise then cannot be regenerated (nor removed) from the seed. */
am_status am_asym_secret_noise_key(am_asym_cfg *a);

/* The analytic Gaussian mechanism (Balle and Wang, 2018): delta at eps for
 * sensitivity D and noise std s, and the smallest eps that reaches delta. */
double am_agm_delta(double eps, double D, double s);
double am_agm_epsilon(double delta, double D, double s);
/* (eps, delta) for what crosses as residuals: `releases` Gaussian releases
 * that involve one sample (split layers x epochs begun), noise multiplier
 * sigma. When each residual depends on its own sample only (per-sample
 * basis, no BatchNorm batch statistics before the layer), replacing a sample
 * moves its own residual by at most 2c: sensitivity 2c. When a sample can
 * move every residual of its batch (a basis shared by the batch, or
 * BatchNorm's batch statistics), the batch's release moves by at most
 * 2c sqrt(B): pass coupling = B. The releases compose into one Gaussian
 * mechanism with multiplier sigma / sqrt(releases * coupling). eps is +inf
 * when sigma is 0. */
double am_dp_epsilon(double sigma, long releases, long coupling, double delta);
/* The same as a composable figure: mu^2 = releases * coupling * 4 / sigma^2
 * (Gaussian mechanisms compose by adding mu^2: training's releases and an
 * evaluation's of the same samples), and epsilon at delta for a sum. */
double am_dp_mu2(double sigma, long releases, long coupling);
double am_dp_epsilon_mu2(double mu2, double delta);

#ifdef __cplusplus
}
#endif
#endif
