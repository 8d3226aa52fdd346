/* asymml infer: private inference of a checkpoint's model on a dataset's
 * test split, in one of the inference modes, with its accuracy and speed. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml infer --mode M --checkpoint PATH --data DIR [options]\n"
    "Inference of a checkpoint's model on a dataset's test split: accuracy and images\n"
    "per second. Modes: slalom (fixed point, every conv and linear layer on the\n"
    "accelerator with its input one-time padded mod p, every reply checked exactly:\n"
    "what crosses is uniform whatever the inputs; the weights cross in the clear),\n"
    "quantized (the same fixed point, all in this process), asymml (the split of\n"
    "training: residuals cross),\n"
    "tee-only, open and gpu-only (no privacy; baselines); --mode is required. Fixed-\n"
    "point modes fold BatchNorm and set the activation scales on --calib training\n"
    "images first; slalom checks every reply exactly whether --verify is given or not.\n";

enum { I_CKPT = 1, I_DATA, I_DATASET, I_BATCH, I_LIMIT, I_CALIB, I_BITS, I_FACTORS };

static const cli_opt opts[] = {
    {"checkpoint", "PATH", I_CKPT, 0, "a checkpoint file, or a directory (its newest)"},
    {"data", "DIR", I_DATA, 0, "dataset folder"},
    {"dataset", "KIND", I_DATASET, 0, "idx (default), cifar10, cifar100"},
    {"batch", "N", I_BATCH, 0, "default 100"},
    {"limit", "N", I_LIMIT, 0, "use the first N test images"},
    {"calib", "N", I_CALIB, 0, "fixed point: training images that set the activation scales (default 1000)"},
    {"act-bits", "N", I_BITS, 0, "fixed point: activation bits, 2 to 16 (default 8, as Slalom; slalom: as\n"
                                         "many as keep every layer's W x below p/2: 13 for LeNet)"},
    {"factors", "DIR", I_FACTORS, 0, "slalom: unblinding factors from this store (asymml precompute; needs\n"
                                     "its --key and --batch), each batch's used once, instead of computing\n"
                                     "W r here"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct infer_opts {
    const char *ckpt, *data, *factors;
    am_data_kind kind;
    int batch, limit, calib, bits, mode_given;
    cli_mode mode;
} infer_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    infer_opts *q = ctx;
    switch (o->id) {
    case I_CKPT: q->ckpt = arg; return 0;
    case I_DATA: q->data = arg; return 0;
    case I_DATASET: return am_data_kind_parse(arg, &q->kind) == AM_OK ? 0 : die(EXIT_USAGE, "--dataset: %s", am_last_error());
    case I_BATCH: return arg_int("batch", arg, 1, 65536, &q->batch) ? 0 : EXIT_USAGE;
    case I_LIMIT: return arg_int("limit", arg, 1, 100000000, &q->limit) ? 0 : EXIT_USAGE;
    case I_CALIB: return arg_int("calib", arg, 1, 1000000, &q->calib) ? 0 : EXIT_USAGE;
    case I_BITS: return arg_int("act-bits", arg, 2, 16, &q->bits) ? 0 : EXIT_USAGE;
    case I_FACTORS: q->factors = arg; return 0;
    }
    if (!strcmp(o->name, "mode")) q->mode_given = 1;
    return cli_mode_option(&q->mode, o, arg);
}

/* The model to run: the checkpoint's, folded for the fixed-point modes,
 * at batch B, in the mode. */
static int build(const infer_opts *o, const am_checkpoint *ck, int B, am_backend *be, am_model **out) {
    am_asym_cfg a = o->mode.asym;
    int rc = cli_checkpoint_model(ck, am_mode_fixed_point(a.mode), B, out);
    if (rc) return rc;
    a.act_bits = am_mode_fixed_point(a.mode) ? o->bits : 0;
    if (a.mode != AM_MODE_TEE_ONLY && am_model_set_asym(*out, &a, be) != AM_OK) return lib_fail("mode");
    am_model_verify(*out, o->mode.verify);
    return 0;
}

/* Slalom: the factors from the store, if one is given; *fd: its folder,
 * the one the locked-down process may still open files in. */
static int use_store(const infer_opts *o, am_model *m, int B, int n, am_factor_store **s, int *fd) {
    *fd = -1;
    if (!o->factors) return 0;
    if (o->mode.asym.mode != AM_MODE_SLALOM) return die(EXIT_USAGE, "--factors: slalom mode's (--mode slalom)");
    int L = am_model_fixed_layers(m);
    size_t lens[4096];
    uint8_t ident[32];
    if (L > 4096) return die(EXIT_RUNTIME, "infer: too many layers");
    for (int i = 0; i < L; i++) lens[i] = am_model_factor_len(m, i);
    if (am_model_factor_identity(m, ident) || am_factors_open(o->factors, s) ||
        am_factors_match(*s, B, L, lens, ident) ||
        am_model_set_pad_key(m, am_factors_pad_key(*s)) || am_model_use_factors(m, am_factors_source(*s)))
        return lib_fail("--factors");
    uint64_t need = (uint64_t)(n + B - 1) / (uint64_t)B;
    if (am_factors_left(*s) < need)
        return die(EXIT_RUNTIME, "--factors: %s has %llu factor sets left; %d images in batches of %d need %llu (none was "
                                 "used; asymml precompute makes a new store in a new folder)",
                   o->factors, (unsigned long long)am_factors_left(*s), n, B, (unsigned long long)need);
    *fd = am_factors_dir_fd(*s);
    return 0;
}

