/* The asymml command: the only code that prints. Subcommands:
 *   train   train a model; checkpoints and resume
 *   eval    evaluate a checkpoint
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
#include <sys/stat.h>
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

/* getopt's own messages are off (opterr = 0): one line of ours instead. */
static int bad_option(const char *cmd, char **argv) {
    const char *arg = argv[optind - 1];
    if (optopt && strncmp(arg, "--", 2)) return die(EXIT_USAGE, "%s: unknown option '%s' (see asymml %s --help)", cmd, arg, cmd);
    return die(EXIT_USAGE, "%s: unknown option or missing value: '%s' (see asymml %s --help)", cmd, arg, cmd);
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

/* The description of --model NAME (the zoo) or --model-file PATH; malloc'ed. */
static int describe(const char *name, const char *file, am_shape in, int classes, char **out) {
    *out = NULL;
    if (file) {
        *out = read_text_file(file);
        if (!*out) return die(EXIT_RUNTIME, "%s: cannot read (%s)", file, strerror(errno));
        return 0;
    }
    size_t cap = 1 << 16;
    *out = malloc(cap);
    if (!*out) return die(EXIT_RUNTIME, "out of memory");
    if (am_zoo_describe(name, in, classes, *out, cap) != AM_OK) {
        free(*out);
        *out = NULL;
        return die(EXIT_USAGE, "--model: %s", am_last_error());
    }
    return 0;
}

static int make_model(const char *name, const char *file, am_shape in, int classes, am_model **m) {
    char *d;
    int rc = describe(name, file, in, classes, &d);
    if (rc) return rc;
    am_status st = am_model_create(d, m);
    free(d);
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
        default: return bad_option("info", argv);
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
            "       asymml train --data DIR --resume PATH [--checkpoint-dir DIR] [--log PATH]\n"
            "Train a model and report test accuracy after each epoch.\n"
            "  --data DIR            dataset folder (Debian's Fashion-MNIST: /usr/share/datasets/fashion-mnist)\n"
            "  --dataset KIND        idx (MNIST, Fashion-MNIST; default), cifar10, cifar100\n"
            "  --model NAME          zoo model (default lenet); see `asymml info --list`\n"
            "  --model-file PATH     a layer description file instead\n"
            "  --epochs N            default 3\n"
            "  --batch N             default 64 (an incomplete last batch of an epoch is dropped)\n"
            "  --lr X                base learning rate, default 0.05\n"
            "  --momentum X          default 0.9\n"
            "  --nesterov            Nesterov momentum\n"
            "  --wd X                weight decay, default 5e-4\n"
            "  --schedule S          constant | step | cosine (default cosine, per step)\n"
            "  --step-size N         step schedule: epochs between decays (default 1)\n"
            "  --gamma X             step schedule: decay factor (default 0.1)\n"
            "  --warmup N            linear warm-up steps (default 0)\n"
            "  --crop-pad N          augmentation: random crop after N pixels of zero padding\n"
            "                        (default 4 for CIFAR, 0 otherwise)\n"
            "  --flip / --no-flip    augmentation: random horizontal flip (default on for CIFAR)\n"
            "  --seed N              default 1: the same seed and build give the same losses\n"
            "  --threads N           default: all cores\n"
            "  --limit-train N       use the first N training images\n"
            "  --limit-test N        use the first N test images\n"
            "  --every N             a progress line every N steps (default 100)\n"
            "  --log PATH            JSON-lines log of the same figures (appended to)\n"
            "  --checkpoint-dir DIR  save a checkpoint at the end of each epoch (ckpt-STEP.amck)\n"
            "  --save-every N        and every N steps\n"
            "  --keep N              keep the newest N checkpoints (default 3)\n"
            "  --resume PATH         continue from a checkpoint file, or the newest in a directory;\n"
            "                        model and training options come from the checkpoint\n"
            "  --help                this text\n");
}

typedef struct train_opts {
    const char *data, *model, *model_file, *log, *ckdir, *resume;
    am_data_kind kind;
    am_train_cfg cfg;
    int threads, limit_train, limit_test, every, save_every, keep, crop_set, flip_set;
} train_opts;

