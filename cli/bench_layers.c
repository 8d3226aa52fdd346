/* bench --layers: where a training step's trusted time went, per kind of
 * layer and per conv layer, set against this machine's roofline: each
 * layer's bytes over the measured bandwidth or its FLOPs over the measured
 * sgemm rate, whichever is longer (am_model_layer_cost says what is
 * counted). */
#include "cli.h"

typedef struct kind_sum {
    double bytes, flops, roof;
} kind_sum;

static double roof_of(const bench_limits *lim, double bytes, double flops) {
    double tb = bytes / lim->bw, tf = flops / lim->flops;
    return tb > tf ? tb : tf;
}

void bench_limits_measure(bench_limits *lim) {
    lim->bw = am_measure_bandwidth();
    lim->flops = am_measure_sgemm();
}

static void print_kinds(am_model *m, int steps, double sgd_s, const bench_limits *lim, const kind_sum *k,
                        const kind_sum *sgd) {
    printf("  trusted side per training step, by kind: measured ms, bytes and FLOPs it must move and compute,\n"
           "  achieved rates (%% of this machine's; over 100%% of the bandwidth where the bytes came from cache),\n"
           "  and the roofline's ms (the longer of bytes/bandwidth, FLOPs/sgemm)\n");
    printf("  %-12s %9s %9s %9s %8s %6s %9s %6s %9s %7s\n", "kind", "ms", "MB", "MFLOP", "GB/s", "%bw", "GFLOP/s",
           "%peak", "roof ms", "x roof");
    double tm = 0, tr = 0;
    for (int i = 0; i <= AM_PROF_KINDS; i++) {
        const kind_sum *s = i < AM_PROF_KINDS ? &k[i] : sgd;
        double ms = (i < AM_PROF_KINDS ? am_model_profile(m, (am_prof_kind)i) : sgd_s) * 1e3 / steps;
        double sec = ms / 1e3;
        tm += ms, tr += s->roof * 1e3;
        if (ms < 0.05) continue; /* too short to time: no rates */
        printf("  %-12s %9.1f %9.1f %9.1f %8.1f %5.0f%% %9.1f %5.0f%% %9.1f %6.1fx\n",
               i < AM_PROF_KINDS ? am_prof_kind_name((am_prof_kind)i) : "sgd", ms, s->bytes / 1e6, s->flops / 1e6,
               sec > 0 ? s->bytes / sec / 1e9 : 0, sec > 0 ? 100 * s->bytes / sec / lim->bw : 0,
               sec > 0 ? s->flops / sec / 1e9 : 0, sec > 0 ? 100 * s->flops / sec / lim->flops : 0, s->roof * 1e3,
               s->roof > 0 ? ms / (s->roof * 1e3) : 0);
    }
    printf("  %-12s %9.1f %59s %9.1f %6.1fx   (the trusted side's time against its roofline)\n", "total", tm, "", tr,
           tr > 0 ? tm / tr : 0);
}

void bench_layers(am_model *m, int steps, double sgd_s, const bench_limits *lim) {
    kind_sum k[AM_PROF_KINDS] = {{0, 0, 0}};
    for (int i = 1; i < am_model_num_layers(m); i++) {
        am_prof_kind kd;
        double b, f;
        if (am_model_layer_cost(m, i, &kd, &b, &f) != AM_OK) continue;
        k[kd].bytes += b, k[kd].flops += f, k[kd].roof += roof_of(lim, b, f);
    }
    const double np = (double)am_model_weights_len(m);
    kind_sum sgd = {4 * 5 * np, 6 * np, 0}; /* read w, g, momentum; write w, momentum */
    sgd.roof = roof_of(lim, sgd.bytes, sgd.flops);
    print_kinds(m, steps, sgd_s, lim, k, &sgd);
    if (am_model_num_convs(m) < 1) return; /* tee-only: no conv is split or sent */
    printf("  per conv layer (a whole one that stays in the TEE is timed in its kind above: - here)\n");
    printf("  %-5s %-11s %-9s %-4s %-5s %9s %9s %9s %9s %9s %8s %8s %8s %8s %8s\n", "layer", "C->K", "HxW", "r", "split",
           "TEE ms", "decomp", "transfer", "accel ms", "waited", "overlap", "energy", "MFLOP", "MB", "x roof");
    for (int i = 0; i < am_model_num_convs(m); i++) {
        am_split_info si;
        am_layer_info li;
        am_prof_kind kd;
        double b = 0, f = 0;
        am_model_split_info(m, i, &si);
        am_model_layer_info(m, si.layer, &li);
        am_model_layer_cost(m, si.layer, &kd, &b, &f);
        char ck[24], hw[24];
        snprintf(ck, sizeof ck, "%d->%d", si.C, si.K);
        snprintf(hw, sizeof hw, "%dx%d", li.out.h, li.out.w);
        if (!si.split && si.tee_s == 0 && si.accel_s == 0) {
            printf("  %-5d %-11s %-9s %-4d %-5s %9s %9s %9s %9s %9s %8s %8.4f %8.1f %8.1f %8s\n", si.layer, ck, hw, si.r,
                   "whole", "-", "-", "-", "-", "-", "-", 1.0, f / 1e6, b / 1e6, "-");
            continue;
        }
        /* Overlap: the share of the accelerator's time the TEE did not wait through. */
        double ov = si.accel_s > 0 ? 1.0 - si.wait_s / si.accel_s : 0, roof = roof_of(lim, b, f);
        printf("  %-5d %-11s %-9s %-4d %-5s %9.2f %9.2f %9.2f %9.2f %9.2f %7.0f%% %8.4f %8.1f %8.1f %7.1fx\n", si.layer,
               ck, hw, si.r, si.split ? "yes" : "whole", si.tee_s * 1e3 / steps, si.decomp_s * 1e3 / steps,
               si.xfer_s * 1e3 / steps, si.accel_s * 1e3 / steps, si.wait_s * 1e3 / steps, 100 * (ov > 0 ? ov : 0),
               si.split ? si.energy_kept : 1.0, si.tee_flops / 1e6, b / 1e6,
               roof > 0 ? si.tee_s / steps / roof : 0);
    }
}
