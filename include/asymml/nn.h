/* asymml models: a model is built from a small text description (a list of
 * layers, optionally named and wired to earlier layers), never from
 * hand-wired code. The zoo expands a name such as "vgg16" or
 * "resnet18-imagenet" into such a description.
 *
 * Description syntax: one layer per line or per ';'. Blank lines and text
 * after '#' are ignored. Every layer reads the previous one unless it says
 * from=NAME (add: from=A,B); name=NAME names it.
 *     input C H W
 *     conv OUT k=3 [kh= kw=] [s=1 | sh= sw=] [p=0 | ph= pw=] [bias=1]
 *     bn [eps=1e-5] [momentum=0.1]
 *     relu | flatten | gap (global average pool)
 *     maxpool k=2 [s=k] [p=0] [ceil=0]      avgpool k=2 [s=k] [p=0] [ceil=0]
 *     adaptiveavg H W
 *     linear OUT [bias=1]
 *     dropout [p=0.5]
 *     add from=A,B
 * The last layer's output is [classes, 1, 1]: the logits. */
#ifndef ASYMML_NN_H
#define ASYMML_NN_H

#include "asymml/core.h"
#include "asymml/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct am_model am_model;

/* Parses desc and allocates the parameters (zero; call am_model_init). */
am_status am_model_create(const char *desc, am_model **out);
void am_model_free(am_model *m);
/* For inference: a new model, m with every BatchNorm that reads the conv
 * just before it (and that conv nothing else) folded into the conv, from
 * its running statistics: W' = W g, b' = (b - mean) g + beta, g = gamma /
 * sqrt(var + eps) per output channel. Other layers and parameters are
 * copied. *n_folded (may be NULL): how many folded. Batch not set. */
am_status am_model_fold_bn(const am_model *m, am_model **out, int *n_folded);
/* The description the model was built from (canonical: one layer a line). */
const char *am_model_desc(const am_model *m);
/* Initializes as torchvision does: convs kaiming-normal (fan_out, relu) with
 * zero bias, BatchNorm weight 1 and bias 0, linear layers PyTorch's default
 * uniform(+-1/sqrt(fan_in)). */
am_status am_model_init(am_model *m, uint64_t seed);

am_shape am_model_input_shape(const am_model *m); /* n = 1 */
int am_model_num_classes(const am_model *m);

/* Parameters and buffers, in creation order (the order of PyTorch's
 * state_dict for the same definition, num_batches_tracked aside). */
typedef enum am_param_kind {
    AM_P_WEIGHT,
    AM_P_BIAS,
    AM_P_BN_WEIGHT,
    AM_P_BN_BIAS,
    AM_P_RUNNING_MEAN,
    AM_P_RUNNING_VAR,
} am_param_kind;

typedef struct am_param {
    char name[48];      /* e.g. "3.weight": layer index and role */
    am_param_kind kind;
    int trainable;      /* 0 for BatchNorm running statistics */
    int layer;          /* index of the layer that owns it */
    am_shape shape;     /* weights [K, C, kh, kw]; vectors [n, 1, 1, 1] */
    size_t numel;
    float *data;
    float *grad;        /* NULL for buffers */
} am_param;

int am_model_num_params(const am_model *m);
am_param *am_model_param(am_model *m, int i);
size_t am_model_trainable_count(const am_model *m); /* number of trainable floats */
/* All trainable parameters, their gradients: contiguous, same layout, each
 * tensor 64-byte aligned; the padding between tensors is zero in both and so
 * stays zero under SGD. am_model_weights_len counts the floats, padding
 * included: the length to give the optimizer. */
size_t am_model_weights_len(const am_model *m);
/* The non-trainable tensors (BatchNorm running statistics), same layout rules. */
float *am_model_buffers(am_model *m);
size_t am_model_buffers_len(const am_model *m);
float *am_model_weights(am_model *m);
float *am_model_grads(am_model *m);

/* One line of `asymml info`. */
typedef struct am_layer_info {
    const char *kind;
    const char *name; /* "" when unnamed */
    int in[2], n_in;  /* indices of the layers it reads */
    am_shape out;     /* per sample: n = 1 */
    size_t params;    /* trainable floats */
    double flops;     /* forward FLOPs per sample (a multiply-add counts 2) */
} am_layer_info;

