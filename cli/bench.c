/* asymml bench: times training steps and inference passes of zoo models on
 * synthetic data, in tee-only mode and the modes asked for. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml bench [options]\n"
    "Time training steps (forward, loss, backward, SGD update) and inference passes\n"
    "on synthetic data; print ms per step and images/s. With --mode other than\n"
    "tee-only, also time that mode and print the TEE's share of each step (the step\n"
    "minus the time the TEE waited for the accelerator) and tee-only's time over it:\n"
    "the speedup that an infinitely fast accelerator would give (not for gpu-only,\n"
    "where the TEE only hands over the batch); and tee-only's step over the mode's\n"
    "whole step: the speedup measured with this accelerator. Each mode's trusted\n"
    "working set per step follows, with a *modelled* SGX1 step time: the step measured\n"
    "here plus the page swaps that an LRU enclave page cache of --epc MiB would make\n"
    "(a model, not a measurement). A summary table ends it.\n";

enum { B_MODELS = 1, B_MODES, B_INPUT, B_CLASSES, B_BATCH, B_STEPS, B_WARMUP, B_LAYERS, B_EPC, B_CSV, B_NOBASE };

static const cli_opt opts[] = {
    {"models", "LIST", B_MODELS, 0, "comma-separated zoo names (default vgg16,vgg19,resnet18,resnet34)"},
    {"modes", "LIST", B_MODES, 0, "several modes after tee-only (instead of --mode): asymml, lowrank-only, open,\n"
                                  "gpu-only (these two: no privacy), and inference only: quantized, slalom\n"
                                  "(its factors precomputed and sealed first, timed apart; unsealed in the\n"
                                  "passes, as infer --factors does)"},
    {"input", "C,H,W", B_INPUT, 0, "default 3,32,32"},
    {"classes", "N", B_CLASSES, 0, "default 10"},
    {"batch", "N", B_BATCH, 0, "default 32"},
    {"steps", "N", B_STEPS, 0, "timed steps of each kind (default 5)"},
    {"warmup", "N", B_WARMUP, 0, "untimed steps first (default 1)"},
    {"layers", NULL, B_LAYERS, 0, "the trusted side per kind of layer and per conv layer (rank, times, energy\n"
                                  "kept) against this machine's roofline (bandwidth and sgemm measured first)"},
    {"epc", "MIB", B_EPC, 0, "the modelled SGX1 enclave page cache (default 93, SGX1's usable EPC)"},
    {"csv", "FILE", B_CSV, 0, "also write the summary's rows to FILE as CSV (seconds, bytes)"},
    {"no-baseline", NULL, B_NOBASE, 0, "do not time tee-only first (no speedups; for timing one mode alone)"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct bench_opts {
    char models[1024];
    am_mode modes[8];
    int n_modes, classes, batch, steps, warm, layers, no_base;
    am_shape in;
    cli_mode mode;
    bench_limits lim;
    bench_sgx_cfg sgx;
    const char *csv;
} bench_opts;

/* The summary table's rows. */
typedef struct bench_row {
    char model[40], mode[16];
    double train, infer, sp_train, sp_infer;
    double tee_train, tee_infer; /* the TEE's share: the step minus its wait for the accelerator */
    double pre;                  /* slalom: the precomputation's seconds per batch (not in the pass) */
    bench_sgx sgx;
} bench_row;
static bench_row g_rows[64];
static int g_nrows;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    bench_opts *b = ctx;
    switch (o->id) {
    case B_LAYERS: b->layers = 1; return 0;
    case B_EPC: {
        int mib;
        if (!arg_int("epc", arg, 1, 1 << 20, &mib)) return EXIT_USAGE;
        b->sgx.epc_mib = mib;
        return 0;
    }
    case B_CSV: b->csv = arg; return 0;
    case B_NOBASE: b->no_base = 1; return 0;
    case B_MODES: {
        char buf[256], *sv = NULL;
        snprintf(buf, sizeof buf, "%s", arg);
        b->n_modes = 0;
        for (char *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
            if (b->n_modes == 8) return die(EXIT_USAGE, "--modes: at most 8 modes");
            if (am_mode_parse(t, &b->modes[b->n_modes]) != AM_OK) return die(EXIT_USAGE, "--modes: %s", am_last_error());
            b->n_modes++;
        }
        return b->n_modes ? 0 : die(EXIT_USAGE, "--modes: empty list");
    }
    case B_MODELS: snprintf(b->models, sizeof b->models, "%s", arg); return 0;
    case B_INPUT: return arg_shape("input", arg, &b->in) ? 0 : EXIT_USAGE;
    case B_CLASSES: return arg_int("classes", arg, 2, 1000000, &b->classes) ? 0 : EXIT_USAGE;
    case B_BATCH: return arg_int("batch", arg, 1, 4096, &b->batch) ? 0 : EXIT_USAGE;
    case B_STEPS: return arg_int("steps", arg, 1, 100000, &b->steps) ? 0 : EXIT_USAGE;
    case B_WARMUP: return arg_int("warmup", arg, 0, 100000, &b->warm) ? 0 : EXIT_USAGE;
    }
    return cli_mode_option(&b->mode, o, arg);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of a training step (mode 0) or an inference pass (1), and
 * the median of the accelerator's share of it. */
