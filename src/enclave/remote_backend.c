/* The accelerator as the enclave sees it: an am_backend whose buffers lie in
 * the shared arena and whose requests go to the host over the channel. The
 * host runs them on its own threads while the enclave goes on (submit
 * returns at once; wait blocks until every request is answered). Deferred
 * (am_remote_backend_defer): requests are held until wait, so that the host
 * computes only while the enclave waits, for an accelerator that shares
 * the enclave's cores. */
#include "enclave/remote_backend.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint64_t off; /* byte offset in the arena */
    uint64_t n;   /* floats */
} slot;

typedef struct remote_be {
    am_backend base;
    am_chan *ch;
    slot *slots; /* layers x roles */
    int layers;
    uint32_t seq, answered;
    double busy;
    am_status failed; /* the first error the host reported */
    int defer;
    am_msg held[8];   /* deferred requests, in order */
    int n_held;
} remote_be;

static int g_in_use;   /* a backend exists */
static am_chan *g_chan; /* the channel to make backends on */
static int g_defer;    /* backends made from now on defer their requests */

void am_remote_backend_defer(int on) { g_defer = on; }

static am_status take_reply(remote_be *be, am_msg *m) {
    uint8_t s[AM_CHAN_SLOT_BYTES];
    while (!am_chan_recv_reply(be->ch, s)) AM_TRY(am_chan_block(be->ch->fd_to_enclave));
    AM_TRY(am_chan_decode_reply(s, sizeof s, m));
    be->answered++;
    if (m->seq != be->answered) return am_fail(AM_EFORMAT, "accelerator: reply %u out of order (expected %u)", m->seq, be->answered);
    be->busy = m->busy;
    if (m->status != AM_OK && be->failed == AM_OK) {
        be->failed = (am_status)m->status;
        return am_fail((am_status)m->status, "accelerator: %s", m->err);
    }
    return AM_OK;
}

static am_status request(remote_be *be, am_msg *m) {
    if (be->failed != AM_OK) return am_fail(be->failed, "accelerator: failed earlier");
    m->seq = ++be->seq;
    AM_TRY(am_chan_send_request(be->ch, m));
    return am_chan_notify(be->ch->fd_to_host);
}

/* Sends the deferred requests. */
static am_status release(remote_be *be) {
    for (int i = 0; i < be->n_held; i++) {
        am_status st = request(be, &be->held[i]);
        if (st != AM_OK) {
            be->n_held = 0;
            return st;
        }
    }
    be->n_held = 0;
    return AM_OK;
}

static am_status drain(remote_be *be) {
    am_msg m;
    AM_TRY(release(be));
    while (be->answered != be->seq) AM_TRY(take_reply(be, &m));
    return AM_OK;
}

static am_status r_buffer(am_backend *b, int layer, am_buf_role role, size_t n, float **out) {
    remote_be *be = (remote_be *)b;
    slot *s;
    AM_TRY(am_backend_slot(layer, role, n, sizeof(slot), (void **)&be->slots, &be->layers, (void **)&s));
    if (s->n < n) {
        /* The host places it; earlier requests must be done before it may move. */
        AM_TRY(drain(be));
        am_msg m = {.kind = AM_MSG_BUFFER, .layer = layer, .role = role, .n = n};
        AM_TRY(request(be, &m));
        am_msg r;
        AM_TRY(take_reply(be, &r));
        if (r.off % AM_CHAN_ALIGN || r.off > be->ch->arena_bytes || n * 4 > be->ch->arena_bytes - r.off)
            return am_fail(AM_EFORMAT, "accelerator: buffer placed outside the shared arena");
        s->off = r.off;
        s->n = n;
    }
    *out = (float *)(be->ch->arena + s->off);
    return AM_OK;
}

static am_status r_submit(am_backend *b, const am_req *q) {
    remote_be *be = (remote_be *)b;
    if (!q || !q->in0 || !q->in1 || !q->out) return am_fail(AM_EINVAL, "backend: incomplete request");
    const uint8_t *a = be->ch->arena;
    am_msg m = {.kind = AM_MSG_CONV, .conv = q->kind, .layer = q->layer, .cfg = q->cfg, .x = q->x,
                .off_in0 = (uint64_t)((const uint8_t *)q->in0 - a), .off_in1 = (uint64_t)((const uint8_t *)q->in1 - a),
                .off_out = (uint64_t)((const uint8_t *)q->out - a), .keep = q->keep};
    if (!be->defer) return request(be, &m);
    if (be->n_held == (int)(sizeof be->held / sizeof *be->held)) AM_TRY(release(be));
    be->held[be->n_held++] = m;
    return AM_OK;
}

static am_status r_wait(am_backend *b) { return drain((remote_be *)b); }

static double r_busy(am_backend *b) { return ((remote_be *)b)->busy; }

static void r_destroy(am_backend *b) {
    remote_be *be = (remote_be *)b;
    if (!be) return;
    if (be->failed == AM_OK && drain(be) == AM_OK) {
        am_msg m = {.kind = AM_MSG_BYE};
        if (request(be, &m) == AM_OK) drain(be);
    }
    free(be->slots);
    free(be);
    g_in_use = 0;
}

static const am_backend_vt remote_vt = {"remote", r_buffer, r_submit, r_wait, r_busy, r_destroy, NULL};

void am_remote_backend_use(am_chan *ch) { g_chan = ch; }

am_status am_remote_backend_create(am_backend **out) {
    if (!g_chan) return am_fail(AM_EINVAL, "backend: no channel to the host");
    if (g_in_use) return am_fail(AM_EINVAL, "backend: the channel to the host serves one model at a time");
    remote_be *be = calloc(1, sizeof *be);
    if (!be) return am_fail(AM_ENOMEM, "backend: out of memory");
    be->base.vt = &remote_vt;
    be->defer = g_defer;
    be->ch = g_chan;
    g_in_use = 1;
    *out = &be->base;
    return AM_OK;
}
