/* asymml train: trains a model; checkpoints and resume. */
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train.h"

static const char usage[] =
    "usage: asymml train --data DIR [options]\n"
    "       asymml train --data DIR --resume DIR|FILE [--epochs N] [--key FILE] [--log PATH] [--threads N]\n"
    "Train a model and report test accuracy after each epoch.\n";

enum {
    T_DATA = 1, T_DATASET, T_MODEL, T_MODEL_FILE, T_EPOCHS, T_BATCH, T_LR, T_MOMENTUM, T_NESTEROV, T_WD, T_SCHEDULE,
    T_STEP_SIZE, T_GAMMA, T_WARMUP, T_CROP, T_FLIP, T_NO_FLIP, T_SEED, T_LIMIT_TRAIN, T_LIMIT_TEST, T_EVERY, T_LOG,
    T_CKDIR, T_SAVE_EVERY, T_KEEP, T_RESUME, T_NEW_RUN, T_DELTA
};

static const cli_opt opts[] = {
    {"data", "DIR", T_DATA, 0, "dataset folder (Debian's Fashion-MNIST: /usr/share/datasets/fashion-mnist)"},
    {"dataset", "KIND", T_DATASET, 0, "idx (MNIST, Fashion-MNIST; default), cifar10, cifar100"},
    {"model", "NAME", T_MODEL, OPT_RUN, "zoo model (default lenet); see `asymml info --list`"},
    {"model-file", "PATH", T_MODEL_FILE, OPT_RUN, "a layer description file instead"},
    {"epochs", "N", T_EPOCHS, OPT_RUN, "default 3"},
    {"batch", "N", T_BATCH, OPT_RUN, "default 64 (an incomplete last batch of an epoch is dropped)"},
    {"lr", "X", T_LR, OPT_RUN, "base learning rate, default 0.05"},
    {"momentum", "X", T_MOMENTUM, OPT_RUN, "default 0.9"},
    {"nesterov", NULL, T_NESTEROV, OPT_RUN, "Nesterov momentum"},
    {"wd", "X", T_WD, OPT_RUN, "weight decay, default 5e-4"},
    {"schedule", "S", T_SCHEDULE, OPT_RUN, "constant | step | cosine (default cosine, per step)"},
    {"step-size", "N", T_STEP_SIZE, OPT_RUN, "step schedule: epochs between decays (default 1)"},
    {"gamma", "X", T_GAMMA, OPT_RUN, "step schedule: decay factor (default 0.1)"},
    {"warmup", "N", T_WARMUP, OPT_RUN, "linear warm-up steps (default 0)"},
    {"crop-pad", "N", T_CROP, OPT_RUN, "augmentation: random crop after N pixels of zero padding\n"
                                       "(default 4 for CIFAR, 0 otherwise)"},
    {"flip", NULL, T_FLIP, OPT_RUN, "augmentation: random horizontal flip (default on for CIFAR)"},
    {"no-flip", NULL, T_NO_FLIP, OPT_RUN, "no flip"},
    {"seed", "N", T_SEED, OPT_RUN, "default 1: the same seed and build give the same losses"},
    {"limit-train", "N", T_LIMIT_TRAIN, 0, "use the first N training images"},
    {"limit-test", "N", T_LIMIT_TEST, 0, "use the first N test images"},
    {"every", "N", T_EVERY, 0, "a progress line every N steps (default 100)"},
    {"log", "PATH", T_LOG, 0, "JSON-lines log of every figure (appended to; mode 0600; sealed with --key)"},
    {"checkpoint-dir", "DIR", T_CKDIR, 0, "save a checkpoint at the end of each epoch (ckpt-STEP.amck); the\n"
                                          "directory is this run's, locked while it runs"},
    {"save-every", "N", T_SAVE_EVERY, 0, "and every N steps"},
    {"keep", "N", T_KEEP, 0, "keep the newest N of the run's checkpoints (default 3, or the run's)"},
    {"new-run", NULL, T_NEW_RUN, 0, "start a new run in a --checkpoint-dir that holds another run's\n"
                                    "checkpoints: they are moved aside into DIR/run-ID/, never deleted"},
    {"resume", "PATH", T_RESUME, 0, "continue the run in a checkpoint directory (from its newest\n"
                                    "checkpoint that reads) or from a file (its run's newest): the model,\n"
                                    "training and mode options, data limits, --tee and --save-every\n"
                                    "come from the checkpoint (given again, they must agree; --epochs\n"
                                    "may grow, to extend the run), and checkpoints go on there"},
    {"delta", "D", T_DELTA, 0, "the delta at which epsilon is reported (default 1e-5)"},
    {NULL, NULL, 0, 0, NULL},
};

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    train_opts *t = ctx;
    if (t->n_given == MAX_GIVEN) return die(EXIT_USAGE, "train: more than %d options", MAX_GIVEN);
    t->given[t->n_given++] = (given_opt){o, arg};
    return train_apply(t, o, arg);
}

