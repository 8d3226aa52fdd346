/* asymml eval: a checkpoint's accuracy on a dataset. */
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml eval --checkpoint PATH --data DIR [options]\n"
    "Accuracy and loss of a checkpoint's model on a dataset's test split. The model runs\n"
    "in its run's mode, split and noise (a fresh noise key), unless the mode options\n"
    "given here (--mode, --rank-ratio, --sigma, ...) change them: the defaults listed\n"
    "below are those of a new run, not of this one. A run trained with --tee process is\n"
    "evaluated so too (the trusted side hardened before the key is read).\n";

enum { E_CKPT = 1, E_DATA, E_DATASET, E_SPLIT, E_BATCH, E_LIMIT, E_DELTA };

static const cli_opt opts[] = {
    {"checkpoint", "PATH", E_CKPT, 0, "a checkpoint file, or a directory (its newest)"},
    {"data", "DIR", E_DATA, 0, "dataset folder"},
    {"dataset", "KIND", E_DATASET, 0, "idx (default), cifar10, cifar100"},
    {"split", "S", E_SPLIT, 0, "test (default) or train (each image then counts as releases of a\n"
                               "training sample: its figure includes them)"},
    {"batch", "N", E_BATCH, 0, "default 100"},
    {"limit", "N", E_LIMIT, 0, "use the first N images"},
    {"delta", "D", E_DELTA, 0, "the delta at which epsilon is reported (default 1e-5)"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct eval_opts {
    const char *ckpt, *data, *split;
    am_data_kind kind;
    int batch, limit;
    double delta;
    cli_mode mode;
    char newer[4400]; /* a later checkpoint of the run beside the one evaluated ("": none) */
    int tee_given;    /* --tee on the command line */
    int busy;         /* a run holds the checkpoint's directory: it is training now */
} eval_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    eval_opts *e = ctx;
    switch (o->id) {
    case E_CKPT: e->ckpt = arg; return 0;
    case E_DATA: e->data = arg; return 0;
    case E_DATASET: return am_data_kind_parse(arg, &e->kind) == AM_OK ? 0 : die(EXIT_USAGE, "--dataset: %s", am_last_error());
    case E_SPLIT:
        if (strcmp(arg, "test") && strcmp(arg, "train")) return die(EXIT_USAGE, "--split: test or train");
        e->split = arg;
        return 0;
    case E_BATCH: return arg_int("batch", arg, 1, 65536, &e->batch) ? 0 : EXIT_USAGE;
    case E_LIMIT: return arg_int("limit", arg, 1, 100000000, &e->limit) ? 0 : EXIT_USAGE;
    case E_DELTA: return arg_double("delta", arg, 1e-300, 0.5, &e->delta) ? 0 : EXIT_USAGE;
    }
    if (!strcmp(o->name, "tee")) e->tee_given = 1;
    return cli_mode_option(&e->mode, o, arg);
}

/* An evaluation on training data releases each image's residuals once per
 * split layer, again: its figure adds them to the training run's. */
static void privacy(const eval_opts *e, const am_checkpoint *ck, const am_model *m, int eb) {
    const am_asym_cfg *a = &e->mode.asym;
    if (a->mode != AM_MODE_ASYMML) return;
    if (!cli_smallest_release(m)) {
        printf("privacy: nothing of these images crossed to the accelerator: no conv layer was split\n");
        return;
    }
    if (strcmp(e->split, "train")) {
        printf("privacy: the test images' residuals crossed; no figure is claimed for test data\n");
        return;
    }
    int layers = 0, shared = 0;
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) == AM_OK && si.split) layers++, shared |= si.basis != AM_BASIS_PER_SAMPLE;
    }
    long rel = layers, cpl = shared ? eb : 1;
    const am_asym_cfg *ta = &ck->cfg.asym;
    if (ta->mode == AM_MODE_OPEN || (ta->mode == AM_MODE_ASYMML && !(ta->sigma > 0.f))) {
        printf("privacy: no differential-privacy figure: the training run sent these images' %s without noise\n",
               ta->mode == AM_MODE_OPEN ? "conv inputs in the clear (open mode)" : "residuals");
        return;
    }
    /* A live run first: it may also have saved past this checkpoint by now. */
    if (e->busy) {
        printf("privacy: no differential-privacy figure: a run is training in this checkpoint's directory now, and "
               "what it releases is not known here\n");
        return;
    }
    if (*e->newer) {
        printf("privacy: no differential-privacy figure: the run went on past this checkpoint (to %s), and what it "
               "released there is not known here\n", e->newer);
        return;
    }
    if (ta->mode == AM_MODE_ASYMML && ck->version < 5) {
        printf("privacy: no differential-privacy figure: a checkpoint of version %d does not record its run's "
               "releases\n", ck->version);
        return;
    }
    double mu2 = am_dp_mu2(a->sigma, rel, cpl);
    if (ta->mode == AM_MODE_ASYMML) mu2 += am_dp_mu2(ta->sigma, ck->releases, ck->coupling);
    char whose[300];
    snprintf(whose, sizeof whose, "training sample (%ld of the training run's up to this checkpoint, step %d, and %ld "
                                  "of this evaluation's; not counting any other evaluation on training data, each of which adds more)",
             ta->mode == AM_MODE_ASYMML ? ck->releases : 0, ck->global_step, rel);
    cli_privacy_end(stdout, m, a, mu2, (ta->mode == AM_MODE_ASYMML ? ck->releases : 0) + rel,
                    cpl > ck->coupling ? cpl : ck->coupling, e->delta, whose);
}

