/* What the program says about privacy, as the project's PRIVACY.md sets out:
 * what crosses to the accelerator and what is known to leak from it, said
 * when a run starts; an epsilon only with its scope (the residual releases
 * alone) and the signal-to-noise statement, when it ends. */
#include <math.h>
#include <string.h>

#include "cli.h"

int cli_split_layers(const am_model *m) {
    int n = 0;
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        if (am_model_split_info(m, i, &si) == AM_OK) n += si.split;
    }
    return n;
}

long cli_smallest_release(const am_model *m) {
    long best = 0;
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        am_layer_info li, xi;
        if (am_model_split_info(m, i, &si) != AM_OK || !si.split) continue;
        am_model_layer_info(m, si.layer, &li);
        am_model_layer_info(m, li.in[0], &xi);
        long d = (long)xi.out.c * xi.out.h * xi.out.w;
        if (!best || d < best) best = d;
    }
    return best;
}

/* What the evaluation's attacks recovered from the residuals in the setting
 * nearest this run's (docs/evaluation.md, written by scripts/privacy-eval.sh;
 * tests/cli_test.sh checks each figure against it). */
static void measured(FILE *f, const am_asym_cfg *a) {
    if (a->sigma > 0.f)
        fprintf(f, "measured on the residuals alone (docs/evaluation.md: LeNet on Fashion-MNIST, rank 1/8, clip 0.25, "
                   "sigma 0.5 to 2): a decoder trained on public images did no better than their mean image "
                   "(9.6 dB to 9.7 dB PSNR against 10.9 dB; 24.0 dB without noise), and those runs were no more "
                   "accurate than lowrank-only, which sends nothing\n");
    else
        fprintf(f, "measured on the residuals alone (docs/evaluation.md: LeNet on Fashion-MNIST, rank 1/8, no noise): a "
                   "decoder trained on public images reconstructed the training images at 24.0 dB PSNR given the "
                   "trained model, 17.3 dB without it (their mean image: 10.9 dB), a classifier still recognising "
                   "85.5%% and 85.9%% of them (87.7%% of the originals)\n");
}

void cli_privacy_start(FILE *f, const am_model *m, const am_asym_cfg *a, int process, int training) {
    switch (a->mode) {
    case AM_MODE_TEE_ONLY:
        fprintf(f, "privacy: nothing is sent to an accelerator (tee-only)%s\n",
                process ? "" : "; in one process nothing is isolated either");
        return;
    case AM_MODE_LOWRANK_ONLY:
        fprintf(f, "privacy: nothing is sent to an accelerator (lowrank-only: the split layers see rank-r inputs, "
                   "an approximation)\n");
        return;
    case AM_MODE_OPEN:
        fprintf(f, "privacy: NONE: every conv layer's input, weights%s cross in the clear (open mode: the speed "
                   "ceiling)\n", training ? " and output gradient" : "");
        return;
    case AM_MODE_GPU_ONLY:
        fprintf(f, "privacy: NONE: the batch, %severy layer's data and the model are on the accelerator "
                   "(gpu-only mode: the paper's GPU-only baseline)\n",
                training ? "its labels, " : "");
        return;
    case AM_MODE_QUANTIZED:
        fprintf(f, "privacy: nothing is sent to an accelerator (quantized: fixed point, every layer in the TEE)%s\n",
                process ? "" : "; in one process nothing is isolated either");
        return;
    case AM_MODE_SLALOM:
        fprintf(f, "privacy: every conv and linear layer's input crosses as its fixed-point value plus a fresh "
                   "one-time pad mod 2^31-1 (ChaCha20, a pad per batch and layer, never reused: with a factor store, unless its folder is rolled back): uniform to the "
                   "accelerator whatever the input; every reply is checked exactly before it is used, and a wrong "
                   "one stops the run whatever the input was; the model's 8-bit weights cross in the clear; logits "
                   "and predictions stay here%s\n",
                process ? "" : "; but in one process nothing is isolated: the accelerator's code could read this "
                               "process's memory (--tee process separates them)");
        return;
    case AM_MODE_ASYMML: break;
    }
    char res[160];
    if (a->sigma > 0.f)
        snprintf(res, sizeof res, "clipped to norm %g and noised with std %g", (double)a->clip, (double)(a->sigma * a->clip));
    else if (a->clip > 0.f)
        snprintf(res, sizeof res, "clipped to norm %g, NOT noised", (double)a->clip);
    else
        snprintf(res, sizeof res, "neither clipped nor noised");
    /* A data-driven plan is decided on the first batch: until then every
     * layer it may split counts. */
    int n = cli_split_layers(m), decided = am_model_plan_get(m, (int[AM_MAX_RANKS + 1]){0}, (int[AM_MAX_RANKS + 1]){0},
                                                         AM_MAX_RANKS + 1) > 0;
    if (n == 0) {
        fprintf(f, "crosses to the accelerator: nothing: no conv layer is split (a layer is split only at a rank below "
                   "its input's channels, and where that saves the TEE work): this run is tee-only in effect\n");
        return;
    }
    char layers[96];
    if (decided && n == 1) snprintf(layers, sizeof layers, "the one split layer");
    else if (decided) snprintf(layers, sizeof layers, "each of the %d split layers", n);
    else snprintf(layers, sizeof layers, "each split layer (up to %d: the first batch decides which)", n);
    if (!training) {
        fprintf(f, "crosses to the accelerator: for %s, every batch: its weights and its input's residual (%s)\n",
                layers, res);
        fprintf(f, "known to leak from that (README, Privacy): the split layers' weights, which carry what training "
                   "learned from its data; no label and no gradient crosses in an evaluation\n");
        measured(f, a);
        return;
    }
    const char *alike = a->sigma > 0.f ? "clipped and noised likewise" : res;
    char grad[200];
    if (a->protect_grads) snprintf(grad, sizeof grad, "its output gradient's residual (%s)", alike);
    else snprintf(grad, sizeof grad, "its output gradient in the clear");
    fprintf(f, "crosses to the accelerator: for %s, every step: its weights, its input's residual (%s) and %s; "
               "after each epoch, in the evaluation on the test images: its weights as they then stand and each "
               "test image's residual (%s)\n",
            layers, res, grad, alike);
    fprintf(f, "known to leak from that (README, Privacy; docs/evaluation.md: attacks on the recorded host view): the "
               "weight updates carry each batch's gradient%s\n",
            a->protect_grads ? ", which residual noise does not protect; without noise the output gradients' "
                               "residuals still showed which samples share a label (LeNet, batches of 64: 96.7% of "
                               "nearest neighbours did)."
                             : "; the clear output gradients show which samples share a label (LeNet, batches of "
                               "64: 95.0% of nearest neighbours did without noise, 91.6% to 95.2% with the residuals "
                               "noised at sigma 0.5 to 2), and with the weight updates they give the "
                               "trusted low-rank part away (measured without noise, LeNet at rank 1/8: exactly at "
                               "batches of up to 16, the residual revealing the trusted basis). None of this is "
                               "noised.");
    measured(f, a);
}