static int load_data(am_data_kind kind, const char *dir, const char *split, int limit, am_dataset *d) {
    if (am_dataset_load(kind, dir, split, d) != AM_OK) return lib_fail("data");
    am_dataset_truncate(d, limit);
    return 0;
}

static int save_ckpt(am_trainer *t, const char *dir, int keep, const char **last) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/ckpt-%010d.amck", dir, am_trainer_global_step(t));
    if (am_trainer_save(t, path) != AM_OK || am_checkpoint_prune(dir, keep) != AM_OK) return lib_fail("checkpoint");
    *last = path;
    return 0;
}

static int train_run(train_opts *o) {
    am_dataset tr = {0}, te = {0};
    am_trainer *t = NULL;
    FILE *log = NULL;
    char *desc = NULL;
    const char *last_ckpt = NULL;
    int rc;
    if ((rc = load_data(o->kind, o->data, "train", o->limit_train, &tr))) goto out;
    if ((rc = load_data(o->kind, o->data, "test", o->limit_test, &te))) goto out;
    rc = EXIT_RUNTIME;
    if (o->ckdir && am_checkpoint_dir_check(o->ckdir) != AM_OK) {
        lib_fail("--checkpoint-dir");
        goto out;
    }
    if (o->resume) {
        char path[4200];
        struct stat sb;
        const char *p = o->resume;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (am_checkpoint_latest(p, path, sizeof path) != AM_OK) {
                lib_fail("--resume");
                goto out;
            }
            p = path;
        }
        if (am_trainer_resume(p, &tr, &t) != AM_OK) {
            lib_fail("--resume");
            goto out;
        }
        printf("resumed from %s at step %d\n", p, am_trainer_global_step(t));
    } else {
        if (tr.c > 4) {
            die(EXIT_RUNTIME, "data: %d channels; at most 4 are supported", tr.c);
            goto out;
        }
        if ((rc = describe(o->model, o->model_file, am_shape4(1, tr.c, tr.h, tr.w), tr.classes, &desc))) goto out;
        rc = EXIT_RUNTIME;
        if (o->cfg.batch > tr.n) {
            rc = die(EXIT_USAGE, "--batch %d is larger than the %d training images", o->cfg.batch, tr.n);
            goto out;
        }
        am_status st = am_trainer_create(&o->cfg, desc, &tr, &t);
        if (st != AM_OK) {
            rc = die(st == AM_EINVAL ? EXIT_USAGE : EXIT_RUNTIME, "train: %s", am_last_error());
            goto out;
        }
    }
    if (o->log && !(log = fopen(o->log, "a"))) {
        die(EXIT_RUNTIME, "%s: cannot open for writing (%s)", o->log, strerror(errno));
        goto out;
    }
    const am_train_cfg *c = am_trainer_cfg(t);
    am_model *m = am_trainer_model(t);
    printf("train: %d train / %d test images of %dx%dx%d, %zu parameters, batch %d, %d epochs, %d threads\n",
           tr.n, te.n, tr.c, tr.h, tr.w, am_model_trainable_count(m), c->batch, c->epochs, am_get_threads());
    fflush(stdout);
    int tty = isatty(STDOUT_FILENO);
    double t0 = now_s(), ep_t0 = t0, run_loss = 0, acc = -1;
    long run_correct = 0, run_n = 0, done0 = am_trainer_global_step(t);
    am_step_info si;
    while (!am_trainer_done(t)) {
        am_status st = am_trainer_step(t, &si);
        if (st != AM_OK) {
            lib_fail("train");
            if (last_ckpt) fprintf(stderr, "%s: the last checkpoint is %s\n", prog, last_ckpt);
            goto out;
        }
        run_loss += si.loss;
        run_correct += si.correct;
        run_n++;
        double el = now_s() - t0, ips = (double)(si.global_step - done0) * c->batch / el;
        double eta = (double)(si.total_steps - si.global_step) * c->batch / ips;
        int epoch_end = si.step == si.steps_per_epoch;
        if (si.step % o->every == 0 || epoch_end) {
            double l = run_loss / run_n, a = (double)run_correct / ((double)run_n * c->batch);
            printf("%sepoch %d/%d step %d/%d loss %.4f acc %.4f lr %.5f %.0f img/s eta %.0fs\n",
                   tty ? "\r\033[K" : "", si.epoch, c->epochs, si.step, si.steps_per_epoch, l, a,
                   (double)si.lr, ips, eta);
            if (log)
                fprintf(log, "{\"epoch\":%d,\"step\":%d,\"global_step\":%d,\"loss\":%.6f,\"acc\":%.6f,"
                             "\"lr\":%.6g,\"img_s\":%.1f,\"eta_s\":%.0f}\n",
                        si.epoch, si.step, si.global_step, l, a, (double)si.lr, ips, eta);
            run_loss = 0;
            run_correct = run_n = 0;
        } else if (tty) {
            int w = 30, f = (int)((double)si.step / si.steps_per_epoch * w);
            printf("\r\033[Kepoch %d/%d [%.*s%*s] %d/%d loss %.4f %.0f img/s eta %.0fs", si.epoch, c->epochs, f,
                   "##############################", w - f, "", si.step, si.steps_per_epoch,
                   run_loss / run_n, ips, eta);
        }
        fflush(stdout);
        if (o->ckdir && ((o->save_every && si.global_step % o->save_every == 0) || epoch_end))
            if ((rc = save_ckpt(t, o->ckdir, o->keep, &last_ckpt))) goto out;
        if (epoch_end) {
            double loss, ep_s = now_s() - ep_t0;
            if (am_trainer_evaluate(t, &te, &acc, &loss) != AM_OK) {
                lib_fail("evaluate");
                goto out;
            }
            printf("epoch %d/%d test accuracy %.4f loss %.4f (%d images), epoch time %.1fs%s%s\n", si.epoch,
                   c->epochs, acc, loss, te.n, ep_s, last_ckpt ? ", saved " : "", last_ckpt ? last_ckpt : "");
            if (log)
                fprintf(log, "{\"epoch\":%d,\"test_acc\":%.6f,\"test_loss\":%.6f,\"epoch_s\":%.2f}\n", si.epoch,
                        acc, loss, ep_s);
            fflush(stdout);
            ep_t0 = now_s();
        }
    }
    if (acc < 0 && am_trainer_evaluate(t, &te, &acc, NULL) != AM_OK) {
        lib_fail("evaluate");
        goto out;
    }
    printf("final test accuracy: %.4f\n", acc);
    rc = 0;
