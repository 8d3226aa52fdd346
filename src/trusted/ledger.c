/* What crosses to the accelerator: every byte goes through asym_cross,
 * which copies it into the accelerator's buffer and records it in the
 * boundary ledger (kind, shape, bytes, a hash), and every call to the
 * accelerator through asym_submit and asym_wait, which time it. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "trusted/split_impl.h"

void am_ledger_hash(const void *p, size_t n, uint8_t out[16]) {
    if (sodium_init() < 0) {
        memset(out, 0, 16);
        return;
    }
    crypto_generichash(out, 16, p, n, NULL, 0);
}

/* Copies n floats of trusted memory into the accelerator's (layer, role)
 * buffer and records the crossing; with db, src is the output gradient dy
 * and its bias gradient is summed in the same pass. */
static am_status cross(am_asym *a, int layer, am_buf_role role, am_cross_kind kind, am_shape s, const float *src,
                       float *db, float **dst) {
    size_t n = am_shape_numel(s);
    double t0 = asym_now();
    AM_TRY(a->be->vt->buffer(a->be, layer, role, n, dst));
    if (db) {
        const am_tensor dy = {s, (float *)src};
        am_conv2d_bias_grad(&dy, db, *dst);
    } else {
        am_copy_floats(*dst, src, n);
    }
    a->L[layer].xfer_s += asym_now() - t0;
    return asym_record(a, layer, kind, s, *dst);
}

am_status asym_cross(am_asym *a, int layer, am_buf_role role, am_cross_kind kind, am_shape s, const float *src,
                     float **dst) {
    return cross(a, layer, role, kind, s, src, NULL, dst);
}

am_status asym_cross_grad(am_asym *a, int layer, const am_tensor *dy, float *db, float **dst) {
    return cross(a, layer, AM_BUF_GRAD, AM_CROSS_OUTPUT_GRAD, dy->s, dy->d, db, dst);
}

/* Records in the ledger what now lies in an accelerator buffer. */
am_status asym_record(am_asym *a, int layer, am_cross_kind kind, am_shape s, const float *buf) {
    size_t n = am_shape_numel(s);
    if (a->ledger_on) {
        if (a->led_n == a->led_cap) {
            int nc = a->led_cap ? 2 * a->led_cap : 256;
            am_ledger_entry *ne = realloc(a->led, sizeof *ne * (size_t)nc);
            if (!ne) return am_fail(AM_ENOMEM, "ledger: out of memory");
            a->led = ne;
            a->led_cap = nc;
        }
        am_ledger_entry *e = &a->led[a->led_n++];
        e->step = (int)a->step;
        e->layer = layer;
        e->kind = kind;
        e->shape = s;
        e->bytes = n * sizeof(float);
        am_ledger_hash(buf, e->bytes, e->hash);
    }
    return AM_OK;
}

am_status asym_result(am_asym *a, int layer, am_buf_role role, size_t n, float **out) {
    return a->be->vt->buffer(a->be, layer, role, n, out);
}

/* The accelerator's calls, timed: what the TEE spends blocked on them is not
 * TEE work. (The in-process backend computes inside submit; the server
 * computes while the TEE goes on, and only wait blocks.) */
am_status asym_submit(am_asym *a, layer_plan *p, const am_req *q) {
    double t = asym_now();
    am_status st = a->be->vt->submit(a->be, q);
    t = asym_now() - t;
    p->wait_s += t;
    a->blocked_s += t;
    return st;
}

am_status asym_wait(am_asym *a, layer_plan *p) {
    double t = asym_now();
    am_status st = a->be->vt->wait(a->be);
    t = asym_now() - t;
    p->wait_s += t;
    a->blocked_s += t;
    return st;
}

