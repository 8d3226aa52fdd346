/* The accelerator as the trusted process sees it (remote_backend.h).
 *
 * Placement. Every buffer lies where this side puts it: a bump allocator
 * over the arena, each buffer on its own pages (so that a GPU backend can
 * pin them one by one), a grown buffer on new pages. Nothing the server
 * says moves a buffer, so no two can overlap and none can leave the arena.
 *
 * Replies. Each one is checked (its sequence number, its status, its
 * message cut to printable ASCII) and waited for at most timeout_ms; the
 * server's death ends the wait at once. The values a reply leaves in the
 * arena are the caller's to check (src/trusted/accel.c does, as it merges
 * them into trusted memory). */
#define _GNU_SOURCE /* P_PIDFD */
#include "enclave/remote_backend.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct slot {
    uint64_t off; /* byte offset in the arena */
    uint64_t n;   /* floats */
} slot;

typedef struct remote_be {
    am_backend base;
    am_remote_cfg cfg;
    slot *slots; /* layers x roles */
    int layers;
    uint64_t next; /* the bump pointer (bytes) */
    uint32_t seq, answered;
    double busy;
    am_status failed; /* the first error: later calls repeat it */
    am_msg held[8];   /* deferred requests, in order */
    int n_held;
} remote_be;

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The error for a server that ended, saying how (it stays unreaped). */
static am_status server_gone(int pidfd) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid) {
        if (si.si_code == CLD_EXITED)
            return am_fail(AM_EIO, "the accelerator server exited (status %d%s) while the trusted side waited for it",
                           si.si_status, si.si_status == 127 ? ": it could not load its libraries" : "");
        return am_fail(AM_EIO, "the accelerator server was killed (signal %d) while the trusted side waited for it",
                       si.si_status);
    }
    return am_fail(AM_EIO, "the accelerator server exited while the trusted side waited for it");
}

/* Blocks until a reply is in the ring, the server dies or time runs out. */
static am_status await(remote_be *be) {
    am_chan *ch = be->cfg.ch;
    const long deadline = now_ms() + be->cfg.timeout_ms;
    for (;;) {
        struct pollfd p[2] = {{ch->fd_rep, POLLIN, 0}, {be->cfg.server_pidfd, POLLIN, 0}};
        long left = deadline - now_ms();
        if (left <= 0)
            return am_fail(AM_EIO, "the accelerator server did not answer within %d s (--reply-timeout)",
                           be->cfg.timeout_ms / 1000);
        int r = poll(p, be->cfg.server_pidfd >= 0 ? 2 : 1, (int)(left > 60000 ? 60000 : left));
        if (r < 0 && errno != EINTR) return am_fail(AM_EIO, "accelerator: poll failed (%s)", strerror(errno));
        if (r > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(ch->fd_rep, &v, sizeof v) < 0 && errno != EINTR && errno != EAGAIN)
                return am_fail(AM_EIO, "accelerator: channel read failed (%s)", strerror(errno));
            return AM_OK;
        }
        if (r > 0 && (p[1].revents & (POLLIN | POLLHUP))) return server_gone(be->cfg.server_pidfd);
        if (r > 0 && (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)))
            return am_fail(AM_EIO, "accelerator: the channel failed");
    }
}

static am_status fail(remote_be *be, am_status st) {
    if (be->failed == AM_OK) be->failed = st;
    return st;
}

static am_status take_reply(remote_be *be, am_msg *m) {
    uint8_t s[AM_CHAN_SLOT_BYTES];
    while (!am_chan_recv_reply(be->cfg.ch, s)) {
        am_status st = await(be);
        if (st != AM_OK) return fail(be, st);
    }
    am_status st = am_chan_decode_reply(s, sizeof s, m);
    if (st != AM_OK) return fail(be, st);
    be->answered++;
    if (m->seq != be->answered)
        return fail(be, am_fail(AM_EFORMAT, "accelerator: reply %u out of order (expected %u)", m->seq, be->answered));
    be->busy = m->busy;
    if (m->status != AM_OK) return fail(be, am_fail((am_status)m->status, "accelerator: %s", m->err));
    return AM_OK;
}

static am_status request(remote_be *be, am_msg *m) {
    if (be->failed != AM_OK) return am_fail(be->failed, "accelerator: failed earlier");
    /* A full ring: take a reply first (gpu-only mode sends many ops between waits). */
    am_msg r;
    while (be->seq - be->answered >= AM_CHAN_SLOTS) AM_TRY(take_reply(be, &r));
    m->seq = ++be->seq;
    am_status st = am_chan_send_request(be->cfg.ch, m);
    if (st == AM_OK) st = am_chan_notify(be->cfg.ch->fd_req);
    return st == AM_OK ? AM_OK : fail(be, st);
}

