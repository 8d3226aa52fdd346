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
#include "boundary/channel.h"
#ifdef ASYMML_ENCLAVE
#include <sys/socket.h>
#include <sys/syscall.h>

#include "enclave/remote_backend.h"
#include "enclave/sandbox.h"
#else
#include "untrusted/cuda/cuda_backend.h"
#include "untrusted/host.h"
#endif

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static const char *prog = "asymml";

/* Subcommands the enclave program does not offer. */
#ifdef ASYMML_ENCLAVE
#define HOST_ONLY __attribute__((unused))
#else
#define HOST_ONLY
#endif

/* Where the trusted side runs: "inproc" (this process does everything, the
 * accelerator is simulated in it) or "process" (the enclave program, with
 * the host serving the accelerator). */
static const char *g_tee = "inproc";
/* The accelerator backend: "cpu" (simulated on this machine's cores) or
 * "cuda" (the GPU); with --tee process, the host's. */
static const char *g_accel = "cpu";
/* --overlap: whether the host computes while the enclave goes on (on), or
 * only while it waits (off); auto: on for the GPU, off for the CPU backend,
 * whose work would compete with the enclave's for the same cores. */
static const char *g_overlap = "auto";

static void apply_overlap(void) {
#ifdef ASYMML_ENCLAVE
    am_remote_backend_defer(!strcmp(g_overlap, "off") || (!strcmp(g_overlap, "auto") && strcmp(g_accel, "cuda")));
#endif
}
static int g_shm_mib = 32768;
#ifdef ASYMML_ENCLAVE
static am_chan g_chan;
static int g_locked;              /* mlockall succeeded */
static char g_lock_err[160];
static int g_test_syscall_step;   /* tests: make a denied system call after this step */
#endif

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

static int lib_fail(const char *what) {
    if (am_mem_limit_hit())
        return die(EXIT_RUNTIME, "%s: %s (the trusted memory limit, --tee-mem %zu MiB, was reached)", what,
                   am_last_error(), am_mem_limit() >> 20);
    return die(EXIT_RUNTIME, "%s: %s", what, am_last_error());
}

/* The trusted side's counted heap, for the last lines of train and bench. */
static void mem_words(char *buf, size_t n) {
    size_t lim = am_mem_limit();
    char l[64] = "no limit";
    if (lim) snprintf(l, sizeof l, "limit %zu MiB", lim >> 20);
    snprintf(buf, n, "peak %.1f MiB of asymml's own allocations (%s%s)", (double)am_mem_peak() / (1 << 20), l,
#ifdef ASYMML_ENCLAVE
             ""
#else
             "; in one process, the accelerator's buffers count too"
#endif
    );
}

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

