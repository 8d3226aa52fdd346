/* Attacks on the host's recorded view (--record; src/untrusted/recorder.h),
 * for the statements asymml makes about what leaks in asymml mode. The
 * attacker reads only the recording; the evaluator (the rest of this
 * program) regenerates the ground truth from the data and the run's
 * checkpoints, which the host never sees, to score it.
 *
 *   attack_hostview labels REC DATA LIMIT BATCH SEED
 *     Label inference from the output gradients that cross in the clear:
 *     within each step's batch, each sample's nearest neighbour by cosine
 *     of its output gradient. Prints the share of samples whose neighbour
 *     has their label (chance: about 1/10), over all steps.
 *   attack_hostview lowrank REC DATA LIMIT BATCH SEED LR CKDIR
 *     The trusted low-rank part M from the weight updates, at small batches
 *     (SGD without momentum or weight decay, constant LR, no noise: the
 *     host knows the optimizer's settings): g = (W_t - W_t+1) / LR, minus
 *     the residual's part corr(R, G), which the host computes itself,
 *     leaves sum_b corr(M_b, G_b), linear in M: solved by least squares,
 *     channel by channel, for every sample of the batch at once. Prints
 *     the relative error of M and the cosine of M + R with the layer's
 *     true input, for every step with a checkpoint.
 *   attack_hostview truth DATA LIMIT BATCH SEED FIRST STEPS OUT [CKDIR LAYER]
 *     The evaluator's knowledge for attacks written elsewhere (eval/): the
 *     batches of steps FIRST to FIRST + STEPS - 1 of the run (counted from
 *     0 across epochs) as its loader gave them, into OUT/: labels.i32
 *     (int32 per sample), images.f32 (float32 pixels in [0, 1], step by
 *     step, sample by sample, C x H x W) and truth.json (their shape); with
 *     the run's checkpoint directory (saved every step), also inputs.f32:
 *     layer LAYER's true input at each of those steps. Never the
 *     attacker's to read.
 *   attack_hostview weights CHECKPOINT OUT
 *     The model's weights (OUT/weights.f32, in the model's order, PyTorch's
 *     layouts) and its input normalization (OUT/model.json): what the
 *     white-box attacker is given.
 *   attack_hostview uniform REC KIND
 *     Slalom's inputs as the host receives them: every recorded input of
 *     that kind ("blinded": int32 residues mod p = 2^31 - 1) read as int32
 *     and tested for uniformity over [-(p-1)/2, (p-1)/2], a chi-square over
 *     64 equal bins per request (63 degrees of freedom; the upper 1e-6
 *     point, 131.7). Prints the worst; exit 1 if any request exceeds it.
 * Exit 0, or 2 on bad input. */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"

typedef struct rec {
    int step, layer, input, shape[4];
    char request[32], kind[32];
    const float *v;
} rec;

static rec *recs;
static int n_recs;

static int load(const char *dir) {
    char p[4200], line[2048];
    snprintf(p, sizeof p, "%s/buffers.f32", dir);
    FILE *fd = fopen(p, "rb");
    snprintf(p, sizeof p, "%s/index.jsonl", dir);
    FILE *fi = fopen(p, "r");
    if (!fd || !fi) return 0;
    fseek(fd, 0, SEEK_END);
    size_t bytes = (size_t)ftell(fd);
    fseek(fd, 0, SEEK_SET);
    float *all = malloc(bytes ? bytes : 1);
    if (!all || fread(all, 1, bytes, fd) != bytes) return 0;
    fclose(fd);
    while (fgets(line, sizeof line, fi)) {
        rec r;
        unsigned long long seq, off;
        size_t floats;
        if (sscanf(line,
                   "{\"seq\": %llu, \"step\": %d, \"layer\": %d, \"request\": \"%31[a-z-]\", \"input\": %d, \"kind\": "
                   "\"%31[a-z-]\", \"shape\": [%d, %d, %d, %d], \"offset\": %llu, \"floats\": %zu",
                   &seq, &r.step, &r.layer, r.request, &r.input, r.kind, &r.shape[0], &r.shape[1], &r.shape[2],
                   &r.shape[3], &off, &floats) != 12 ||
            off / 4 + floats > bytes / 4)
            return 0;
        r.v = all + off / 4;
        recs = realloc(recs, sizeof *recs * (size_t)(n_recs + 1));
        recs[n_recs++] = r;
    }
    fclose(fi);
    return 1;
}

