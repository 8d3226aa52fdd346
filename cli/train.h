/* What train.c and resume.c share: a training run's options and what it
 * holds. Private to the train command. */
#ifndef ASYMML_CLI_TRAIN_H
#define ASYMML_CLI_TRAIN_H

#include "cli.h"

#define MAX_GIVEN 128

typedef struct given_opt {
    const cli_opt *opt;
    const char *arg; /* NULL for a flag */
} given_opt;

typedef struct train_opts {
    const char *data, *model, *model_file, *log, *ckdir, *resume;
    char resumed[4200]; /* the checkpoint file resumed */
    char run_dir[4200]; /* a resumed run's directory */
    am_data_kind kind;
    am_train_cfg cfg;
    int limit_train, limit_test, every, save_every, keep, crop_set, flip_set, seed, new_run;
    int lost_step;  /* resumed past unreadable checkpoints: the newest one's step (-1: none) */
    int old_epochs; /* resumed with more --epochs: the run's (0: not extended) */
    double delta;
    cli_mode mode;
    given_opt given[MAX_GIVEN]; /* the options on the command line, in order */
    int n_given;
} train_opts;

/* Everything a run holds, freed in one place. */
typedef struct run {
    am_dataset tr, te;
    am_checkpoint ck;
    am_trainer *t;
    cli_tee *tee;
    cli_log *log;
    am_ckdir dir;
    char *desc;
} run;

/* Sets what option o with arg says in t: 0, or an exit code. */
int train_apply(train_opts *t, const cli_opt *o, const char *arg);
/* The option given on the command line by that name (NULL: not given). */
const given_opt *train_given(const train_opts *o, const char *name);
/* The trainer's state, with how the run was started. */
void train_snapshot(const train_opts *o, run *r, am_checkpoint *ck);

/* ---- resume.c ---- */
/* --resume, before the data are read: the run's directory taken, its
 * checkpoint read, the options that define the run taken from it (those
 * given again must say the same). */
int resume_open(train_opts *o, run *r);
/* With the data read: the model options given again. */
int resume_check_model(const train_opts *o, run *r);
/* With the trainer resumed, before anything crosses: lost sessions
 * counted, an extension said, this session written into the checkpoint. */
int resume_start(const train_opts *o, run *r);

#endif