const given_opt *train_given(const train_opts *o, const char *name) {
    for (int i = o->n_given - 1; i >= 0; i--)
        if (!strcmp(o->given[i].opt->name, name)) return &o->given[i];
    return NULL;
}

int train_apply(train_opts *t, const cli_opt *o, const char *arg) {
    am_train_cfg *c = &t->cfg;
    switch (o->id) {
    case T_DATA: t->data = arg; return 0;
    case T_DATASET: return am_data_kind_parse(arg, &t->kind) == AM_OK ? 0 : die(EXIT_USAGE, "--dataset: %s", am_last_error());
    case T_MODEL: t->model = arg; return 0;
    case T_MODEL_FILE: t->model_file = arg; return 0;
    case T_EPOCHS: return arg_int("epochs", arg, 1, 100000, &c->epochs) ? 0 : EXIT_USAGE;
    case T_BATCH: return arg_int("batch", arg, 1, 65536, &c->batch) ? 0 : EXIT_USAGE;
    case T_LR: return arg_float("lr", arg, 1e-9, 100, &c->lr) ? 0 : EXIT_USAGE;
    case T_MOMENTUM: return arg_float("momentum", arg, 0, 0.999, &c->momentum) ? 0 : EXIT_USAGE;
    case T_NESTEROV: c->nesterov = 1; return 0;
    case T_WD: return arg_float("wd", arg, 0, 0.5, &c->wd) ? 0 : EXIT_USAGE;
    case T_SCHEDULE:
        if (!strcmp(arg, "constant")) c->sched = AM_SCHED_CONSTANT;
        else if (!strcmp(arg, "step")) c->sched = AM_SCHED_STEP;
        else if (!strcmp(arg, "cosine")) c->sched = AM_SCHED_COSINE;
        else return die(EXIT_USAGE, "--schedule: '%s' is not constant, step or cosine", arg);
        return 0;
    case T_STEP_SIZE: return arg_int("step-size", arg, 1, 100000, &c->step_size) ? 0 : EXIT_USAGE;
    case T_GAMMA: return arg_float("gamma", arg, 1e-6, 1, &c->gamma) ? 0 : EXIT_USAGE;
    case T_WARMUP: return arg_int("warmup", arg, 0, 100000000, &c->warmup) ? 0 : EXIT_USAGE;
    case T_CROP: t->crop_set = 1; return arg_int("crop-pad", arg, 0, 64, &c->crop_pad) ? 0 : EXIT_USAGE;
    case T_FLIP: c->flip = 1, t->flip_set = 1; return 0;
    case T_NO_FLIP: c->flip = 0, t->flip_set = 1; return 0;
    case T_SEED: return arg_int("seed", arg, 0, 2147483647, &t->seed) ? 0 : EXIT_USAGE;
    case T_LIMIT_TRAIN: return arg_int("limit-train", arg, 1, 100000000, &t->limit_train) ? 0 : EXIT_USAGE;
    case T_LIMIT_TEST: return arg_int("limit-test", arg, 1, 100000000, &t->limit_test) ? 0 : EXIT_USAGE;
    case T_EVERY: return arg_int("every", arg, 1, 100000000, &t->every) ? 0 : EXIT_USAGE;
    case T_LOG: t->log = arg; return 0;
    case T_CKDIR: t->ckdir = arg; return 0;
    case T_SAVE_EVERY: return arg_int("save-every", arg, 1, 100000000, &t->save_every) ? 0 : EXIT_USAGE;
    case T_KEEP: return arg_int("keep", arg, 1, 100000, &t->keep) ? 0 : EXIT_USAGE;
    case T_RESUME: t->resume = arg; return 0;
    case T_NEW_RUN: t->new_run = 1; return 0;
    case T_DELTA: return arg_double("delta", arg, 1e-300, 0.5, &t->delta) ? 0 : EXIT_USAGE;
    }
    return cli_mode_option(&t->mode, o, arg);
}

