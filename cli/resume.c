/* asymml train --resume: the run goes on as it was started. Its directory
 * (the one its checkpoint lies in) is taken for this process; from a
 * directory, the newest checkpoint that reads is used, and newer ones that
 * do not read are said and their sessions' releases counted; every option
 * that defines the run comes from the checkpoint, and one given again must
 * say the same (--epochs may grow: the run is extended). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train.h"

/* Whether a run-defining option given again says something else than the
 * checkpoint: applied to the checkpoint's settings, does it change them? */
static int differs(const am_checkpoint *ck, const given_opt *g) {
    static train_opts t; /* large; one at a time */
    memset(&t, 0, sizeof t);
    memcpy(&t.cfg, &ck->cfg, sizeof t.cfg);
    memcpy(&t.mode.asym, &ck->cfg.asym, sizeof t.mode.asym);
    t.seed = (int)ck->cfg.seed;
    if (train_apply(&t, g->opt, g->arg)) return 1;
    const char *n = g->opt->name;
    if (!strcmp(n, "seed")) return (uint64_t)t.seed != ck->cfg.seed;
    if (!strcmp(n, "noise-seed")) /* a run with a secret noise key has no seed to repeat */
        return t.mode.asym.noise_seed != ck->cfg.asym.noise_seed ||
               !sodium_is_zero(ck->cfg.asym.noise_key, sizeof ck->cfg.asym.noise_key);
    memcpy(&t.cfg.asym, &t.mode.asym, sizeof t.cfg.asym);
    return memcmp(&t.cfg, &ck->cfg, sizeof t.cfg) != 0;
}

static int refuse(const train_opts *o, const given_opt *g, const char *why) {
    return die(EXIT_USAGE, "--%s%s%s: %s; a resumed run keeps the options it was started with (in %s)", g->opt->name,
               g->arg ? " " : "", g->arg ? g->arg : "", why, o->resumed);
}

/* An int the run fixed: given again, the same. */
__attribute__((format(printf, 5, 0))) static int same_int(const train_opts *o, const char *name, int given, int theirs,
                                                           const char *what) {
    const given_opt *g = train_given(o, name);
    if (!g || given == theirs) return 0;
    char why[160];
    snprintf(why, sizeof why, what, theirs); /* a format without %d ignores it */
    return refuse(o, g, why);
}

/* The options the checkpoint fixes. */
static int run_options(train_opts *o, am_checkpoint *ck) {
    int rc;
    const am_run_opts *ro = &ck->opts;
    if ((rc = same_int(o, "limit-train", o->limit_train, ck->bind.n_train, "this run trains on %d images")) ||
        (rc = same_int(o, "limit-test", o->limit_test, ck->bind.n_test, "this run tests on %d images")) ||
        (rc = same_int(o, "save-every", o->save_every, ro->save_every,
                       ro->save_every ? "this run saves every %d steps" : "this run saves at the ends of epochs only")))
        return rc;
    const given_opt *g = train_given(o, "tee");
    if (g && o->mode.process != ro->tee_process)
        return refuse(o, g, ro->tee_process ? "this run's trusted side is its own process (--tee process)"
                                            : "this run ran in one process (--tee inproc)");
    o->limit_train = ck->bind.n_train, o->limit_test = ck->bind.n_test;
    o->save_every = ro->save_every, o->mode.process = ro->tee_process;
    if (!o->keep) o->keep = ro->keep > 0 ? ro->keep : 3;
    if (!o->mode.threads && ck->bind.threads && am_set_threads(ck->bind.threads)) return lib_fail("threads");
    for (int i = 0; i < o->n_given; i++) {
        const given_opt *h = &o->given[i];
        if (!(h->opt->flags & OPT_RUN) || !strcmp(h->opt->name, "model") || !strcmp(h->opt->name, "model-file"))
            continue;
        if (!strcmp(h->opt->name, "epochs")) {
            if (o->cfg.epochs < ck->cfg.epochs) {
                char why[96];
                snprintf(why, sizeof why, "this run has %d epochs, and a resume may add epochs, not remove them",
                         ck->cfg.epochs);
                return refuse(o, h, why);
            }
            if (o->cfg.epochs > ck->cfg.epochs) o->old_epochs = ck->cfg.epochs, ck->cfg.epochs = o->cfg.epochs;
        } else if (differs(ck, h)) {
            return refuse(o, h, "not this run's setting");
        }
    }
    return 0;
}

/* The run's directory (that of the checkpoint given, or the directory
 * given), the checkpoint file's name in it ("" for the newest). */
static int where(train_opts *o, char *file, size_t cap) {
    struct stat st;
    *file = 0;
    if (stat(o->resume, &st)) return die(EXIT_RUNTIME, "--resume %s: no such file or directory", o->resume);
    if (S_ISDIR(st.st_mode)) {
        snprintf(o->run_dir, sizeof o->run_dir, "%s", o->resume);
        return 0;
    }
    snprintf(file, cap, "%s", dir_of(o->resume, o->run_dir, sizeof o->run_dir));
    return 0;
}