HOST_ONLY static int cmd_info(int argc, char **argv) {
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

/* ------------------------------------------------------------------ modes */

/* The options that choose the execution mode, shared by train, eval and
 * bench. Returns 1 if opt was one of them (ok = 0 on a bad value). */
#define MODE_LONGOPTS                                                                              \
    {"mode", 1, 0, 1001}, {"rank-ratio", 1, 0, 1002}, {"rank", 1, 0, 1003}, {"basis", 1, 0, 1004}, \
        {"iters", 1, 0, 1005}, {"clip", 1, 0, 1006}, {"sigma", 1, 0, 1007}, {"noise-seed", 1, 0, 1008}, \
        {"protect-grads", 0, 0, 1009}, {"rank-list", 1, 0, 1010}, {"rank-entropy", 0, 0, 1011},     \
        {"rank-energy", 1, 0, 1012}, {"tee", 1, 0, 1013}, {"shm-mib", 1, 0, 1014}, {"key", 1, 0, 1015},      \
        {"tee-mem", 1, 0, 1016}, {"accel", 1, 0, 1017}, {"overlap", 1, 0, 1018}

#define MODE_HELP                                                                                  \
    "  --mode M              tee-only (default), asymml, lowrank-only, open (no privacy)\n"         \
    "  --rank-ratio X        split layers keep rank ceil(X * channels) (default 0.0625)\n"         \
    "  --rank N              or a fixed rank for every split layer\n"                              \
    "  --rank-list R1,R2,..  or one rank per conv layer after the first, in model order (0: whole)\n" \
    "  --rank-entropy        or ceil(2^entropy) of the first batch's spectrum, per layer\n"       \
    "  --rank-energy TAU     or the smallest rank leaving a residual share below TAU, per layer\n" \
    "  --basis B             shared (one basis per batch, default), per-sample (light SVD), or auto:\n" \
    "                        per layer the cheaper for the TEE at equal energy (first batch; with\n" \
    "                        noise, per-sample wherever shared would couple the batch)\n"         \
    "  --iters N             subspace iterations per batch, or light-SVD steps (default 2)\n"      \
    "  --clip C              per-sample L2 bound of each residual that leaves (default 0: none)\n" \
    "  --sigma S             Gaussian noise std S*C on each residual (needs --clip; default 0)\n"  \
    "  --noise-seed N        noise from seed N alone: reproducible, and removable by whoever knows N\n" \
    "                        (default: a random secret key, drawn in the trusted process)\n"            \
    "  --protect-grads       split output gradients too; only their residual (clipped, noised) leaves\n" \
    "  --tee T               inproc (default: one process; the accelerator is simulated inside it) or\n" \
    "                        process: the trusted side runs as the asymml-enclave program (non-dumpable,\n" \
    "                        memory-locked, seccomp-sandboxed); this process serves the accelerator\n"   \
    "  --shm-mib N           process: shared-memory arena for what crosses (default 32768; sparse)\n" \
    "  --key FILE            open sealed data and checkpoints (asymml seal) and write checkpoints sealed\n" \
    "  --tee-mem MIB         limit the trusted side's heap, like an SGX EPC (default: none)\n"     \
    "  --accel A             the accelerator: cpu (default; simulated on this machine's cores) or\n" \
    "                        cuda (cuDNN on the GPU; with --tee process, the host process drives it)\n" \
    "  --overlap O           process: on (the host computes while the enclave goes on), off (only\n" \
    "                        while it waits), auto (default: on with cuda, off with cpu, which\n"     \
    "                        shares the enclave's cores)\n"

static int mode_option(int opt, const char *arg, am_asym_cfg *a, int *seed_set, int *ok) {
    switch (opt) {
    case 1001:
        if (am_mode_parse(arg, &a->mode) != AM_OK) *ok = 0, die(EXIT_USAGE, "--mode: %s", am_last_error());
        return 1;
    case 1002:
        a->policy = AM_RANK_RATIO;
        *ok = arg_float("rank-ratio", arg, 1e-6, 1, &(float){0}) && (a->rank_value = strtod(arg, NULL), 1);
        return 1;
    case 1003: {
        int r = 0;
        *ok = arg_int("rank", arg, 1, 65536, &r);
        a->policy = AM_RANK_FIXED;
        a->rank_value = r;
        return 1;
    }
    case 1004:
        if (!strcmp(arg, "shared")) a->basis = AM_BASIS_SHARED;
        else if (!strcmp(arg, "per-sample")) a->basis = AM_BASIS_PER_SAMPLE;
        else if (!strcmp(arg, "auto")) a->basis = AM_BASIS_AUTO;
        else *ok = 0, die(EXIT_USAGE, "--basis: '%s' is not shared, per-sample or auto", arg);
        return 1;
    case 1010: {
        a->policy = AM_RANK_LIST;
        a->n_ranks = 0;
        const char *q = arg;
        while (*ok && *q) {
            char *end;
            errno = 0;
            long v = strtol(q, &end, 10);
            if (end == q || errno || v < 0 || v > 65536 || (*end && *end != ',') || a->n_ranks == AM_MAX_RANKS) {
                *ok = 0;
                die(EXIT_USAGE, "--rank-list: '%s' is not a comma-separated list of at most %d ranks in [0, 65536]", arg,
                    AM_MAX_RANKS);
                break;
            }
            a->ranks[a->n_ranks++] = (int)v;
            q = *end ? end + 1 : end;
            if (*end && !*q) *ok = 0, die(EXIT_USAGE, "--rank-list: '%s' ends with a comma", arg);
        }
        if (*ok && !a->n_ranks) *ok = 0, die(EXIT_USAGE, "--rank-list: empty list");
        return 1;
    }
    case 1013:
        if (strcmp(arg, "inproc") && strcmp(arg, "process")) *ok = 0, die(EXIT_USAGE, "--tee: '%s' is not inproc or process", arg);
        else g_tee = arg;
        return 1;
    case 1014: *ok = arg_int("shm-mib", arg, 1, 1 << 20, &g_shm_mib); return 1;
    case 1018:
        if (strcmp(arg, "auto") && strcmp(arg, "on") && strcmp(arg, "off")) {
            *ok = 0, die(EXIT_USAGE, "--overlap: '%s' is not auto, on or off", arg);
            return 1;
        }
        g_overlap = arg;
        apply_overlap();
        return 1;
    case 1017:
        if (strcmp(arg, "cpu") && strcmp(arg, "cuda")) {
            *ok = 0, die(EXIT_USAGE, "--accel: '%s' is not cpu or cuda", arg);
            return 1;
        }
        g_accel = arg;
        apply_overlap();
#ifndef ASYMML_ENCLAVE
        /* In one process the trusted side calls the backend directly. The
         * enclave's accelerator is always its channel to the host. */
        if (!strcmp(arg, "cuda")) {
            if (am_cuda_usable() != AM_OK) {
                *ok = 0;
                die(EXIT_USAGE, "--accel cuda: %s", am_last_error());
                return 1;
            }
            am_set_accelerator(am_cuda_backend_create);
        }
#endif
        return 1;
    case 1016: {
        int mib = 0;
        *ok = arg_int("tee-mem", arg, 1, 1 << 24, &mib);
        am_mem_set_limit((size_t)mib << 20);
        return 1;
    }
    case 1015: {
        uint8_t key[AM_SEAL_KEY_BYTES];
        if (am_seal_key_read(arg, key) != AM_OK) {
            *ok = 0;
            lib_fail("--key");
            return 1;
        }
        am_seal_set_key(key);
        memset(key, 0, sizeof key);
        return 1;
    }
    case 1011:
        a->policy = AM_RANK_ENTROPY;
        a->rank_value = 0;
        return 1;
    case 1012: {
        float tau = 0;
        *ok = arg_float("rank-energy", arg, 1e-6f, 0.999999f, &tau);
        a->policy = AM_RANK_ENERGY;
        a->rank_value = tau;
        return 1;
    }
    case 1005: *ok = arg_int("iters", arg, 1, 20, &a->iters); return 1;
    case 1006: *ok = arg_float("clip", arg, 0, 1e9, &a->clip); return 1;
    case 1007: *ok = arg_float("sigma", arg, 0, 1e6, &a->sigma); return 1;
    case 1009: a->protect_grads = 1; return 1;
    case 1008: {
        int v = 0;
        *ok = arg_int("noise-seed", arg, 0, 2147483647, &v);
        a->noise_seed = (uint64_t)v;
        *seed_set = 1;
        return 1;
    }
    }
    return 0;
}

static int check_mode(const am_asym_cfg *a) {
    if (a->sigma > 0.f && a->clip == 0.f) return die(EXIT_USAGE, "--sigma needs --clip: noise without a bound protects nothing");
    return 0;
}

/* The enclave's lock-down once start-up is done: memory locked where the
 * system allows it, then the seccomp filter. A no-op in the host build. */
static int lockdown(void) {
#ifdef ASYMML_ENCLAVE
    g_locked = am_enclave_lock_memory() == AM_OK;
    if (!g_locked) snprintf(g_lock_err, sizeof g_lock_err, "%s", am_last_error());
    if (am_enclave_sandbox() != AM_OK) return lib_fail("enclave");
#endif
    return 0;
}

/* Where the accelerator is, in words, for the mode line. */
static void accel_words(char *buf, size_t n) {
#ifdef ASYMML_ENCLAVE
    snprintf(buf, n, "a separate host process, over shared memory; this trusted process is non-dumpable, %s%s%s, "
                     "and seccomp-sandboxed; the host runs the %s backend", g_locked ? "memory-locked" : "NOT memory-locked (",
             g_locked ? "" : g_lock_err, g_locked ? "" : ")", !strcmp(g_accel, "cuda") ? "CUDA" : "CPU");
#else
    char gpu[160] = "";
    if (!strcmp(g_accel, "cuda")) am_cuda_describe(gpu, sizeof gpu);
    snprintf(buf, n, "the %s%s%s backend in this same process (no isolation; --tee process isolates the trusted side)",
             !strcmp(g_accel, "cuda") ? "CUDA (" : "CPU", gpu, !strcmp(g_accel, "cuda") ? ")" : "");
#endif
}

/* The DP statement, exactly what the accountant covers. */
/* Why one sample can move its whole batch's residuals, for the statement. */
static const char *coupling_reason(const am_model *m, const am_asym_cfg *a) {
    if (a->protect_grads) return "the output gradients' basis is shared by the batch";
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) == AM_OK && si.split && si.basis != AM_BASIS_PER_SAMPLE)
            return "a split layer's basis is shared by the batch";
    }
    return "BatchNorm's batch statistics";
}

/* The rank policy and basis, in words. */
static void plan_words(const am_asym_cfg *a, char *buf, size_t n) {
    const char *basis = a->basis == AM_BASIS_SHARED ? "shared basis"
                        : a->basis == AM_BASIS_PER_SAMPLE ? "per-sample basis"
                                                          : "basis chosen per layer on the first batch";
    switch (a->policy) {
    case AM_RANK_RATIO: snprintf(buf, n, "rank ratio %g, %s", a->rank_value, basis); break;
    case AM_RANK_FIXED: snprintf(buf, n, "rank %g, %s", a->rank_value, basis); break;
    case AM_RANK_LIST: snprintf(buf, n, "ranks from a list of %d, %s", a->n_ranks, basis); break;
    case AM_RANK_ENTROPY: snprintf(buf, n, "entropy ranks from the first batch, %s", basis); break;
    case AM_RANK_ENERGY: snprintf(buf, n, "energy ranks (residual share < %g) from the first batch, %s", a->rank_value, basis); break;
    }
}

/* One line: each conv's rank (s: shared basis, p: per-sample; - whole). */
static void print_plan(FILE *f, const am_model *m) {
    fprintf(f, "plan:");
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) != AM_OK) continue;
        if (si.split) fprintf(f, " %d%s", si.r, si.basis == AM_BASIS_PER_SAMPLE ? "p" : "s");
        else fprintf(f, " -");
    }
    fprintf(f, " (rank per conv layer; s shared basis, p per-sample, - whole in the TEE)\n");
}

static int has_noise_key(const am_asym_cfg *a) {
    uint8_t any = 0;
    for (size_t i = 0; i < sizeof a->noise_key; i++) any |= a->noise_key[i];
    return any != 0;
}

/* With noise on and no --noise-seed, a secret key drawn here, in the trusted
 * process: a noise that followed from a seed on the command line (which the
 * host sees) could be regenerated and subtracted. */
static int noise_key_setup(am_asym_cfg *a, int seed_set) {
    if (a->sigma > 0.f && !seed_set && am_asym_secret_noise_key(a)) return lib_fail("noise key");
    return 0;
}

static void print_privacy(FILE *f, const am_model *m, const am_asym_cfg *a, long releases, long coupling, double delta,
                          int split_layers) {
    if (a->mode != AM_MODE_ASYMML) return;
    if (a->sigma > 0.f) {
        double eps = am_dp_epsilon(a->sigma, releases, coupling, delta);
        fprintf(f, "privacy: (epsilon %.4g, delta %g) for the residuals that crossed to the accelerator: "
                   "clip %g, noise multiplier %g, %ld Gaussian releases per training sample (%d split layers x "
                   "epochs begun%s), no subsampling amplification claimed; ",
                eps, delta, (double)a->clip, (double)a->sigma, releases, split_layers,
                a->protect_grads ? " x 2" : "");
        if (coupling > 1)
            fprintf(f, "sensitivity 2 x clip x sqrt(%ld), because one sample can move every residual of its "
                       "batch (%s). ", coupling,
                    coupling_reason(m, a));
        else
            fprintf(f, "sensitivity 2 x clip: each residual depends on its own sample only (per-sample basis, "
                       "no BatchNorm before a split layer). ");
        if (a->protect_grads)
            fprintf(f, "Output gradients are split too: their residuals count as releases above. Not covered: the "
                       "weights and weight gradients (public in this threat model).\n");
        else
            fprintf(f, "Not covered: the weights and weight gradients (public in this threat model) and the output "
                       "gradients, which cross in the clear.\n");
        if (has_noise_key(a))
            fprintf(f, "noise: keyed by a random secret key drawn in the trusted process and kept in its "
                       "checkpoints: no one else can regenerate it, and a new run with the same options draws "
                       "other noise\n");
        else
            fprintf(f, "noise: follows from the seed %llu alone (--noise-seed or --seed): whoever knows it, such as "
                       "the host, which sees the command line, can regenerate and subtract the noise, and the figure "
                       "above does not hold against them; leave --noise-seed out for a secret key\n",
                    (unsigned long long)a->noise_seed);
    } else {
        fprintf(f, "privacy: no differential privacy guarantee: residuals cross without noise (--sigma 0); "
                   "only the low-rank part stays in the TEE.\n");
    }
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
            "                        model, training and mode options come from the checkpoint\n"
            MODE_HELP
            "  --delta D             the delta at which epsilon is reported (default 1e-5)\n"
            "  --help                this text\n");
}

typedef struct train_opts {
    const char *data, *model, *model_file, *log, *ckdir, *resume;
    am_data_kind kind;
    am_train_cfg cfg;
    int threads, limit_train, limit_test, every, save_every, keep, crop_set, flip_set;
    double delta;
} train_opts;

static int load_data(am_data_kind kind, const char *dir, const char *split, int limit, am_dataset *d) {
    if (am_dataset_load(kind, dir, split, d) != AM_OK) return lib_fail("data");
    am_dataset_truncate(d, limit);
    return 0;
}

/* A checkpoint file, or the newest in a directory; NULL (with the library's
 * message) if a directory holds none. The result lives until the next call. */
static const char *resolve_ckpt(const char *p) {
    static char path[4200];
    struct stat sb;
    if (stat(p, &sb) || !S_ISDIR(sb.st_mode)) return p;
    return am_checkpoint_latest(p, path, sizeof path) == AM_OK ? path : NULL;
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
        const char *p = resolve_ckpt(o->resume);
        if (!p) {
            lib_fail("--resume");
            goto out;
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
            rc = st == AM_EINVAL ? die(EXIT_USAGE, "train: %s", am_last_error()) : lib_fail("train");
            goto out;
        }
    }
    if (o->log && !(log = fopen(o->log, "a"))) {
        die(EXIT_RUNTIME, "%s: cannot open for writing (%s)", o->log, strerror(errno));
        goto out;
    }
    if (lockdown()) goto out;
    const am_train_cfg *c = am_trainer_cfg(t);
    am_model *m = am_trainer_model(t);
    int split_layers = 0, convs = am_model_num_convs(m);
    for (int i = 0; i < convs; i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) == AM_OK) split_layers += si.split;
    }
    printf("train: %d train / %d test images of %dx%dx%d, %zu parameters, batch %d, %d epochs, %d threads\n",
           tr.n, te.n, tr.c, tr.h, tr.w, am_model_trainable_count(m), c->batch, c->epochs, am_get_threads());
    int plan_pending = c->asym.mode != AM_MODE_TEE_ONLY && !am_model_plan_get(m, (int[AM_MAX_RANKS + 1]){0},
                                                                                (int[AM_MAX_RANKS + 1]){0}, AM_MAX_RANKS + 1);
    if (c->asym.mode != AM_MODE_TEE_ONLY) {
        char pw[160], aw[400];
        plan_words(&c->asym, pw, sizeof pw);
        accel_words(aw, sizeof aw);
        printf("mode: %s, %s, clip %g, sigma %g; accelerator: %s\n", am_mode_name(c->asym.mode), pw,
               (double)c->asym.clip, (double)c->asym.sigma, aw);
        if (!plan_pending) print_plan(stdout, m);
    } else
        printf("mode: tee-only (everything in the trusted process; nothing is sent to an accelerator)\n");
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
        if (plan_pending) {
            print_plan(stdout, m);
            plan_pending = 0;
        }
#ifdef ASYMML_ENCLAVE
        if (g_test_syscall_step && si.global_step == g_test_syscall_step) {
            /* The test of the sandbox: what an exfiltrating enclave would try. */
            long fd = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
            die(EXIT_RUNTIME, "sandbox test: socket() was allowed (fd %ld)", fd);
            goto out;
        }
#endif
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
            double loss, ep_s = now_s() - ep_t0, share = am_trainer_residual_share(t);
            if (am_trainer_evaluate(t, &te, &acc, &loss) != AM_OK) {
                lib_fail("evaluate");
                goto out;
            }
            printf("epoch %d/%d test accuracy %.4f loss %.4f (%d images), epoch time %.1fs%s%s\n", si.epoch,
                   c->epochs, acc, loss, te.n, ep_s, last_ckpt ? ", saved " : "", last_ckpt ? last_ckpt : "");
            if (split_layers) printf("epoch %d/%d residual energy share %.4f (of the split layers' inputs)\n",
                                     si.epoch, c->epochs, share);
            if (log)
                fprintf(log, "{\"epoch\":%d,\"test_acc\":%.6f,\"test_loss\":%.6f,\"epoch_s\":%.2f,"
                             "\"residual_share\":%.6f}\n", si.epoch, acc, loss, ep_s, share);
            fflush(stdout);
            ep_t0 = now_s();
        }
    }
    if (acc < 0 && am_trainer_evaluate(t, &te, &acc, NULL) != AM_OK) {
        lib_fail("evaluate");
        goto out;
    }
    printf("final test accuracy: %.4f\n", acc);
    char mw[200];
    mem_words(mw, sizeof mw);
    printf("trusted memory: %s\n", mw);
    print_privacy(stdout, m, &c->asym, am_trainer_releases(t), am_trainer_coupling(t), o->delta, split_layers);
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
        {"resume", 1, 0, 'R'},      {"delta", 1, 0, 'D'},      MODE_LONGOPTS,
        {0, 0, 0, 0}};
    train_opts o = {.model = "lenet", .kind = AM_DATA_IDX, .every = 100, .keep = 3,
                    .cfg = {.epochs = 3, .batch = 64, .lr = 0.05f, .momentum = 0.9f, .wd = 5e-4f,
                            .sched = AM_SCHED_COSINE, .step_size = 1, .gamma = 0.1f, .seed = 1}};
    int opt, ok = 1, seed = 1, hyper = 0, noise_seed_set = 0;
    o.cfg.asym = am_asym_defaults();
    o.cfg.asym.mode = AM_MODE_TEE_ONLY;
    o.delta = 1e-5;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        /* Options that define the run; with --resume they come from the checkpoint. */
        if ((opt < 256 && strchr("mfebrMNwsSgWxcFG", opt)) || (opt > 1000 && opt < 1100 && opt != 1013 && opt != 1014 && opt != 1015 && opt != 1016 && opt != 1017 && opt != 1018)) hyper = opt;
        if (mode_option(opt, optarg, &o.cfg.asym, &noise_seed_set, &ok)) continue;
        switch (opt) {
        case 'D': {
            float d;
            ok = arg_float("delta", optarg, 1e-300, 0.5, &d);
            o.delta = strtod(optarg, NULL);
            break;
        }
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
#ifdef ASYMML_ENCLAVE
    if (o.ckdir && !am_seal_have_key())
        return die(EXIT_USAGE, "--tee process writes sealed checkpoints: give --key FILE (`asymml keygen FILE` makes one)");
#endif
    int cifar = o.kind != AM_DATA_IDX;
    if (!o.crop_set) o.cfg.crop_pad = cifar ? 4 : 0;
    if (!o.flip_set) o.cfg.flip = cifar;
    o.cfg.seed = (uint64_t)seed;
    if (!noise_seed_set) o.cfg.asym.noise_seed = (uint64_t)seed;
    if (check_mode(&o.cfg.asym)) return EXIT_USAGE;
    if (!o.resume && noise_key_setup(&o.cfg.asym, noise_seed_set)) return EXIT_RUNTIME;
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
            MODE_HELP
            "  --help              this text\n");
}

static int cmd_eval(int argc, char **argv) {
    static const struct option lo[] = {{"checkpoint", 1, 0, 'c'}, {"data", 1, 0, 'd'},
                                       {"dataset", 1, 0, 'k'},    {"split", 1, 0, 's'},
                                       {"batch", 1, 0, 'b'},      {"limit", 1, 0, 'L'},
                                       {"threads", 1, 0, 't'},    {"help", 0, 0, 'h'},
                                       MODE_LONGOPTS,             {0, 0, 0, 0}};
    const char *ckpt = NULL, *data = NULL, *split = "test";
    am_asym_cfg asym = am_asym_defaults();
    asym.mode = AM_MODE_TEE_ONLY;
    int seed_set = 0;
    am_data_kind kind = AM_DATA_IDX;
    int B = 100, limit = 0, threads = 0, opt, ok = 1;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (mode_option(opt, optarg, &asym, &seed_set, &ok)) continue;
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
    if (check_mode(&asym)) return EXIT_USAGE;
    if (noise_key_setup(&asym, seed_set)) return EXIT_RUNTIME;
    if (threads && am_set_threads(threads)) return lib_fail("threads");
    if (!(ckpt = resolve_ckpt(ckpt))) return lib_fail("--checkpoint");
    am_checkpoint ck;
    if (am_checkpoint_read(ckpt, &ck) != AM_OK) return lib_fail("checkpoint");
    am_dataset d = {0};
    am_model *m = NULL;
    int rc = load_data(kind, data, split, limit, &d);
    if (!rc) rc = lockdown();
    double acc, loss;
    if (!rc && (am_model_create(ck.desc, &m) != AM_OK)) rc = lib_fail("checkpoint model");
    if (!rc && (am_model_weights_len(m) != ck.n_weights || am_model_buffers_len(m) != ck.n_buffers))
        rc = die(EXIT_RUNTIME, "%s: tensor sizes do not match its model description", ckpt);
    if (!rc && d.c != ck.channels)
        rc = die(EXIT_RUNTIME, "%s: a %d-channel model; the data has %d channels", ckpt, ck.channels, d.c);
    if (!rc) {
        memcpy(am_model_weights(m), ck.weights, ck.n_weights * sizeof(float));
        memcpy(am_model_buffers(m), ck.buffers, ck.n_buffers * sizeof(float));
        int eb = B < d.n ? B : d.n;
        if (asym.mode != AM_MODE_TEE_ONLY && (am_model_set_batch(m, eb) || am_model_set_asym(m, &asym)))
            rc = lib_fail("eval");
        else if (am_evaluate(m, &d, ck.mean, ck.std, eb, &acc, &loss) != AM_OK)
            rc = lib_fail("eval");
    }
    if (!rc)
        printf("%s: %s accuracy %.4f loss %.4f (%d images, step %d, %s mode)\n", ckpt, split, acc, loss, d.n,
               ck.global_step, am_mode_name(asym.mode));
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
            "on synthetic data; print ms per step and images/s. With --mode other than\n"
            "tee-only, also time that mode and print the TEE's share of each step (the step\n"
            "minus the accelerator's compute) and tee-only's time over it: the speedup that\n"
            "an infinitely fast accelerator would give; and tee-only's step over the mode's\n"
            "whole step: the speedup measured with this accelerator. A summary table ends it.\n"
            "  --models LIST   comma-separated zoo names (default vgg16,vgg19,resnet18,resnet34)\n"
            "  --modes LIST    several modes after tee-only, e.g. asymml,open (instead of --mode)\n"
            "  --input C,H,W   default 3,32,32\n"
            "  --classes N     default 10\n"
            "  --batch N       default 32\n"
            "  --steps N       timed steps of each kind (default 5)\n"
            "  --warmup N      untimed steps first (default 1)\n"
            "  --threads N     default: all cores\n"
            "  --layers        per conv layer: rank, TEE time, decomposition time, energy kept\n"
            MODE_HELP
            "  --help          this text\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of a training step (mode 0) or an inference pass (1), and
 * the median of the accelerator's share of it. */
static int time_steps(am_model *m, am_sgd *opt, am_tensor *x, const int32_t *lab, am_rng *r, int mode,
                      int steps, int warm, double *t, double *acc, double out[3], double *sgd_s) {
    *sgd_s = 0;
    double busy = 0;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) am_model_reset_timers(m), busy = am_model_accel_seconds(m);
        double a0 = am_model_blocked_seconds(m), t0 = now_s();
        float loss;
        am_model_set_step(m, (uint64_t)i);
        if (am_model_forward(m, x, mode == 0, r) ||
            (mode == 0 && (am_model_loss(m, lab, &loss) || am_model_backward(m))))
            return lib_fail("bench");
        double ts = now_s();
        if (mode == 0 && am_sgd_step(opt, am_model_weights(m), am_model_grads(m), 1e-3f)) return lib_fail("bench");
        if (i >= warm) *sgd_s += now_s() - ts;
        if (i >= warm) {
            t[i - warm] = now_s() - t0;
            acc[i - warm] = am_model_blocked_seconds(m) - a0;
        }
    }
    qsort(t, (size_t)steps, sizeof(double), cmp_double);
    qsort(acc, (size_t)steps, sizeof(double), cmp_double);
    out[0] = t[steps / 2];
    out[1] = acc[steps / 2];
    out[2] = (am_model_accel_seconds(m) - busy) / steps; /* mean accelerator compute */
    return 0;
}