void train_snapshot(const train_opts *o, run *r, am_checkpoint *ck) {
    am_trainer_snapshot(r->t, ck);
    ck->opts = (am_run_opts){o->mode.process, o->save_every, o->keep};
}

/* A new run's checkpoint directory: taken, and cleared of another run's
 * checkpoints only when told (--new-run). */
static int claim_dir(const train_opts *o, run *r) {
    if (am_ckdir_open(o->ckdir, AM_CKDIR_WRITE, &r->dir) != AM_OK) return lib_fail("--checkpoint-dir");
    char where[512];
    int moved;
    am_status st = am_ckdir_claim(&r->dir, o->new_run, where, sizeof where, &moved);
    if (st != AM_OK) return die(st == AM_EINVAL ? EXIT_USAGE : EXIT_RUNTIME, "--checkpoint-dir: %s", am_last_error());
    if (moved) printf("moved %d checkpoint%s of an earlier run aside, into %s\n", moved, moved == 1 ? "" : "s", where);
    return 0;
}

static int setup(train_opts *o, run *r) {
    int rc;
    /* A resumed run with a key may be a --tee process run, which its sealed
     * checkpoint says: the trusted side is hardened before the key is read. */
    cli_mode harden = o->mode;
    if (o->resume && o->mode.key && !train_given(o, "tee")) harden.process = 1;
    if ((rc = tee_begin(&harden))) return rc;
    if (o->resume && (rc = resume_open(o, r))) return rc;
    if ((rc = load_data(o->kind, o->data, "train", o->limit_train, &r->tr))) return rc;
    if ((rc = load_data(o->kind, o->data, "test", o->limit_test, &r->te))) return rc;
    if (o->resume) { /* before anything is started */
        am_trainer_io io = {&r->tr, &r->te, NULL};
        if ((rc = resume_check_model(o, r))) return rc;
        if (am_trainer_resume_check(&r->ck, &io) != AM_OK) return lib_fail("--resume");
    } else if (o->ckdir && (rc = claim_dir(o, r))) {
        return rc;
    }
    const am_asym_cfg *a = o->resume ? &r->ck.cfg.asym : &o->cfg.asym;
    int need = a->mode == AM_MODE_ASYMML || a->mode == AM_MODE_OPEN;
    if ((rc = tee_open(&o->mode, need, o->data, &r->tee))) return rc;
    am_trainer_io io = {&r->tr, &r->te, tee_backend(r->tee)};
    if (o->resume) {
        if (am_trainer_resume(&r->ck, &io, &r->t) != AM_OK) return lib_fail("--resume");
        if ((rc = resume_start(o, r))) return rc;
    } else {
        if (r->tr.c > 4) return die(EXIT_RUNTIME, "data: %d channels; at most 4 are supported", r->tr.c);
        if ((rc = describe(o->model, o->model_file, am_shape4(1, r->tr.c, r->tr.h, r->tr.w), r->tr.classes, &r->desc)))
            return rc;
        if (o->cfg.batch > r->tr.n) return die(EXIT_USAGE, "--batch %d is larger than the %d training images", o->cfg.batch, r->tr.n);
        am_status st = am_trainer_create(&o->cfg, r->desc, &io, &r->t);
        if (st != AM_OK) return st == AM_EINVAL ? die(EXIT_USAGE, "train: %s", am_last_error()) : lib_fail("train");
    }
    am_model_verify(am_trainer_model(r->t), o->mode.verify);
    if (o->log && (rc = cli_log_open(o->log, am_trainer_binding(r->t)->run_id, &r->log))) return rc;
    if (r->log) { /* which run, from where: one log may hold several sessions */
        char hex[2 * AM_RUN_ID_BYTES + 1];
        sodium_bin2hex(hex, sizeof hex, am_trainer_binding(r->t)->run_id, AM_RUN_ID_BYTES);
        cli_log_line(r->log, "{\"run\":\"%s\",\"from_step\":%d}", hex, am_trainer_global_step(r->t));
    }
    return tee_lockdown(r->tee, o->ckdir ? r->dir.fd : -1, "the run's checkpoints");
}

