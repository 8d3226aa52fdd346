/* asymml quantize: a checkpoint's model in fixed point, the model that
 * private inference by blinding runs, and its test accuracy next to the
 * float model's. Everything runs in this process. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml quantize --checkpoint PATH --data DIR [options]\n"
    "The checkpoint's model in fixed point, as private inference with blinding runs it:\n"
    "BatchNorm folded into the conv before it, weights to 8 bits (a scale per output\n"
    "channel), every conv and linear layer's input to --act-bits bits (a scale per layer:\n"
    "the largest |input| over --calib training images, as the float model sees them).\n"
    "Prints the test accuracy of the float model and of the quantized one. Everything\n"
    "runs in this process: nothing is sent to an accelerator.\n";

enum { Q_CKPT = 1, Q_DATA, Q_DATASET, Q_BITS, Q_CALIB, Q_BATCH, Q_LIMIT, Q_KEY };

static const cli_opt opts[] = {
    {"checkpoint", "PATH", Q_CKPT, 0, "a checkpoint file, or a directory (its newest)"},
    {"data", "DIR", Q_DATA, 0, "dataset folder: calibration on its training split, accuracy on its test split"},
    {"dataset", "KIND", Q_DATASET, 0, "idx (default), cifar10, cifar100"},
    {"act-bits", "N", Q_BITS, 0, "activation bits, 2 to 16 (default 8, as Slalom)"},
    {"calib", "N", Q_CALIB, 0, "training images that set the activation scales (default 1000; whole\n"
                               "batches of --batch)"},
    {"batch", "N", Q_BATCH, 0, "default 100"},
    {"limit", "N", Q_LIMIT, 0, "use the first N test images"},
    {"key", "FILE", Q_KEY, 0, "open sealed data and checkpoints (asymml seal)"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct quant_opts {
    const char *ckpt, *data, *key;
    am_data_kind kind;
    int bits, calib, batch, limit;
} quant_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    quant_opts *q = ctx;
    switch (o->id) {
    case Q_CKPT: q->ckpt = arg; return 0;
    case Q_DATA: q->data = arg; return 0;
    case Q_DATASET: return am_data_kind_parse(arg, &q->kind) == AM_OK ? 0 : die(EXIT_USAGE, "--dataset: %s", am_last_error());
    case Q_BITS: return arg_int("act-bits", arg, 2, 16, &q->bits) ? 0 : EXIT_USAGE;
    case Q_CALIB: return arg_int("calib", arg, 1, 1000000, &q->calib) ? 0 : EXIT_USAGE;
    case Q_BATCH: return arg_int("batch", arg, 1, 65536, &q->batch) ? 0 : EXIT_USAGE;
    case Q_LIMIT: return arg_int("limit", arg, 1, 100000000, &q->limit) ? 0 : EXIT_USAGE;
    case Q_KEY: q->key = arg; return 0;
    }
    return EXIT_USAGE;
}

static int run(const quant_opts *o, const am_checkpoint *ck, const am_dataset *tr, const am_dataset *te) {
    const int B = o->batch < te->n ? o->batch : te->n;
    int nb;
    if (cli_calib_batches("quantize", o->calib, tr, B, &nb)) return EXIT_USAGE;
    am_model *m = NULL, *q = NULL;
    double facc, qacc;
    int folded = 0, rc = cli_checkpoint_model(ck, 0, B, &m);
    if (!rc && am_evaluate(m, te, ck->mean, ck->std, B, NULL, &facc, NULL)) rc = lib_fail("eval");
    if (!rc && (am_model_fold_bn(m, &q, &folded) || am_model_set_batch(q, B))) rc = lib_fail("fold");
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_QUANTIZED, c.act_bits = o->bits;
    if (!rc && am_model_set_asym(q, &c, NULL)) rc = lib_fail("quantize");
    if (!rc) rc = cli_calibrate(q, tr, ck, B, nb);
    if (!rc && am_evaluate(q, te, ck->mean, ck->std, B, NULL, &qacc, NULL)) rc = lib_fail("eval");
    if (!rc) {
        printf("privacy: nothing is sent to an accelerator (quantize runs every layer in this process)\n");
        printf("quantized: %d BatchNorm layer%s folded; weights 8-bit, a scale per output channel; activations "
               "%d-bit, a scale per layer from %d training images\n", folded, plural(folded, "", "s"), o->bits,
               nb * B);
        printf("%s: test accuracy float %.4f, quantized %.4f (%+.2f points; %d images)\n", o->ckpt, facc, qacc,
               100 * (qacc - facc), te->n);
    }
    am_model_free(q);
    am_model_free(m);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    quant_opts o = {.kind = AM_DATA_IDX, .bits = AM_ACT_BITS, .calib = 1000, .batch = 100};
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("quantize", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.ckpt || !o.data) return die(EXIT_USAGE, "quantize: --checkpoint and --data are required");
    cli_mode mode;
    cli_mode_init(&mode);
    mode.key = o.key;
    if ((rc = tee_begin(&mode))) return rc;
    am_checkpoint ck;
    char used[4200];
    if ((rc = load_checkpoint(&o.ckpt, "quantizing", &ck, used, sizeof used))) return rc;
    am_dataset tr = {0}, te = {0};
    rc = load_data(o.kind, o.data, "train", 0, &tr);
    if (!rc) rc = load_data(o.kind, o.data, "test", o.limit, &te);
    if (!rc && te.c != ck.channels)
        rc = die(EXIT_RUNTIME, "%s: a %d-channel model; the data has %d channels", o.ckpt, ck.channels, te.c);
    if (!rc) rc = run(&o, &ck, &tr, &te);
    am_dataset_free(&tr);
    am_dataset_free(&te);
    am_checkpoint_free(&ck);
    return rc;
}
