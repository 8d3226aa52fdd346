/* The model zoo: each network is a few lines of configuration (VGG's layer
 * list, ResNet's block counts) expanded into a layer description, which the
 * generic parser in model.c builds. Definitions follow torchvision (vgg*_bn,
 * resnet18/34); the CIFAR variants are the usual adaptations: VGG with one
 * linear classifier, ResNet with a 3x3 stride-1 stem and no stem max-pool.
 * VGG's max-pools use ceil_mode so that a 28x28 input (Fashion-MNIST) still
 * passes five of them (28-14-7-4-2-1); on even sizes this changes nothing. */
#include "asymml/nn.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct out {
    char *buf;
    size_t cap, len;
    int overflow;
} out;

__attribute__((format(printf, 2, 3))) static void emit(out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap > o->len ? o->cap - o->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0 || o->len + (size_t)n >= o->cap) o->overflow = 1;
    else o->len += (size_t)n;
}

static const char *const vgg_cfg[] = {
    /* vgg11 */ "64 M 128 M 256 256 M 512 512 M 512 512 M",
    /* vgg13 */ "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    /* vgg16 */ "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    /* vgg19 */ "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
};

static void vgg(out *o, const char *cfg, int imagenet, int classes) {
    const char *p = cfg;
    int c = 0;
    while (*p) {
        if (*p == ' ') { p++; continue; }
        if (*p == 'M') {
            emit(o, "maxpool k=2 s=2 ceil=1\n");
            p++;
            continue;
        }
        int n = 0;
        while (*p >= '0' && *p <= '9') n = n * 10 + (*p++ - '0');
        emit(o, "conv %d k=3 p=1\nbn\nrelu\n", n);
        c = n;
    }
    if (imagenet) {
        emit(o, "adaptiveavg 7 7\nflatten\nlinear 4096\nrelu\ndropout p=0.5\n"
                "linear 4096\nrelu\ndropout p=0.5\nlinear %d\n", classes);
    } else {
        (void)c;
        emit(o, "flatten\nlinear %d\n", classes);
    }
}

static void resnet(out *o, const int *blocks, int imagenet, int classes) {
    if (imagenet) emit(o, "conv 64 k=7 s=2 p=3 bias=0\nbn\nrelu\nmaxpool k=3 s=2 p=1 name=s0\n");
    else emit(o, "conv 64 k=3 p=1 bias=0\nbn\nrelu name=s0\n");
    int in_c = 64, id = 0;
    for (int stage = 0; stage < 4; stage++) {
        int c = 64 << stage;
        for (int b = 0; b < blocks[stage]; b++, id++) {
            int s = (stage > 0 && b == 0) ? 2 : 1;
            emit(o, "conv %d k=3 s=%d p=1 bias=0 from=s%d\nbn\nrelu\nconv %d k=3 p=1 bias=0\nbn name=m%d\n",
                 c, s, id, c, id + 1);
            if (s != 1 || in_c != c) {
                emit(o, "conv %d k=1 s=%d bias=0 from=s%d\nbn name=d%d\nadd from=m%d,d%d\n", c, s, id,
                     id + 1, id + 1, id + 1);
            } else {
                emit(o, "add from=m%d,s%d\n", id + 1, id);
            }
            emit(o, "relu name=s%d\n", id + 1);
            in_c = c;
        }
    }
    emit(o, "gap\nflatten\nlinear %d\n", classes);
}

static const char *const names[] = {
    "lenet",          "vgg11",          "vgg13",          "vgg16",          "vgg19",
    "vgg11-imagenet", "vgg13-imagenet", "vgg16-imagenet", "vgg19-imagenet", "resnet18",
    "resnet34",       "resnet18-imagenet", "resnet34-imagenet", NULL};

const char *const *am_zoo_names(void) { return names; }

am_status am_zoo_describe(const char *name, am_shape in, int classes, char *buf, size_t cap) {
    if (!name || !buf || !cap) return am_fail(AM_EINVAL, "zoo: NULL argument");
    if (in.c < 1 || in.h < 1 || in.w < 1 || in.c > 4096 || in.h > 16384 || in.w > 16384)
        return am_fail(AM_EINVAL, "zoo: bad input shape %dx%dx%d", in.c, in.h, in.w);
    if (classes < 2 || classes > 1000000)
        return am_fail(AM_EINVAL, "zoo: class count %d outside [2, 1000000]", classes);
    out o = {buf, cap, 0, 0};
    buf[0] = 0;
    emit(&o, "input %d %d %d\n", in.c, in.h, in.w);
    size_t nlen = strlen(name);
    int imagenet = nlen > 9 && !strcmp(name + nlen - 9, "-imagenet");
    size_t base = imagenet ? nlen - 9 : nlen;
    char b[32];
    if (base >= sizeof b) return am_fail(AM_EINVAL, "zoo: unknown model '%s'", name);
    memcpy(b, name, base);
    b[base] = 0;
    if (!strcmp(b, "lenet") && !imagenet) {
        /* LeNet-style: two 5x5 conv + max-pool stages, two linear layers. */
        emit(&o, "conv 16 k=5 p=2\nrelu\nmaxpool k=2\nconv 32 k=5 p=2\nrelu\nmaxpool k=2\n"
                 "flatten\nlinear 128\nrelu\nlinear %d\n", classes);
    } else if (!strcmp(b, "vgg11") || !strcmp(b, "vgg13") || !strcmp(b, "vgg16") || !strcmp(b, "vgg19")) {
        int i = b[3] == '1' && b[4] == '1' ? 0 : b[4] == '3' ? 1 : b[4] == '6' ? 2 : 3;
        vgg(&o, vgg_cfg[i], imagenet, classes);
    } else if (!strcmp(b, "resnet18") || !strcmp(b, "resnet34")) {
        static const int r18[4] = {2, 2, 2, 2}, r34[4] = {3, 4, 6, 3};
        resnet(&o, b[6] == '1' ? r18 : r34, imagenet, classes);
    } else {
        return am_fail(AM_EINVAL, "zoo: unknown model '%s'", name);
    }
    if (o.overflow) return am_fail(AM_EINVAL, "zoo: description of '%s' does not fit %zu bytes", name, cap);
    return AM_OK;
}