static void start_lines(const train_opts *o, run *r) {
    const am_train_cfg *c = am_trainer_cfg(r->t);
    am_model *m = am_trainer_model(r->t);
    printf("train: %d train / %d test images of %dx%dx%d, %zu parameters, batch %d, %d %s, %d %s\n", r->tr.n,
           r->te.n, r->tr.c, r->tr.h, r->tr.w, am_model_trainable_count(m), c->batch, c->epochs,
           plural(c->epochs, "epoch", "epochs"), am_get_threads(), plural(am_get_threads(), "thread", "threads"));
    char pw[160], aw[1200];
    cli_plan_words(&c->asym, pw, sizeof pw);
    tee_words(r->tee, aw, sizeof aw);
    if (c->asym.mode == AM_MODE_TEE_ONLY) printf("mode: tee-only; accelerator: %s\n", aw);
    else printf("mode: %s, %s, clip %g, sigma %g; accelerator: %s\n", am_mode_name(c->asym.mode), pw, (double)c->asym.clip,
                (double)c->asym.sigma, aw);
    cli_privacy_start(stdout, m, &c->asym, o->mode.process, 1);
    fflush(stdout);
}

/* The plan, once decided: on stdout in one process, in the log only with
 * --tee process (a data-driven plan says something about the data). */
static void plan_out(const train_opts *o, run *r) {
    am_model *m = am_trainer_model(r->t);
    if (!o->mode.process) cli_print_plan(stdout, m);
    if (!r->log) return;
    char buf[4 * AM_MAX_RANKS + 64] = "";
    size_t len = 0;
    for (int i = 0; i < am_model_num_convs(m) && len + 16 < sizeof buf; i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) == AM_OK)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", i ? "," : "", si.split ? si.r : 0);
    }
    cli_log_line(r->log, "{\"plan_ranks\":[%s]}", buf);
}

static int save(const train_opts *o, run *r, char *last, size_t cap) {
    am_checkpoint ck;
    train_snapshot(o, r, &ck);
    if (am_ckdir_save(&r->dir, &ck, o->keep, last, cap) != AM_OK) return lib_fail("checkpoint");
    return 0;
}

/* An interrupt (SIGINT, SIGTERM): the step in progress ends, a checkpoint
 * is saved and the run stops, saying how to go on; a second one stops it
 * at once (the handler is reset). */
static volatile sig_atomic_t g_stop;
static void on_stop(int sig) { g_stop = sig; }