int bench_time_steps(am_model *m, am_sgd *opt, am_tensor *x, const int32_t *lab, am_rng *r, int mode, int steps,
                      int warm, double *t, double *acc, double out[3], double *sgd_s, const char *label) {
    const int tty = isatty(STDOUT_FILENO); /* progress, on a terminal: each step, rewritten in place */
    *sgd_s = 0;
    double busy = 0;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) am_model_reset_timers(m), busy = am_model_accel_seconds(m);
        double a0 = am_model_blocked_seconds(m), t0 = now_s();
        float loss;
        am_model_set_step(m, (uint64_t)i);
        if (am_model_forward(m, x, mode == 0, r) || (mode == 0 && (am_model_loss(m, lab, &loss) || am_model_backward(m))))
            return lib_fail("bench");
        double ts = now_s();
        if (mode == 0 && am_model_sgd_step(m, opt, 1e-3f)) return lib_fail("bench");
        if (i >= warm) {
            *sgd_s += now_s() - ts;
            t[i - warm] = now_s() - t0;
            acc[i - warm] = am_model_blocked_seconds(m) - a0;
        }
        if (tty) printf("\r\033[K%s %s: step %d/%d%s", label, mode ? "infer" : "train", i + 1, warm + steps,
                        i < warm ? " (warm-up)" : "");
        if (tty) fflush(stdout);
    }
    if (tty) printf("\r\033[K");
    qsort(t, (size_t)steps, sizeof(double), cmp_double);
    qsort(acc, (size_t)steps, sizeof(double), cmp_double);
    out[0] = t[steps / 2];
    out[1] = acc[steps / 2];
    out[2] = (am_model_accel_seconds(m) - busy) / steps; /* mean accelerator compute */
    return 0;
}

static void note(const char *model, const char *mode, const double tr[3], const double in[3], double sp_train,
                 double sp_infer, const bench_sgx *sgx) {
    if (g_nrows == (int)(sizeof g_rows / sizeof *g_rows)) return;
    bench_row *r = &g_rows[g_nrows++];
    snprintf(r->model, sizeof r->model, "%s", model);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    r->train = tr[0], r->infer = in[0], r->sp_train = sp_train, r->sp_infer = sp_infer, r->sgx = *sgx;
    r->tee_train = tr[0] - tr[1], r->tee_infer = in[0] - in[1];
    r->pre = NAN;
}

/* A fixed-point mode: inference only (bench_slalom.c). */
static int bench_fixed_mode(const bench_opts *o, const char *name, am_model *m, am_mode md, am_backend *be,
                            am_tensor *x, double *t, double *ac, const double base[2][3]) {
    double in[3], pre, none[3] = {NAN, NAN, NAN};
    int rc = bench_fixed(m, md, be, x, o->steps, o->warm, t, ac, in, &pre, name);
    if (rc) return rc;
    char sp[64] = "";
    if (!o->no_base) snprintf(sp, sizeof sp, "  step speedup over tee-only: infer %.2fx", base[1][0] / in[0]);
    printf("%-18s %-8s infer %8.1f ms (TEE %8.1f, waited %8.1f)", name, am_mode_name(md), in[0] * 1e3,
           (in[0] - in[1]) * 1e3, in[1] * 1e3);
    if (md == AM_MODE_SLALOM) printf("  precompute %8.1f ms a batch (before, not in the pass)", pre * 1e3);
    printf("%s\n", sp);
    bench_sgx sgx = {0};
    note(name, am_mode_name(md), none, in, NAN, base[1][0] / in[0], &sgx);
    if (md == AM_MODE_SLALOM) g_rows[g_nrows - 1].pre = pre;
    return 0;
}

/* One model in tee-only mode, then in each mode asked for. */
static int bench_one(const bench_opts *o, const char *name, am_backend *be) {
    am_model *m;
    int rc = make_model(name, NULL, o->in, o->classes, &m);
    if (rc) return rc;
    const int B = o->batch, steps = o->steps, warm = o->warm;
    am_sgd *opt = NULL;
    am_tensor x = {0};
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)B);
    double *t = malloc(sizeof(double) * (size_t)steps), *ac = malloc(sizeof(double) * (size_t)steps);
    am_shape s = o->in;
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
    for (int b = 0; b < B; b++) lab[b] = (int32_t)am_rng_below(&r, (uint32_t)o->classes);
    double base[2][3] = {{NAN, NAN, NAN}, {NAN, NAN, NAN}}, sgd_s;
    bench_sgx sgx;
    am_mem_reset_peak();
    for (int k = 0; k < 2 && !o->no_base; k++) {
        if ((rc = bench_time_steps(m, opt, &x, lab, &r, k, steps, warm, t, ac, base[k], &sgd_s, name))) goto out;
        if (k == 0 && o->layers) {
            printf("%s tee-only:\n", name);
            bench_layers(m, steps, sgd_s, &o->lim);
        }
    }
    if (!o->no_base) {
        printf("%-18s %dx%dx%d batch %d  tee-only  train %8.1f ms %7.1f img/s  infer %8.1f ms %7.1f img/s  peak RSS %.0f "
               "MiB  heap %.0f MiB\n",
               name, o->in.c, o->in.h, o->in.w, B, base[0][0] * 1e3, B / base[0][0], base[1][0] * 1e3, B / base[1][0],
               peak_rss_mib(), (double)am_mem_peak() / (1 << 20));
        if ((rc = bench_sgx_model(m, opt, &o->sgx, &sgx))) goto out;
        bench_sgx_print(name, "tee-only", &o->sgx, &sgx, base[0][0], base[1][0]);
        fflush(stdout);
        note(name, "tee-only", base[0], base[1], 1, 1, &sgx);
    }
    for (int mi = 0; mi < o->n_modes; mi++) {
        am_asym_cfg a = o->mode.asym;
        a.mode = o->modes[mi];
        if (a.mode == AM_MODE_TEE_ONLY) continue;
        if (am_mode_fixed_point(a.mode)) {
            if ((rc = bench_fixed_mode(o, name, m, a.mode, be, &x, t, ac, base))) goto out;
            continue;
        }
        /* A key of its own for every plan: no two share noise. */
        if (a.sigma > 0.f && !o->mode.noise_seed_set && am_asym_secret_noise_key(&a)) {
            rc = lib_fail("noise key");
            goto out;
        }
        if (am_model_set_asym(m, &a, a.mode == AM_MODE_LOWRANK_ONLY ? NULL : be)) {
            rc = lib_fail(name);
            goto out;
        }
        am_model_verify(m, o->mode.verify);
        if (a.mode == AM_MODE_GPU_ONLY || a.mode == AM_MODE_OPEN) cli_privacy_start(stdout, m, &a, o->mode.process, 1);
        double md[2][3];
        am_mem_reset_peak();
        for (int k = 0; k < 2; k++) {
            if ((rc = bench_time_steps(m, opt, &x, lab, &r, k, steps, warm, t, ac, md[k], &sgd_s, name))) goto out;
            if (k == 0 && o->layers && a.mode != AM_MODE_GPU_ONLY) {
                printf("%s %s:\n", name, am_mode_name(a.mode));
                bench_layers(m, steps, sgd_s, &o->lim);
            }
        }
        /* The TEE's share: the step minus the time the TEE waited for the
         * accelerator (all of its compute in one process; what did not
         * overlap with TEE work when it is another process). */
        double tee_tr = md[0][0] - md[0][1], tee_in = md[1][0] - md[1][1];
        char sp[96] = "";
        if (a.mode != AM_MODE_GPU_ONLY && !o->no_base)
            snprintf(sp, sizeof sp, "TEE speedup over tee-only: train %.2fx infer %.2fx  ", base[0][0] / tee_tr,
                     base[1][0] / tee_in);
        printf("%-18s %-8s train %8.1f ms (TEE %8.1f, waited %8.1f, accelerator busy %8.1f)  infer %8.1f ms (TEE %8.1f)  "
               "%sheap %.0f MiB\n",
               name, am_mode_name(a.mode), md[0][0] * 1e3, tee_tr * 1e3, md[0][1] * 1e3, md[0][2] * 1e3, md[1][0] * 1e3,
               tee_in * 1e3, sp, (double)am_mem_peak() / (1 << 20));
        if (!o->no_base)
            printf("%-18s %-8s step speedup over tee-only: train %.2fx infer %.2fx\n", name, am_mode_name(a.mode),
                   base[0][0] / md[0][0], base[1][0] / md[1][0]);
        if ((rc = bench_sgx_model(m, opt, &o->sgx, &sgx))) goto out;
        bench_sgx_print(name, am_mode_name(a.mode), &o->sgx, &sgx, md[0][0], md[1][0]);
        fflush(stdout);
        note(name, am_mode_name(a.mode), md[0], md[1], base[0][0] / md[0][0], base[1][0] / md[1][0], &sgx);
    }