/* Sends the deferred requests. */
static am_status release(remote_be *be) {
    am_status st = AM_OK;
    for (int i = 0; i < be->n_held && st == AM_OK; i++) st = request(be, &be->held[i]);
    be->n_held = 0;
    return st;
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
        const uint64_t page = 4096, arena = be->cfg.ch->arena_bytes;
        uint64_t off = (be->next + page - 1) / page * page;
        if (off > arena || n > (arena - off) / sizeof(float))
            return am_fail(AM_ENOMEM, "shared arena full: %llu MiB in use, %llu MiB more asked for (--shm-mib)",
                           (unsigned long long)(be->next >> 20), (unsigned long long)((n * sizeof(float)) >> 20));
        s->off = off;
        s->n = n;
        be->next = off + n * sizeof(float);
    }
    *out = (float *)(be->cfg.ch->arena + s->off);
    return AM_OK;
}

/* A request sent now, or held until the next wait (cfg.defer). */
static am_status send_or_hold(remote_be *be, am_msg *m) {
    if (!be->cfg.defer) return request(be, m);
    if (be->n_held == (int)(sizeof be->held / sizeof *be->held)) AM_TRY(release(be));
    be->held[be->n_held++] = *m;
    return AM_OK;
}

static am_status r_submit(am_backend *b, const am_req *q) {
    remote_be *be = (remote_be *)b;
    if (!q || !q->in0 || !q->in1 || !q->out) return am_fail(AM_EINVAL, "backend: incomplete request");
    const uint8_t *a = be->cfg.ch->arena;
    am_msg m = {.kind = AM_MSG_CONV, .conv = q->kind, .layer = q->layer, .cfg = q->cfg, .x = q->x,
                .off_in0 = (uint64_t)((const uint8_t *)q->in0 - a), .off_in1 = (uint64_t)((const uint8_t *)q->in1 - a),
                .off_out = (uint64_t)((const uint8_t *)q->out - a), .keep = q->keep, .tag0 = q->tag0,
                .tag1 = q->tag1, .flags = q->flags, .step = q->step};
    return send_or_hold(be, &m);
}

static am_status r_op(am_backend *b, const am_op *o) {
    remote_be *be = (remote_be *)b;
    size_t n[AM_OP_BUFS];
    int inputs;
    AM_TRY(am_op_check(o, n, &inputs));
    const uint8_t *a = be->cfg.ch->arena;
    am_msg m = {.kind = AM_MSG_OP, .op = *o, .step = o->step};
    for (int i = 0; i < AM_OP_BUFS; i++) {
        if (!n[i]) continue;
        if (!o->b[i]) return am_fail(AM_EINVAL, "backend: %s without its buffer %d", am_op_name(o->kind), i);
        m.off_b[i] = (uint64_t)((const uint8_t *)o->b[i] - a);
        m.op.b[i] = NULL;
    }
    return send_or_hold(be, &m);
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
}

static const am_backend_vt remote_vt = {"remote", r_buffer, r_submit, r_wait, r_busy, r_destroy, NULL, r_op};

am_status am_remote_backend_create(const am_remote_cfg *cfg, am_backend **out) {
    *out = NULL;
    if (!cfg || !cfg->ch || !cfg->ch->base || cfg->timeout_ms <= 0) return am_fail(AM_EINVAL, "backend: bad channel");
    remote_be *be = calloc(1, sizeof *be);
    if (!be) return am_fail(AM_ENOMEM, "backend: out of memory");
    be->base.vt = &remote_vt;
    be->cfg = *cfg;
    *out = &be->base;
    return AM_OK;
}

am_status am_remote_hello(am_backend *b, char *about, size_t n) {
    remote_be *be = (remote_be *)b;
    if (b->vt != &remote_vt) return am_fail(AM_EINVAL, "backend: not a channel to a server");
    AM_TRY(drain(be));
    am_msg m = {.kind = AM_MSG_HELLO}, r;
    AM_TRY(request(be, &m));
    AM_TRY(take_reply(be, &r));
    if (about && n) {
        size_t l = strnlen(r.err, n - 1);
        memcpy(about, r.err, l);
        about[l] = 0;
    }
    return AM_OK;
}