out:
    if (log && (ferror(log) | fclose(log)) && rc == 0) rc = die(EXIT_RUNTIME, "%s: write failed", o->log);
    free(desc);
    am_trainer_free(t);
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
        {"log", 1, 0, 'l'},         {"help", 0, 0, 'h'},       {"dataset", 1, 0, 'k'},
        {"crop-pad", 1, 0, 'c'},    {"flip", 0, 0, 'F'},       {"no-flip", 0, 0, 'G'},
        {"checkpoint-dir", 1, 0, 'C'}, {"save-every", 1, 0, 'V'}, {"keep", 1, 0, 'K'},
        {"resume", 1, 0, 'R'},      {0, 0, 0, 0}};
    train_opts o = {.model = "lenet", .kind = AM_DATA_IDX, .every = 100, .keep = 3,
                    .cfg = {.epochs = 3, .batch = 64, .lr = 0.05f, .momentum = 0.9f, .wd = 5e-4f,
                            .sched = AM_SCHED_COSINE, .step_size = 1, .gamma = 0.1f, .seed = 1}};
    int opt, ok = 1, seed = 1, hyper = 0;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        /* Options that define the run; with --resume they come from the checkpoint. */
        if (strchr("mfebrMNwsSgWxcFG", opt)) hyper = opt;
        switch (opt) {
        case 'd': o.data = optarg; break;
        case 'k':
            if (am_data_kind_parse(optarg, &o.kind) != AM_OK) return die(EXIT_USAGE, "--dataset: %s", am_last_error());
            break;
        case 'm': o.model = optarg; break;
        case 'f': o.model_file = optarg; break;
        case 'e': ok = arg_int("epochs", optarg, 1, 100000, &o.cfg.epochs); break;
        case 'b': ok = arg_int("batch", optarg, 1, 65536, &o.cfg.batch); break;
        case 'r': ok = arg_float("lr", optarg, 1e-9, 100, &o.cfg.lr); break;
        case 'M': ok = arg_float("momentum", optarg, 0, 0.999, &o.cfg.momentum); break;
        case 'N': o.cfg.nesterov = 1; break;
        case 'w': ok = arg_float("wd", optarg, 0, 0.5, &o.cfg.wd); break;
        case 's':
            if (!strcmp(optarg, "constant")) o.cfg.sched = AM_SCHED_CONSTANT;
            else if (!strcmp(optarg, "step")) o.cfg.sched = AM_SCHED_STEP;
            else if (!strcmp(optarg, "cosine")) o.cfg.sched = AM_SCHED_COSINE;
            else return die(EXIT_USAGE, "--schedule: '%s' is not constant, step or cosine", optarg);
            break;
        case 'S': ok = arg_int("step-size", optarg, 1, 100000, &o.cfg.step_size); break;
        case 'g': ok = arg_float("gamma", optarg, 1e-6, 1, &o.cfg.gamma); break;
        case 'W': ok = arg_int("warmup", optarg, 0, 100000000, &o.cfg.warmup); break;
        case 'x': ok = arg_int("seed", optarg, 0, 2147483647, &seed); break;
        case 'c': ok = arg_int("crop-pad", optarg, 0, 64, &o.cfg.crop_pad); o.crop_set = 1; break;
        case 'F': o.cfg.flip = 1; o.flip_set = 1; break;
        case 'G': o.cfg.flip = 0; o.flip_set = 1; break;
        case 't': ok = arg_int("threads", optarg, 1, 1024, &o.threads); break;
        case 'L': ok = arg_int("limit-train", optarg, 1, 100000000, &o.limit_train); break;
        case 'T': ok = arg_int("limit-test", optarg, 1, 100000000, &o.limit_test); break;
        case 'E': ok = arg_int("every", optarg, 1, 100000000, &o.every); break;
        case 'l': o.log = optarg; break;
        case 'C': o.ckdir = optarg; break;
        case 'V': ok = arg_int("save-every", optarg, 1, 100000000, &o.save_every); break;
        case 'K': ok = arg_int("keep", optarg, 1, 100000, &o.keep); break;
        case 'R': o.resume = optarg; break;
        case 'h': usage_train(stdout); return 0;
        default: return bad_option("train", argv);
        }
    }
    if (!ok) return EXIT_USAGE;
    if (optind < argc) return die(EXIT_USAGE, "train: unexpected argument '%s'", argv[optind]);
    if (!o.data) return die(EXIT_USAGE, "train: --data DIR is required (see asymml train --help)");
    if (o.resume && hyper)
        return die(EXIT_USAGE, "train: with --resume the model and training options come from the checkpoint");
    if (o.cfg.nesterov && o.cfg.momentum == 0.f) return die(EXIT_USAGE, "--nesterov needs --momentum > 0");
    if (o.save_every && !o.ckdir) return die(EXIT_USAGE, "--save-every needs --checkpoint-dir");
    int cifar = o.kind != AM_DATA_IDX;
    if (!o.crop_set) o.cfg.crop_pad = cifar ? 4 : 0;
    if (!o.flip_set) o.cfg.flip = cifar;
    o.cfg.seed = (uint64_t)seed;
    if (o.threads && am_set_threads(o.threads)) return lib_fail("threads");
    return train_run(&o);
}

