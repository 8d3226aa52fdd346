/* asymml training: the trainer (model + SGD + schedule + loader in one
 * object, so that the command line and the tests run the same loop) and
 * checkpoints.
 *
 * Checkpoint file, version 5 (little-endian):
 *     "AMCK"  u32 version  u64 payload length  payload  BLAKE2b-256 of all before it
 * The payload holds the model description, the training configuration, the
 * normalization, the position (epoch, step, global step), the weights, the
 * BatchNorm running statistics, the momentum buffer, the dropout RNG, the
 * execution mode, the split layers' warm-started bases, the noise's secret
 * key and release counter, the accountant's figures, and what the run is
 * bound to (am_run_binding). With a key set the whole file is sealed as the
 * run's checkpoint of its step (asymml/seal.h).
 * Files are written to a new temporary file, synced, then renamed: a crash
 * while saving leaves the previous checkpoint as it was. */
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
typedef struct am_checkpoint am_checkpoint;

/* What a run reads and where its accelerator is. train must outlive the
 * trainer; accel (src/boundary/backend.h) runs what leaves the trusted side
 * in asymml and open modes (NULL otherwise) and must outlive it too. */
typedef struct am_trainer_io {
    const am_dataset *train;
    const am_dataset *test; /* what is evaluated between epochs (may be NULL): part of the run */
    am_backend *accel;
} am_trainer_io;

#define AM_RUN_ID_BYTES 16
#define AM_DIGEST_BYTES 32

/* What a run is bound to: its data. Resuming with other training data
 * (another --data or --limit-train) or other test data (another
 * --limit-test) is refused: the run's samples, its counts of releases per
 * sample and its checkpoints' meaning are those of its data. threads is the
 * count the run started with, which a resume takes unless told otherwise
 * (bitwise equal losses need the same count). */
typedef struct am_run_binding {
    uint8_t run_id[AM_RUN_ID_BYTES];          /* drawn when the run starts */
    uint8_t train_digest[AM_DIGEST_BYTES];    /* am_dataset_digest of the training data */
    uint8_t test_digest[AM_DIGEST_BYTES];     /* of the test data (zeros: none) */
    int threads;
    int n_train, n_test;                      /* their sizes (n_test 0: none) */
} am_run_binding;

/* BLAKE2b-256 of a dataset as used: its shape, pixels and labels. */
void am_dataset_digest(const am_dataset *d, uint8_t out[AM_DIGEST_BYTES]);

/* A new run: the model from desc, initialized from cfg->seed; normalization
 * from the training set's statistics. */
am_status am_trainer_create(const am_train_cfg *cfg, const char *desc, const am_trainer_io *io, am_trainer **out);
/* Whether the run of a checkpoint may continue with io here (see
 * am_run_binding); am_trainer_resume checks it too. */
am_status am_trainer_resume_check(const am_checkpoint *ck, const am_trainer_io *io);
/* Continues the run saved in a checkpoint, on the same data (see
 * am_run_binding; the thread count must be set as the run's first). */
am_status am_trainer_resume(const am_checkpoint *ck, const am_trainer_io *io, am_trainer **out);
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
/* The learning rate of the next step if the run had `epochs` epochs (what
 * extending a run does to it: a cosine schedule stretches). */
float am_trainer_lr_at(const am_trainer *t, int epochs);
/* A session of this run reached reached_step, past the checkpoint resumed,
 * and its checkpoints after this one were lost (unreadable): the epochs it
 * began beyond this checkpoint are counted as releases (am_trainer_releases). */
void am_trainer_count_lost(am_trainer *t, int reached_step);
/* The resumes counted in am_trainer_releases: one per resume, and one per
 * epoch of a session whose checkpoints were lost. */
int am_trainer_resumes(const am_trainer *t);
/* Accuracy and mean loss of the model in evaluation mode on d. */
am_status am_trainer_evaluate(am_trainer *t, const am_dataset *d, double *acc, double *loss);
/* The current state as a checkpoint (its arrays point into the trainer:
 * valid until the next step; do not free). */
void am_trainer_snapshot(am_trainer *t, am_checkpoint *ck);
/* Writes a checkpoint of the current state to path, atomically. */
am_status am_trainer_save(am_trainer *t, const char *path);
/* The run's binding, for the start-up lines. */
const am_run_binding *am_trainer_binding(const am_trainer *t);

am_model *am_trainer_model(am_trainer *t);
const am_train_cfg *am_trainer_cfg(const am_trainer *t);
int am_trainer_global_step(const am_trainer *t);
/* Releases of one training sample's residuals so far: split layers x
 * (epochs begun + resumes), twice with protected gradients; what the DP
 * accountant composes. A resumed session releases the steps after its
 * checkpoint again, with fresh noise (am_model_new_noise_session), and the
 * session before may have released up to the rest of that epoch: one more
 * epoch's releases, counted. 0 outside asymml mode. */
long am_trainer_releases(const am_trainer *t);
/* 1 if each residual depends on its own sample only (per-sample basis and no
 * BatchNorm before a split layer), else the batch size: the coupling that
 * am_dp_epsilon takes. */
long am_trainer_coupling(const am_trainer *t);
/* Share of the split layers' input energy left in the residuals, over the
 * batches since the last call (0 when nothing is split). */
double am_trainer_residual_share(am_trainer *t);

/* ---- checkpoint files ---- */
/* How a run was started beyond its training configuration, kept in its
 * checkpoints (version 6 on) so that a resume goes on the same way; the
 * front end's to fill and read (the trainer leaves them zero). */