/* The recording's entry of a step: request, input kind. */
static const rec *find(int step, const char *request, const char *kind) {
    for (int i = 0; i < n_recs; i++)
        if (recs[i].step == step && !strcmp(recs[i].request, request) && !strcmp(recs[i].kind, kind)) return &recs[i];
    return NULL;
}

/* The run's batches, as its loader gave them (the evaluator's knowledge). */
static int loader(const char *data, int limit, int batch, uint64_t seed, am_dataset *d, am_loader *l) {
    if (am_dataset_load(AM_DATA_IDX, data, "train", d) != AM_OK) return 0;
    am_dataset_truncate(d, limit);
    float mean[4], sd[4];
    am_dataset_stats(d, mean, sd);
    am_loader_cfg lc = {batch, seed, 0, 0};
    return am_loader_init(l, d, &lc, mean, sd) == AM_OK;
}

static int labels(char **a) {
    int limit = atoi(a[2]), B = atoi(a[3]);
    am_dataset d;
    am_loader l;
    if (!load(a[0]) || !loader(a[1], limit, B, (uint64_t)atoll(a[4]), &d, &l)) return 2;
    float *x = malloc(sizeof(float) * (size_t)B * d.c * d.h * d.w);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)B);
    long hit = 0, total = 0;
    for (int s = 0;; s++) {
        const rec *g = find(s, "conv-backward-filter", "output-gradient");
        if (!g || am_loader_next(&l, x, lab) != AM_OK) break;
        size_t n = (size_t)g->shape[1] * g->shape[2] * g->shape[3];
        for (int i = 0; i < B; i++) {
            double best = -2;
            int bj = -1;
            for (int j = 0; j < B; j++) {
                if (j == i) continue;
                double dot = 0, ni = 0, nj = 0;
                for (size_t k = 0; k < n; k++) {
                    double u = g->v[i * n + k], v = g->v[j * n + k];
                    dot += u * v, ni += u * u, nj += v * v;
                }
                double c = dot / (sqrt(ni * nj) + 1e-30);
                if (c > best) best = c, bj = j;
            }
            hit += lab[bj] == lab[i];
            total++;
        }
    }
    printf("labels: nearest neighbour by cosine of the output gradient has the sample's label for %ld of %ld samples "
           "(%.3f; chance about 0.1)\n", hit, total, total ? (double)hit / total : 0);
    free(x), free(lab);
    am_loader_free(&l);
    am_dataset_free(&d);
    return total ? 0 : 2;
}

/* sum_b corr(X_b, G_b), pad p, stride 1: dW[k][c][i][j] = sum_b sum_{oh,ow}
 * G_b[k][oh][ow] X_b[c][oh+i-p][ow+j-p]. */
static void corr(const float *X, const float *G, int B, int C, int H, int W, int K, int kh, int p, double *dW) {
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kh; j++) {
                    double s = 0;
                    for (int b = 0; b < B; b++)
                        for (int oh = 0; oh < H; oh++)
                            for (int ow = 0; ow < W; ow++) {
                                int h = oh + i - p, w = ow + j - p;
                                if (h >= 0 && h < H && w >= 0 && w < W)
                                    s += (double)G[(((size_t)b * K + k) * H + oh) * W + ow] *
                                         X[(((size_t)b * C + c) * H + h) * W + w];
                            }
                    dW[(((size_t)k * C + c) * kh + i) * kh + j] = s;
                }
}

/* Solves sum_b sum_{oh,ow} G_b[k][oh][ow] M_b[c][oh+i-p][ow+j-p] = D[k][c][i][j]
 * for every M_b[c] (H x W) of channel c at once, channel by channel, by
 * least squares. */