static void catch_stop(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int stopped(const train_opts *o, run *r, const am_step_info *si, char *last, size_t cap) {
    char now[32]; /* saved already at this step (the end of an epoch, --save-every)? */
    snprintf(now, sizeof now, "ckpt-%010d.amck", am_trainer_global_step(r->t));
    int rc = o->ckdir && strcmp(last, now) ? save(o, r, last, cap) : 0;
    if (rc) return rc;
    fprintf(stderr, "%sasymml: interrupted at epoch %d step %d/%d", isatty(STDOUT_FILENO) ? "\n" : "", si->epoch,
            si->step, si->steps_per_epoch);
    const given_opt *th = train_given(o, "threads");
    if (o->ckdir)
        fprintf(stderr, "; saved %s/%s: go on with: asymml train --resume %s --data %s%s%s%s%s%s%s\n", o->ckdir, last,
                o->ckdir, o->data, o->mode.key ? " --key " : "", o->mode.key ? o->mode.key : "", o->log ? " --log " : "",
                o->log ? o->log : "", th ? " --threads " : "", th ? th->arg : "");
    else fprintf(stderr, "; nothing saved (no --checkpoint-dir)\n");
    return 128 + g_stop;
}

static int loop(const train_opts *o, run *r, double *acc) {
    const am_train_cfg *c = am_trainer_cfg(r->t);
    am_model *m = am_trainer_model(r->t);
    const int process = o->mode.process, tty = isatty(STDOUT_FILENO);
    int plan_pending = c->asym.mode != AM_MODE_TEE_ONLY && !am_model_plan_get(m, (int[AM_MAX_RANKS + 1]){0},
                                                                              (int[AM_MAX_RANKS + 1]){0}, AM_MAX_RANKS + 1);
    if (c->asym.mode != AM_MODE_TEE_ONLY && !plan_pending) plan_out(o, r);
    double t0 = now_s(), ep_t0 = t0, run_loss = 0;
    long run_correct = 0, run_n = 0, done0 = am_trainer_global_step(r->t);
    char last[64] = "";
    am_step_info si;
    while (!am_trainer_done(r->t)) {
        if (am_trainer_step(r->t, &si) != AM_OK) {
            int rc = lib_fail("train");
            if (*last) fprintf(stderr, "asymml: the last checkpoint is %s/%s\n", o->ckdir, last);
            return rc;
        }
        if (plan_pending) plan_out(o, r), plan_pending = 0;
        run_loss += si.loss, run_correct += si.correct, run_n++;
        double el = now_s() - t0, ips = (double)(si.global_step - done0) * c->batch / el;
        double eta = (double)(si.total_steps - si.global_step) * c->batch / ips;
        int epoch_end = si.step == si.steps_per_epoch;
        if (si.step % o->every == 0 || epoch_end) {
            double l = run_loss / run_n, a = (double)run_correct / ((double)run_n * c->batch);
            /* With --tee process, stdout is the host's to read: no loss or
             * accuracy of a batch there, only in the log. */
            if (process)
                printf("%sepoch %d/%d step %d/%d %.0f img/s eta %.0fs\n", tty ? "\r\033[K" : "", si.epoch, c->epochs,
                       si.step, si.steps_per_epoch, ips, eta);
            else
                printf("%sepoch %d/%d step %d/%d loss %.4f acc %.4f lr %.5f %.0f img/s eta %.0fs\n", tty ? "\r\033[K" : "",
                       si.epoch, c->epochs, si.step, si.steps_per_epoch, l, a, (double)si.lr, ips, eta);
            cli_log_line(r->log, "{\"epoch\":%d,\"step\":%d,\"global_step\":%d,\"loss\":%.6f,\"acc\":%.6f,\"lr\":%.6g,"
                                 "\"img_s\":%.1f,\"eta_s\":%.0f}",
                         si.epoch, si.step, si.global_step, l, a, (double)si.lr, ips, eta);
            run_loss = 0, run_correct = run_n = 0;
        } else if (tty && !process) {
            int w = 30, f = (int)((double)si.step / si.steps_per_epoch * w);
            printf("\r\033[Kepoch %d/%d [%.*s%*s] %d/%d loss %.4f %.0f img/s eta %.0fs", si.epoch, c->epochs, f,
                   "##############################", w - f, "", si.step, si.steps_per_epoch, run_loss / run_n, ips, eta);
        }
        fflush(stdout);
        int rc;
        /* Mid-epoch checkpoints now; the epoch's after its evaluation, whose
         * releases the checkpoint's counter must count. */
        if (o->ckdir && !epoch_end && o->save_every && si.global_step % o->save_every == 0) {
            if ((rc = save(o, r, last, sizeof last))) return rc;
            printf("%sepoch %d/%d step %d/%d saved %s/%s\n", tty ? "\r\033[K" : "", si.epoch, c->epochs, si.step,
                   si.steps_per_epoch, o->ckdir, last);
            fflush(stdout);
        }
        if (g_stop && !epoch_end) return stopped(o, r, &si, last, sizeof last);
        if (!epoch_end) continue;
        double loss, ep_s = now_s() - ep_t0, share = am_trainer_residual_share(r->t);
        if (am_trainer_evaluate(r->t, &r->te, acc, &loss) != AM_OK) return lib_fail("evaluate");
        if (o->ckdir && (rc = save(o, r, last, sizeof last))) return rc;
        printf("epoch %d/%d test accuracy %.4f (%d images), epoch time %.1fs%s%s%s%s\n", si.epoch, c->epochs, *acc,
               r->te.n, ep_s, *last ? ", saved " : "", *last ? o->ckdir : "", *last ? "/" : "", last);
        if (!process) {
            printf("epoch %d/%d test loss %.4f", si.epoch, c->epochs, loss);
            if (cli_smallest_release(m)) printf(", residual energy share %.4f (of the split layers' inputs)", share);
            printf("\n");
        }
        cli_log_line(r->log, "{\"epoch\":%d,\"test_acc\":%.6f,\"test_loss\":%.6f,\"epoch_s\":%.2f,\"residual_share\":%.6f}",
                     si.epoch, *acc, loss, ep_s, share);
        fflush(stdout);
        ep_t0 = now_s();
        if (g_stop && !am_trainer_done(r->t)) return stopped(o, r, &si, last, sizeof last);
    }
    return 0;
}

static int train_run(train_opts *o) {
    run r = {0};
    r.dir.fd = -1;
    double acc = -1;
    int rc = setup(o, &r), complete = !rc && am_trainer_done(r.t);
    if (complete)
        printf("the run is complete (%d %s): nothing to do (--epochs N, more than %d, extends it; asymml eval "
               "--checkpoint %s --data %s%s%s evaluates it)\n", am_trainer_cfg(r.t)->epochs,
               plural(am_trainer_cfg(r.t)->epochs, "epoch", "epochs"), am_trainer_cfg(r.t)->epochs, o->resumed, o->data,
               o->mode.key ? " --key " : "", o->mode.key ? o->mode.key : "");
    if (!rc && !complete) {
        start_lines(o, &r);
        catch_stop();
        rc = loop(o, &r, &acc);
    }
    if (!rc && !complete && acc < 0 && am_trainer_evaluate(r.t, &r.te, &acc, NULL) != AM_OK) rc = lib_fail("evaluate");
    if (!rc && !complete) {
        const am_train_cfg *c = am_trainer_cfg(r.t);
        am_model *m = am_trainer_model(r.t);
        printf("final test accuracy: %.4f\n", acc);
        char lim[64] = "no limit";
        if (am_mem_limit()) snprintf(lim, sizeof lim, "limit %zu MiB", am_mem_limit() >> 20);
        printf("trusted memory: peak %.1f MiB of asymml's own allocations (%s%s)\n", (double)am_mem_peak() / (1 << 20),
               lim, o->mode.process ? "" : "; in one process, the accelerator's buffers count too");
        long rel = am_trainer_releases(r.t), cpl = am_trainer_coupling(r.t);
        char whose[160] = "training sample";
        int layers = cli_split_layers(m), per = c->asym.protect_grads ? 2 : 1, res = am_trainer_resumes(r.t);
        long ep = layers ? rel / (layers * per) - res : 0;
        char more[64] = "";
        if (res) snprintf(more, sizeof more, " + %d counted for resumes and lost epochs", res);
        if (rel && layers) /* where the count comes from */
            snprintf(whose, sizeof whose, "training sample (%d split layer%s%s x (%ld epoch%s begun%s))", layers,
                     layers == 1 ? "" : "s", per == 2 ? " x 2" : "", ep, ep == 1 ? "" : "s", more);
        cli_privacy_end(stdout, m, &c->asym, am_dp_mu2(c->asym.sigma, rel, cpl), rel, cpl, o->delta, whose);
        if (rel && layers && c->asym.mode == AM_MODE_ASYMML) {
            printf("privacy: the test images' residuals crossed too, in each epoch's evaluation%s\n",
                   c->asym.sigma > 0.f ? " (clipped and noised alike): the figure above counts the training samples' "
                                         "releases only"
                                       : "");
            if (c->asym.sigma > 0.f)
                printf("privacy: an evaluation on the training data (asymml eval --split train) releases their "
                       "residuals again, noised as it is told or not at all; no such evaluation is counted in the "
                       "figure above\n");
        }
    }
    int rc2 = cli_log_close(r.log, o->log);
    am_trainer_free(r.t);
    int rc3 = tee_close(r.tee, rc != 0);
    am_ckdir_close(&r.dir);
    am_checkpoint_free(&r.ck);
    free(r.desc);
    am_dataset_free(&r.tr);
    am_dataset_free(&r.te);
    return rc ? rc : rc2 ? rc2 : rc3;
}

int cmd_train(int argc, char **argv) {
    train_opts o = {.model = "lenet", .kind = AM_DATA_IDX, .every = 100, .seed = 1, .delta = 1e-5,
                    .cfg = {.epochs = 3, .batch = 64, .lr = 0.05f, .momentum = 0.9f, .wd = 5e-4f,
                            .sched = AM_SCHED_COSINE, .step_size = 1, .gamma = 0.1f}};
    cli_mode_init(&o.mode);
    const cli_opt *const tables[] = {opts, cli_mode_opts, NULL};
    int rc = cli_parse("train", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    o.cfg.asym = o.mode.asym;
    if (!o.data) return die(EXIT_USAGE, "train: --data DIR is required (see asymml train --help)");
    if (o.new_run && (o.resume || !o.ckdir))
        return die(EXIT_USAGE, "--new-run %s", o.resume ? "starts a new run: not with --resume" : "needs --checkpoint-dir");
    if (o.cfg.nesterov && o.cfg.momentum == 0.f) return die(EXIT_USAGE, "--nesterov needs --momentum > 0");
    if (o.save_every && !o.ckdir && !o.resume) return die(EXIT_USAGE, "--save-every needs --checkpoint-dir");
    if (o.mode.process && o.ckdir && !o.mode.key)
        return die(EXIT_USAGE, "--tee process writes sealed checkpoints: give --key FILE (`asymml keygen FILE` makes one)");
    if (o.mode.process && o.log && !o.mode.key)
        return die(EXIT_USAGE, "--tee process writes its log sealed: give --key FILE (`asymml keygen FILE` makes one)");
    if (!o.resume && !o.keep) o.keep = 3; /* resumed: the run's, unless given */
    int cifar = o.kind != AM_DATA_IDX;
    if (!o.crop_set) o.cfg.crop_pad = cifar ? 4 : 0;
    if (!o.flip_set) o.cfg.flip = cifar;
    o.cfg.seed = (uint64_t)o.seed;
    if (!o.mode.noise_seed_set) o.mode.asym.noise_seed = (uint64_t)o.seed;
    /* A resumed run's mode and noise are its checkpoint's (resume.c). */
    cli_mode chk = o.mode;
    if (o.resume) chk.noise_opt = NULL, chk.asym.sigma = 0.f, chk.process |= !train_given(&o, "tee");
    if ((rc = cli_mode_check(o.resume ? &chk : &o.mode, !o.resume))) return rc;
    o.cfg.asym = o.mode.asym;
    return train_run(&o);
}