/* On a terminal: how far, rewritten in place; cleared at the end. */
static void show_progress(void *ctx, int done, int total) {
    (void)ctx;
    if (done < total) printf("\r\033[Keval: %d/%d images", done, total);
    else printf("\r\033[K");
    fflush(stdout);
}

static int evaluate(eval_opts *e, am_checkpoint *ck, am_dataset *d, cli_tee **tee) {
    am_model *m = NULL;
    double acc, loss;
    int rc = 0, eb = e->batch < d->n ? e->batch : d->n;
    if (am_model_create(ck->desc, &m) != AM_OK) rc = lib_fail("checkpoint model");
    if (!rc && (am_model_weights_len(m) != ck->n_weights || am_model_buffers_len(m) != ck->n_buffers))
        rc = die(EXIT_RUNTIME, "%s: tensor sizes do not match its model description", e->ckpt);
    if (!rc && d->c != ck->channels)
        rc = die(EXIT_RUNTIME, "%s: a %d-channel model; the data has %d channels", e->ckpt, ck->channels, d->c);
    const am_asym_cfg *a = &e->mode.asym;
    if (!rc) rc = tee_open(&e->mode, a->mode == AM_MODE_ASYMML || a->mode == AM_MODE_OPEN, e->data, tee);
    if (!rc) {
        memcpy(am_model_weights(m), ck->weights, ck->n_weights * sizeof(float));
        memcpy(am_model_buffers(m), ck->buffers, ck->n_buffers * sizeof(float));
        if (a->mode != AM_MODE_TEE_ONLY && (am_model_set_batch(m, eb) || am_model_set_asym(m, a, tee_backend(*tee))))
            rc = lib_fail("eval");
        am_model_verify(m, e->mode.verify);
    }
    if (!rc) rc = tee_lockdown(*tee, -1, NULL);
    if (!rc) {
        char aw[1200];
        tee_words(*tee, aw, sizeof aw);
        if (a->mode != AM_MODE_TEE_ONLY) printf("mode: %s; accelerator: %s\n", am_mode_name(a->mode), aw);
        cli_privacy_start(stdout, m, a, e->mode.process, 0);
    }
    am_progress pr = {show_progress, NULL};
    if (!rc && am_evaluate(m, d, ck->mean, ck->std, eb, isatty(STDOUT_FILENO) ? &pr : NULL, &acc, &loss) != AM_OK)
        rc = lib_fail("eval");
    if (!rc) {
        printf("%s: %s accuracy %.4f", e->ckpt, e->split, acc);
        if (!e->mode.process) printf(" loss %.4f", loss);
        printf(" (%d images, step %d, %s mode)\n", d->n, ck->global_step, am_mode_name(a->mode));
        privacy(e, ck, m, eb);
    }
    am_model_free(m);
    return rc;
}

