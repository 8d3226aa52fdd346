/* What quantize, infer and precompute share: a checkpoint's model with its
 * weights (folded for the fixed-point modes), and the calibration of the
 * fixed-point scales on training images. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_checkpoint_model(const am_checkpoint *ck, int fold, int B, am_model **out) {
    am_model *m;
    *out = NULL;
    if (am_model_create(ck->desc, &m) != AM_OK) return lib_fail("checkpoint model");
    if (am_model_weights_len(m) != ck->n_weights || am_model_buffers_len(m) != ck->n_buffers) {
        am_model_free(m);
        return die(EXIT_RUNTIME, "checkpoint: tensor sizes do not match its model description");
    }
    memcpy(am_model_weights(m), ck->weights, ck->n_weights * sizeof(float));
    memcpy(am_model_buffers(m), ck->buffers, ck->n_buffers * sizeof(float));
    if (fold) {
        am_model *f;
        am_status st = am_model_fold_bn(m, &f, NULL);
        am_model_free(m);
        if (st != AM_OK) return lib_fail("fold");
        m = f;
    }
    *out = m;
    return am_model_set_batch(m, B) == AM_OK ? 0 : lib_fail("model");
}

int cli_calib_batches(const char *cmd, int calib, const am_dataset *tr, int B, int *nb) {
    *nb = (calib < tr->n ? calib : tr->n) / B;
    return *nb < 1 ? die(EXIT_USAGE, "%s: --calib %d is less than one batch of %d", cmd, calib, B) : 0;
}

int cli_calibrate(am_model *m, const am_dataset *tr, const am_checkpoint *ck, int B, int n) {
    am_shape s = am_model_input_shape(m);
    s.n = B;
    if (s.c != tr->c || s.h != tr->h || s.w != tr->w)
        return die(EXIT_RUNTIME, "calibrate: the model takes %dx%dx%d images; the data has %dx%dx%d", s.c, s.h, s.w,
                   tr->c, tr->h, tr->w);
    if ((long)n * B > tr->n) return die(EXIT_RUNTIME, "calibrate: %d images asked for, the data has %d", n * B, tr->n);
    float *x = am_aligned_alloc(sizeof(float) * am_shape_numel(s));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)B);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)B);
    int rc = x && lab && idx ? 0 : die(EXIT_RUNTIME, "calibrate: out of memory");
    for (int k = 0; !rc && k < n; k++) {
        for (int b = 0; b < B; b++) idx[b] = (uint32_t)(k * B + b);
        am_tensor t = {s, x};
        if (am_dataset_batch(tr, idx, B, ck->mean, ck->std, x, lab) || am_model_calibrate(m, &t)) rc = lib_fail("calibrate");
    }
    am_aligned_free(x);
    free(lab);
    free(idx);
    return rc;
}
