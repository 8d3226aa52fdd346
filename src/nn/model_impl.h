/* The model's internals, shared by its files: model.c (create, buffers,
 * forward and backward), parse.c (the description into layers) and
 * modes.c (split execution attached to a model). Internal to src/nn. */
#ifndef ASYMML_NN_MODEL_IMPL_H
#define ASYMML_NN_MODEL_IMPL_H

#include "asymml/asym.h"
#include "asymml/nn.h"
#include "trusted/split.h"

enum kind { K_INPUT, K_CONV, K_BN, K_RELU, K_MAXPOOL, K_AVGPOOL, K_ADAPTIVE, K_LINEAR,
            K_DROPOUT, K_FLATTEN, K_ADD };

#define MAX_LAYERS 4096
#define NAME_LEN 32

typedef struct layer {
    enum kind kind;
    char name[NAME_LEN];
    int in[2], n_in;
    am_conv2d_cfg conv;
    am_bn_cfg bn;
    am_pool_cfg pool;
    int out_f, lin_bias;
    float p;
    am_shape os;      /* per-sample output shape (n = 1) */
    int param0, nparam;
    int consumers;
    int alias_y;      /* output (and gradient) share the input's memory */
    /* Fusion (am_bn_act): a batchnorm runs the ReLU and max-pool after it
     * (act_relu, act_pool: their layers, 0 none), which then do nothing
     * themselves (fused_into: the batchnorm); an in-place add runs the ReLU
     * after it the same way (act_relu); a conv that only a batchnorm
     * reads hands it its planes' moments (stats_to: the batchnorm). */
    int act_relu, act_pool, fused_into, stats_to;
    /* A conv or linear layer whose sole reader is an in-place ReLU: that
     * layer (0 none). In a fixed-point mode's inference the conv applies it
     * (am_asym_takes_relu) and the ReLU does nothing. */
    int out_relu;
    double *moments;  /* batchnorm: N x C planes' moments from the conv before it */
    /* per batch */
    am_tensor y, dy;
    float *save_mean, *save_invstd, *mask;
    int32_t *argmax;
    uint32_t *bits;   /* ReLU: the mask, one bit per element */
} layer;

struct am_model {
    char *desc;
    layer *L;
    int n;
    am_param *P;
    int np;
    size_t n_train, n_buf;
    float *wdata, *gdata, *bdata;
    /* per batch */
    int B;
    am_arena arena;
    float *work;
    size_t work_n;
    float *probs;
    int32_t *labels;
    int have_loss;
    int training;
    int *tmp;       /* scratch for planning the gradient buffers */
    size_t *tmp_sz;
    float **slot_base;
    int keep_all;   /* every layer's own buffer survives the forward pass (am_model_keep_outputs); a layer
                     * that an in-place ReLU or add reads holds their result */
    am_asym *asym;  /* split execution; NULL in tee-only mode */
    struct am_gpu *gpu; /* gpu-only mode's state (src/nn/gpuonly.c); NULL in the others */
    am_asym_cfg asym_cfg;
    am_backend *accel; /* borrowed: what runs the accelerator's part */
    uint64_t noise_counter; /* the release counter while no plan holds it */
    int verify;             /* am_model_verify */
    uint8_t session[16];    /* the noise's session nonce (am_model_new_noise_session) */
    double prof[AM_PROF_KINDS]; /* trusted seconds per kind of work, accelerator time excluded */
};

/* Parses desc into m's layers and parameters (m zeroed but for desc). */
am_status am_model_parse(am_model *m, const char *desc);
/* Lays the arena out again for the current batch (after the split plan or
 * the keep-outputs setting changed). */
am_status am_model_relayout(am_model *m);

/* Layer i's forward pass (its input's output is in place). */
am_status am_model_fwd_layer(am_model *m, int i, int training, am_rng *rng);
/* Decides the split plan's pending choices on this batch before its step
 * runs (modes.c). */
am_status am_model_plan_batch(am_model *m, const am_tensor *x, int training, am_rng *rng);

/* gpu-only mode (src/nn/gpuonly.c): every layer on the accelerator. */
am_status am_gpu_attach(am_model *m, am_backend *be);
void am_gpu_free(struct am_gpu *g);
am_status am_gpu_forward(am_model *m, const am_tensor *x, int training, am_rng *rng);
am_status am_gpu_loss(am_model *m, const int32_t *labels, float *loss);
am_status am_gpu_backward(am_model *m);
am_status am_gpu_sgd(am_model *m, const am_sgd_cfg *c, float lr);
am_status am_gpu_sync(am_model *m);
double am_gpu_blocked_seconds(const struct am_gpu *g);
double am_gpu_accel_seconds(const struct am_gpu *g);
void am_gpu_set_step(struct am_gpu *g, uint64_t step);

#endif