/* ------------------------------------------------------------------ eval */

static void usage_eval(FILE *f) {
    fprintf(f,
            "usage: asymml eval --checkpoint PATH --data DIR [options]\n"
            "Accuracy and loss of a checkpoint's model on a dataset's test split.\n"
            "  --checkpoint PATH   a checkpoint file, or a directory (its newest)\n"
            "  --data DIR          dataset folder\n"
            "  --dataset KIND      idx (default), cifar10, cifar100\n"
            "  --split S           test (default) or train\n"
            "  --batch N           default 100\n"
            "  --limit N           use the first N images\n"
            "  --threads N         default: all cores\n"
            "  --help              this text\n");
}

static int cmd_eval(int argc, char **argv) {
    static const struct option lo[] = {{"checkpoint", 1, 0, 'c'}, {"data", 1, 0, 'd'},
                                       {"dataset", 1, 0, 'k'},    {"split", 1, 0, 's'},
                                       {"batch", 1, 0, 'b'},      {"limit", 1, 0, 'L'},
                                       {"threads", 1, 0, 't'},    {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *ckpt = NULL, *data = NULL, *split = "test";
    am_data_kind kind = AM_DATA_IDX;
    int B = 100, limit = 0, threads = 0, opt, ok = 1;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'c': ckpt = optarg; break;
        case 'd': data = optarg; break;
        case 'k':
            if (am_data_kind_parse(optarg, &kind) != AM_OK) return die(EXIT_USAGE, "--dataset: %s", am_last_error());
            break;
        case 's':
            if (strcmp(optarg, "test") && strcmp(optarg, "train")) return die(EXIT_USAGE, "--split: test or train");
            split = optarg;
            break;
        case 'b': ok = arg_int("batch", optarg, 1, 65536, &B); break;
        case 'L': ok = arg_int("limit", optarg, 1, 100000000, &limit); break;
        case 't': ok = arg_int("threads", optarg, 1, 1024, &threads); break;
        case 'h': usage_eval(stdout); return 0;
        default: return bad_option("eval", argv);
        }
    }
    if (!ok) return EXIT_USAGE;
    if (optind < argc) return die(EXIT_USAGE, "eval: unexpected argument '%s'", argv[optind]);
    if (!ckpt || !data) return die(EXIT_USAGE, "eval: --checkpoint and --data are required");
    if (threads && am_set_threads(threads)) return lib_fail("threads");
    char path[4200];
    struct stat sb;
    if (stat(ckpt, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (am_checkpoint_latest(ckpt, path, sizeof path) != AM_OK) return lib_fail("--checkpoint");
        ckpt = path;
    }
    am_checkpoint ck;
    if (am_checkpoint_read(ckpt, &ck) != AM_OK) return lib_fail("checkpoint");
    am_dataset d = {0};
    am_model *m = NULL;
    int rc = load_data(kind, data, split, limit, &d);
    double acc, loss;
    if (!rc && (am_model_create(ck.desc, &m) != AM_OK)) rc = lib_fail("checkpoint model");
    if (!rc && (am_model_weights_len(m) != ck.n_weights || am_model_buffers_len(m) != ck.n_buffers))
        rc = die(EXIT_RUNTIME, "%s: tensor sizes do not match its model description", ckpt);
    if (!rc && d.c != ck.channels)
        rc = die(EXIT_RUNTIME, "%s: a %d-channel model; the data has %d channels", ckpt, ck.channels, d.c);
    if (!rc) {
        memcpy(am_model_weights(m), ck.weights, ck.n_weights * sizeof(float));
        memcpy(am_model_buffers(m), ck.buffers, ck.n_buffers * sizeof(float));
        if (am_evaluate(m, &d, ck.mean, ck.std, B < d.n ? B : d.n, &acc, &loss) != AM_OK) rc = lib_fail("eval");
    }
    if (!rc)
        printf("%s: %s accuracy %.4f loss %.4f (%d images, step %d)\n", ckpt, split, acc, loss, d.n, ck.global_step);
    am_model_free(m);
    am_dataset_free(&d);
    am_checkpoint_free(&ck);
    return rc;
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
        default: return bad_option("bench", argv);
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
            "  train   train a model (MNIST, Fashion-MNIST, CIFAR-10/100); checkpoints, resume\n"
            "  eval    evaluate a checkpoint on a dataset\n"
            "  info    print a model's layers, shapes, parameters and FLOPs\n"
            "  bench   time training and inference steps of zoo models\n"
            "  --version, --help\n"
            "exit codes: 0 success, 1 run-time failure, 2 bad usage\n");
}

int main(int argc, char **argv) {
    opterr = 0;
    if (argc < 2) return die(EXIT_USAGE, "no command given (see asymml --help)");
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
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    return die(EXIT_USAGE, "unknown command '%s' (see asymml --help)", cmd);
}
