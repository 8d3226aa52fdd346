/* asymml import: a PyTorch state dict saved in the safetensors format, with
 * torchvision's names, into a checkpoint of a zoo model (asymml/import.h)
 * that asymml eval reads. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml import --safetensors FILE --model NAME --out PATH [options]\n"
    "Turn a model trained in PyTorch into an asymml checkpoint that `asymml eval` reads. FILE\n"
    "is its state dict saved in the safetensors format (safetensors.torch.save_file(\n"
    "model.state_dict(), FILE), or scripts/save_safetensors.py MODEL.pt FILE from torch.save's\n"
    "file); the model is the zoo model NAME (asymml info --list) with\n"
    "torchvision's parameter names:\n"
    "  vggNN           vggNN_bn's features.N (convs and BatchNorm, N the index in features),\n"
    "                  with avgpool = Identity and classifier = nn.Linear(512, classes)\n"
    "                  (at 32x32): classifier.weight, classifier.bias\n"
    "  vggNN-imagenet  vggNN_bn: features.N, classifier.0, classifier.3, classifier.6\n"
    "  resnetNN        resnetNN: conv1, bn1, layerS.B.{conv1,bn1,conv2,bn2}, layerS.B.downsample.0\n"
    "                  (conv) and .1 (BatchNorm), fc; the CIFAR variant (no -imagenet) with\n"
    "                  conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False) and maxpool = Identity\n"
    "  lenet           conv1, conv2 (5x5, padding 2, each followed by ReLU and a 2x2 max-pool),\n"
    "                  fc1 (128 outputs), fc2\n"
    "BatchNorm's running_mean and running_var are read, num_batches_tracked passed over; names\n"
    "that all begin with \"module.\" (nn.DataParallel) are read too. A missing, extra or\n"
    "misshapen tensor, one of an integer dtype (F32, F16, BF16 and F64 are read), a NaN or an\n"
    "infinity is refused, naming the tensor, and nothing is written. The normalization is the\n"
    "one the model was trained with, on pixels scaled to [0, 1] (torchvision's ToTensor, then\n"
    "Normalize(mean, std)): a preset (--norm) or the values (--mean, --std). The checkpoint is\n"
    "of step 0, tee-only; asymml eval runs it in any mode (--mode). It is bound to no data:\n"
    "train --resume refuses it.\n";

enum { I_FILE = 1, I_MODEL, I_OUT, I_INPUT, I_CLASSES, I_NORM, I_MEAN, I_STD, I_KEY };

static const cli_opt opts[] = {
    {"safetensors", "FILE", I_FILE, 0, "the state dict (plain or gzip-compressed)"},
    {"model", "NAME", I_MODEL, 0, "zoo model (asymml info --list)"},
    {"out", "PATH", I_OUT, 0, "the checkpoint to write (an existing file is not overwritten)"},
    {"input", "C,H,W", I_INPUT, 0, "input shape (default 1,28,28 for lenet, 3,224,224 for -imagenet\n"
                                   "models, 3,32,32 otherwise)"},
    {"classes", "N", I_CLASSES, 0, "class count (default 1000 for -imagenet models, 10 otherwise)"},
    {"norm", "NAME", I_NORM, 0, "normalization preset (default imagenet for -imagenet models, none\n"
                                "otherwise):\n"
                                "  none           mean 0, std 1 (ToTensor alone)\n"
                                "  imagenet       mean 0.485,0.456,0.406 std 0.229,0.224,0.225\n"
                                "  cifar10        mean 0.4914,0.4822,0.4465 std 0.2470,0.2435,0.2616\n"
                                "  cifar100       mean 0.5071,0.4865,0.4409 std 0.2673,0.2564,0.2762\n"
                                "  mnist          mean 0.1307 std 0.3081\n"
                                "  fashion-mnist  mean 0.2860 std 0.3530"},
    {"mean", "M[,M...]", I_MEAN, 0, "per-channel mean, one value per input channel (over --norm)"},
    {"std", "S[,S...]", I_STD, 0, "per-channel standard deviation (over --norm)"},
    {"key", "KEYFILE", I_KEY, 0, "seal the checkpoint under this key, as train --key does\n"
                                 "(eval then needs the key)"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct norm_preset {
    const char *name;
    int c;
    float mean[3], std[3];
} norm_preset;

/* torchvision's ImageNet values; the others are each training set's own
 * statistics, as asymml train computes them. */
static const norm_preset presets[] = {
    {"none", 0, {0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}},
    {"imagenet", 3, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}},
    {"cifar10", 3, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}},
    {"cifar100", 3, {0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}},
    {"mnist", 1, {0.1307f}, {0.3081f}},
    {"fashion-mnist", 1, {0.2860f}, {0.3530f}},
    {NULL, 0, {0}, {0}},
};

typedef struct import_opts {
    const char *file, *model, *out, *key, *norm;
    am_shape in;
    int classes, n_mean, n_std;
    float mean[4], std[4];
} import_opts;