typedef struct am_run_opts {
    int tee_process; /* the trusted side ran as its own process (--tee process) */
    int save_every;  /* a checkpoint every N steps too (0: at the ends of epochs only) */
    int keep;        /* the newest N of the run's checkpoints are kept */
} am_run_opts;

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
    int version;                  /* of the file it was read from */
    am_run_binding bind;          /* version 5 on; zeros before */
    uint64_t noise_counter;       /* the next release number (am_model_noise_counter) */
    long releases, coupling;      /* per training sample so far, as am_trainer_releases and _coupling */
    int sessions;                 /* processes that have trained the run: 1, and one more per resume
                                   * (and per epoch of a session whose checkpoints were lost) */
    am_run_opts opts;             /* version 6 on; zeros before */
} am_checkpoint;

/* The file's bytes (sealed when a key is set); *out is malloc'ed. */
am_status am_checkpoint_encode(const am_checkpoint *ck, uint8_t **out, size_t *out_n);
/* Validates everything: magic, version, lengths, checksum, value ranges;
 * a sealed one's role, run and step. */
am_status am_checkpoint_parse(const uint8_t *buf, size_t n, am_checkpoint *ck);
void am_checkpoint_free(am_checkpoint *ck);
/* The run a checkpoint file (open at fd) says it is of, from its first
 * bytes, unauthenticated: to sort a directory's files, never to trust. */
am_status am_checkpoint_peek_run(int fd, uint8_t run_id[AM_RUN_ID_BYTES]);

/* ---- checkpoint files and directories (src/train/ckfile.c, ckdir.c) ----
 * A checkpoint directory is held open: every file in it is created,
 * renamed, listed and deleted relative to that descriptor, never through a
 * symbolic link, so that the trusted process can be confined to it. Files
 * are named ckpt-NNNNNNNNNN.amck (the global step they hold); temporary
 * files have unique names. A directory holds one run's checkpoints, and a
 * writer holds the directory: an exclusive lock (flock on the directory;
 * its pid in DIR/.asymml-lock) for as long as it is open. */
typedef struct am_ckdir {
    int fd;
    char path[4096];
} am_ckdir;

enum { AM_CKDIR_READ = 0, AM_CKDIR_WRITE = 1 };
/* Opens dir. AM_CKDIR_WRITE: creates it (mode 0700) if missing, checks that
 * a file can be created in it and takes its lock; a directory another
 * process holds is refused, naming that process. */
am_status am_ckdir_open(const char *dir, int flags, am_ckdir *d);
void am_ckdir_close(am_ckdir *d); /* and lets go of the lock */
/* 1 if a writer holds d now (a run is training there). */
int am_ckdir_busy(const am_ckdir *d);
/* A new run's directory: one that holds checkpoints (of another run) is
 * refused, unless move_aside: each is then moved, never deleted, into
 * DIR/run-ID/ (ID: its run's, in 16 hex digits; a file that does not say
 * goes with the newest run that does, run-unknown if none does), the
 * folders (with DIR) into where, their count into *moved. */
am_status am_ckdir_claim(const am_ckdir *d, int move_aside, char *where, size_t cap, int *moved);
/* Writes ck as ckpt-STEP.amck atomically, then deletes all but the newest
 * keep (keep >= 1) of ck's run up to STEP (later ones, damaged files a
 * resume passed over, stay); the file's name into name. */
am_status am_ckdir_save(const am_ckdir *d, const am_checkpoint *ck, int keep, char *name, size_t cap);
/* Deletes all but the newest keep checkpoints of run; files of another run,
 * or that do not say whose they are, stay. */
am_status am_ckdir_prune(const am_ckdir *d, const uint8_t run[AM_RUN_ID_BYTES], int keep);
/* The newest checkpoint's name (AM_EIO if there is none). */
am_status am_ckdir_latest(const am_ckdir *d, char *name, size_t cap);
/* The newest checkpoint named after a step past `step` that is of run, or
 * does not say whose it is, or says another run's but does not read whole
 * (a damaged identity) ("" if none). */
am_status am_ckdir_newer(const am_ckdir *d, const uint8_t run[AM_RUN_ID_BYTES], int step, char *name, size_t cap);
/* The step a checkpoint's file name says (ckpt-NNNNNNNNNN.amck), or -1. */
int am_checkpoint_name_step(const char *name);
/* Reads name in d; a ckpt-N.amck must hold step N. */
am_status am_ckdir_read(const am_ckdir *d, const char *name, am_checkpoint *ck);
/* Reads the newest checkpoint that reads whole: its name into name; each
 * newer one that did not read, with why, into skipped ("; " between; which
 * of them are its run's: am_ckdir_newer). */
am_status am_ckdir_load(const am_ckdir *d, am_checkpoint *ck, char *name, size_t cap, char *skipped, size_t scap);

/* The same by path: a checkpoint file written atomically, read back. */
am_status am_checkpoint_write(const char *path, const am_checkpoint *ck);
am_status am_checkpoint_read(const char *path, am_checkpoint *ck);
/* A file, or the newest checkpoint in a directory that reads (am_ckdir_load:
 * what was skipped into skipped). */
am_status am_checkpoint_load(const char *file_or_dir, am_checkpoint *ck, char *used, size_t cap, char *skipped,
                             size_t scap);

/* Told after each batch: images done of total. */
typedef struct am_progress {
    void (*fn)(void *ctx, int done, int total);
    void *ctx;
} am_progress;

/* Accuracy and mean loss of model m in evaluation mode on d, normalized with
 * mean/std, in batches of B (the last one padded). Sets m's batch to B.
 * progress may be NULL. */
am_status am_evaluate(am_model *m, const am_dataset *d, const float *mean, const float *std, int B,
                      const am_progress *progress, double *acc, double *loss);

#ifdef __cplusplus
}
#endif
#endif