static void solve(const double *D, const float *G, int B, int C, int H, int W, int K, int kh, int p, float *M) {
    const int rows = K * kh * kh, cols = B * H * W;
    double *A = malloc(sizeof(double) * (size_t)rows * cols), *b = malloc(sizeof(double) * (size_t)(rows > cols ? rows : cols));
    for (int c = 0; c < C; c++) {
        memset(A, 0, sizeof(double) * (size_t)rows * cols);
        for (int k = 0; k < K; k++)
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kh; j++) {
                    int row = (k * kh + i) * kh + j;
                    b[row] = D[(((size_t)k * C + c) * kh + i) * kh + j];
                    for (int s = 0; s < B; s++)
                        for (int oh = 0; oh < H; oh++)
                            for (int ow = 0; ow < W; ow++) {
                                int h = oh + i - p, w = ow + j - p;
                                if (h >= 0 && h < H && w >= 0 && w < W)
                                    A[(size_t)row * cols + (size_t)s * H * W + h * W + w] +=
                                        G[(((size_t)s * K + k) * H + oh) * W + ow];
                            }
                }
        LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', rows, cols, 1, A, cols, b, 1);
        for (int s = 0; s < B; s++)
            for (int q = 0; q < H * W; q++) M[((size_t)s * C + c) * H * W + q] = (float)b[(size_t)s * H * W + q];
    }
    free(A);
    free(b);
}

static int lowrank(char **a) {
    int limit = atoi(a[2]), B = atoi(a[3]);
    double lr = atof(a[5]);
    am_dataset d;
    am_loader l;
    if (!load(a[0]) || !loader(a[1], limit, B, (uint64_t)atoll(a[4]), &d, &l)) return 2;
    float *x = malloc(sizeof(float) * (size_t)B * d.c * d.h * d.w);
    int32_t lab[64];
    int done = 0;
    double worst_err = 0, worst_cos = 1;
    for (int s = 0; B <= 64; s++) {
        const rec *w0 = find(s, "conv-forward", "weights"), *w1 = find(s + 1, "conv-forward", "weights");
        const rec *R = find(s, "conv-forward", "residual"), *G = find(s, "conv-backward-filter", "output-gradient");
        if (!w0 || !w1 || !R || !G || R->shape[0] != B || am_loader_next(&l, x, lab) != AM_OK) break;
        const int K = w0->shape[0], C = w0->shape[1], kh = w0->shape[2], H = R->shape[2], W = R->shape[3], p = kh / 2;
        const size_t nw = (size_t)K * C * kh * kh, nx = (size_t)B * C * H * W;
        /* The attacker: g from two weight tensors, less the residual's part. */
        double *g = malloc(sizeof(double) * nw), *dr = malloc(sizeof(double) * nw);
        float *M = malloc(sizeof(float) * nx);
        corr(R->v, G->v, B, C, H, W, K, kh, p, dr);
        for (size_t i = 0; i < nw; i++) g[i] = ((double)w0->v[i] - w1->v[i]) / lr - dr[i];
        solve(g, G->v, B, C, H, W, K, kh, p, M);
        /* The evaluator: the layer's true input from the checkpoint. */
        char ck[4300];
        snprintf(ck, sizeof ck, "%s/ckpt-%010d.amck", a[6], s);
        am_checkpoint cp;
        am_model *m;
        if (am_checkpoint_read(ck, &cp) != AM_OK) {
            free(g), free(dr), free(M);
            continue;
        }
        am_model_create(cp.desc, &m);
        memcpy(am_model_weights(m), cp.weights, cp.n_weights * sizeof(float));
        am_tensor xt = {am_shape4(B, d.c, d.h, d.w), x};
        am_layer_info li;
        am_model_layer_info(m, R->layer, &li);
        if (am_model_set_batch(m, B) || am_model_keep_outputs(m, 1) || am_model_forward(m, &xt, 0, NULL)) return 2;
        const float *X = am_model_output(m, li.in[0])->d;
        double e = 0, t = 0, cmin = 1;
        for (int b = 0; b < B; b++) {
            double dot = 0, nr = 0, ntrue = 0;
            for (size_t i = (size_t)b * nx / B; i < (size_t)(b + 1) * nx / B; i++) {
                double mt = (double)X[i] - R->v[i], rx = (double)M[i] + R->v[i];
                e += (M[i] - mt) * (M[i] - mt), t += mt * mt;
                dot += rx * X[i], nr += rx * rx, ntrue += (double)X[i] * X[i];
            }
            double cs = dot / sqrt(nr * ntrue);
            if (cs < cmin) cmin = cs;
        }
        double err = sqrt(e / t);
        printf("lowrank: step %d, batch %d: M recovered with relative error %.2e; cosine of M + R with the layer's "
               "input, worst sample %.6f\n", s, B, err, cmin);
        if (err > worst_err) worst_err = err;
        if (cmin < worst_cos) worst_cos = cmin;
        done++;
        am_model_free(m);
        am_checkpoint_free(&cp);
        free(g), free(dr), free(M);
    }
    printf("lowrank: %d steps; worst relative error %.2e, worst cosine %.6f\n", done, worst_err, worst_cos);
    free(x);
    am_loader_free(&l);
    am_dataset_free(&d);
    return done ? 0 : 2;
}