int am_model_num_layers(const am_model *m);
am_status am_model_layer_info(const am_model *m, int i, am_layer_info *info);

/* Sizes every activation, gradient and workspace buffer for batch B in one
 * arena. Called again with another B, it replaces the arena. */
am_status am_model_set_batch(am_model *m, int B);
size_t am_model_arena_bytes(const am_model *m);

/* x: [B, C, H, W] for the B given to am_model_set_batch. training selects
 * batch statistics in BatchNorm (and updates the running ones) and dropout;
 * rng draws the dropout masks (may be NULL when the model has no dropout).
 * x must stay valid until the backward pass. */
am_status am_model_forward(am_model *m, const am_tensor *x, int training, am_rng *rng);
const am_tensor *am_model_logits(const am_model *m);
/* Layer i's output of the last forward pass (for tests and analysis). Only
 * outputs that a backward pass reads survive the forward pass, unless
 * am_model_keep_outputs(m, 1) was called (it lays the buffers out again). */
const am_tensor *am_model_output(const am_model *m, int i);
am_status am_model_keep_outputs(am_model *m, int on);
/* Softmax cross-entropy of the last forward pass; labels: B values. */
am_status am_model_loss(am_model *m, const int32_t *labels, float *loss);
/* Gradients of the loss of the last am_model_loss into am_model_grads. */
am_status am_model_backward(am_model *m);

/* ---- the zoo ----
 * names: lenet; vgg11 vgg13 vgg16 vgg19 (with BatchNorm, CIFAR classifier:
 * one linear layer), the same with "-imagenet" (7x7 adaptive pool and two
 * 4096-wide hidden layers with dropout); resnet18 resnet34 (3x3 stem) and
 * "-imagenet" (7x7 stride-2 stem, 3x3 stride-2 max-pool). Writes the
 * description into buf (AM_EINVAL if it does not fit). */
am_status am_zoo_describe(const char *name, am_shape in, int classes, char *buf, size_t cap);
/* NULL-terminated list of zoo names. */
const char *const *am_zoo_names(void);

/* ---- optimizer: SGD with PyTorch's semantics ---- */
typedef struct am_sgd_cfg {
    float momentum;     /* 0 disables the momentum buffer */
    float dampening;
    float weight_decay; /* applied to every parameter, as torch.optim.SGD does */
    int nesterov;       /* needs momentum > 0 and dampening 0 */
} am_sgd_cfg;

typedef struct am_sgd am_sgd;
am_status am_sgd_create(const am_sgd_cfg *cfg, size_t n, am_sgd **out);
void am_sgd_free(am_sgd *o);
/* w -= lr * update(g); w and g hold n floats. */
am_status am_sgd_step(am_sgd *o, float *w, const float *g, float lr);
/* The update itself, on n floats: buf is the momentum (NULL without),
 * first != 0 on the first step. am_sgd_step and accelerators share it. */
void am_sgd_update(const am_sgd_cfg *cfg, int first, float lr, float *w, const float *g, float *buf, size_t n);
/* The optimizer's settings. */
const am_sgd_cfg *am_sgd_config(const am_sgd *o);
/* The momentum buffer (n floats; NULL without momentum) and whether it has
 * been started. */
float *am_sgd_momentum(am_sgd *o, int *started);
/* Restores the buffer (n floats) and its started flag, as from a checkpoint. */
am_status am_sgd_restore(am_sgd *o, const float *buf, int started);

/* ---- learning-rate schedules, in units of the caller's choosing (steps or
 * epochs), with an optional linear warm-up before the main schedule ---- */
typedef enum am_sched_kind { AM_SCHED_CONSTANT, AM_SCHED_STEP, AM_SCHED_COSINE } am_sched_kind;
typedef struct am_schedule {
    am_sched_kind kind;
    float base_lr;
    int step_size;      /* step: multiply by gamma every step_size units */
    float gamma;
    int total;          /* cosine: units from base_lr to min_lr */
    float min_lr;
    int warmup;         /* linear warm-up units (0: none) */
    float warmup_start; /* warm-up starts at base_lr * warmup_start */
} am_schedule;

am_status am_schedule_check(const am_schedule *s);
float am_schedule_lr(const am_schedule *s, int t);

#ifdef __cplusplus
}
#endif
#endif