/* "a,b,c": 1 to 4 numbers. */
static int arg_floats(const char *opt, const char *s, float *out, int *n) {
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == 4) return die(EXIT_USAGE, "--%s: at most 4 values (one per input channel)", opt), 0;
        if (!arg_float(opt, tok, -1e6, 1e6, &out[(*n)++])) return 0;
    }
    if (!*n || s[strlen(s) - 1] == ',' || strstr(s, ",,") || s[0] == ',')
        return die(EXIT_USAGE, "--%s: '%s' is not a list of numbers", opt, s), 0;
    return 1;
}

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    import_opts *i = ctx;
    switch (o->id) {
    case I_FILE: i->file = arg; return 0;
    case I_MODEL: i->model = arg; return 0;
    case I_OUT: i->out = arg; return 0;
    case I_KEY: i->key = arg; return 0;
    case I_NORM: i->norm = arg; return 0;
    case I_INPUT: return arg_shape("input", arg, &i->in) ? 0 : EXIT_USAGE;
    case I_CLASSES: return arg_int("classes", arg, 2, 1000000, &i->classes) ? 0 : EXIT_USAGE;
    case I_MEAN: return arg_floats("mean", arg, i->mean, &i->n_mean) ? 0 : EXIT_USAGE;
    case I_STD: return arg_floats("std", arg, i->std, &i->n_std) ? 0 : EXIT_USAGE;
    }
    return EXIT_USAGE;
}

/* The normalization: the preset's (by name, or the model's default), then
 * --mean and --std over it. */
static int normalization(import_opts *o, int imagenet) {
    int c = o->in.c;
    const char *name = o->norm ? o->norm : imagenet ? "imagenet" : "none";
    const norm_preset *p = presets;
    while (p->name && strcmp(p->name, name)) p++;
    if (!p->name)
        return die(EXIT_USAGE, "--norm: unknown preset '%s' (none, imagenet, cifar10, cifar100, mnist, fashion-mnist)", name);
    if (p->c && p->c != c && !(o->n_mean && o->n_std))
        return die(EXIT_USAGE, "--norm %s is for %d-channel images; the model takes %d (give --norm, or --mean and --std)",
                   name, p->c, c);
    for (int i = 0; i < c; i++) {
        if (!o->n_mean) o->mean[i] = p->mean[p->c ? i : 0];
        if (!o->n_std) o->std[i] = p->std[p->c ? i : 0];
    }
    if ((o->n_mean && o->n_mean != c) || (o->n_std && o->n_std != c))
        return die(EXIT_USAGE, "--%s: %d values for a model of %d input channels", o->n_mean && o->n_mean != c ? "mean" : "std",
                   o->n_mean && o->n_mean != c ? o->n_mean : o->n_std, c);
    for (int i = 0; i < c; i++)
        if (!(o->std[i] > 0.f)) return die(EXIT_USAGE, "--std: %g is not positive", (double)o->std[i]);
    o->norm = o->n_mean || o->n_std ? NULL : name;
    return 0;
}

/* The model's defaults, and what is given checked together. */
static int resolve(import_opts *o) {
    if (!o->file || !o->model || !o->out)
        return die(EXIT_USAGE, "import: --safetensors, --model and --out are required (see asymml import --help)");
    const char *const *z = am_zoo_names();
    while (*z && strcmp(*z, o->model)) z++;
    if (!*z) return die(EXIT_USAGE, "--model: unknown model '%s' (asymml info --list)", o->model);
    size_t l = strlen(o->model);
    int imagenet = l > 9 && !strcmp(o->model + l - 9, "-imagenet");
    if (!o->in.n) o->in = !strcmp(o->model, "lenet") ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, imagenet ? 224 : 32, imagenet ? 224 : 32);
    if (!o->classes) o->classes = imagenet ? 1000 : 10;
    if (o->in.c > 4) return die(EXIT_USAGE, "--input: a checkpoint holds 1 to 4 input channels, not %d", o->in.c);
    return normalization(o, imagenet);
}

static void print_values(const char *what, const float *v, int c) {
    printf(" %s ", what);
    for (int i = 0; i < c; i++) printf("%s%g", i ? "," : "", (double)v[i]);
}

static int write_checkpoint(const import_opts *o, am_model *m, const am_import_info *info) {
    am_checkpoint ck;
    if (am_import_checkpoint(m, o->mean, o->std, &ck) != AM_OK || am_checkpoint_write(o->out, &ck) != AM_OK)
        return lib_fail("import");
    printf("import: %s (%dx%dx%d, %d classes) from %s: %d tensors", o->model, o->in.c, o->in.h, o->in.w, o->classes,
           o->file, info->tensors);
    if (info->ignored) printf(" (and %d BatchNorm counters, passed over)", info->ignored);
    if (info->prefixed) printf(" named with \"module.\"");
    printf(", %zu parameters; normalization", info->params);
    print_values("mean", o->mean, o->in.c);
    print_values("std", o->std, o->in.c);
    if (o->norm) printf(" (--norm %s)", o->norm);
    printf("; wrote %s%s\n", o->out, o->key ? " (sealed)" : "");
    return 0;
}

int cmd_import(int argc, char **argv) {
    import_opts o = {0};
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("import", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = resolve(&o))) return rc;
    if (access(o.out, F_OK) == 0) return die(EXIT_RUNTIME, "import: %s exists; nothing was written (give another --out)", o.out);
    cli_mode mode;
    cli_mode_init(&mode);
    mode.key = o.key;
    if ((rc = tee_begin(&mode))) return rc;
    am_model *m;
    am_import_info info;
    if (am_import_file(o.model, o.in, o.classes, o.file, &m, &info) != AM_OK) return die(EXIT_RUNTIME, "%s", am_last_error());
    rc = write_checkpoint(&o, m, &info);
    am_model_free(m);
    return rc;
}