/* The layer's input that step s computed (the evaluator's: the trusted
 * weights of the checkpoint after s steps), for the batch x. */
static int layer_input(const char *ckdir, int s, int layer, const float *x, int B, const am_dataset *d, FILE *out,
                       int *shape) {
    char ck[4300];
    snprintf(ck, sizeof ck, "%s/ckpt-%010d.amck", ckdir, s);
    am_checkpoint cp;
    am_model *m = NULL;
    if (am_checkpoint_read(ck, &cp) != AM_OK) return fprintf(stderr, "truth: %s: %s\n", ck, am_last_error()), 0;
    am_tensor xt = {am_shape4(B, d->c, d->h, d->w), (float *)x};
    am_layer_info li;
    int ok = am_model_create(cp.desc, &m) == AM_OK && am_model_layer_info(m, layer, &li) == AM_OK;
    if (ok) memcpy(am_model_weights(m), cp.weights, cp.n_weights * sizeof(float));
    ok = ok && !am_model_set_batch(m, B) && !am_model_keep_outputs(m, 1) && !am_model_forward(m, &xt, 0, NULL);
    if (ok) {
        const am_tensor *X = am_model_output(m, li.in[0]);
        shape[0] = X->s.c, shape[1] = X->s.h, shape[2] = X->s.w;
        ok = fwrite(X->d, sizeof(float), am_shape_numel(X->s), out) == am_shape_numel(X->s);
    }
    if (m) am_model_free(m);
    am_checkpoint_free(&cp);
    return ok;
}

static int truth(char **a, int argc) {
    int limit = atoi(a[1]), B = atoi(a[2]), first = atoi(a[4]), steps = atoi(a[5]);
    const char *ckdir = argc == 9 ? a[7] : NULL;
    int layer = argc == 9 ? atoi(a[8]) : -1, shape[3] = {0, 0, 0};
    am_dataset d;
    am_loader l;
    if (B < 1 || first < 0 || steps < 1 || !loader(a[0], limit, B, (uint64_t)atoll(a[3]), &d, &l)) return 2;
    float mean[4], sd[4];
    am_dataset_stats(&d, mean, sd);
    const int spe = am_loader_steps_per_epoch(&l);
    if (am_loader_seek(&l, first / spe, first % spe) != AM_OK) return 2;
    const size_t per = (size_t)d.c * d.h * d.w;
    float *x = malloc(sizeof(float) * (size_t)B * per);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)B);
    char p[4200];
    snprintf(p, sizeof p, "%s/images.f32", a[6]);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/labels.i32", a[6]);
    FILE *fl = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/inputs.f32", a[6]);
    FILE *fx = ckdir ? fopen(p, "wb") : NULL;
    int s = 0, ok = fi && fl && x && lab && (!ckdir || fx);
    for (; ok && s < steps && am_loader_next(&l, x, lab) == AM_OK; s++) {
        if (ckdir && !layer_input(ckdir, first + s, layer, x, B, &d, fx, shape)) ok = 0;
        const size_t plane = (size_t)d.h * d.w;
        for (int b = 0; b < B; b++) /* back from the loader's normalization to pixels */
            for (size_t k = 0; k < per; k++) x[b * per + k] = x[b * per + k] * sd[k / plane] + mean[k / plane];
        fwrite(x, sizeof(float), (size_t)B * per, fi);
        fwrite(lab, sizeof(int32_t), (size_t)B, fl);
    }
    ok = ok && s == steps;
    if (fi) ok &= !fclose(fi);
    if (fl) ok &= !fclose(fl);
    if (fx) ok &= !fclose(fx);
    snprintf(p, sizeof p, "%s/truth.json", a[6]);
    FILE *fj = ok ? fopen(p, "w") : NULL;
    if (fj)
        fprintf(fj, "{\"first\": %d, \"steps\": %d, \"batch\": %d, \"shape\": [%d, %d, %d], \"classes\": %d, "
                    "\"layer\": %d, \"input_shape\": [%d, %d, %d]}\n",
                first, steps, B, d.c, d.h, d.w, d.classes, layer, shape[0], shape[1], shape[2]);
    ok = fj && !fclose(fj);
    free(x), free(lab);
    am_loader_free(&l);
    am_dataset_free(&d);
    return ok ? 0 : 2;
}