void cli_privacy_end(FILE *f, const am_model *m, const am_asym_cfg *a, double mu2, long releases, long coupling,
                     double delta, const char *whose) {
    if (a->mode != AM_MODE_ASYMML) return;
    if (!releases && !cli_smallest_release(m)) {
        fprintf(f, "privacy: nothing crossed to the accelerator: no conv layer was split\n");
        return;
    }
    if (!(a->sigma > 0.f)) {
        fprintf(f, "privacy: no differential-privacy figure: the residuals crossed without noise (--sigma 0)\n");
        return;
    }
    double eps = am_dp_epsilon_mu2(mu2, delta);
    long d = cli_smallest_release(m);
    fprintf(f, "privacy: (epsilon %.4g, delta %g) for the residual releases alone: %ld Gaussian %s per %s "
               "(clip %g, noise multiplier %g), no amplification by sampling claimed",
            eps, delta, releases, plural(releases, "release", "releases"), whose, (double)a->clip, (double)a->sigma);
    if (coupling > 1)
        fprintf(f, ", sensitivity 2 x clip x sqrt(%ld) (one sample moves its whole batch's residuals: a shared basis, "
                   "protected gradients or BatchNorm before a split layer; --basis per-sample on a model without "
                   "BatchNorm there bounds it by 2 x clip)", coupling);
    else fprintf(f, ", sensitivity 2 x clip (each residual depends on its own sample only)");
    fprintf(f, ". It does not cover the weights and their updates%s, nor the layers trained whole in the trusted "
               "side on every sample.\n",
            a->protect_grads ? "" : ", nor the output gradients, which crossed in the clear");
    if (d > 0) {
        const double snr = 1.0 / (a->sigma * sqrt((double)d));
        fprintf(f, "signal-to-noise: each release's residual has norm at most %g and its noise about %g x sqrt(d): a "
                   "ratio of at most 1/(sigma sqrt(d)) = %.2g with d = %ld (the smallest split layer's input). ",
                (double)a->clip, (double)(a->sigma * a->clip), snr, d);
        if (snr <= 0.1)
            fprintf(f, "At such a ratio the accelerator computes on noise: what crosses is at least 99%% noise by "
                       "energy, and the residual adds little a model can use (the main job, LeNet on Fashion-MNIST split at "
                       "rank 8 of 16 with a ratio of 0.0089: 89.9%%, 89.4%% and 90.1%% test accuracy in three runs, against "
                       "90.6%% for lowrank-only at that rank, which sends nothing).\n");
        else
            fprintf(f, "At such a ratio the residuals still carry signal (how much a model gains from it was not "
                       "measured), and the epsilon above is weak to match.\n");
    }
    static const uint8_t zero[32];
    if (memcmp(a->noise_key, zero, sizeof zero))
        fprintf(f, "noise: keyed by a random secret key drawn in the trusted process, a nonce of this session and a "
                   "release counter: no two releases share noise\n");
    else
        fprintf(f, "noise: follows from the seed %llu alone (--noise-seed): whoever knows it, such as the host, "
                   "which sees the command line, can regenerate and subtract the noise, and the figure above does "
                   "not hold against them; leave --noise-seed out for a secret key\n",
                (unsigned long long)a->noise_seed);
}
