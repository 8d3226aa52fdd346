/* asymml datasets: IDX files (MNIST, Fashion-MNIST; plain or .gz). */
#ifndef ASYMML_DATA_H
#define ASYMML_DATA_H

#include "asymml/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A labelled image set held in memory as bytes. */
typedef struct am_dataset {
    int n, c, h, w;   /* n images of c x h x w */
    int classes;
    uint8_t *pixels;  /* n*c*h*w bytes */
    int32_t *labels;  /* n labels in [0, classes) */
} am_dataset;

/* Reads an IDX image file (magic 0x00000803) and its label file (0x00000801),
 * either of them gzip-compressed or not. Validates magic numbers, sizes, the
 * agreement of the two counts and the label range [0, classes). */
am_status am_idx_load(const char *images_path, const char *labels_path, int classes,
                      am_dataset *out);
void am_dataset_free(am_dataset *d);

/* Per-channel mean and standard deviation of the pixels scaled to [0, 1]. */
am_status am_dataset_stats(const am_dataset *d, float *mean, float *std);
/* Fills x [B, c, h, w] and labels with images idx[0..B) of d, scaled to
 * [0, 1] then normalized per channel. */
am_status am_dataset_batch(const am_dataset *d, const uint32_t *idx, int B, const float *mean,
                           const float *std, float *x, int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif
