/* A PyTorch state dict in safetensors format into a zoo model
 * (asymml/import.h): torchvision's names for each of the model's layers,
 * then every parameter and running statistic read by name, its shape,
 * dtype and values checked. The model's parameters are in PyTorch's
 * state_dict order and layout already (linear weights out x in, BatchNorm's
 * weight, bias, running mean and variance), so reading is a conversion per
 * tensor. It does not import an arbitrary PyTorch graph: only the zoo's
 * structures, whose names are known. */
#include "asymml/import.h"
#include "train/safetensors.h"

#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRE 40 /* a module's name: "layer4.1.downsample.0" */

typedef enum family { F_LENET, F_VGG, F_RESNET } family;

typedef struct names {
    char (*pre)[PRE]; /* per layer: its module's name ("" for layers without parameters) */
    int *is_bn;       /* per layer */
    int n;
} names;

static am_status family_of(const char *zoo, family *f, int *imagenet, int blocks[4]) {
    const char *const *z = am_zoo_names();
    while (*z && strcmp(*z, zoo)) z++;
    if (!*z) return am_fail(AM_EINVAL, "import: unknown model '%s' (asymml info --list)", zoo);
    size_t l = strlen(zoo);
    *imagenet = l > 9 && !strcmp(zoo + l - 9, "-imagenet");
    static const int r18[4] = {2, 2, 2, 2}, r34[4] = {3, 4, 6, 3};
    *f = !strncmp(zoo, "vgg", 3) ? F_VGG : !strncmp(zoo, "resnet", 6) ? F_RESNET : F_LENET;
    if (*f == F_RESNET) memcpy(blocks, zoo[6] == '1' ? r18 : r34, sizeof r18);
    return AM_OK;
}

typedef struct modules {
    char pre[160][PRE];
    char kind[160];
    int n;
} modules;

__attribute__((format(printf, 3, 4))) static void add(modules *l, char kind, const char *fmt, ...) {
    if (l->n == (int)sizeof l->kind) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->pre[l->n], PRE, fmt, ap);
    va_end(ap);
    l->kind[l->n++] = kind;
}

/* torchvision's ResNet modules in state_dict order, with their kinds ('c'
 * conv, 'b' BatchNorm, 'l' linear): the stem, the blocks, fc. */
static void resnet_modules(const int blocks[4], modules *l) {
    add(l, 'c', "conv1");
    add(l, 'b', "bn1");
    for (int s = 1; s <= 4; s++)
        for (int b = 0; b < blocks[s - 1]; b++) {
            add(l, 'c', "layer%d.%d.conv1", s, b);
            add(l, 'b', "layer%d.%d.bn1", s, b);
            add(l, 'c', "layer%d.%d.conv2", s, b);
            add(l, 'b', "layer%d.%d.bn2", s, b);
            if (s > 1 && b == 0) {
                add(l, 'c', "layer%d.%d.downsample.0", s, b);
                add(l, 'b', "layer%d.%d.downsample.1", s, b);
            }
        }
    add(l, 'l', "fc");
}

/* The module name of layer i (kind: "conv", "bn" or "linear") of LeNet or
 * VGG; counts: LeNet's convs and linear layers so far; first_lin: the
 * first linear layer's index. */
static am_status module_name(family f, int imagenet, int i, const char *kind, int first_lin, int *counts, char *out) {
    int conv = !strcmp(kind, "conv"), lin = !strcmp(kind, "linear");
    if (f == F_LENET) {
        if (!conv && !lin) return am_fail(AM_EINVAL, "import: layer %d (%s) is not LeNet's", i, kind);
        snprintf(out, PRE, "%s%d", conv ? "conv" : "fc", ++counts[lin]);
    } else if (!lin) { /* VGG's features: the layer's index there */
        snprintf(out, PRE, "features.%d", i - 1);
    } else if (imagenet) {
        snprintf(out, PRE, "classifier.%d", i - first_lin);
    } else {
        snprintf(out, PRE, "classifier");
    }
    return AM_OK;
}

/* Every layer's module name. */
static am_status name_layers(const am_model *m, const char *zoo, names *nm) {
    family f;
    int imagenet, blocks[4], counts[2] = {0, 0}, first_lin = -1, k = 0;
    AM_TRY(family_of(zoo, &f, &imagenet, blocks));
    modules r = {.n = 0};
    if (f == F_RESNET) resnet_modules(blocks, &r);
    for (int i = 1; i < nm->n; i++) {
        am_layer_info li;
        AM_TRY(am_model_layer_info(m, i, &li));
        int bn = !strcmp(li.kind, "bn"), lin = !strcmp(li.kind, "linear");
        nm->is_bn[i] = bn;
        if (!bn && !lin && strcmp(li.kind, "conv")) continue;
        if (lin && first_lin < 0) first_lin = i;
        if (f != F_RESNET) {
            AM_TRY(module_name(f, imagenet, i, li.kind, first_lin, counts, nm->pre[i]));
            continue;
        }
        if (k >= r.n || r.kind[k] != li.kind[0])
            return am_fail(AM_EINVAL, "import: layer %d (%s) is not where torchvision's %s has it", i, li.kind, zoo);
        snprintf(nm->pre[i], PRE, "%s", r.pre[k++]);
    }
    if (f == F_RESNET && k != r.n) return am_fail(AM_EINVAL, "import: the model lacks layers of torchvision's %s", zoo);
    return AM_OK;
}

static am_status names_make(const am_model *m, const char *zoo, names *nm) {
    nm->n = am_model_num_layers(m);
    nm->pre = calloc((size_t)nm->n, sizeof *nm->pre);
    nm->is_bn = calloc((size_t)nm->n, sizeof *nm->is_bn);
    if (!nm->pre || !nm->is_bn) return am_fail(AM_ENOMEM, "import: out of memory");
    return name_layers(m, zoo, nm);
}

static void names_free(names *nm) {
    free(nm->pre);
    free(nm->is_bn);
}

/* "layer1.0.bn1.running_mean" for parameter p. */
static void param_name(const names *nm, const am_param *p, const char *prefix, char *buf, size_t cap) {
    const char *role = strchr(p->name, '.');
    snprintf(buf, cap, "%s%s.%s", prefix, nm->pre[p->layer], role ? role + 1 : p->name);
}

am_status am_import_name(am_model *m, const char *zoo, int i, char *buf, size_t cap) {
    if (!m || !zoo || !buf || !cap) return am_fail(AM_EINVAL, "import: NULL argument");
    const am_param *p = am_model_param(m, i);
    if (!p) return am_fail(AM_EINVAL, "import: no parameter %d", i);
    names nm = {0};
    am_status st = names_make(m, zoo, &nm);
    if (st == AM_OK) param_name(&nm, p, "", buf, cap);
    names_free(&nm);
    return st;
}

/* PyTorch's shape of p: conv weights K x C x kh x kw, linear weights
 * out x in, vectors n. */
static int torch_shape(am_model *m, const am_param *p, uint64_t dims[4]) {
    am_layer_info li;
    am_model_layer_info(m, p->layer, &li);
    dims[0] = (uint64_t)p->shape.n, dims[1] = (uint64_t)p->shape.c;
    dims[2] = (uint64_t)p->shape.h, dims[3] = (uint64_t)p->shape.w;
    if (p->kind != AM_P_WEIGHT) return 1;
    return strcmp(li.kind, "conv") ? 2 : 4;
}

/* Parameter p from the tensor of its name: there, of its shape, of a
 * float's dtype, finite (a running variance not negative). */
static am_status read_param(am_model *m, const am_param *p, const char *name, const am_safetensors *st, char *used) {
    const am_st_tensor *t = am_st_find(st, name);
    uint64_t dims[4];
    int nd = torch_shape(m, p, dims);
    char want[100], got[200];
    am_st_shape_words(nd, dims, want, sizeof want);
    if (!t) return am_fail(AM_EFORMAT, "import: tensor '%.200s' (%s) is missing", name, want);
    used[t - st->t] = 1;
    am_st_shape_words(t->ndim, t->dims, got, sizeof got);
    if (t->ndim != nd || memcmp(t->dims, dims, sizeof *dims * (size_t)nd))
        return am_fail(AM_EFORMAT, "import: tensor '%.200s' has shape %s, the model expects %s", name, got, want);
    if (!am_st_is_float(t->dtype))
        return am_fail(AM_EFORMAT, "import: tensor '%.200s' is %s; the model's tensors are read from F32, F16, BF16 or F64",
                       name, am_st_dtype_name(t->dtype));
    am_status s = am_st_to_float(t, p->data);
    if (s != AM_OK) return am_fail(s, "import: %s", am_last_error());
    if (p->kind == AM_P_RUNNING_VAR)
        for (size_t i = 0; i < p->numel; i++)
            if (p->data[i] < 0.f)
                return am_fail(AM_ENUM, "import: tensor '%.200s' holds a negative variance at element %zu", name, i);
    return AM_OK;
}

/* A tensor the model has no place for: BatchNorm's num_batches_tracked
 * (an integer scalar) is passed over; anything else is refused. */
static am_status extra(const names *nm, const am_st_tensor *t, size_t skip, const char *zoo, int *ignored) {
    static const char suffix[] = ".num_batches_tracked";
    const char *name = t->name + skip;
    size_t l = strlen(name), sl = sizeof suffix - 1;
    int bn = 0;
    for (int i = 1; !bn && l > sl && !strcmp(name + l - sl, suffix) && i < nm->n; i++)
        bn = nm->is_bn[i] && strlen(nm->pre[i]) == l - sl && !strncmp(nm->pre[i], name, l - sl);
    if (!bn) return am_fail(AM_EFORMAT, "import: tensor '%.200s' is not one of %s's (torchvision's names: asymml import --help)",
                            t->name, zoo);
    if ((t->dtype != AM_ST_I64 && t->dtype != AM_ST_I32) || t->ndim != 0)
        return am_fail(AM_EFORMAT, "import: tensor '%.200s' is not an integer scalar (I64 or I32), as a BatchNorm's counter is",
                       t->name);
    (*ignored)++;
    return AM_OK;
}

/* "module." before every name: a state dict of nn.DataParallel. */
static size_t common_prefix(const am_safetensors *st) {
    static const char pre[] = "module.";
    for (int i = 0; i < st->n; i++)
        if (strncmp(st->t[i].name, pre, sizeof pre - 1)) return 0;
    return st->n ? sizeof pre - 1 : 0;
}

static am_status fill(am_model *m, const char *zoo, const am_safetensors *st, am_import_info *info) {
    names nm = {0};
    char *used = calloc((size_t)st->n + 1, 1), name[300];
    size_t skip = common_prefix(st);
    am_status s = used ? names_make(m, zoo, &nm) : am_fail(AM_ENOMEM, "import: out of memory");
    for (int i = 0; s == AM_OK && i < am_model_num_params(m); i++) {
        const am_param *p = am_model_param(m, i);
        param_name(&nm, p, skip ? "module." : "", name, sizeof name);
        s = read_param(m, p, name, st, used);
        info->tensors += s == AM_OK;
    }
    for (int i = 0; s == AM_OK && i < st->n; i++)
        if (!used[i]) s = extra(&nm, &st->t[i], skip, zoo, &info->ignored);
    info->params = am_model_trainable_count(m);
    info->prefixed = skip > 0;
    names_free(&nm);
    free(used);
    return s;
}

am_status am_import_safetensors(const char *zoo, am_shape in, int classes, const uint8_t *buf, size_t n,
                                am_model **out, am_import_info *info) {
    am_import_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    *out = NULL;
    if (!zoo || !buf) return am_fail(AM_EINVAL, "import: NULL argument");
    family f;
    int imagenet, blocks[4];
    AM_TRY(family_of(zoo, &f, &imagenet, blocks));
    size_t cap = 1 << 16;
    char *desc = malloc(cap);
    if (!desc) return am_fail(AM_ENOMEM, "import: out of memory");
    am_status s = am_zoo_describe(zoo, in, classes, desc, cap);
    am_model *m = NULL;
    if (s == AM_OK) s = am_model_create(desc, &m);
    free(desc);
    am_safetensors st;
    if (s == AM_OK) s = am_st_parse(buf, n, &st);
    if (s == AM_OK) {
        s = fill(m, zoo, &st, info);
        am_st_free(&st);
    }
    if (s != AM_OK) {
        am_model_free(m);
        return s;
    }
    *out = m;
    return AM_OK;
}

am_status am_import_file(const char *zoo, am_shape in, int classes, const char *path, am_model **out,
                         am_import_info *info) {
    *out = NULL;
    if (!path) return am_fail(AM_EINVAL, "import: NULL path");
    uint8_t *buf;
    size_t n;
    AM_TRY(am_read_file(path, (size_t)64 << 30, &buf, &n));
    am_status s = am_import_safetensors(zoo, in, classes, buf, n, out, info);
    free(buf);
    if (s != AM_OK) {
        const char *e = am_last_error();
        return am_fail(s, "%s: %s", path, strncmp(e, "import: ", 8) ? e : e + 8);
    }
    return AM_OK;
}

am_status am_import_checkpoint(am_model *m, const float *mean, const float *std, am_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    if (!m || !mean || !std) return am_fail(AM_EINVAL, "import: NULL argument");
    int c = am_model_input_shape(m).c;
    if (c < 1 || c > 4) return am_fail(AM_EINVAL, "import: a checkpoint holds 1 to 4 input channels, not %d", c);
    for (int i = 0; i < c; i++)
        if (!isfinite(mean[i]) || !(std[i] > 0.f) || !isfinite(std[i]))
            return am_fail(AM_EINVAL, "import: channel %d's normalization (mean %g, std %g) is not usable", i + 1,
                           (double)mean[i], (double)std[i]);
    if (sodium_init() < 0) return am_fail(AM_EIO, "import: libsodium failed to initialize");
    ck->desc = (char *)am_model_desc(m);
    ck->cfg = (am_train_cfg){.epochs = 1, .batch = 64, .lr = 0.05f, .momentum = 0.9f, .wd = 5e-4f,
                             .sched = AM_SCHED_COSINE, .step_size = 1, .gamma = 0.1f, .asym = am_asym_defaults()};
    ck->cfg.asym.mode = AM_MODE_TEE_ONLY;
    ck->channels = c;
    for (int i = 0; i < 4; i++) ck->mean[i] = i < c ? mean[i] : 0.f, ck->std[i] = i < c ? std[i] : 1.f;
    ck->n_weights = am_model_weights_len(m);
    ck->n_buffers = am_model_buffers_len(m);
    ck->weights = am_model_weights(m);
    ck->buffers = am_model_buffers(m);
    am_rng_seed(&ck->rng, 1);
    randombytes_buf(ck->bind.run_id, sizeof ck->bind.run_id);
    return AM_OK;
}