/* Given again, --checkpoint-dir must be the run's directory. */
static int same_dir(const train_opts *o) {
    struct stat a, b;
    if (!o->ckdir) return 0;
    if (!stat(o->ckdir, &a) && !stat(o->run_dir, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return 0;
    return die(EXIT_USAGE, "--checkpoint-dir %s: this run's checkpoints are in %s, and a resumed run goes on saving there",
               o->ckdir, o->run_dir);
}

/* The checkpoint: the file given, which must be its run's newest, or the
 * newest of the directory that reads. */
static int load(train_opts *o, run *r, const char *file) {
    char name[256], skipped[2048];
    if (*file) {
        if (am_checkpoint_name_step(file) < 0)
            return die(EXIT_USAGE, "--resume %s: not a checkpoint's name (ckpt-NNNNNNNNNN.amck): a run resumes from "
                                   "the checkpoints in its directory", o->resume);
        if (am_ckdir_read(&r->dir, file, &r->ck) != AM_OK) return lib_fail("--resume");
        snprintf(name, sizeof name, "%s", file);
    } else if (am_ckdir_load(&r->dir, &r->ck, name, sizeof name, skipped, sizeof skipped) != AM_OK) {
        return lib_fail("--resume");
    }
    /* Newer files of this run (or that do not say whose they are): from a
     * file, refused; from the directory, passed over (they did not read)
     * and the epochs their session may have trained counted. */
    char newer[256];
    if (am_ckdir_newer(&r->dir, r->ck.bind.run_id, r->ck.global_step, newer, sizeof newer) != AM_OK)
        return lib_fail("--resume");
    if (*newer && *file)
        return die(EXIT_USAGE, "--resume %s: this run has newer checkpoints (the newest: %s/%s): resume its directory "
                               "(--resume %s), which takes the newest that reads", o->resume, o->run_dir, newer,
                   o->run_dir);
    o->lost_step = *newer ? am_checkpoint_name_step(newer) : -1;
    if (!*file && *skipped)
        fprintf(stderr, "asymml: warning: skipped what does not read: %s; resuming from %s/%s instead\n", skipped,
                o->run_dir, name);
    if (snprintf(o->resumed, sizeof o->resumed, "%.4000s/%.190s", o->run_dir, name) >= (int)sizeof o->resumed)
        return die(EXIT_USAGE, "--resume %s: path too long", o->resume);
    if (r->ck.version < 6)
        return die(EXIT_RUNTIME, "--resume %s: a checkpoint of version %d does not record how its run was started: "
                                 "it can be evaluated, not resumed", o->resumed, r->ck.version);
    return 0;
}

int resume_open(train_opts *o, run *r) {
    char file[1024];
    int rc;
    o->lost_step = -1;
    if ((rc = where(o, file, sizeof file)) || (rc = same_dir(o))) return rc;
    if (am_ckdir_open(o->run_dir, AM_CKDIR_WRITE, &r->dir) != AM_OK) return lib_fail("--resume");
    if ((rc = load(o, r, file)) || (rc = run_options(o, &r->ck))) return rc;
    o->ckdir = o->run_dir;
    if (o->mode.cuda && !o->mode.process)
        return die(EXIT_USAGE, "--accel cuda: this run's trusted side and accelerator share one process (--tee inproc)");
    printf("resuming %s at step %d; checkpoints to %s\n", o->resumed, r->ck.global_step, o->ckdir);
    return 0;
}

int resume_check_model(const train_opts *o, run *r) {
    const given_opt *g = train_given(o, "model");
    if (!g) g = train_given(o, "model-file");
    if (!g) return 0;
    char *desc;
    int rc = describe(o->model, o->model_file, am_shape4(1, r->tr.c, r->tr.h, r->tr.w), r->tr.classes, &desc);
    if (rc) return rc;
    int same = !strcmp(desc, r->ck.desc);
    free(desc);
    return same ? 0 : refuse(o, g, "not this run's model");
}

/* Extended: what that does to the learning rate. */
static void say_extension(const train_opts *o, run *r) {
    const am_train_cfg *c = am_trainer_cfg(r->t);
    float now = am_trainer_lr_at(r->t, c->epochs), was = am_trainer_lr_at(r->t, o->old_epochs);
    printf("extending the run from %d to %d epochs: the learning rate goes on at %.5g", o->old_epochs, c->epochs,
           (double)now);
    if (c->sched == AM_SCHED_COSINE) printf(" (its cosine schedule now spans %d epochs; it was at %.5g)", c->epochs, (double)was);
    printf("\n");
}

/* A resumed session that releases is counted before anything crosses: the
 * checkpoint it resumed from is written again with this session in it, so
 * that a session the host makes fail before its first save still counts
 * when the run is resumed from there once more. */
int resume_start(const train_opts *o, run *r) {
    if (o->lost_step >= 0) am_trainer_count_lost(r->t, o->lost_step);
    if (o->old_epochs) say_extension(o, r);
    const am_asym_cfg *a = &am_trainer_cfg(r->t)->asym;
    if (a->mode != AM_MODE_ASYMML || !(a->sigma > 0.f) || am_trainer_done(r->t)) return 0;
    am_checkpoint ck;
    train_snapshot(o, r, &ck);
    if (am_ckdir_save(&r->dir, &ck, 1 << 30, NULL, 0) != AM_OK)
        return lib_fail("--resume: this session must be recorded in the checkpoint before it releases");
    return 0;
}