/* The summary table's rows. */
typedef struct bench_row {
    char model[40], mode[16];
    double train, infer, sp_train, sp_infer;
} bench_row;
static bench_row g_rows[64];
static int g_nrows;

static void bench_note(const char *model, const char *mode, double train, double infer, double sp_train,
                       double sp_infer) {
    if (g_nrows == (int)(sizeof g_rows / sizeof *g_rows)) return;
    bench_row *r = &g_rows[g_nrows++];
    snprintf(r->model, sizeof r->model, "%s", model);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    r->train = train, r->infer = infer, r->sp_train = sp_train, r->sp_infer = sp_infer;
}

static int bench_one(const char *name, am_shape in, int classes, int B, int steps, int warm,
                     const am_asym_cfg *asym0, const am_mode *modes, int n_modes, int layers) {
    am_model *m;
    int rc = make_model(name, NULL, in, classes, &m);
    if (rc) return rc;
    am_sgd *opt = NULL;
    am_tensor x = {0};
    int32_t *lab = malloc(sizeof(int32_t) * B);
    double *t = malloc(sizeof(double) * (size_t)steps), *ac = malloc(sizeof(double) * (size_t)steps);
    am_shape s = in;
    s.n = B;
    am_sgd_cfg sc = {0.9f, 0.f, 5e-4f, 0};
    if (!lab || !t || !ac || am_model_init(m, 1) || am_model_set_batch(m, B) || am_tensor_alloc(&x, s) ||
        am_sgd_create(&sc, am_model_weights_len(m), &opt)) {
        rc = lib_fail(name);
        goto out;
    }
    am_rng r;
    am_rng_seed(&r, 5);
    for (size_t i = 0; i < am_shape_numel(s); i++) x.d[i] = am_rng_normal(&r);
    for (int b = 0; b < B; b++) lab[b] = (int32_t)am_rng_below(&r, (uint32_t)classes);
    double base[2][3], sgd_s;
    am_mem_reset_peak();
    for (int mode = 0; mode < 2; mode++)
        if ((rc = time_steps(m, opt, &x, lab, &r, mode, steps, warm, t, ac, base[mode], &sgd_s))) goto out;
    printf("%-18s %dx%dx%d batch %d  tee-only  train %8.1f ms %7.1f img/s  infer %8.1f ms %7.1f img/s  peak RSS %.0f MiB"
           "  heap %.0f MiB\n",
           name, in.c, in.h, in.w, B, base[0][0] * 1e3, B / base[0][0], base[1][0] * 1e3, B / base[1][0],
           peak_rss_mib(), (double)am_mem_peak() / (1 << 20));
    bench_note(name, "tee-only", base[0][0], base[1][0], 1, 1);
    for (int mi = 0; mi < n_modes; mi++) {
        am_asym_cfg mcfg = *asym0;
        const am_asym_cfg *asym = &mcfg;
        mcfg.mode = modes[mi];
        if (mcfg.mode == AM_MODE_TEE_ONLY) continue;
        if (am_model_set_asym(m, asym)) {
            rc = lib_fail(name);
            goto out;
        }
        double md[2][3];
        am_mem_reset_peak();
        for (int mode = 0; mode < 2; mode++) {
            if ((rc = time_steps(m, opt, &x, lab, &r, mode, steps, warm, t, ac, md[mode], &sgd_s))) goto out;
            if (mode == 0 && layers) {
                printf("  TEE ms per training step by kind (mean):");
                for (int k = 0; k < AM_PROF_KINDS; k++)
                    printf(" %s %.1f,", am_prof_kind_name((am_prof_kind)k), am_model_profile(m, (am_prof_kind)k) * 1e3 / steps);
                printf(" sgd %.1f\n", sgd_s * 1e3 / steps);
                printf("  %-5s %-11s %-9s %-4s %-5s %9s %9s %9s %9s %9s %8s %8s %8s\n", "layer", "C->K", "HxW", "r",
                       "split", "TEE ms", "decomp", "transfer", "accel ms", "waited", "overlap", "energy", "MFLOP");
                for (int i = 0; i < am_model_num_convs(m); i++) {
                    am_split_info si;
                    am_layer_info li;
                    am_model_split_info(m, i, &si);
                    am_model_layer_info(m, si.layer, &li);
                    char ck[24], hw[24];
                    snprintf(ck, sizeof ck, "%d->%d", si.C, si.K);
                    snprintf(hw, sizeof hw, "%dx%d", li.out.h, li.out.w);
                    /* Overlap: the share of the accelerator's time the TEE did not wait through. */
                    double ov = si.accel_s > 0 ? 1.0 - si.wait_s / si.accel_s : 0;
                    printf("  %-5d %-11s %-9s %-4d %-5s %9.2f %9.2f %9.2f %9.2f %9.2f %7.0f%% %8.4f %8.1f\n", si.layer, ck,
                           hw, si.r, si.split ? "yes" : "whole", si.tee_s * 1e3 / steps, si.decomp_s * 1e3 / steps,
                           si.xfer_s * 1e3 / steps, si.accel_s * 1e3 / steps, si.wait_s * 1e3 / steps,
                           100 * (ov > 0 ? ov : 0), si.split ? si.energy_kept : 1.0, si.tee_flops / 1e6);
                }
            }
        }
        /* The TEE's share: the step minus the time the TEE waited for the
         * accelerator (all of its compute in one process; what did not
         * overlap with TEE work when it is another process). */
        double tee_tr = md[0][0] - md[0][1], tee_in = md[1][0] - md[1][1];
        printf("%-18s %-8s train %8.1f ms (TEE %8.1f, waited %8.1f, accelerator busy %8.1f)  infer %8.1f ms (TEE %8.1f)  "
               "TEE speedup over tee-only: train %.2fx infer %.2fx  heap %.0f MiB\n",
               name, am_mode_name(asym->mode), md[0][0] * 1e3, tee_tr * 1e3, md[0][1] * 1e3, md[0][2] * 1e3,
               md[1][0] * 1e3, tee_in * 1e3, base[0][0] / tee_tr, base[1][0] / tee_in, (double)am_mem_peak() / (1 << 20));
        printf("%-18s %-8s step speedup over tee-only: train %.2fx infer %.2fx\n", name, am_mode_name(asym->mode),
               base[0][0] / md[0][0], base[1][0] / md[1][0]);
        bench_note(name, am_mode_name(asym->mode), md[0][0], md[1][0], base[0][0] / md[0][0], base[1][0] / md[1][0]);
    }
    fflush(stdout);
out:
    free(lab);
    free(t);
    free(ac);
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
                                       {"layers", 0, 0, 'L'},  {"modes", 1, 0, 'M'},
                                       MODE_LONGOPTS,          {0, 0, 0, 0}};
    char models[1024] = "vgg16,vgg19,resnet18,resnet34";
    am_mode modes[8];
    int n_modes = 0;
    am_asym_cfg asym = am_asym_defaults();
    asym.mode = AM_MODE_TEE_ONLY;
    int layers = 0, seed_set = 0;
    am_shape in = am_shape4(1, 3, 32, 32);
    int classes = 10, B = 32, steps = 5, warm = 1, threads = 0, opt, ok = 1;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (mode_option(opt, optarg, &asym, &seed_set, &ok)) continue;
        switch (opt) {
        case 'L': layers = 1; break;
        case 'M': {
            char buf[256], *sv = NULL;
            snprintf(buf, sizeof buf, "%s", optarg);
            n_modes = 0;
            for (char *t = strtok_r(buf, ",", &sv); t && ok; t = strtok_r(NULL, ",", &sv)) {
                if (n_modes == 8) ok = 0, die(EXIT_USAGE, "--modes: at most 8 modes");
                else if (am_mode_parse(t, &modes[n_modes]) != AM_OK) ok = 0, die(EXIT_USAGE, "--modes: %s", am_last_error());
                else n_modes++;
            }
            if (ok && !n_modes) ok = 0, die(EXIT_USAGE, "--modes: empty list");
            break;
        }
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
    if (check_mode(&asym)) return EXIT_USAGE;
    if (noise_key_setup(&asym, seed_set)) return EXIT_RUNTIME;
    if (threads && am_set_threads(threads)) return lib_fail("threads");
    if (lockdown()) return EXIT_RUNTIME;
    char where[512];
    accel_words(where, sizeof where);
    printf("bench: %d threads, median of %d steps after %d warm-up; accelerator: %s\n", am_get_threads(), steps, warm,
           where);
    printf("bench: CPU BLAS %s\n", am_blas_describe());
    if (!n_modes) modes[n_modes++] = asym.mode;
    for (int i = 0; i < n_modes; i++) {
        asym.mode = modes[i];
        if (check_mode(&asym)) return EXIT_USAGE;
    }
    char *save = NULL;
    for (char *nm = strtok_r(models, ",", &save); nm; nm = strtok_r(NULL, ",", &save)) {
        int rc = bench_one(nm, in, classes, B, steps, warm, &asym, modes, n_modes, layers);
        if (rc) return rc;
    }
    printf("\nsummary (%dx%dx%d, batch %d; median ms per step; speedup: tee-only's step over the mode's)\n", in.c, in.h,
           in.w, B);
    printf("%-18s %-12s %10s %10s %14s %14s\n", "model", "mode", "train ms", "infer ms", "train speedup",
           "infer speedup");
    for (int i = 0; i < g_nrows; i++)
        printf("%-18s %-12s %10.1f %10.1f %13.2fx %13.2fx\n", g_rows[i].model, g_rows[i].mode, g_rows[i].train * 1e3,
               g_rows[i].infer * 1e3, g_rows[i].sp_train, g_rows[i].sp_infer);
    return 0;
}