out:
    free(lab);
    free(t);
    free(ac);
    am_tensor_free(&x);
    am_sgd_free(opt);
    am_model_free(m);
    return rc;
}

/* The summary's rows as CSV: one per model and mode, seconds and bytes. */
static int write_csv(const bench_opts *o, FILE *f) {
    fprintf(f, "model,mode,input,batch,threads,train_s,infer_s,tee_train_s,tee_infer_s,ws_train_bytes,ws_infer_bytes,epc_mib,ghz,"
               "swaps_train,swaps_infer,sgx1_train_s,sgx1_train_lo_s,sgx1_train_hi_s,sgx1_infer_s,sgx1_infer_lo_s,"
               "sgx1_infer_hi_s,precompute_s\n");
    for (int i = 0; i < g_nrows; i++) {
        const bench_row *r = &g_rows[i];
        const bench_sgx *s = &r->sgx;
        fprintf(f, "%s,%s,%dx%dx%d,%d,%d,%.6f,%.6f,%.6f,%.6f,%.0f,%.0f,%.0f,%.3f,%.0f,%.0f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n",
                r->model, r->mode, o->in.c, o->in.h, o->in.w, o->batch, am_get_threads(), r->train, r->infer, r->tee_train, r->tee_infer,
                s->ws_train, s->ws_infer, o->sgx.epc_mib, o->sgx.ghz, s->swaps_train, s->swaps_infer,
                r->train + s->add_train[1], r->train + s->add_train[0], r->train + s->add_train[2],
                r->infer + s->add_infer[1], r->infer + s->add_infer[0], r->infer + s->add_infer[2], r->pre);
    }
    return fflush(f) ? die(EXIT_RUNTIME, "bench: cannot write %s", o->csv) : 0;
}

/* Every model named, described at the input and classes asked for (not
 * built: that is bench_one's): a wrong name is said before anything is
 * timed. */