/* The second reading of the command line: the split options given, over
 * the checkpoint's. */
static int handle_run(void *ctx, const cli_opt *o, const char *arg) {
    eval_opts *e = ctx;
    return o->flags & OPT_RUN ? cli_mode_option(&e->mode, o, arg) : 0;
}

/* The run's mode and split, with what the command line changes: an
 * evaluation runs as its run did (its noise included) unless told
 * otherwise, and draws its own noise key. */
static int mode_of_run(eval_opts *e, const am_checkpoint *ck, int argc, char **argv) {
    e->mode.asym = ck->cfg.asym;
    memset(e->mode.asym.noise_key, 0, sizeof e->mode.asym.noise_key);
    e->mode.noise_seed_set = 0, e->mode.noise_opt = NULL;
    const cli_opt *const tables[] = {opts, cli_mode_opts, NULL};
    int rc = cli_parse("eval", usage, argc, argv, tables, handle_run, e, NULL, NULL);
    return rc ? rc : cli_mode_check(&e->mode, 1);
}

/* A checkpoint of the run named after a later step, beside the one
 * evaluated (one that does not read, or is not the one given): the run's
 * releases are then not all in the one evaluated. */
static void find_newer(eval_opts *e, const am_checkpoint *ck) {
    char dir[4200], name[256];
    dir_of(e->ckpt, dir, sizeof dir);
    am_ckdir d;
    if (am_ckdir_open(dir, AM_CKDIR_READ, &d) != AM_OK) return;
    e->busy = am_ckdir_busy(&d);
    if (am_ckdir_newer(&d, ck->bind.run_id, ck->global_step, name, sizeof name) == AM_OK && *name)
        snprintf(e->newer, sizeof e->newer, "%.4000s/%.255s", dir, name);
    am_ckdir_close(&d);
}

int cmd_eval(int argc, char **argv) {
    eval_opts e = {.split = "test", .kind = AM_DATA_IDX, .batch = 100, .delta = 1e-5};
    cli_mode_init(&e.mode);
    const cli_opt *const tables[] = {opts, cli_mode_opts, NULL};
    int rc = cli_parse("eval", usage, argc, argv, tables, handle, &e, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!e.ckpt || !e.data) return die(EXIT_USAGE, "eval: --checkpoint and --data are required");
    /* A sealed run may be a --tee process run, which its checkpoint says:
     * hardened as one before the key is read. */
    cli_mode harden = e.mode;
    harden.process |= e.mode.key && !e.tee_given;
    if ((rc = tee_begin(&harden))) return rc;
    am_checkpoint ck;
    char used[4200];
    if ((rc = load_checkpoint(&e.ckpt, "evaluating", &ck, used, sizeof used))) return rc;
    find_newer(&e, &ck);
    if (!e.tee_given) e.mode.process = ck.opts.tee_process;
    am_dataset d = {0};
    cli_tee *tee = NULL;
    rc = mode_of_run(&e, &ck, argc, argv);
    if (!rc) rc = load_data(e.kind, e.data, e.split, e.limit, &d);
    if (!rc) rc = evaluate(&e, &ck, &d, &tee);
    int rc2 = tee_close(tee, rc != 0);
    am_dataset_free(&d);
    am_checkpoint_free(&ck);
    return rc ? rc : rc2;
}
