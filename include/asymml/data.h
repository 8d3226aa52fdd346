/* asymml datasets: IDX files (MNIST, Fashion-MNIST; plain or .gz), the
 * CIFAR-10 and CIFAR-100 binary versions, and synthetic data; a loader that
 * shuffles each epoch, augments, normalizes and batches.
 *
 * Every parser works on bytes in memory (the file readers load, then parse),
 * so that the fuzz targets exercise exactly the code that reads real files. */
#ifndef ASYMML_DATA_H
#define ASYMML_DATA_H

#include "asymml/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A labelled image set held in memory as bytes, channel-major (C, H, W). */
typedef struct am_dataset {
    int n, c, h, w;   /* n images of c x h x w */
    int classes;
    uint8_t *pixels;  /* n*c*h*w bytes */
    int32_t *labels;  /* n labels in [0, classes) */
    int sealed;       /* read from sealed files (asymml/seal.h), all of one sealing: */
    uint8_t seal_id[16]; /* its dataset identity */
} am_dataset;

typedef enum am_data_kind {
    AM_DATA_IDX,       /* MNIST / Fashion-MNIST: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] */
    AM_DATA_CIFAR10,   /* data_batch_{1..5}.bin, test_batch.bin */
    AM_DATA_CIFAR100,  /* train.bin, test.bin (fine labels) */
} am_data_kind;

/* "idx", "mnist", "fashion-mnist" -> IDX; "cifar10"; "cifar100". */
am_status am_data_kind_parse(const char *name, am_data_kind *out);

/* Loads split "train" or "test" of a dataset of the given kind from dir (for
 * CIFAR, dir may also be the folder that holds cifar-10-batches-bin or
 * cifar-100-binary). Fails with a one-line message naming the file. */
am_status am_dataset_load(am_data_kind kind, const char *dir, const char *split, am_dataset *out);

/* Reads a whole plain file, through zlib when it is gzip-compressed; at most
 * max bytes after decompression (AM_EFORMAT beyond). *buf is malloc'ed. A
 * sealed file is refused here: datasets open theirs through
 * am_dataset_load, which checks what each one is. */
am_status am_read_file(const char *path, size_t max, uint8_t **buf, size_t *n);

/* Parses an IDX image file (magic 0x00000803) and its label file
 * (0x00000801) held in memory: magic numbers, sizes, the agreement of the
 * two counts and the label range [0, classes). name is for messages. */
am_status am_idx_parse(const uint8_t *img, size_t img_n, const uint8_t *lab, size_t lab_n,
                       int classes, const char *name, am_dataset *out);
/* Reads IDX files by path (plain, gzip-compressed, or sealed with the
 * process-wide key as the training split's files when train is 1, the test
 * split's when 0, both from one sealing). */
am_status am_idx_load(const char *images_path, const char *labels_path, int classes, int train, am_dataset *out);

/* Parses CIFAR binary records (CIFAR-10: label byte + 3072 pixel bytes;
 * CIFAR-100: coarse label, fine label, 3072 pixel bytes) and appends them to
 * out (which may be empty: zeroed). name is for messages. */
am_status am_cifar_parse(const uint8_t *buf, size_t n, int cifar100, const char *name,
                         am_dataset *out);

/* n random images of c x h x w with classes classes, from seed. The mean of
 * each image depends on its label, so that a model can learn something. */
am_status am_synthetic(int n, int c, int h, int w, int classes, uint64_t seed, am_dataset *out);

void am_dataset_free(am_dataset *d);
/* Keeps the first n images. */
void am_dataset_truncate(am_dataset *d, int n);

/* Per-channel mean and standard deviation of the pixels scaled to [0, 1]. */
am_status am_dataset_stats(const am_dataset *d, float *mean, float *std);
/* Fills x [B, c, h, w] and labels with images idx[0..B) of d, scaled to
 * [0, 1] then normalized per channel. */
am_status am_dataset_batch(const am_dataset *d, const uint32_t *idx, int B, const float *mean,
                           const float *std, float *x, int32_t *labels);

/* ---- the training loader ----
 * Epoch e visits the images in an order drawn from (seed, e); the crop offset
 * and flip of the image at position p of epoch e are drawn from (seed, e, p).
 * The loader's whole state is therefore (epoch, position): a checkpoint that
 * stores those two resumes the exact same batches. */
typedef struct am_loader_cfg {
    int batch;
    uint64_t seed;
    int crop_pad;  /* random crop after zero padding of this many pixels (0: none) */
    int flip;      /* random horizontal flip with probability 1/2 */
} am_loader_cfg;

typedef struct am_loader {
    const am_dataset *d;
    am_loader_cfg cfg;
    float mean[4], std[4];
    uint32_t *perm;   /* this epoch's order */
    int epoch;        /* current epoch, from 0 */
    int pos;          /* images of this epoch already given */
    uint8_t *scratch; /* one padded image */
} am_loader;

/* mean and std: d->c values each (usually am_dataset_stats of the train set). */
am_status am_loader_init(am_loader *l, const am_dataset *d, const am_loader_cfg *cfg,
                         const float *mean, const float *std);
void am_loader_free(am_loader *l);
/* Full batches per epoch (an incomplete last batch is dropped). */
int am_loader_steps_per_epoch(const am_loader *l);
/* Moves to (epoch, step within that epoch). */
am_status am_loader_seek(am_loader *l, int epoch, int step);
/* The next batch: x [batch, c, h, w], labels [batch]. Starts the next epoch
 * when this one has no full batch left. */
am_status am_loader_next(am_loader *l, float *x, int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif
