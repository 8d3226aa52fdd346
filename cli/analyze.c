/* asymml analyze: per conv layer of a model, on a sample of the data, the
 * SVD-channel entropy, the rank each policy picks, the energy each keeps,
 * and the TEE and accelerator FLOPs when split at the ratio's rank. Runs in
 * this process only (nothing is sent anywhere). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml analyze --data DIR [--checkpoint PATH | --model NAME] [options]\n"
    "For each conv layer of a model, on a sample of the data: input shape, SVD-channel\n"
    "entropy, the rank each policy picks, the energy each keeps, and the TEE and\n"
    "accelerator FLOPs per training step when split at the ratio's rank.\n";

enum { A_DATA = 1, A_DATASET, A_CKPT, A_MODEL, A_SEED, A_SAMPLES, A_RATIO, A_TAU, A_RANK, A_THREADS, A_KEY };

static const cli_opt opts[] = {
    {"data", "DIR", A_DATA, 0, "dataset folder"},
    {"dataset", "KIND", A_DATASET, 0, "idx (default), cifar10, cifar100"},
    {"checkpoint", "PATH", A_CKPT, 0, "a trained model (file or directory); else --model, untrained"},
    {"model", "NAME", A_MODEL, 0, "zoo model (default lenet), initialized from --seed"},
    {"seed", "N", A_SEED, 0, "default 1"},
    {"samples", "N", A_SAMPLES, 0, "test images analyzed as one batch (default 64)"},
    {"ratio", "X", A_RATIO, 0, "ratio policy (default 0.0625)"},
    {"tau", "X", A_TAU, 0, "energy policy: residual share below X (default 0.05)"},
    {"rank", "N", A_RANK, 0, "fixed policy (default 4)"},
    {"threads", "N", A_THREADS, 0, "default: all cores"},
    {"key", "FILE", A_KEY, 0, "open sealed data and checkpoints"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct an_opts {
    const char *data, *ckpt, *model;
    am_data_kind kind;
    int seed, n, fixed;
    float ratio, tau;
    cli_mode mode;
} an_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    an_opts *a = ctx;
    switch (o->id) {
    case A_DATA: a->data = arg; return 0;
    case A_DATASET: return am_data_kind_parse(arg, &a->kind) == AM_OK ? 0 : die(EXIT_USAGE, "--dataset: %s", am_last_error());
    case A_CKPT: a->ckpt = arg; return 0;
    case A_MODEL: a->model = arg; return 0;
    case A_SEED: return arg_int("seed", arg, 0, 2147483647, &a->seed) ? 0 : EXIT_USAGE;
    case A_SAMPLES: return arg_int("samples", arg, 2, 4096, &a->n) ? 0 : EXIT_USAGE;
    case A_RATIO: return arg_float("ratio", arg, 1e-6, 1, &a->ratio) ? 0 : EXIT_USAGE;
    case A_TAU: return arg_float("tau", arg, 1e-6, 0.999, &a->tau) ? 0 : EXIT_USAGE;
    case A_RANK: return arg_int("rank", arg, 1, 65536, &a->fixed) ? 0 : EXIT_USAGE;
    case A_THREADS: return arg_int("threads", arg, 1, 1024, &a->mode.threads) ? 0 : EXIT_USAGE;
    case A_KEY: a->mode.key = arg; return 0;
    }
    return EXIT_USAGE;
}

/* One conv layer's row; tee and all accumulate the FLOP totals. */
static int layer_row(const an_opts *o, am_model *m, am_model *plan, int i, int ci, int n, double *tee, double *all) {
    am_layer_info li, xi;
    am_model_layer_info(m, i, &li);
    am_split_info si;
    am_model_split_info(plan, ci, &si);
    const am_tensor *X = am_model_output(m, li.in[0]);
    am_model_layer_info(m, li.in[0], &xi);
    const int C = X->s.c, N = X->s.h * X->s.w;
    float *s = malloc(sizeof(float) * (size_t)C * 2);
    float *tmp = malloc(sizeof(float) * ((size_t)C * N + (size_t)C * C + (size_t)C * N));
    if (!s || !tmp || am_exact_basis(X->d, n, C, N, 1, NULL, s) != AM_OK) {
        free(s), free(tmp);
        return lib_fail("analyze");
    }
    double mu = am_svd_entropy(s, C);
    int r_ratio = am_rank_pick(AM_RANK_RATIO, o->ratio, s, C), r_ent = am_rank_pick(AM_RANK_ENTROPY, 0, s, C);
    int r_tau = am_rank_pick(AM_RANK_ENERGY, o->tau, s, C), r_fix = am_rank_pick(AM_RANK_FIXED, o->fixed, s, C);
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
    free(s);
    free(tmp);
    char ck[24], hw[24];
    snprintf(ck, sizeof ck, "%d->%d", C, li.out.c);
    snprintf(hw, sizeof hw, "%dx%d", X->s.h, X->s.w);
    double accel = si.split ? si.whole_flops : 0, teef = si.split ? si.tee_flops : si.whole_flops;
    *tee += teef;
    *all += si.whole_flops;
    printf("%-5d %-10s %-9s %7.3f | %5d %5d %5d %5d | %7.4f %7.4f %7.4f %7.4f | %9.1f %9.1f %s\n", i, ck, hw, mu, r_ratio,
           r_ent, r_tau, r_fix, shared, tot > 0 ? per / tot : 1, runtime, tot > 0 ? light / tot : 1, teef / 1e6,
           accel / 1e6, si.split ? "split" : (li.in[0] == 0 ? "whole (first conv)" : "whole (cheaper)"));
    return 0;
}

/* The model (from a checkpoint, or a zoo model initialized) and its
 * normalization. */
static int get_model(const an_opts *o, const am_dataset *d, am_model **m, float *mean, float *sd) {
    if (!o->ckpt) {
        int rc = make_model(o->model, NULL, am_shape4(1, d->c, d->h, d->w), d->classes, m);
        if (rc) return rc;
        am_model_init(*m, (uint64_t)o->seed);
        am_dataset_stats(d, mean, sd);
        return 0;
    }
    am_checkpoint ck;
    if (am_checkpoint_load(o->ckpt, &ck, NULL, 0, NULL, 0) != AM_OK || am_model_create(ck.desc, m) != AM_OK) {
        am_checkpoint_free(&ck);
        return lib_fail("checkpoint");
    }
    int rc = 0;
    if (am_model_weights_len(*m) != ck.n_weights || am_model_buffers_len(*m) != ck.n_buffers || ck.channels != d->c)
        rc = die(EXIT_RUNTIME, "%s: does not match its model or this data", o->ckpt);
    else {
        memcpy(am_model_weights(*m), ck.weights, ck.n_weights * sizeof(float));
        memcpy(am_model_buffers(*m), ck.buffers, ck.n_buffers * sizeof(float));
        memcpy(mean, ck.mean, sizeof ck.mean);
        memcpy(sd, ck.std, sizeof ck.std);
    }
    am_checkpoint_free(&ck);
    return rc;
}

static int analyze(const an_opts *o, am_dataset *d) {
    int n = d->n < o->n ? d->n : o->n, rc;
    am_model *m = NULL, *plan = NULL;
    float mean[4], sd[4];
    if ((rc = get_model(o, d, &m, mean, sd))) return rc;
    am_shape in = am_model_input_shape(m);
    float *x = malloc(sizeof(float) * (size_t)n * d->c * d->h * d->w);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)n);
    if (in.c != d->c || in.h != d->h || in.w != d->w)
        rc = die(EXIT_RUNTIME, "the model takes %dx%dx%d images; the data has %dx%dx%d", in.c, in.h, in.w, d->c, d->h, d->w);
    else if (!x || !lab || !idx)
        rc = die(EXIT_RUNTIME, "out of memory");
    for (int i = 0; !rc && i < n; i++) idx[i] = (uint32_t)i;
    in.n = n;
    am_tensor xt = {in, x};
    /* The planner's view at the ratio's rank, for the FLOP split (the same
     * plan as asymml mode's; lowrank-only needs no accelerator). */
    am_asym_cfg ac = am_asym_defaults();
    ac.mode = AM_MODE_LOWRANK_ONLY;
    ac.rank_value = o->ratio;
    if (!rc && (am_dataset_batch(d, idx, n, mean, sd, x, lab) || am_model_set_batch(m, n) || am_model_keep_outputs(m, 1) ||
                am_model_forward(m, &xt, 0, NULL) || am_model_create(am_model_desc(m), &plan) ||
                am_model_set_batch(plan, n) || am_model_set_asym(plan, &ac, NULL)))
        rc = lib_fail("analyze");
    if (!rc) {
        printf("analyze: %d images; energy = share of ||X||^2 kept by the rank; exact over the batch (shared) and\n"
               "per sample (mean), and what the runtime's shared basis (2 iterations) and light SVD (T=2) keep\n", n);
        printf("%-5s %-10s %-9s %7s | %5s %5s %5s %5s | %7s %7s %7s %7s | %9s %9s %s\n", "layer", "C->K", "HxW", "entropy",
               "r/C", "ent", "tau", "fixed", "shared", "sample", "runtime", "light", "TEE MF", "accel MF", "plan");
    }
    double tee = 0, all = 0;
    for (int i = 0, ci = 0; !rc && i < am_model_num_layers(m); i++) {
        am_layer_info li;
        am_model_layer_info(m, i, &li);
        if (!strcmp(li.kind, "conv")) rc = layer_row(o, m, plan, i, ci++, n, &tee, &all);
    }
    if (!rc)
        printf("conv FLOPs per training step: TEE %.1f M of %.1f M done whole (%.1f%%), at rank ratio %g\n", tee / 1e6,
               all / 1e6, 100 * tee / (all > 0 ? all : 1), (double)o->ratio);
    free(x);
    free(lab);
    free(idx);
    am_model_free(plan);
    am_model_free(m);
    return rc;
}

int cmd_analyze(int argc, char **argv) {
    an_opts o = {.model = "lenet", .kind = AM_DATA_IDX, .seed = 1, .n = 64, .fixed = 4, .ratio = 1.f / 16, .tau = 0.05f};
    cli_mode_init(&o.mode);
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("analyze", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.data) return die(EXIT_USAGE, "analyze: --data DIR is required");
    if ((rc = tee_begin(&o.mode))) return rc;
    am_dataset d = {0};
    if (!(rc = load_data(o.kind, o.data, "test", 0, &d))) rc = analyze(&o, &d);
    am_dataset_free(&d);
    return rc;
}
