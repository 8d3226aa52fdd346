/* The options that choose how a model runs, shared by train, eval and
 * bench: the mode and its split (which define a run: OPT_RUN), and where
 * the trusted side and the accelerator run (which do not). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum {
    M_MODE = 100, M_RATIO, M_RANK, M_LIST, M_ENTROPY, M_ENERGY, M_BASIS, M_ITERS, M_CLIP, M_SIGMA, M_NOISE_SEED,
    M_PROTECT, M_TEE, M_ACCEL, M_OVERLAP, M_SHM, M_KEY, M_TEE_MEM, M_USER, M_RECORD, M_RECORD_STEPS, M_TIMEOUT, M_VERIFY, M_THREADS
};

const cli_opt cli_mode_opts[] = {
    {"mode", "M", M_MODE, OPT_RUN, "tee-only (default; infer: required), asymml, lowrank-only, open (no privacy),\n"
                                   "gpu-only (bench, infer); inference only: quantized, slalom (infer, bench)"},
    {"rank-ratio", "X", M_RATIO, OPT_RUN, "split layers keep rank ceil(X * channels) (default 0.0625)"},
    {"rank", "N", M_RANK, OPT_RUN, "or a fixed rank for every split layer"},
    {"rank-list", "R1,R2,..", M_LIST, OPT_RUN, "or one rank per conv layer after the first, in model order (0: whole)"},
    {"rank-entropy", NULL, M_ENTROPY, OPT_RUN, "or ceil(2^entropy) of the first batch's spectrum, per layer"},
    {"rank-energy", "TAU", M_ENERGY, OPT_RUN, "or the smallest rank leaving a residual share below TAU, per layer"},
    {"basis", "B", M_BASIS, OPT_RUN,
     "shared (one basis per batch, default), per-sample (light SVD), or auto:\n"
     "per layer the cheaper for the TEE at equal energy (first batch; with\n"
     "noise, per-sample wherever shared would couple the batch)"},
    {"iters", "N", M_ITERS, OPT_RUN, "subspace iterations per batch, or light-SVD steps (default 2)"},
    {"clip", "C", M_CLIP, OPT_RUN, "per-sample L2 bound of each residual that leaves (default 0: none)"},
    {"sigma", "S", M_SIGMA, OPT_RUN, "Gaussian noise std S*C on each residual (needs --clip; default 0)"},
    {"noise-seed", "N", M_NOISE_SEED, OPT_RUN,
     "noise from seed N alone: reproducible, and removable by whoever knows N\n"
     "(default: a random secret key, drawn in the trusted process)"},
    {"protect-grads", NULL, M_PROTECT, OPT_RUN, "split output gradients too; only their residual (clipped, noised) leaves"},
    {"tee", "T", M_TEE, 0,
     "inproc (default: one process, nothing isolated; for tests and development)\n"
     "or process: this process is the trusted side (non-dumpable, memory-locked,\n"
     "sandboxed) and starts the accelerator server, asymml-accel, confined"},
    {"accel", "A", M_ACCEL, 0, "the accelerator: cpu (default; this machine's cores) or cuda (cuDNN on\n"
                               "the GPU; needs --tee process: the GPU stack runs only in the server)"},
    {"overlap", "O", M_OVERLAP, 0,
     "process: on (the server computes while the trusted side goes on), off\n"
     "(only while it waits), auto (default: on with cuda, off with cpu)"},
    {"shm-mib", "N", M_SHM, 0, "process: shared-memory arena for what crosses (default 32768; sparse)"},
    {"key", "FILE", M_KEY, 0, "open sealed data and checkpoints (asymml seal); training: write\n"
                              "checkpoints and the log sealed"},
    {"tee-mem", "MIB", M_TEE_MEM, 0, "limit the trusted side's heap, like an SGX EPC (default: none)"},
    {"accel-user", "USER", M_USER, 0, "process, started as root: the user the server runs as (default nobody)"},
    {"record", "DIR", M_RECORD, 0, "the accelerator records everything it receives into DIR (the host's\n"
                                   "view, for attacks and audits; format: src/untrusted/recorder.h)"},
    {"record-steps", "A-B", M_RECORD_STEPS, 0, "record only steps A to B (counted from 0; an evaluation's window on a\n"
                                              "long run: what a host that keeps everything saw of them)"},
    {"reply-timeout", "S", M_TIMEOUT, 0, "process: the longest wait for one reply of the server (default 600)"},
    {"verify", NULL, M_VERIFY, 0, "check every reply of the accelerator (Freivalds: a random combination\n"
                                  "of channels recomputed in the trusted side, about 1/K of each conv;\n"
                                  "slalom checks every reply exactly, always)"},
    {"threads", "N", M_THREADS, 0, "default: all cores (on resume: the run's)"},
    {NULL, NULL, 0, 0, NULL},
};

void cli_mode_init(cli_mode *m) {
    memset(m, 0, sizeof *m);
    m->asym = am_asym_defaults();
    m->asym.mode = AM_MODE_TEE_ONLY;
    m->overlap = -1;
    m->shm_mib = 32768;
    m->reply_timeout_s = 600;
    m->record_last = UINT_MAX;
}

static int rank_list(am_asym_cfg *a, const char *arg) {
    a->policy = AM_RANK_LIST;
    a->n_ranks = 0;
    const char *q = arg;
    while (*q) {
        char *end;
        errno = 0;
        long v = strtol(q, &end, 10);
        if (end == q || errno || v < 0 || v > 65536 || (*end && *end != ',') || a->n_ranks == AM_MAX_RANKS)
            return die(EXIT_USAGE, "--rank-list: '%s' is not a comma-separated list of at most %d ranks in [0, 65536]",
                       arg, AM_MAX_RANKS);
        a->ranks[a->n_ranks++] = (int)v;
        q = *end ? end + 1 : end;
        if (*end && !*q) return die(EXIT_USAGE, "--rank-list: '%s' ends with a comma", arg);
    }
    if (!a->n_ranks) return die(EXIT_USAGE, "--rank-list: empty list");
    return 0;
}

static int one_of(const char *opt, const char *arg, const char *a, const char *b, const char *c, int *out) {
    const char *w[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (w[i] && !strcmp(arg, w[i])) return *out = i, 0;
    return die(EXIT_USAGE, "--%s: '%s' is not %s%s%s%s%s", opt, arg, a, c ? ", " : " or ", b, c ? " or " : "", c ? c : "");
}

int cli_mode_option(cli_mode *m, const cli_opt *o, const char *arg) {
    am_asym_cfg *a = &m->asym;
    int v = 0;
    float f = 0;
    if (!m->noise_opt && (o->id == M_CLIP || o->id == M_SIGMA || o->id == M_NOISE_SEED || o->id == M_PROTECT))
        m->noise_opt = o->name;
    switch (o->id) {
    case M_MODE:
        if (am_mode_parse(arg, &a->mode) != AM_OK) return die(EXIT_USAGE, "--mode: %s", am_last_error());
        return 0;
    case M_RATIO:
        if (!arg_double("rank-ratio", arg, 1e-6, 1, &a->rank_value)) return EXIT_USAGE;
        a->policy = AM_RANK_RATIO;
        return 0;
    case M_RANK:
        if (!arg_int("rank", arg, 1, 65536, &v)) return EXIT_USAGE;
        a->policy = AM_RANK_FIXED, a->rank_value = v;
        return 0;
    case M_LIST: return rank_list(a, arg);
    case M_ENTROPY: a->policy = AM_RANK_ENTROPY, a->rank_value = 0; return 0;
    case M_ENERGY:
        if (!arg_float("rank-energy", arg, 1e-6f, 0.999999f, &f)) return EXIT_USAGE;
        a->policy = AM_RANK_ENERGY, a->rank_value = f;
        return 0;
    case M_BASIS: {
        int r = one_of("basis", arg, "shared", "per-sample", "auto", &v);
        a->basis = v == 0 ? AM_BASIS_SHARED : v == 1 ? AM_BASIS_PER_SAMPLE : AM_BASIS_AUTO;
        return r;
    }
    case M_ITERS: return arg_int("iters", arg, 1, 20, &a->iters) ? 0 : EXIT_USAGE;
    case M_CLIP: return arg_float("clip", arg, 0, 1e9, &a->clip) ? 0 : EXIT_USAGE;
    case M_SIGMA: return arg_float("sigma", arg, 0, 1e6, &a->sigma) ? 0 : EXIT_USAGE;
    case M_NOISE_SEED:
        if (!arg_int("noise-seed", arg, 0, 2147483647, &v)) return EXIT_USAGE;
        a->noise_seed = (uint64_t)v, m->noise_seed_set = 1;
        return 0;
    case M_PROTECT: a->protect_grads = 1; return 0;
    case M_TEE: {
        int r = one_of("tee", arg, "inproc", "process", NULL, &v);
        m->process = v;
        return r;
    }
    case M_ACCEL: {
        int r = one_of("accel", arg, "cpu", "cuda", NULL, &v);
        m->cuda = v;
        return r;
    }
    case M_OVERLAP: {
        int r = one_of("overlap", arg, "auto", "on", "off", &v);
        m->overlap = v == 0 ? -1 : v == 1;
        return r;
    }
    case M_SHM: return arg_int("shm-mib", arg, 1, 1 << 20, &m->shm_mib) ? 0 : EXIT_USAGE;
    case M_KEY: m->key = arg; return 0;
    case M_TEE_MEM:
        if (!arg_int("tee-mem", arg, 1, 1 << 24, &v)) return EXIT_USAGE;
        am_mem_set_limit((size_t)v << 20);
        return 0;
    case M_USER: m->accel_user = arg; return 0;
    case M_RECORD: m->record = arg; return 0;
    case M_RECORD_STEPS: {
        unsigned lo, hi;
        char end;
        if (sscanf(arg, "%u-%u%c", &lo, &hi, &end) != 2 || lo > hi || hi > 1000000000u)
            return die(EXIT_USAGE, "--record-steps %s: give two step numbers A-B, A <= B", arg);
        m->record_first = lo, m->record_last = hi;
        return 0;
    }
    case M_TIMEOUT: return arg_int("reply-timeout", arg, 1, 86400, &m->reply_timeout_s) ? 0 : EXIT_USAGE;
    case M_VERIFY: m->verify = 1; return 0;
    case M_THREADS: return arg_int("threads", arg, 1, 1024, &m->threads) ? 0 : EXIT_USAGE;
    }
    return die(EXIT_USAGE, "internal: unhandled option --%s", o->name);
}

int cli_mode_check(cli_mode *m, int draw_key) {
    am_asym_cfg *a = &m->asym;
    if (!m->record && (m->record_first || m->record_last != UINT_MAX))
        return die(EXIT_USAGE, "--record-steps: needs --record DIR");
    if (a->sigma > 0.f && a->clip == 0.f) return die(EXIT_USAGE, "--sigma needs --clip: noise without a bound protects nothing");
    if (m->noise_opt && a->mode != AM_MODE_ASYMML)
        return die(EXIT_USAGE, "--%s applies to --mode asymml only (the residuals that cross); this run's mode is %s",
                   m->noise_opt, am_mode_name(a->mode));
    if (a->mode == AM_MODE_GPU_ONLY && !m->gpu_only_ok)
        return die(EXIT_USAGE, "--mode gpu-only is bench's baseline (every layer, the data and its labels on the "
                               "accelerator: no privacy); train and eval do not run it");
    if (am_mode_fixed_point(a->mode) && !m->quantized_ok)
        return die(EXIT_USAGE, "--mode %s is inference only, in fixed point (asymml infer, bench); train and eval do "
                               "not run it", am_mode_name(a->mode));
    if (m->cuda && !m->process)
        return die(EXIT_USAGE, "--accel cuda needs --tee process: the GPU's stack runs only in the accelerator server");
    if (m->accel_user && !m->process) return die(EXIT_USAGE, "--accel-user needs --tee process");
    if (m->accel_user && geteuid() != 0)
        return die(EXIT_USAGE, "--accel-user needs root: the server runs as this user when asymml is not root");
    /* With noise on and no --noise-seed, a secret key drawn here, in the
     * trusted process: a noise that followed from a seed on the command
     * line (which the host sees) could be regenerated and subtracted. */
    if (draw_key && a->sigma > 0.f && !m->noise_seed_set && am_asym_secret_noise_key(a)) return lib_fail("noise key");
    return 0;
}

void cli_plan_words(const am_asym_cfg *a, char *buf, size_t n) {
    const char *basis = a->basis == AM_BASIS_SHARED       ? "shared basis"
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

void cli_print_plan(FILE *f, const am_model *m) {
    fprintf(f, "plan:");
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) != AM_OK) continue;
        if (si.split) fprintf(f, " %d%s", si.r, si.basis == AM_BASIS_PER_SAMPLE ? "p" : "s");
        else fprintf(f, " -");
    }
    fprintf(f, " (rank per conv layer; s shared basis, p per-sample, - whole in the TEE)\n");
}
