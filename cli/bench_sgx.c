/* bench's trusted working set and its *modelled* SGX1 column: the paper's
 * SGX-only baseline paged its enclave through an EPC of about 93 MiB that
 * the step's trusted memory did not fit; a plain process does not pay that
 * (nor do SGX2 with a large enough EPC, TDX or SEV-SNP, whose memory
 * encryption is not modelled here). am_model_paging runs the step's
 * trusted regions through an LRU of 4 KiB pages of --epc MiB; each miss
 * here costs one page swap, about 40,000 cycles (evict, encrypt, load,
 * decrypt, verify: "about 40K cycles", Taassori et al., VAULT, ASPLOS
 * 2018), taken as a band of 20,000 to 60,000. The modelled time is the
 * step measured here plus that; it is printed as a model, never as a
 * measurement. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const double swap_cycles[3] = {20e3, 40e3, 60e3}; /* low, central, high */

/* This machine's clock, from /proc/cpuinfo (the first "cpu MHz"); 3 GHz
 * when it says nothing. */
double bench_clock_ghz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu MHz", 7) && strchr(line, ':')) {
            mhz = strtod(strchr(line, ':') + 1, NULL);
            break;
        }
    if (f) fclose(f);
    return mhz > 100 ? mhz / 1e3 : 3.0;
}

int bench_sgx_model(am_model *m, am_sgd *opt, const bench_sgx_cfg *c, bench_sgx *out) {
    int started;
    const float *mom = am_sgd_momentum(opt, &started);
    am_paging tr, in;
    size_t epc = (size_t)(c->epc_mib * 1048576.0);
    if (am_model_paging(m, 1, mom, mom ? am_model_weights_len(m) * sizeof(float) : 0, epc, &tr) ||
        am_model_paging(m, 0, NULL, 0, epc, &in))
        return lib_fail("paging model");
    out->ws_train = tr.working_set, out->ws_infer = in.working_set;
    out->swaps_train = tr.swaps, out->swaps_infer = in.swaps;
    for (int k = 0; k < 3; k++) {
        out->add_train[k] = tr.swaps * swap_cycles[k] / (c->ghz * 1e9);
        out->add_infer[k] = in.swaps * swap_cycles[k] / (c->ghz * 1e9);
    }
    return 0;
}

void bench_sgx_print(const char *name, const char *mode, const bench_sgx_cfg *c, const bench_sgx *s, double train,
                     double infer) {
    printf("%-18s %-8s trusted working set: train %.0f MiB, infer %.0f MiB; modelled SGX1 (not measured: EPC %.0f MiB,"
           " LRU of 4 KiB pages, %.0fk (%.0fk-%.0fk) cycles a swap at %.2f GHz): %.0f swaps a training step, %.0f an"
           " inference pass; train %.2f s (%.2f-%.2f), infer %.2f s (%.2f-%.2f)\n",
           name, mode, s->ws_train / 1048576, s->ws_infer / 1048576, c->epc_mib, swap_cycles[1] / 1e3,
           swap_cycles[0] / 1e3, swap_cycles[2] / 1e3, c->ghz, s->swaps_train, s->swaps_infer, train + s->add_train[1],
           train + s->add_train[0], train + s->add_train[2], infer + s->add_infer[1], infer + s->add_infer[0],
           infer + s->add_infer[2]);
}
