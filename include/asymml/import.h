/* Models trained elsewhere: a PyTorch state dict saved in the safetensors
 * format, with torchvision's parameter names, into a zoo model of asymml.
 *
 * Names (the state dict of the PyTorch model that has the zoo model's
 * structure; BatchNorm's running_mean and running_var are read too, its
 * num_batches_tracked passed over):
 *   vggNN             torchvision's vggNN_bn features (features.N.weight and
 *                     .bias for convs and BatchNorm, N the module's index in
 *                     features), avgpool = Identity, classifier =
 *                     nn.Linear(512 x h x w, classes): classifier.weight, .bias
 *   vggNN-imagenet    torchvision's vggNN_bn: features.N, classifier.0, .3, .6
 *   resnetNN[-imagenet] torchvision's resnetNN: conv1, bn1, layerS.B.conv1,
 *                     .bn1, .conv2, .bn2, .downsample.0 (conv), .downsample.1
 *                     (BatchNorm), fc; the CIFAR variant has the same names
 *                     (its conv1 is 3x3, stride 1, and maxpool = Identity)
 *   lenet             conv1, conv2 (5x5, padding 2, each followed by ReLU and
 *                     a 2x2 max-pool), fc1 (128), fc2 (classes)
 * A state dict saved from nn.DataParallel (every name starting "module.")
 * is read as well. Every tensor of the model must be there, with PyTorch's
 * shape (linear weights out x in), in F32, F16, BF16 or F64, and finite
 * (running variances not negative); any other tensor is refused: each
 * refusal names the tensor. */
#ifndef ASYMML_IMPORT_H
#define ASYMML_IMPORT_H

#include "asymml/core.h"
#include "asymml/nn.h"
#include "asymml/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct am_import_info {
    int tensors;   /* taken into the model */
    int ignored;   /* num_batches_tracked counters passed over */
    size_t params; /* trainable floats */
    int prefixed;  /* the names began with "module." */
} am_import_info;

/* The torchvision name of model m's parameter i (am_model_param), m being
 * zoo model `zoo`, into buf. AM_EINVAL for a model that is not of the zoo. */
am_status am_import_name(am_model *m, const char *zoo, int i, char *buf, size_t cap);

/* Builds zoo model `zoo` for input in and classes, and fills its parameters
 * and BatchNorm running statistics from a safetensors file held in buf.
 * info may be NULL. */
am_status am_import_safetensors(const char *zoo, am_shape in, int classes, const uint8_t *buf, size_t n,
                                am_model **out, am_import_info *info);
/* The same from a file (plain or gzip-compressed); errors name it. */
am_status am_import_file(const char *zoo, am_shape in, int classes, const char *path, am_model **out,
                         am_import_info *info);

/* A checkpoint of model m at step 0, tee-only, normalized with mean and
 * std (one per input channel, 1 to 4 channels, pixels scaled to [0, 1] as
 * torchvision's ToTensor does), under a new run identity: what `asymml
 * eval` reads. Its arrays point into m (valid while m is; do not free).
 * Bound to no data, so `asymml train --resume` refuses it. */
am_status am_import_checkpoint(am_model *m, const float *mean, const float *std, am_checkpoint *ck);

#ifdef __cplusplus
}
#endif
#endif