static int run(infer_opts *o, const am_checkpoint *ck, const am_dataset *tr, const am_dataset *te, cli_tee **tee) {
    const am_asym_cfg *a = &o->mode.asym;
    /* A store's factors are for its batch size: a run smaller than a batch
     * pads its one batch rather than shrink it. */
    const int fixed = am_mode_fixed_point(a->mode), B = o->factors || o->batch < te->n ? o->batch : te->n;
    int nb = 0;
    if (fixed && cli_calib_batches("infer", o->calib, tr, B, &nb)) return EXIT_USAGE;
    const int accel = a->mode == AM_MODE_ASYMML || a->mode == AM_MODE_OPEN || a->mode == AM_MODE_GPU_ONLY ||
                      a->mode == AM_MODE_SLALOM;
    am_model *m = NULL;
    am_factor_store *store = NULL;
    int rc = tee_open(&o->mode, accel, o->data, tee), fd = -1;
    if (!rc) rc = build(o, ck, B, tee_backend(*tee), &m);
    if (!rc && fixed) rc = cli_calibrate(m, tr, ck, B, nb);
    if (!rc) rc = use_store(o, m, B, te->n, &store, &fd);
    if (!rc) rc = tee_lockdown(*tee, fd, "the factor store");
    double acc = 0, t0 = now_s();
    if (!rc) {
        char aw[1200];
        tee_words(*tee, aw, sizeof aw);
        printf("mode: %s; accelerator: %s\n", am_mode_name(a->mode), accel ? aw : "none");
        cli_privacy_start(stdout, m, a, o->mode.process, 0);
        if (store)
            printf("privacy: the pads' key was drawn by asymml precompute and is sealed in %s/store.amfs: whoever holds "
                   "it and --key can regenerate this run's pads; a copy of the store is refused, a rollback of its "
                   "folder in place is not (its pads would be used again)\n", o->factors);
        else if (a->mode == AM_MODE_SLALOM)
            printf("privacy: the pads' key was drawn in this process and is never stored\n");
        t0 = now_s();
        if (am_evaluate(m, te, ck->mean, ck->std, B, NULL, &acc, NULL) != AM_OK) rc = lib_fail("infer");
    }
    if (!rc) {
        double s = now_s() - t0;
        printf("%s: test accuracy %.4f (%d images), %.1f images/s (batch %d, %s mode", o->ckpt, acc, te->n, te->n / s, B,
               am_mode_name(a->mode));
        if (fixed) printf("; %d-bit activations from %d training images", o->bits, nb * B);
        if (store)
            printf("; factors from %s, %llu of %llu sets left", o->factors, (unsigned long long)am_factors_left(store),
                   (unsigned long long)am_factors_count(store));
        else if (a->mode == AM_MODE_SLALOM)
            printf("; factors computed here");
        printf(")\n");
    }
    am_factors_close(store);
    am_model_free(m);
    return rc;
}

int cmd_infer(int argc, char **argv) {
    infer_opts o = {.kind = AM_DATA_IDX, .batch = 100, .calib = 1000, .bits = AM_ACT_BITS};
    cli_mode_init(&o.mode);
    o.mode.quantized_ok = o.mode.gpu_only_ok = 1;
    const cli_opt *const tables[] = {opts, cli_mode_opts, NULL};
    int rc = cli_parse("infer", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.ckpt || !o.data || !o.mode_given) return die(EXIT_USAGE, "infer: --mode, --checkpoint and --data are required");
    if (o.mode.asym.mode == AM_MODE_LOWRANK_ONLY)
        return die(EXIT_USAGE, "infer: lowrank-only is training's ablation; infer runs slalom, quantized, asymml, "
                               "tee-only, open or gpu-only");
    if ((rc = cli_mode_check(&o.mode, 1)) || (rc = tee_begin(&o.mode))) return rc;
    am_checkpoint ck;
    char used[4200];
    if ((rc = load_checkpoint(&o.ckpt, "running", &ck, used, sizeof used))) return rc;
    am_dataset tr = {0}, te = {0};
    cli_tee *tee = NULL;
    rc = am_mode_fixed_point(o.mode.asym.mode) ? load_data(o.kind, o.data, "train", 0, &tr) : 0;
    if (!rc) rc = load_data(o.kind, o.data, "test", o.limit, &te);
    if (!rc && te.c != ck.channels)
        rc = die(EXIT_RUNTIME, "%s: a %d-channel model; the data has %d channels", o.ckpt, ck.channels, te.c);
    if (!rc) rc = run(&o, &ck, &tr, &te, &tee);
    int rc2 = tee_close(tee, rc != 0);
    am_dataset_free(&tr);
    am_dataset_free(&te);
    am_checkpoint_free(&ck);
    return rc ? rc : rc2;
}