/* ------------------------------------------------------------------ analyze */

static void usage_analyze(FILE *f) {
    fprintf(f,
            "usage: asymml analyze --data DIR [--checkpoint PATH | --model NAME] [options]\n"
            "For each conv layer of a model, on a sample of the data: input shape, SVD-channel\n"
            "entropy, the rank each policy picks, the energy each keeps, and the TEE and\n"
            "accelerator FLOPs per training step when split at the ratio's rank.\n"
            "  --data DIR          dataset folder\n"
            "  --dataset KIND      idx (default), cifar10, cifar100\n"
            "  --checkpoint PATH   a trained model (file or directory); else --model, untrained\n"
            "  --model NAME        zoo model (default lenet), initialized from --seed\n"
            "  --seed N            default 1\n"
            "  --samples N         test images analyzed as one batch (default 64)\n"
            "  --ratio X           ratio policy (default 0.0625)\n"
            "  --tau X             energy policy: residual share below X (default 0.05)\n"
            "  --rank N            fixed policy (default 4)\n"
            "  --threads N         default: all cores\n"
            "  --help              this text\n");
}

HOST_ONLY static int cmd_analyze(int argc, char **argv) {
    static const struct option lo[] = {{"data", 1, 0, 'd'},    {"dataset", 1, 0, 'k'}, {"checkpoint", 1, 0, 'c'},
                                       {"model", 1, 0, 'm'},   {"seed", 1, 0, 'x'},    {"samples", 1, 0, 'n'},
                                       {"ratio", 1, 0, 'r'},   {"tau", 1, 0, 'u'},     {"rank", 1, 0, 'f'},
                                       {"threads", 1, 0, 't'}, {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    const char *data = NULL, *ckpt = NULL, *model = "lenet";
    am_data_kind kind = AM_DATA_IDX;
    int seed = 1, n = 64, fixed = 4, threads = 0, opt, ok = 1;
    float ratio = 1.f / 16, tau = 0.05f;
    while (ok && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'd': data = optarg; break;
        case 'k':
            if (am_data_kind_parse(optarg, &kind) != AM_OK) return die(EXIT_USAGE, "--dataset: %s", am_last_error());
            break;
        case 'c': ckpt = optarg; break;
        case 'm': model = optarg; break;
        case 'x': ok = arg_int("seed", optarg, 0, 2147483647, &seed); break;
        case 'n': ok = arg_int("samples", optarg, 2, 4096, &n); break;
        case 'r': ok = arg_float("ratio", optarg, 1e-6, 1, &ratio); break;
        case 'u': ok = arg_float("tau", optarg, 1e-6, 0.999, &tau); break;
        case 'f': ok = arg_int("rank", optarg, 1, 65536, &fixed); break;
        case 't': ok = arg_int("threads", optarg, 1, 1024, &threads); break;
        case 'h': usage_analyze(stdout); return 0;
        default: return bad_option("analyze", argv);
        }
    }
    if (!ok) return EXIT_USAGE;
    if (optind < argc) return die(EXIT_USAGE, "analyze: unexpected argument '%s'", argv[optind]);
    if (!data) return die(EXIT_USAGE, "analyze: --data DIR is required");
    if (threads && am_set_threads(threads)) return lib_fail("threads");
    am_dataset d = {0};
    am_model *m = NULL;
    am_checkpoint ck = {0};
    float mean[4], sd[4];
    float *x = NULL, *s = NULL, *tmp = NULL;
    int32_t *lab = NULL;
    uint32_t *idx = NULL;
    int rc = load_data(kind, data, "test", 0, &d);
    if (rc) goto out;
    rc = EXIT_RUNTIME;
    if (d.n < n) n = d.n;
    if (ckpt) {
        if (!(ckpt = resolve_ckpt(ckpt))) {
            lib_fail("--checkpoint");
            goto out;
        }
        if (am_checkpoint_read(ckpt, &ck) != AM_OK || am_model_create(ck.desc, &m) != AM_OK) {
            lib_fail("checkpoint");
            goto out;
        }
        if (am_model_weights_len(m) != ck.n_weights || am_model_buffers_len(m) != ck.n_buffers || ck.channels != d.c) {
            die(EXIT_RUNTIME, "%s: does not match its model or this data", ckpt);
            goto out;
        }
        memcpy(am_model_weights(m), ck.weights, ck.n_weights * sizeof(float));
        memcpy(am_model_buffers(m), ck.buffers, ck.n_buffers * sizeof(float));
        memcpy(mean, ck.mean, sizeof mean);
        memcpy(sd, ck.std, sizeof sd);
    } else {
        if ((rc = make_model(model, NULL, am_shape4(1, d.c, d.h, d.w), d.classes, &m))) goto out;
        rc = EXIT_RUNTIME;
        am_model_init(m, (uint64_t)seed);
        am_dataset_stats(&d, mean, sd);
    }
    am_shape in = am_model_input_shape(m);
    if (in.c != d.c || in.h != d.h || in.w != d.w) {
        die(EXIT_RUNTIME, "the model takes %dx%dx%d images; the data has %dx%dx%d", in.c, in.h, in.w, d.c, d.h, d.w);
        goto out;
    }
    x = malloc(sizeof(float) * (size_t)n * d.c * d.h * d.w);
    lab = malloc(sizeof(int32_t) * (size_t)n);
    idx = malloc(sizeof(uint32_t) * (size_t)n);
    if (!x || !lab || !idx) {
        die(EXIT_RUNTIME, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) idx[i] = (uint32_t)i;
    in.n = n;
    am_tensor xt = {in, x};
    if (am_dataset_batch(&d, idx, n, mean, sd, x, lab) || am_model_set_batch(m, n) ||
        am_model_keep_outputs(m, 1) || am_model_forward(m, &xt, 0, NULL)) {
        lib_fail("analyze");
        goto out;
    }
    /* The planner's view at the ratio's rank, for the FLOP split. */
    am_model *plan = NULL;
    am_asym_cfg ac = am_asym_defaults();
    ac.rank_value = ratio;
    if (am_model_create(am_model_desc(m), &plan) || am_model_set_batch(plan, n) || am_model_set_asym(plan, &ac)) {
        am_model_free(plan);
        lib_fail("analyze");
        goto out;
    }
    printf("analyze: %d images; energy = share of ||X||^2 kept by the rank; exact over the batch (shared) and\n"
           "per sample (mean), and what the runtime's shared basis (2 iterations) and light SVD (T=2) keep\n",
           n);
    printf("%-5s %-10s %-9s %7s | %5s %5s %5s %5s | %7s %7s %7s %7s | %9s %9s %s\n", "layer", "C->K", "HxW",
           "entropy", "r/C", "ent", "tau", "fixed", "shared", "sample", "runtime", "light", "TEE MF", "accel MF",
           "plan");
    double tee_total = 0, all_total = 0;
    for (int i = 0, ci = 0; i < am_model_num_layers(m); i++) {
        am_layer_info li, xi;
        am_model_layer_info(m, i, &li);
        if (strcmp(li.kind, "conv")) continue;
        am_split_info si;
        am_model_split_info(plan, ci++, &si);
        const am_tensor *X = am_model_output(m, li.in[0]);
        am_model_layer_info(m, li.in[0], &xi);
        int C = X->s.c, N = X->s.h * X->s.w;
        free(s);
        free(tmp);
        s = malloc(sizeof(float) * (size_t)C * 2);
        tmp = malloc(sizeof(float) * ((size_t)C * N + (size_t)C * C + (size_t)C * N));
        if (!s || !tmp || am_exact_basis(X->d, n, C, N, 1, NULL, s) != AM_OK) {
            lib_fail("analyze");
            am_model_free(plan);
            goto out;
        }
        double mu = am_svd_entropy(s, C);
        int r_ratio = am_rank_pick(AM_RANK_RATIO, ratio, s, C), r_ent = am_rank_pick(AM_RANK_ENTROPY, 0, s, C);
        int r_tau = am_rank_pick(AM_RANK_ENERGY, tau, s, C), r_fix = am_rank_pick(AM_RANK_FIXED, fixed, s, C);
        double shared = am_energy_kept(s, C, r_ratio), per = 0, light = 0, tot = 0;
        float *sb = s + C, *R = tmp, *U = tmp + (size_t)C * N, *V = U + (size_t)C * C;
        for (int b = 0; b < n; b++) {
            const float *Xb = X->d + (size_t)b * C * N;
            am_exact_basis(Xb, 1, C, N, 1, NULL, sb);
            double e = am_sumsq(Xb, (size_t)C * N);
            per += am_energy_kept(sb, C, r_ratio) * e;
            memcpy(R, Xb, sizeof(float) * (size_t)C * N);
            am_light_svd(R, C, N, r_ratio, 2, U, V);
            light += e - am_sumsq(R, (size_t)C * N);
            tot += e;
        }
        /* The runtime's shared basis: subspace iteration from the largest channels. */
        size_t bwn = am_shared_basis_workspace(n, C, N, r_ratio);
        float *Ur = am_aligned_alloc(sizeof(float) * ((size_t)C * r_ratio + bwn)), *Vr = malloc(sizeof(float) * (size_t)n * r_ratio * N);
        double runtime = 0;
        if (Ur && Vr && am_shared_basis(X->d, n, C, N, r_ratio, 2, 0, Ur, Ur + (size_t)C * r_ratio, bwn) == AM_OK &&
            am_project(X->d, n, C, N, r_ratio, Ur, Vr, NULL) == AM_OK)
            runtime = am_sumsq(Vr, (size_t)n * r_ratio * N) / (tot > 0 ? tot : 1);
        am_aligned_free(Ur);
        free(Vr);
        char ck2[24], hw[24];
        snprintf(ck2, sizeof ck2, "%d->%d", C, li.out.c);
        snprintf(hw, sizeof hw, "%dx%d", X->s.h, X->s.w);
        double accel = si.split ? si.whole_flops : 0, teef = si.split ? si.tee_flops : si.whole_flops;
        tee_total += teef;
        all_total += si.whole_flops;
        printf("%-5d %-10s %-9s %7.3f | %5d %5d %5d %5d | %7.4f %7.4f %7.4f %7.4f | %9.1f %9.1f %s\n", i, ck2, hw,
               mu, r_ratio, r_ent, r_tau, r_fix, shared, tot > 0 ? per / tot : 1, runtime, tot > 0 ? light / tot : 1,
               teef / 1e6, accel / 1e6, si.split ? "split" : (li.in[0] == 0 ? "whole (first conv)" : "whole (cheaper)"));
    }
    printf("conv FLOPs per training step: TEE %.1f M of %.1f M done whole (%.1f%%), at rank ratio %g\n", tee_total / 1e6,
           all_total / 1e6, 100 * tee_total / (all_total > 0 ? all_total : 1), (double)ratio);
    am_model_free(plan);
    rc = 0;
out:
    free(x);
    free(lab);
    free(idx);
    free(s);
    free(tmp);
    am_model_free(m);
    am_checkpoint_free(&ck);
    am_dataset_free(&d);
    return rc;
}

/* ------------------------------------------------------------------ main */

/* ------------------------------------------------------------------ seal */

HOST_ONLY static int cmd_keygen(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: asymml keygen FILE\nWrite a new random 32-byte sealing key to FILE (mode 0600; never overwrites).\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') return die(EXIT_USAGE, "keygen: give one FILE (see asymml keygen --help)");
    if (am_seal_keygen(argv[1]) != AM_OK) return lib_fail("keygen");
    printf("keygen: wrote a new key to %s\n", argv[1]);
    return 0;
}

HOST_ONLY static int cmd_seal(int argc, char **argv) {
    static const struct option lo[] = {{"key", 1, 0, 'k'}, {"out-dir", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *keyf = NULL, *outdir = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'k': keyf = optarg; break;
        case 'o': outdir = optarg; break;
        case 'h':
            printf("usage: asymml seal --key KEYFILE [--out-dir DIR] FILE...\n"
                   "Encrypt and authenticate files (XChaCha20-Poly1305, libsodium secretstream) into\n"
                   "FILE.sealed (or DIR/NAME.sealed). Dataset readers and checkpoints given --key open them;\n"
                   "a wrong key or a changed byte is an error. Existing outputs are never overwritten.\n"
                   "  --key KEYFILE   a key from `asymml keygen`\n"
                   "  --out-dir DIR   where the sealed files go (default: beside each FILE)\n");
            return 0;
        default: return bad_option("seal", argv);
        }
    }
    if (!keyf) return die(EXIT_USAGE, "seal: --key KEYFILE is required");
    if (optind >= argc) return die(EXIT_USAGE, "seal: no FILE given");
    uint8_t key[AM_SEAL_KEY_BYTES];
    if (am_seal_key_read(keyf, key) != AM_OK) return lib_fail("seal");
    int rc = 0;
    for (int i = optind; i < argc && !rc; i++) {
        char out[4096];
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];
        if (outdir) snprintf(out, sizeof out, "%s/%s.sealed", outdir, base);
        else snprintf(out, sizeof out, "%s.sealed", argv[i]);
        if (am_seal_file(key, argv[i], out) != AM_OK) rc = lib_fail("seal");
        else printf("seal: %s -> %s\n", argv[i], out);
    }
    memset(key, 0, sizeof key);
    return rc;
}

HOST_ONLY static void usage(FILE *f) {
    fprintf(f,
            "usage: asymml COMMAND [options]   (asymml COMMAND --help for each)\n"
            "  train   train a model (MNIST, Fashion-MNIST, CIFAR-10/100); checkpoints, resume\n"
            "  eval    evaluate a checkpoint on a dataset\n"
            "  analyze per conv layer: entropy, ranks, energy kept, TEE/accelerator FLOPs\n"
            "  info    print a model's layers, shapes, parameters and FLOPs\n"
            "  bench   time training and inference steps of zoo models\n"
            "  seal    encrypt dataset files (or anything) under a key; keygen makes a key\n"
            "  --version, --help\n"
            "exit codes: 0 success, 1 run-time failure, 2 bad usage\n");
}

#ifdef ASYMML_ENCLAVE
static int dispatch(int argc, char **argv);

/* The enclave program: started by the host with the channel's descriptors
 * as its last argument; runs train, eval or bench with the accelerator on
 * the other side of the channel. */
int main(int argc, char **argv) {
    prog = "asymml-enclave";
    opterr = 0;
    /* Before anything touches data: no ptrace, no /proc/PID/mem, no core. */
    if (am_enclave_undumpable() != AM_OK) return lib_fail("enclave");
    int fm, fh, fe;
    if (argc < 3 || sscanf(argv[argc - 1], "--channel=%d,%d,%d", &fm, &fh, &fe) != 3)
        return die(EXIT_USAGE, "this program is started by `asymml train|eval|bench --tee process`, not by hand");
    if (am_chan_attach(fm, fh, fe, &g_chan) != AM_OK) return lib_fail("enclave");
    am_remote_backend_use(&g_chan);
    am_set_accelerator(am_remote_backend_create);
    apply_overlap();
    const char *t = getenv("ASYMML_ENCLAVE_TEST_SYSCALL");
    if (t) g_test_syscall_step = atoi(t);
    argv[--argc] = NULL;
    int rc = dispatch(argc, argv);
    am_chan_close(&g_chan);
    return rc;
}

static int dispatch(int argc, char **argv) {
    const char *cmd = argv[1];
    optind = 1;
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    return die(EXIT_USAGE, "the enclave runs train, eval and bench, not '%s'", cmd);
}
#else
/* --tee process: this process becomes the host. It starts the enclave
 * program (beside this one, or $ASYMML_ENCLAVE) with the same arguments,
 * gives up its privileges, and serves the accelerator until the enclave
 * exits, whose exit code it returns. It reads no data itself. */
static int host_main(int argc, char **argv) {
    /* Two processes share the cores: OpenMP threads that spin while they
     * wait would take them from the other side. The policy is read when the
     * OpenMP runtime loads, so set it and start again. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    char path[4096];
    const char *env = getenv("ASYMML_ENCLAVE");
    if (env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
        if (n <= 0) return die(EXIT_RUNTIME, "cannot find this program's folder (/proc/self/exe)");
        path[n] = 0;
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, 32, "asymml-enclave");
    }
    for (int i = 2; i < argc; i++) { /* the arena size and the threads, before the enclave parses them */
        const char *tv = !strcmp(argv[i], "--threads") && i + 1 < argc ? argv[i + 1]
                         : !strncmp(argv[i], "--threads=", 10)     ? argv[i] + 10
                                                                   : NULL;
        int th;
        if (tv && arg_int("threads", tv, 1, 1024, &th) && am_set_threads(th) != AM_OK) return lib_fail("threads");
        if (!strcmp(argv[i], "--shm-mib") && i + 1 < argc && !arg_int("shm-mib", argv[i + 1], 1, 1 << 20, &g_shm_mib))
            return EXIT_USAGE;
        if (!strncmp(argv[i], "--shm-mib=", 10) && !arg_int("shm-mib", argv[i] + 10, 1, 1 << 20, &g_shm_mib))
            return EXIT_USAGE;
        const char *av = !strcmp(argv[i], "--accel") && i + 1 < argc ? argv[i + 1]
                         : !strncmp(argv[i], "--accel=", 8)          ? argv[i] + 8
                                                                     : NULL;
        if (av && strcmp(av, "cpu") && strcmp(av, "cuda")) return die(EXIT_USAGE, "--accel: '%s' is not cpu or cuda", av);
        if (av) g_accel = av;
    }
    am_accelerator_fn make = NULL;
    if (!strcmp(g_accel, "cuda")) {
        if (am_cuda_usable() != AM_OK) return die(EXIT_USAGE, "--accel cuda: %s", am_last_error());
        make = am_cuda_backend_create;
    }
    char *argv0 = argv[0];
    argv[0] = path;
    am_host *h;
    am_status st = am_host_start(path, argv, (uint64_t)g_shm_mib << 20, make, &h);
    argv[0] = argv0;
    if (st != AM_OK) return lib_fail("--tee process");
    if (am_host_drop_privileges() != AM_OK) {
        am_host_free(h);
        return lib_fail("--tee process");
    }
    int code;
    st = am_host_serve(h, 0, &code);
    am_host_free(h);
    if (st != AM_OK) return die(EXIT_RUNTIME, "%s", am_last_error());
    return code;
}

/* Whether argv asks for --tee process (and not for help). */
static int wants_process(int argc, char **argv) {
    int proc = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 0;
        if ((!strcmp(argv[i], "--tee") && i + 1 < argc && !strcmp(argv[i + 1], "process")) ||
            !strcmp(argv[i], "--tee=process"))
            proc = 1;
    }
    return proc;
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
    if ((!strcmp(cmd, "train") || !strcmp(cmd, "eval") || !strcmp(cmd, "bench")) && wants_process(argc, argv))
        return host_main(argc, argv);
    optind = 1;
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "analyze")) return cmd_analyze(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "seal")) return cmd_seal(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cmd_keygen(argc - 1, argv + 1);
    return die(EXIT_USAGE, "unknown command '%s' (see asymml --help)", cmd);
}
#endif