/* A checkpoint's weights, float32 in the model's order (each layer's weight,
 * then its bias: PyTorch's layouts), and its input normalization. */
static int weights(char **a) {
    am_checkpoint cp;
    if (am_checkpoint_read(a[0], &cp) != AM_OK) return fprintf(stderr, "weights: %s\n", am_last_error()), 2;
    char p[4200];
    snprintf(p, sizeof p, "%s/weights.f32", a[1]);
    FILE *f = fopen(p, "wb");
    int ok = f && fwrite(cp.weights, sizeof(float), cp.n_weights, f) == cp.n_weights;
    if (f) ok &= !fclose(f);
    snprintf(p, sizeof p, "%s/model.json", a[1]);
    f = ok ? fopen(p, "w") : NULL;
    if (f) {
        fprintf(f, "{\"floats\": %zu, \"mean\": [", cp.n_weights);
        for (int c = 0; c < cp.channels; c++) fprintf(f, "%s%.9g", c ? ", " : "", (double)cp.mean[c]);
        fprintf(f, "], \"std\": [");
        for (int c = 0; c < cp.channels; c++) fprintf(f, "%s%.9g", c ? ", " : "", (double)cp.std[c]);
        fprintf(f, "], \"global_step\": %d}\n", cp.global_step);
        ok = !fclose(f);
    } else {
        ok = 0;
    }
    am_checkpoint_free(&cp);
    return ok ? 0 : 2;
}

/* Chi-square of every recorded input of a kind, as int32 residues. */
static int uniform(char **a) {
    if (!load(a[0])) return fprintf(stderr, "uniform: %s: cannot read the recording\n", a[0]), 2;
    const double p = 2147483647.0, h = (p - 1) / 2, crit = 131.7;
    double worst = 0;
    int n = 0, over = 0;
    for (int i = 0; i < n_recs; i++) {
        if (strcmp(recs[i].kind, a[1])) continue;
        size_t m = (size_t)recs[i].shape[0] * recs[i].shape[1] * recs[i].shape[2] * recs[i].shape[3];
        double cnt[64] = {0};
        for (size_t j = 0; j < m; j++) {
            int32_t v;
            memcpy(&v, recs[i].v + j, 4);
            double u = (double)v + h;
            cnt[u < 0 ? 0 : u >= p ? 63 : (int)(u * 64 / p)]++;
        }
        double e = (double)m / 64, t = 0;
        for (int b = 0; b < 64; b++) t += (cnt[b] - e) * (cnt[b] - e) / e;
        worst = t > worst ? t : worst;
        over += t > crit;
        n++;
    }
    if (!n) return fprintf(stderr, "uniform: no '%s' input in %s\n", a[1], a[0]), 2;
    printf("uniform: %d '%s' inputs, worst chi-square %.1f (63 dof; 1e-6 point %.1f); %d above it\n", n, a[1], worst, crit,
           over);
    return over ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "uniform")) return uniform(argv + 2);
    if (argc == 7 && !strcmp(argv[1], "labels")) return labels(argv + 2);
    if (argc == 9 && !strcmp(argv[1], "lowrank")) return lowrank(argv + 2);
    if ((argc == 9 || argc == 11) && !strcmp(argv[1], "truth")) return truth(argv + 2, argc - 2);
    if (argc == 4 && !strcmp(argv[1], "weights")) return weights(argv + 2);
    fprintf(stderr, "usage: attack_hostview labels REC DATA LIMIT BATCH SEED\n"
                    "       attack_hostview lowrank REC DATA LIMIT BATCH SEED LR CKDIR\n"
                    "       attack_hostview truth DATA LIMIT BATCH SEED FIRST STEPS OUT [CKDIR LAYER]\n"
                    "       attack_hostview weights CHECKPOINT OUT\n"
                    "       attack_hostview uniform REC KIND\n");
    return 2;
}
