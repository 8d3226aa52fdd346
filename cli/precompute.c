/* asymml precompute: slalom's unblinding factors for a checkpoint's model,
 * made ahead of time in the trusted process and stored sealed outside it
 * (asymml/factors.h), for `asymml infer --mode slalom --factors DIR`. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml precompute --checkpoint PATH --count N --out DIR --key FILE [options]\n"
    "Slalom's unblinding factors ahead of time: for N batches, every fixed-point layer's\n"
    "W r mod p, r the one-time pad that layer will draw for that batch (from a key drawn\n"
    "here and sealed in the store). infer --mode slalom --factors DIR then uses each\n"
    "batch's once, in order, and computes no W r itself. The store is sealed under --key,\n"
    "made for one batch size and this checkpoint's weights; the checkpoint must be\n"
    "sealed under the same key (train --key, or import --key).\n";

enum { P_CKPT = 1, P_COUNT, P_OUT, P_BATCH, P_KEY };

static const cli_opt opts[] = {
    {"checkpoint", "PATH", P_CKPT, 0, "a checkpoint file, or a directory (its newest)"},
    {"count", "N", P_COUNT, 0, "batches of factors"},
    {"out", "DIR", P_OUT, 0, "the store (a new folder)"},
    {"batch", "N", P_BATCH, 0, "the batch size infer will run (default 100)"},
    {"key", "FILE", P_KEY, 0, "seal the store under this key (asymml keygen); infer needs it too"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct pre_opts {
    const char *ckpt, *out, *key;
    int count, batch;
} pre_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    pre_opts *q = ctx;
    switch (o->id) {
    case P_CKPT: q->ckpt = arg; return 0;
    case P_COUNT: return arg_int("count", arg, 1, 100000000, &q->count) ? 0 : EXIT_USAGE;
    case P_OUT: q->out = arg; return 0;
    case P_BATCH: return arg_int("batch", arg, 1, 65536, &q->batch) ? 0 : EXIT_USAGE;
    case P_KEY: q->key = arg; return 0;
    }
    return EXIT_USAGE;
}

/* The checkpoint's model, folded, in quantized mode at batch B: its
 * fixed-point layers are slalom's. */
static int model(const am_checkpoint *ck, int B, am_model **out) {
    int rc = cli_checkpoint_model(ck, 1, B, out);
    if (rc) return rc;
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_QUANTIZED;
    return am_model_set_asym(*out, &c, NULL) == AM_OK ? 0 : lib_fail("model");
}

static int make(const pre_opts *o, am_model *m) {
    int L = am_model_fixed_layers(m);
    size_t *lens = malloc(sizeof(size_t) * (size_t)L), most = 0, all = 0;
    uint8_t ident[32];
    if (!lens) return die(EXIT_RUNTIME, "precompute: out of memory");
    for (int i = 0; i < L; i++) lens[i] = am_model_factor_len(m, i), most = lens[i] > most ? lens[i] : most, all += lens[i];
    am_factor_store *s = NULL;
    int32_t *v = malloc(most * sizeof(int32_t));
    int rc = v ? 0 : die(EXIT_RUNTIME, "precompute: out of memory");
    if (!rc && (am_model_factor_identity(m, ident) || am_factors_create(o->out, (uint64_t)o->count, o->batch, L, lens, ident, &s) ||
                am_model_set_pad_key(m, am_factors_pad_key(s))))
        rc = lib_fail("precompute");
    double t0 = now_s();
    for (uint64_t t = 0; !rc && t < (uint64_t)o->count; t++)
        for (int i = 0; !rc && i < L; i++)
            if (am_model_factors(m, t, i, v) || am_factors_put(s, t, i, v)) rc = lib_fail("precompute");
    if (!rc && am_factors_finish(s)) rc = lib_fail("precompute");
    if (!rc)
        printf("precompute: %d batch%s of %d, %d layer%s, %.1f MiB a batch, into %s (sealed): %.3f s a batch\n", o->count,
               o->count == 1 ? "" : "es", o->batch, L, plural(L, "", "s"), (double)all * 4 / 1048576, o->out,
               (now_s() - t0) / o->count);
    am_factors_close(s);
    free(v);
    free(lens);
    return rc;
}

int cmd_precompute(int argc, char **argv) {
    pre_opts o = {.batch = 100};
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("precompute", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.ckpt || !o.count || !o.out) return die(EXIT_USAGE, "precompute: --checkpoint, --count and --out are required");
    if (!o.key) return die(EXIT_USAGE, "precompute: the factors are sealed: give --key FILE (asymml keygen makes one)");
    cli_mode mode;
    cli_mode_init(&mode);
    mode.key = o.key;
    if ((rc = tee_begin(&mode))) return rc;
    am_checkpoint ck;
    char used[4200];
    if ((rc = load_checkpoint(&o.ckpt, "using", &ck, used, sizeof used))) return rc;
    am_model *m = NULL;
    rc = model(&ck, o.batch, &m);
    if (!rc) rc = make(&o, m);
    am_model_free(m);
    am_checkpoint_free(&ck);
    return rc;
}
