/* asymml training: the trainer (model + SGD + schedule + loader in one
 * object, so that the command line and the tests run the same loop) and
 * checkpoints.
 *
 * Checkpoint file, version 2 (little-endian):
 *     "AMCK"  u32 version  u64 payload length  payload  BLAKE2b-256 of all before it
 * The payload holds the model description, the training configuration, the
 * normalization, the position (epoch, step, global step), the weights, the
 * BatchNorm running statistics, the momentum buffer, the dropout RNG, the
 * execution mode and the split layers' warm-started bases.
 * Files are written to a temporary name, synced, then renamed: a crash while
 * saving leaves the previous checkpoint as it was. */
#ifndef ASYMML_TRAIN_H
#define ASYMML_TRAIN_H

#include "asymml/asym.h"
#include "asymml/core.h"
#include "asymml/data.h"
#include "asymml/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct am_train_cfg {
    int epochs, batch;
    float lr, momentum, wd;
    int nesterov;
    am_sched_kind sched;
    int step_size; /* step schedule: epochs between decays */
    float gamma;   /* step schedule: decay factor */
    int warmup;    /* linear warm-up steps */
    uint64_t seed;
    int crop_pad;  /* augmentation: random crop after this much zero padding */
    int flip;      /* augmentation: random horizontal flip */
    am_asym_cfg asym; /* execution mode; mode 0 (tee-only) is plain training */
} am_train_cfg;

typedef struct am_trainer am_trainer;

/* A new run: the model from desc, initialized from cfg->seed; normalization
 * from the training set's statistics. train must outlive the trainer. */
am_status am_trainer_create(const am_train_cfg *cfg, const char *desc, const am_dataset *train,
                            am_trainer **out);
/* Continues the run saved in a checkpoint file, on the same training set. */
am_status am_trainer_resume(const char *path, const am_dataset *train, am_trainer **out);
void am_trainer_free(am_trainer *t);

typedef struct am_step_info {
    int epoch, step;          /* from 1; step within the epoch */
    int steps_per_epoch, global_step, total_steps;
    float loss, lr;
    int correct, batch;       /* right answers in this batch */
} am_step_info;

/* One SGD step on the next batch. AM_ENUM if the loss is not finite. */
am_status am_trainer_step(am_trainer *t, am_step_info *info);
int am_trainer_done(const am_trainer *t);
/* Accuracy and mean loss of the model in evaluation mode on d. */
am_status am_trainer_evaluate(am_trainer *t, const am_dataset *d, double *acc, double *loss);
/* Writes a checkpoint of the current state to path, atomically. */
am_status am_trainer_save(am_trainer *t, const char *path);

am_model *am_trainer_model(am_trainer *t);
const am_train_cfg *am_trainer_cfg(const am_trainer *t);
int am_trainer_global_step(const am_trainer *t);
/* Releases of one training sample's residuals so far (split layers x epochs
 * begun): what the DP accountant composes. 0 outside asymml mode. */
long am_trainer_releases(const am_trainer *t);
/* 1 if each residual depends on its own sample only (per-sample basis and no
 * BatchNorm before a split layer), else the batch size: the coupling that
 * am_dp_epsilon takes. */
long am_trainer_coupling(const am_trainer *t);
/* Share of the split layers' input energy left in the residuals, over the
 * batches since the last call (0 when nothing is split). */
double am_trainer_residual_share(am_trainer *t);

/* ---- checkpoint files ---- */
typedef struct am_checkpoint {
    char *desc;
    am_train_cfg cfg;
    int channels;
    float mean[4], std[4];
    int epoch, step, global_step; /* epoch from 0; steps done in it */
    size_t n_weights, n_buffers;  /* floats, as am_model_weights_len and am_model_buffers_len */
    float *weights, *buffers, *momentum; /* momentum NULL when there is none */
    int momentum_started;
    am_rng rng;                   /* the dropout generator */
    size_t n_asym;                /* floats of split-execution state */
    float *asym;
    int n_plan;                   /* the split plan as decided (am_model_plan_get): 0, or one per conv */
    int plan_rank[AM_MAX_RANKS + 1], plan_basis[AM_MAX_RANKS + 1];
} am_checkpoint;

am_status am_checkpoint_write(const char *path, const am_checkpoint *ck);
/* Validates everything: magic, version, lengths, checksum, value ranges. */
am_status am_checkpoint_parse(const uint8_t *buf, size_t n, am_checkpoint *ck);
am_status am_checkpoint_read(const char *path, am_checkpoint *ck);
void am_checkpoint_free(am_checkpoint *ck);

/* Checkpoints in a directory are named ckpt-NNNNNNNNNN.amck (the global
 * step). The newest one's path into buf (AM_EIO if there is none). */
am_status am_checkpoint_latest(const char *dir, char *buf, size_t cap);
/* Deletes all but the newest keep checkpoints in dir. */
am_status am_checkpoint_prune(const char *dir, int keep);
/* AM_OK if dir exists (it is created if not) and a file can be created in it. */
am_status am_checkpoint_dir_check(const char *dir);

/* Accuracy and mean loss of model m in evaluation mode on d, normalized with
 * mean/std, in batches of B (the last one padded). Sets m's batch to B. */
am_status am_evaluate(am_model *m, const am_dataset *d, const float *mean, const float *std, int B,
                      double *acc, double *loss);

#ifdef __cplusplus
}
#endif
#endif
