/* The asymml command: the only code that prints. Subcommands:
 *   train   train a model on an IDX dataset (MNIST, Fashion-MNIST)
 *   info    a model's layers, shapes, parameter count and FLOPs
 *   bench   time training and inference steps of zoo models
 * Exit codes: 0 success, 1 failure at run time (bad data, out of memory,
 * non-finite loss), 2 bad usage (unknown option, absurd value). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "asymml/asymml.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static const char *prog = "asymml";

__attribute__((format(printf, 2, 3))) static int die(int code, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

static int lib_fail(const char *what) { return die(EXIT_RUNTIME, "%s: %s", what, am_last_error()); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Strict number parsing: the whole string, in range. */
static int arg_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        die(EXIT_USAGE, "--%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int arg_float(const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        die(EXIT_USAGE, "--%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
        return 0;
    }
    *out = (float)v;
    return 1;
}

/* "C,H,W" */
static int arg_shape(const char *opt, const char *s, am_shape *out) {
    int c, h, w, n = 0;
    if (sscanf(s, "%d,%d,%d%n", &c, &h, &w, &n) != 3 || s[n] || c < 1 || h < 1 || w < 1 ||
        c > 4096 || h > 8192 || w > 8192) {
        die(EXIT_USAGE, "--%s: '%s' is not C,H,W", opt, s);
        return 0;
    }
    *out = am_shape4(1, c, h, w);
    return 1;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            if (cap > (64u << 20)) break;
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

/* A model from --model NAME (the zoo) or --model-file PATH (a description). */
static int make_model(const char *name, const char *file, am_shape in, int classes, am_model **m) {
    static char desc[1 << 16];
    char *text = NULL;
    const char *d = desc;
    if (file) {
        text = read_text_file(file);
        if (!text) return die(EXIT_RUNTIME, "%s: cannot read (%s)", file, strerror(errno));
        d = text;
    } else if (am_zoo_describe(name, in, classes, desc, sizeof desc) != AM_OK) {
        return die(EXIT_USAGE, "--model: %s", am_last_error());
    }
    am_status st = am_model_create(d, m);
    free(text);
    if (st != AM_OK) return die(st == AM_EINVAL ? EXIT_USAGE : EXIT_RUNTIME, "model: %s", am_last_error());
    return 0;
}

/* ------------------------------------------------------------------ info */

static void usage_info(FILE *f) {
    fprintf(f,
            "usage: asymml info [--model NAME | --model-file PATH] [options]\n"
            "Print a model's layers, output shapes, parameter count and forward FLOPs.\n"
            "  --model NAME       zoo model (default lenet); see `asymml info --list`\n"
            "  --model-file PATH  a layer description file (syntax: include/asymml/nn.h)\n"
            "  --input C,H,W      input shape for zoo models (default 1,28,28)\n"
            "  --classes N        class count for zoo models (default 10)\n"
            "  --list             list the zoo's models\n"
            "  --help             this text\n");
}

static int cmd_info(int argc, char **argv) {
    static const struct option lo[] = {{"model", 1, 0, 'm'}, {"model-file", 1, 0, 'f'},
                                       {"input", 1, 0, 'i'}, {"classes", 1, 0, 'c'},
                                       {"list", 0, 0, 'l'},  {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *name = "lenet", *file = NULL;
    am_shape in = am_shape4(1, 1, 28, 28);
    int classes = 10, opt;
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'm': name = optarg; break;
        case 'f': file = optarg; break;
        case 'i': if (!arg_shape("input", optarg, &in)) return EXIT_USAGE; break;
        case 'c': if (!arg_int("classes", optarg, 2, 1000000, &classes)) return EXIT_USAGE; break;
        case 'l':
            for (const char *const *n = am_zoo_names(); *n; n++) printf("%s\n", *n);
            return 0;
        case 'h': usage_info(stdout); return 0;
        default: usage_info(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) return die(EXIT_USAGE, "info: unexpected argument '%s'", argv[optind]);
    am_model *m;
    int rc = make_model(name, file, in, classes, &m);
    if (rc) return rc;
    printf("%-5s %-12s %-10s %-18s %12s %14s\n", "layer", "kind", "name", "output (CxHxW)", "params", "MFLOPs");
    double total = 0;
    for (int i = 0; i < am_model_num_layers(m); i++) {
        am_layer_info li;
        am_model_layer_info(m, i, &li);
        char shp[32];
        snprintf(shp, sizeof shp, "%dx%dx%d", li.out.c, li.out.h, li.out.w);
        printf("%-5d %-12s %-10s %-18s %12zu %14.3f\n", i, li.kind, li.name, shp, li.params, li.flops / 1e6);
        total += li.flops;
    }
    printf("parameters: %zu\nforward GFLOPs per sample: %.4f (training step ~3x)\n",
           am_model_trainable_count(m), total / 1e9);
    am_model_free(m);
    return 0;
}

/* ------------------------------------------------------------------ train */

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: asymml train --data DIR [options]\n"
            "Train a model on an IDX dataset (MNIST or Fashion-MNIST files in DIR:\n"
            "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...).\n"
            "  --data DIR          dataset folder (Debian: /usr/share/datasets/fashion-mnist)\n"
            "  --model NAME        zoo model (default lenet)\n"
            "  --model-file PATH   a layer description file instead\n"
            "  --epochs N          default 3\n"
            "  --batch N           default 64 (the last incomplete batch of an epoch is dropped)\n"
            "  --lr X              base learning rate, default 0.05\n"
            "  --momentum X        default 0.9\n"
            "  --nesterov          Nesterov momentum\n"
            "  --wd X              weight decay, default 5e-4\n"
            "  --schedule S        constant | step | cosine (default cosine, per step)\n"
            "  --step-size N       step schedule: epochs between decays (default 1)\n"
            "  --gamma X           step schedule: decay factor (default 0.1)\n"
            "  --warmup N          linear warm-up steps (default 0)\n"
            "  --seed N            default 1: same seed and build, same losses\n"
            "  --threads N         default: all cores\n"
            "  --limit-train N     use the first N training images\n"
            "  --limit-test N      use the first N test images\n"
            "  --every N           a progress line every N steps (default 100)\n"
            "  --log PATH          JSON-lines log of the same figures\n"
            "  --help              this text\n");
}

typedef struct train_opts {
    const char *data, *model, *model_file, *log;
    int epochs, batch, seed, threads, limit_train, limit_test, every, warmup, step_size, nesterov;
    float lr, momentum, wd, gamma;
    am_sched_kind sched;
} train_opts;

static int load_idx(const char *dir, const char *split, int limit, am_dataset *d) {
    char img[4096], lab[4096];
    /* Plain names first, then .gz, as Debian and the original site ship them. */
    for (int gz = 0; gz < 2; gz++) {
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte%s", dir, split, gz ? ".gz" : "");
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte%s", dir, split, gz ? ".gz" : "");
        if (access(img, R_OK) == 0) break;
    }
    if (am_idx_load(img, lab, 10, d) != AM_OK) return lib_fail("data");
    if (limit > 0 && limit < d->n) d->n = limit;
    return 0;
}

/* Accuracy of m (evaluation mode) on d. The last incomplete batch is padded
 * with repeats of its first image; only real images are counted. */
static int evaluate(am_model *m, const am_dataset *d, int B, const float *mean, const float *sd,
                    float *x, int32_t *lab, uint32_t *idx, double *acc) {
    am_shape s = am_model_input_shape(m);
    s.n = B;
    am_tensor xt = {s, x};
    long correct = 0;
    for (int i0 = 0; i0 < d->n; i0 += B) {
        int real = d->n - i0 < B ? d->n - i0 : B;
        for (int b = 0; b < B; b++) idx[b] = (uint32_t)(i0 + (b < real ? b : 0));
        if (am_dataset_batch(d, idx, B, mean, sd, x, lab) || am_model_forward(m, &xt, 0, NULL))
            return lib_fail("evaluate");
        const am_tensor *lg = am_model_logits(m);
        int K = lg->s.c;
        for (int b = 0; b < real; b++) {
            const float *z = lg->d + (size_t)b * K;
            int best = 0;
            for (int k = 1; k < K; k++) best = z[k] > z[best] ? k : best;
            correct += best == lab[b];
        }
    }
    *acc = (double)correct / d->n;
    return 0;
}

static int train_run(const train_opts *o) {
    am_dataset tr, te;
    int rc = load_idx(o->data, "train", o->limit_train, &tr);
    if (rc) return rc;
    rc = load_idx(o->data, "t10k", o->limit_test, &te);
    if (rc) {
        am_dataset_free(&tr);
        return rc;
    }
    am_model *m = NULL;
    am_sgd *opt = NULL;
    float *x = NULL;
    int32_t *lab = NULL;
    uint32_t *perm = NULL;
    FILE *log = NULL;
    rc = EXIT_RUNTIME;
    int B = o->batch;
    int steps_per_epoch = tr.n / B;
    if (steps_per_epoch < 1) {
        rc = die(EXIT_USAGE, "--batch %d is larger than the %d training images", B, tr.n);
        goto out;
    }
    am_shape in = am_shape4(1, tr.c, tr.h, tr.w);
    if ((rc = make_model(o->model, o->model_file, in, tr.classes, &m))) goto out;
    rc = EXIT_RUNTIME;
    am_shape min = am_model_input_shape(m);
    if (min.c != tr.c || min.h != tr.h || min.w != tr.w || am_model_num_classes(m) != tr.classes) {
        rc = die(EXIT_USAGE, "model takes %dx%dx%d with %d classes; the data is %dx%dx%d with %d",
                 min.c, min.h, min.w, am_model_num_classes(m), tr.c, tr.h, tr.w, tr.classes);
        goto out;
    }
    if (am_model_init(m, (uint64_t)o->seed) || am_model_set_batch(m, B)) {
        lib_fail("model");
        goto out;
    }
    am_sgd_cfg sc = {o->momentum, 0.f, o->wd, o->nesterov};
    if (am_sgd_create(&sc, am_model_weights_len(m), &opt)) {
        rc = die(EXIT_USAGE, "optimizer: %s", am_last_error());
        goto out;
    }
    int total = steps_per_epoch * o->epochs;
    am_schedule sch = {o->sched, o->lr, o->step_size * steps_per_epoch, o->gamma,
                       total - o->warmup, 0.f, o->warmup, 0.01f};
    if (sch.total < 1) sch.total = 1;
    if (am_schedule_check(&sch)) {
        rc = die(EXIT_USAGE, "schedule: %s", am_last_error());
        goto out;
    }
    if (o->log && !(log = fopen(o->log, "w"))) {
        rc = die(EXIT_RUNTIME, "%s: cannot open for writing (%s)", o->log, strerror(errno));
        goto out;
    }
    float mean[4], sd[4];
    am_dataset_stats(&tr, mean, sd);
    size_t per = (size_t)tr.c * tr.h * tr.w;
    x = malloc(sizeof(float) * per * B);
    lab = malloc(sizeof(int32_t) * B);
    perm = malloc(sizeof(uint32_t) * (tr.n > te.n ? tr.n : te.n));
    if (!x || !lab || !perm) {
        die(EXIT_RUNTIME, "out of memory");
        goto out;
    }
    am_rng rng;
    am_rng_seed(&rng, (uint64_t)o->seed * 0x9E3779B97F4A7C15ULL + 1);
    am_tensor xt = {am_shape4(B, tr.c, tr.h, tr.w), x};
    int tty = isatty(STDOUT_FILENO);
    printf("train: %s, %d train / %d test images of %dx%dx%d, %zu parameters, batch %d, %d steps, %d threads\n",
           o->model_file ? o->model_file : o->model, tr.n, te.n, tr.c, tr.h, tr.w,
           am_model_trainable_count(m), B, total, am_get_threads());
    fflush(stdout);
    double t0 = now_s(), acc = 0;
    int step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (int i = 0; i < tr.n; i++) perm[i] = (uint32_t)i;
        for (int i = tr.n - 1; i > 0; i--) { /* Fisher-Yates */
            uint32_t j = am_rng_below(&rng, (uint32_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double run_loss = 0, te0 = now_s();
        long run_correct = 0, run_n = 0;
        for (int s = 0; s < steps_per_epoch; s++, step++) {
            float lr = am_schedule_lr(&sch, step), loss;
            if (am_dataset_batch(&tr, perm + (size_t)s * B, B, mean, sd, x, lab) ||
                am_model_forward(m, &xt, 1, &rng) || am_model_loss(m, lab, &loss) ||
                am_model_backward(m) || am_sgd_step(opt, am_model_weights(m), am_model_grads(m), lr)) {
                lib_fail("train");
                goto out;
            }
            if (!isfinite(loss)) {
                die(EXIT_RUNTIME, "train: loss is %g at epoch %d step %d (lower --lr?)", (double)loss, ep + 1, s + 1);
                goto out;
            }
            const am_tensor *lg = am_model_logits(m);
            for (int b = 0; b < B; b++) {
                const float *z = lg->d + (size_t)b * lg->s.c;
                int best = 0;
                for (int k = 1; k < lg->s.c; k++) best = z[k] > z[best] ? k : best;
                run_correct += best == lab[b];
            }
            run_loss += loss;
            run_n++;
            int last = s + 1 == steps_per_epoch;
            if ((s + 1) % o->every == 0 || last || tty) {
                double el = now_s() - t0, ips = (double)(step + 1) * B / el;
                double eta = (double)(total - step - 1) * B / ips;
                double l = run_loss / run_n, a = (double)run_correct / (run_n * B);
                if ((s + 1) % o->every == 0 || last) {
                    printf("%sepoch %d/%d step %d/%d loss %.4f acc %.4f lr %.5f %.0f img/s eta %.0fs\n",
                           tty ? "\r\033[K" : "", ep + 1, o->epochs, s + 1, steps_per_epoch, l, a,
                           (double)lr, ips, eta);
                    if (log)
                        fprintf(log, "{\"epoch\":%d,\"step\":%d,\"global_step\":%d,\"loss\":%.6f,\"acc\":%.6f,\"lr\":%.6g,\"img_s\":%.1f}\n",
                                ep + 1, s + 1, step + 1, l, a, (double)lr, ips);
                    run_loss = 0;
                    run_correct = run_n = 0;
                } else {
                    int w = 30, f = (int)((double)(s + 1) / steps_per_epoch * w);
                    printf("\r\033[Kepoch %d/%d [%.*s%*s] %d/%d loss %.4f %.0f img/s eta %.0fs", ep + 1,
                           o->epochs, f, "##############################", w - f, "", s + 1,
                           steps_per_epoch, l, ips, eta);
                }
                fflush(stdout);
            }
        }
        double train_s = now_s() - te0;
        if ((rc = evaluate(m, &te, B, mean, sd, x, lab, perm, &acc))) goto out;
        rc = EXIT_RUNTIME;
        printf("epoch %d/%d test accuracy %.4f (%d images), epoch time %.1fs\n", ep + 1, o->epochs, acc,
               te.n, train_s);
        if (log) {
            fprintf(log, "{\"epoch\":%d,\"test_acc\":%.6f,\"epoch_s\":%.2f}\n", ep + 1, acc, train_s);
            fflush(log);
        }
        fflush(stdout);
    }
    printf("final test accuracy: %.4f\n", acc);
    rc = 0;
out:
    if (log && fclose(log) && rc == 0) rc = die(EXIT_RUNTIME, "%s: write failed", o->log);
    free(x);
    free(lab);
    free(perm);
    am_sgd_free(opt);
    am_model_free(m);
    am_dataset_free(&tr);
    am_dataset_free(&te);
    return rc;
}

static int cmd_train(int argc, char **argv) {
    static const struct option lo[] = {
        {"data", 1, 0, 'd'},        {"model", 1, 0, 'm'},      {"model-file", 1, 0, 'f'},
        {"epochs", 1, 0, 'e'},      {"batch", 1, 0, 'b'},      {"lr", 1, 0, 'r'},
        {"momentum", 1, 0, 'M'},    {"nesterov", 0, 0, 'N'},   {"wd", 1, 0, 'w'},
        {"schedule", 1, 0, 's'},    {"step-size", 1, 0, 'S'},  {"gamma", 1, 0, 'g'},
        {"warmup", 1, 0, 'W'},      {"seed", 1, 0, 'x'},       {"threads", 1, 0, 't'},
        {"limit-train", 1, 0, 'L'}, {"limit-test", 1, 0, 'T'}, {"every", 1, 0, 'E'},
        {"log", 1, 0, 'l'},         {"help", 0, 0, 'h'},       {0, 0, 0, 0}};
    train_opts o = {.model = "lenet", .epochs = 3, .batch = 64, .seed = 1, .every = 100,
                    .step_size = 1, .lr = 0.05f, .momentum = 0.9f, .wd = 5e-4f, .gamma = 0.1f,
                    .sched = AM_SCHED_COSINE};
    int opt, ok = 1;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'd': o.data = optarg; break;
        case 'm': o.model = optarg; break;
        case 'f': o.model_file = optarg; break;
        case 'e': ok = arg_int("epochs", optarg, 1, 100000, &o.epochs); break;
        case 'b': ok = arg_int("batch", optarg, 1, 65536, &o.batch); break;
        case 'r': ok = arg_float("lr", optarg, 1e-9, 100, &o.lr); break;
        case 'M': ok = arg_float("momentum", optarg, 0, 0.999, &o.momentum); break;
        case 'N': o.nesterov = 1; break;
        case 'w': ok = arg_float("wd", optarg, 0, 0.5, &o.wd); break;
        case 's':
            if (!strcmp(optarg, "constant")) o.sched = AM_SCHED_CONSTANT;
            else if (!strcmp(optarg, "step")) o.sched = AM_SCHED_STEP;
            else if (!strcmp(optarg, "cosine")) o.sched = AM_SCHED_COSINE;
            else return die(EXIT_USAGE, "--schedule: '%s' is not constant, step or cosine", optarg);
            break;
        case 'S': ok = arg_int("step-size", optarg, 1, 100000, &o.step_size); break;
        case 'g': ok = arg_float("gamma", optarg, 1e-6, 1, &o.gamma); break;
        case 'W': ok = arg_int("warmup", optarg, 0, 100000000, &o.warmup); break;
        case 'x': ok = arg_int("seed", optarg, 0, 2147483647, &o.seed); break;
        case 't': ok = arg_int("threads", optarg, 1, 1024, &o.threads); break;
        case 'L': ok = arg_int("limit-train", optarg, 1, 100000000, &o.limit_train); break;
        case 'T': ok = arg_int("limit-test", optarg, 1, 100000000, &o.limit_test); break;
        case 'E': ok = arg_int("every", optarg, 1, 100000000, &o.every); break;
        case 'l': o.log = optarg; break;
        case 'h': usage_train(stdout); return 0;
        default: usage_train(stderr); return EXIT_USAGE;
        }
    }
    if (!ok) return EXIT_USAGE;
    if (optind < argc) return die(EXIT_USAGE, "train: unexpected argument '%s'", argv[optind]);
    if (!o.data) return die(EXIT_USAGE, "train: --data DIR is required (see asymml train --help)");
    if (o.nesterov && o.momentum == 0.f) return die(EXIT_USAGE, "--nesterov needs --momentum > 0");
    if (o.threads && am_set_threads(o.threads)) return lib_fail("threads");
    return train_run(&o);
}

/* ------------------------------------------------------------------ bench */

static void usage_bench(FILE *f) {
    fprintf(f,
            "usage: asymml bench [options]\n"
            "Time training steps (forward, loss, backward, SGD update) and inference passes\n"
            "on synthetic data; print ms per step and images/s.\n"
            "  --models LIST   comma-separated zoo names (default vgg16,vgg19,resnet18,resnet34)\n"
            "  --input C,H,W   default 3,32,32\n"
            "  --classes N     default 10\n"
            "  --batch N       default 32\n"
            "  --steps N       timed steps of each kind (default 5)\n"
            "  --warmup N      untimed steps first (default 1)\n"
            "  --threads N     default: all cores\n"
            "  --help          this text\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_one(const char *name, am_shape in, int classes, int B, int steps, int warm) {
    am_model *m;
    int rc = make_model(name, NULL, in, classes, &m);
    if (rc) return rc;
    am_sgd *opt = NULL;
    am_tensor x = {0};
    int32_t *lab = malloc(sizeof(int32_t) * B);
    double *t = malloc(sizeof(double) * (steps > 0 ? steps : 1));
    am_shape s = in;
    s.n = B;
    am_sgd_cfg sc = {0.9f, 0.f, 5e-4f, 0};
    if (!lab || !t || am_model_init(m, 1) || am_model_set_batch(m, B) || am_tensor_alloc(&x, s) ||
        am_sgd_create(&sc, am_model_weights_len(m), &opt)) {
        rc = lib_fail(name);
        goto out;
    }
    am_rng r;
    am_rng_seed(&r, 5);
    for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = am_rng_normal(&r);
    for (int b = 0; b < B; b++) lab[b] = (int32_t)am_rng_below(&r, (uint32_t)classes);
    double med[2];
    for (int mode = 0; mode < 2; mode++) { /* 0: training step, 1: inference */
        for (int i = 0; i < warm + steps; i++) {
            double t0 = now_s();
            float loss;
            if (am_model_forward(m, &x, mode == 0, &r) ||
                (mode == 0 && (am_model_loss(m, lab, &loss) || am_model_backward(m) ||
                               am_sgd_step(opt, am_model_weights(m), am_model_grads(m), 1e-3f)))) {
                rc = lib_fail(name);
                goto out;
            }
            if (i >= warm) t[i - warm] = now_s() - t0;
        }
        qsort(t, (size_t)steps, sizeof(double), cmp_double);
        med[mode] = t[steps / 2];
    }
    printf("%-20s %3dx%-3dx%-3d batch %3d  train %9.1f ms/step %8.1f img/s  infer %9.1f ms %8.1f img/s  peak RSS %.0f MiB\n",
           name, in.c, in.h, in.w, B, med[0] * 1e3, B / med[0], med[1] * 1e3, B / med[1], peak_rss_mib());
    fflush(stdout);
out:
    free(lab);
    free(t);
    am_tensor_free(&x);
    am_sgd_free(opt);
    am_model_free(m);
    return rc;
}

static int cmd_bench(int argc, char **argv) {
    static const struct option lo[] = {{"models", 1, 0, 'm'}, {"input", 1, 0, 'i'},
                                       {"classes", 1, 0, 'c'}, {"batch", 1, 0, 'b'},
                                       {"steps", 1, 0, 's'},  {"warmup", 1, 0, 'w'},
                                       {"threads", 1, 0, 't'}, {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    char models[1024] = "vgg16,vgg19,resnet18,resnet34";
    am_shape in = am_shape4(1, 3, 32, 32);
    int classes = 10, B = 32, steps = 5, warm = 1, threads = 0, opt, ok = 1;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'm': snprintf(models, sizeof models, "%s", optarg); break;
        case 'i': ok = arg_shape("input", optarg, &in); break;
        case 'c': ok = arg_int("classes", optarg, 2, 1000000, &classes); break;
        case 'b': ok = arg_int("batch", optarg, 1, 4096, &B); break;
        case 's': ok = arg_int("steps", optarg, 1, 100000, &steps); break;
        case 'w': ok = arg_int("warmup", optarg, 0, 100000, &warm); break;
        case 't': ok = arg_int("threads", optarg, 1, 1024, &threads); break;
        case 'h': usage_bench(stdout); return 0;
        default: usage_bench(stderr); return EXIT_USAGE;
        }
    }
    if (!ok) return EXIT_USAGE;
    if (optind < argc) return die(EXIT_USAGE, "bench: unexpected argument '%s'", argv[optind]);
    if (threads && am_set_threads(threads)) return lib_fail("threads");
    printf("bench: %d threads, median of %d steps after %d warm-up\n", am_get_threads(), steps, warm);
    char *save = NULL;
    for (char *nm = strtok_r(models, ",", &save); nm; nm = strtok_r(NULL, ",", &save)) {
        int rc = bench_one(nm, in, classes, B, steps, warm);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
    fprintf(f,
            "usage: asymml COMMAND [options]   (asymml COMMAND --help for each)\n"
            "  train   train a model on an IDX dataset (MNIST, Fashion-MNIST)\n"
            "  info    print a model's layers, shapes, parameters and FLOPs\n"
            "  bench   time training and inference steps of zoo models\n"
            "  --version, --help\n"
            "exit codes: 0 success, 1 run-time failure, 2 bad usage\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("asymml %s\n", ASYMML_VERSION);
        return 0;
    }
    optind = 1;
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    usage(stderr);
    return EXIT_USAGE;
}
