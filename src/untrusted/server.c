/* The accelerator server's loop: see server.h. */
#include "untrusted/server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One CONV request on arena buffers. */
static am_status run(am_chan *ch, am_backend *be, const am_msg *m, double *busy) {
    uint8_t *a = ch->arena;
    am_req q = {m->conv, m->layer, m->cfg, m->x, (const float *)(a + m->off_in0), (const float *)(a + m->off_in1),
                (float *)(a + m->off_out), m->keep, m->tag0, m->tag1, (uint32_t)m->step, m->flags};
    double t0 = now();
    am_status st = be->vt->submit(be, &q);
    if (st == AM_OK) st = be->vt->wait(be);
    *busy += now() - t0;
    return st;
}

/* One OP (gpu-only mode) on arena buffers. */
static am_status run_op(am_chan *ch, am_backend *be, am_msg *m, double *busy) {
    if (!be->vt->op) return am_fail(AM_EINVAL, "this accelerator (%s) runs convs only: no gpu-only mode", be->vt->name);
    size_t n[AM_OP_BUFS];
    int inputs;
    AM_TRY(am_op_check(&m->op, n, &inputs));
    for (int i = 0; i < AM_OP_BUFS; i++) m->op.b[i] = n[i] ? (float *)(ch->arena + m->off_b[i]) : NULL;
    double t0 = now();
    am_status st = be->vt->op(be, &m->op);
    if (st == AM_OK) st = be->vt->wait(be);
    *busy += now() - t0;
    return st;
}

am_status am_server_serve(am_chan *ch, am_backend *be, const char *about, int parent_pidfd) {
    uint8_t slot[AM_CHAN_SLOT_BYTES];
    double busy = 0;
    for (;;) {
        /* Drain the request ring, then sleep until signalled. */
        while (am_chan_recv_request(ch, slot)) {
            am_msg m, rep = {.kind = AM_MSG_REPLY};
            am_status st = am_chan_decode_request(slot, sizeof slot, ch->arena_bytes, &m);
            rep.seq = m.seq;
            int bye = st == AM_OK && m.kind == AM_MSG_BYE;
            if (st == AM_OK && !be) st = am_fail(AM_EIO, "%s", about ? about : "no backend");
            else if (st == AM_OK && m.kind == AM_MSG_CONV) st = run(ch, be, &m, &busy);
            else if (st == AM_OK && m.kind == AM_MSG_OP) st = run_op(ch, be, &m, &busy);
            rep.status = st;
            rep.busy = busy;
            if (st != AM_OK) snprintf(rep.err, sizeof rep.err, "%s", am_last_error());
            else if (m.kind == AM_MSG_HELLO) snprintf(rep.err, sizeof rep.err, "%s", about ? about : "");
            AM_TRY(am_chan_send_reply(ch, &rep));
            AM_TRY(am_chan_notify(ch->fd_rep));
            if (bye) return AM_OK;
        }
        struct pollfd p[2] = {{ch->fd_req, POLLIN, 0}, {parent_pidfd, POLLIN, 0}};
        int r = poll(p, parent_pidfd >= 0 ? 2 : 1, -1);
        if (r < 0 && errno != EINTR) return am_fail(AM_EIO, "server: poll failed (%s)", strerror(errno));
        if (r > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(ch->fd_req, &v, sizeof v) < 0 && errno != EINTR && errno != EAGAIN)
                return am_fail(AM_EIO, "server: channel read failed (%s)", strerror(errno));
        } else if (r > 0 && (p[1].revents & (POLLIN | POLLHUP))) {
            return am_fail(AM_EIO, "server: the trusted process ended");
        } else if (r > 0) {
            return am_fail(AM_EIO, "server: channel closed");
        }
    }
}