static int check_models(const bench_opts *o) {
    char list[sizeof o->models], *save = NULL;
    snprintf(list, sizeof list, "%s", o->models);
    for (char *nm = strtok_r(list, ",", &save); nm; nm = strtok_r(NULL, ",", &save)) {
        char *d = NULL;
        int rc = describe(nm, NULL, o->in, o->classes, &d);
        free(d);
        if (rc) return rc;
    }
    return 0;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o = {.models = "vgg16,vgg19,resnet18,resnet34", .classes = 10, .batch = 32, .steps = 5, .warm = 1,
                    .in = am_shape4(1, 3, 32, 32), .sgx = {93, 0}};
    cli_mode_init(&o.mode);
    o.mode.gpu_only_ok = o.mode.quantized_ok = 1;
    const cli_opt *const tables[] = {opts, cli_mode_opts, NULL};
    int rc = cli_parse("bench", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = check_models(&o))) return rc;
    if (!o.n_modes) o.modes[o.n_modes++] = o.mode.asym.mode;
    o.sgx.ghz = bench_clock_ghz();
    int need = 0, asymml = 0;
    for (int i = 0; i < o.n_modes; i++)
        need |= o.modes[i] == AM_MODE_ASYMML || o.modes[i] == AM_MODE_OPEN || o.modes[i] == AM_MODE_GPU_ONLY ||
                o.modes[i] == AM_MODE_SLALOM;
    for (int i = 0; i < o.n_modes; i++) asymml |= o.modes[i] == AM_MODE_ASYMML;
    if (asymml) o.mode.noise_opt = NULL; /* the noise options are asymml's */
    if ((rc = cli_mode_check(&o.mode, 0)) || (rc = tee_begin(&o.mode))) return rc;
    cli_tee *tee = NULL;
    rc = tee_open(&o.mode, need, NULL, &tee);
    /* Opened before the lockdown, which forbids opening files. */
    FILE *csv = NULL;
    if (!rc && o.csv && !(csv = fopen(o.csv, "w"))) rc = die(EXIT_RUNTIME, "bench: cannot write %s", o.csv);
    if (!rc) rc = tee_lockdown(tee, -1, NULL);
    if (!rc) {
        char where[1200];
        tee_words(tee, where, sizeof where);
        printf("bench: %d %s, median of %d %s after %d warm-up; accelerator: %s\n", am_get_threads(),
               plural(am_get_threads(), "thread", "threads"), o.steps, plural(o.steps, "step", "steps"), o.warm, where);
        printf("bench: CPU BLAS %s\n", am_blas_describe());
        if (o.layers) {
            bench_limits_measure(&o.lim);
            printf("bench: this machine's limits with these threads: triad %.1f GB/s, sgemm %.1f GFLOP/s\n",
                   o.lim.bw / 1e9, o.lim.flops / 1e9);
        }
    }
    char *save = NULL;
    for (char *nm = rc ? NULL : strtok_r(o.models, ",", &save); nm && !rc; nm = strtok_r(NULL, ",", &save))
        rc = bench_one(&o, nm, tee_backend(tee));
    if (!rc) {
        printf("\nsummary (%dx%dx%d, batch %d; median ms per step; speedup: tee-only's step over the mode's)\n", o.in.c,
               o.in.h, o.in.w, o.batch);
        printf("(TEE x: tee-only's training step over the TEE's share of the mode's; WS: trusted working set of a\n"
               " training step; SGX1 model: that step with the modelled paging, not measured)\n");
        printf("%-18s %-12s %10s %10s %14s %14s %7s %8s %15s\n", "model", "mode", "train ms", "infer ms", "train speedup",
               "infer speedup", "TEE x", "WS MiB", "SGX1 model ms");
        for (int i = 0; i < g_nrows; i++) {
            const bench_row *r = &g_rows[i];
            char tx[16] = "-", st[16] = "-", si[16] = "-";
            if (strcmp(r->mode, "gpu-only") && r->tee_train > 0 && !isnan(r->sp_train))
                snprintf(tx, sizeof tx, "%.2fx", r->train * r->sp_train / r->tee_train);
            if (!isnan(r->sp_train)) snprintf(st, sizeof st, "%.2fx", r->sp_train);
            if (!isnan(r->sp_infer)) snprintf(si, sizeof si, "%.2fx", r->sp_infer);
            char tr[24] = "-", ws[24] = "-", sg[24] = "-";
            if (!isnan(r->train)) {
                snprintf(tr, sizeof tr, "%.1f", r->train * 1e3);
                snprintf(ws, sizeof ws, "%.0f", r->sgx.ws_train / 1048576);
                snprintf(sg, sizeof sg, "%.0f", (r->train + r->sgx.add_train[1]) * 1e3);
            }
            printf("%-18s %-12s %10s %10.1f %14s %14s %7s %8s %15s\n", r->model, r->mode, tr, r->infer * 1e3, st, si, tx,
                   ws, sg);
            if (!isnan(r->pre)) printf("%-18s %-12s precompute %.1f ms a batch, before the passes\n", "", "", r->pre * 1e3);
        }
        if (csv) rc = write_csv(&o, csv);
    }
    if (csv && fclose(csv) && !rc) rc = die(EXIT_RUNTIME, "bench: cannot write %s", o.csv);
    int rc2 = tee_close(tee, rc != 0);
    return rc ? rc : rc2;
}
