/* The shared-memory channel: layout, message encoding and its checks, the
 * two rings, eventfd signalling. See channel.h. */
#define _GNU_SOURCE /* memfd_create */
#include "boundary/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define VERSION 5u /* 5: blinded inference's conv mod p */

/* ------------------------------------------------------------ encoding */

/* Little-endian fields at fixed offsets of a slot:
 *   0 magic u32 | 4 kind u32 | 8 seq u32 | 12 status i32
 *   16 layer i32 | 20 tag0 u8, tag1 u8, flags u16 | 24 step u64
 *   32 conv i32 | 36 out_c, kh, kw, sh, sw, ph, pw, bias (8 x i32) | 68 n, c, h, w (4 x i32)
 *   84 keep u32 (AM_KEEP_* bits) | 88 off_in0 u64 | 96 off_in1 u64 | 104 off_out u64
 *   112 unused | 120 busy f64 | 128 err (AM_CHAN_ERR_BYTES, NUL-terminated)
 * An OP (am_op) instead, after the header:
 *   16 layer i32 | 20 flags u32 | 24 step u64 | 32 op u32 | 36 x (4 x i32) | 52 y (4 x i32)
 *   68 conv (8 x i32) | 100 pool (7 x i32) | 128 pool kind i32 | 132 eps, bn momentum, lr,
 *   momentum, dampening, decay (6 x f32) | 156 tag u32 | 160 buffer offsets (AM_OP_BUFS x u64) */
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void putf(uint8_t *p, float v) { memcpy(p, &v, 4); }
static float getf(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}
static void put_shape(uint8_t *p, am_shape x) {
    const int v[4] = {x.n, x.c, x.h, x.w};
    for (int i = 0; i < 4; i++) put32(p + 4 * i, (uint32_t)v[i]);
}
static am_shape get_shape(const uint8_t *p) {
    return (am_shape){(int)get32(p), (int)get32(p + 4), (int)get32(p + 8), (int)get32(p + 12)};
}

static void encode_op(const am_msg *m, uint8_t *s) {
    const am_op *o = &m->op;
    put32(s + 16, (uint32_t)o->layer);
    put32(s + 20, o->flags);
    put64(s + 24, o->step);
    put32(s + 32, (uint32_t)o->kind);
    put_shape(s + 36, o->x);
    put_shape(s + 52, o->y);
    const int cf[8] = {o->conv.out_c, o->conv.kh, o->conv.kw, o->conv.sh, o->conv.sw, o->conv.ph, o->conv.pw, o->conv.bias};
    for (int i = 0; i < 8; i++) put32(s + 68 + 4 * i, (uint32_t)cf[i]);
    const int pc[7] = {o->pool.kh, o->pool.kw, o->pool.sh, o->pool.sw, o->pool.ph, o->pool.pw, o->pool.ceil_mode};
    for (int i = 0; i < 7; i++) put32(s + 100 + 4 * i, (uint32_t)pc[i]);
    put32(s + 128, (uint32_t)o->pool_kind);
    const float f[6] = {o->eps, o->bn_momentum, o->lr, o->momentum, o->dampening, o->decay};
    for (int i = 0; i < 6; i++) putf(s + 132 + 4 * i, f[i]);
    put32(s + 156, (uint32_t)o->tag);
    for (int i = 0; i < AM_OP_BUFS; i++) put64(s + 160 + 8 * i, m->off_b[i]);
}

static void decode_op(const uint8_t *s, am_msg *m) {
    am_op *o = &m->op;
    o->layer = (int)get32(s + 16);
    o->flags = get32(s + 20);
    o->step = (uint32_t)get64(s + 24);
    m->step = get64(s + 24);
    o->kind = (am_op_kind)get32(s + 32);
    o->x = get_shape(s + 36);
    o->y = get_shape(s + 52);
    int cf[8], pc[7];
    for (int i = 0; i < 8; i++) cf[i] = (int)get32(s + 68 + 4 * i);
    for (int i = 0; i < 7; i++) pc[i] = (int)get32(s + 100 + 4 * i);
    o->conv = (am_conv2d_cfg){cf[0], cf[1], cf[2], cf[3], cf[4], cf[5], cf[6], cf[7]};
    o->pool = (am_pool_cfg){pc[0], pc[1], pc[2], pc[3], pc[4], pc[5], pc[6]};
    o->pool_kind = (int)get32(s + 128);
    o->eps = getf(s + 132), o->bn_momentum = getf(s + 136), o->lr = getf(s + 140);
    o->momentum = getf(s + 144), o->dampening = getf(s + 148), o->decay = getf(s + 152);
    o->tag = (am_cross_kind)get32(s + 156);
    for (int i = 0; i < AM_OP_BUFS; i++) m->off_b[i] = get64(s + 160 + 8 * i), o->b[i] = NULL;
}

void am_chan_encode(const am_msg *m, uint8_t *s) {
    memset(s, 0, AM_CHAN_SLOT_BYTES);
    put32(s, AM_CHAN_MAGIC);
    put32(s + 4, (uint32_t)m->kind);
    put32(s + 8, m->seq);
    if (m->kind == AM_MSG_OP) {
        encode_op(m, s);
        return;
    }
    put32(s + 12, (uint32_t)m->status);
    put32(s + 16, (uint32_t)m->layer);
    s[20] = (uint8_t)m->tag0, s[21] = (uint8_t)m->tag1;
    s[22] = (uint8_t)m->flags, s[23] = (uint8_t)(m->flags >> 8);
    put64(s + 24, m->step);
    put32(s + 32, (uint32_t)m->conv);
    const int cf[8] = {m->cfg.out_c, m->cfg.kh, m->cfg.kw, m->cfg.sh, m->cfg.sw, m->cfg.ph, m->cfg.pw, m->cfg.bias};
    for (int i = 0; i < 8; i++) put32(s + 36 + 4 * i, (uint32_t)cf[i]);
    const int sh[4] = {m->x.n, m->x.c, m->x.h, m->x.w};
    for (int i = 0; i < 4; i++) put32(s + 68 + 4 * i, (uint32_t)sh[i]);
    put32(s + 84, m->keep);
    put64(s + 88, m->off_in0);
    put64(s + 96, m->off_in1);
    put64(s + 104, m->off_out);
    uint64_t b;
    memcpy(&b, &m->busy, 8);
    put64(s + 120, b);
    size_t el = strnlen(m->err, sizeof m->err - 1);
    memcpy(s + 128, m->err, el);
}

static am_status header(const uint8_t *s, size_t len, am_msg *m) {
    memset(m, 0, sizeof *m);
    if (!s || len != AM_CHAN_SLOT_BYTES) return am_fail(AM_EFORMAT, "channel: message of %zu bytes", len);
    if (get32(s) != AM_CHAN_MAGIC) return am_fail(AM_EFORMAT, "channel: bad message magic");
    m->kind = (am_msg_kind)get32(s + 4);
    m->seq = get32(s + 8);
    return AM_OK;
}

/* Floats of a buffer at byte offset off: inside the arena, aligned. */
static am_status in_arena(uint64_t off, uint64_t floats, uint64_t arena, const char *what) {
    if (off % AM_CHAN_ALIGN) return am_fail(AM_EFORMAT, "channel: %s offset %llu is not aligned", what, (unsigned long long)off);
    if (floats == 0 || floats > arena / 4 || off > arena || floats * 4 > arena - off)
        return am_fail(AM_EFORMAT, "channel: %s (%llu floats at %llu) lies outside the %llu-byte arena", what,
                       (unsigned long long)floats, (unsigned long long)off, (unsigned long long)arena);
    return AM_OK;
}

static int bad_dim(int v, int lo, int hi) { return v < lo || v > hi; }

am_status am_chan_decode_request(const uint8_t *s, size_t len, uint64_t arena, am_msg *m) {
    AM_TRY(header(s, len, m));
    switch (m->kind) {
    case AM_MSG_HELLO:
    case AM_MSG_BYE: return AM_OK;
    case AM_MSG_CONV: {
        m->conv = (am_req_kind)get32(s + 32);
        int cf[8], sh[4];
        for (int i = 0; i < 8; i++) cf[i] = (int)get32(s + 36 + 4 * i);
        for (int i = 0; i < 4; i++) sh[i] = (int)get32(s + 68 + 4 * i);
        m->cfg = (am_conv2d_cfg){cf[0], cf[1], cf[2], cf[3], cf[4], cf[5], cf[6], cf[7]};
        m->x = (am_shape){sh[0], sh[1], sh[2], sh[3]};
        m->layer = (int)get32(s + 16);
        m->keep = get32(s + 84);
        m->off_in0 = get64(s + 88), m->off_in1 = get64(s + 96), m->off_out = get64(s + 104);
        m->tag0 = (am_cross_kind)s[20], m->tag1 = (am_cross_kind)s[21];
        m->flags = (unsigned)s[22] | (unsigned)s[23] << 8;
        m->step = get64(s + 24);
        if (m->keep & ~(unsigned)(AM_KEEP_IN0 | AM_KEEP_IN1))
            return am_fail(AM_EFORMAT, "channel: unknown keep bits %#x", m->keep);
        if (m->flags & ~(unsigned)AM_REQ_EXACT) return am_fail(AM_EFORMAT, "channel: unknown request flags %#x", m->flags);
        if (m->tag0 >= AM_CROSS_KINDS || m->tag1 >= AM_CROSS_KINDS)
            return am_fail(AM_EFORMAT, "channel: unknown crossing kinds %u, %u", (unsigned)m->tag0, (unsigned)m->tag1);
        if ((int)m->conv < AM_REQ_CONV_FWD || m->conv > AM_REQ_CONV_MODP)
            return am_fail(AM_EFORMAT, "channel: unknown request kind %d", (int)m->conv);
        if (m->layer < 0 || m->layer > 65535) return am_fail(AM_EFORMAT, "channel: request for layer %d", m->layer);
        const am_conv2d_cfg *c = &m->cfg;
        if (bad_dim(c->out_c, 1, 65536) || bad_dim(c->kh, 1, 64) || bad_dim(c->kw, 1, 64) || bad_dim(c->sh, 1, 64) ||
            bad_dim(c->sw, 1, 64) || bad_dim(c->ph, 0, 64) || bad_dim(c->pw, 0, 64) || c->bias != 0)
            return am_fail(AM_EFORMAT, "channel: conv settings out of range");
        if (bad_dim(m->x.n, 1, 65536) || bad_dim(m->x.c, 1, 65536) || bad_dim(m->x.h, 1, 65536) || bad_dim(m->x.w, 1, 65536))
            return am_fail(AM_EFORMAT, "channel: input shape out of range");
        uint64_t xn = (uint64_t)m->x.n * m->x.c, wn = (uint64_t)c->out_c * m->x.c;
        if (xn > arena || (xn *= (uint64_t)m->x.h * m->x.w) > arena / 4 || (wn *= (uint64_t)c->kh * c->kw) > arena / 4)
            return am_fail(AM_EFORMAT, "channel: tensors larger than the arena");
        am_shape y;
        if (am_conv2d_out_shape(c, m->x, &y) != AM_OK) return am_fail(AM_EFORMAT, "channel: conv does not fit its input");
        uint64_t yn = (uint64_t)y.n * y.c * y.h * y.w;
        if (yn > arena / 4) return am_fail(AM_EFORMAT, "channel: output larger than the arena");
        /* What each kind reads and writes: in0, in1 -> out. */
        uint64_t n0, n1, no;
        switch (m->conv) {
        case AM_REQ_CONV_FWD:
        case AM_REQ_CONV_MODP: n0 = xn, n1 = wn, no = yn; break;
        case AM_REQ_CONV_BWD_DATA: n0 = yn, n1 = wn, no = xn; break;
        default: n0 = xn, n1 = yn, no = wn; break;
        }
        AM_TRY(in_arena(m->off_in0, n0, arena, "first input"));
        AM_TRY(in_arena(m->off_in1, n1, arena, "second input"));
        AM_TRY(in_arena(m->off_out, no, arena, "output"));
        return AM_OK;
    }
    case AM_MSG_OP: {
        decode_op(s, m);
        size_t n[AM_OP_BUFS];
        int inputs;
        if ((unsigned)m->op.tag >= AM_CROSS_KINDS) return am_fail(AM_EFORMAT, "channel: unknown crossing kind");
        if (am_op_check(&m->op, n, &inputs) != AM_OK) {
            char why[200];
            snprintf(why, sizeof why, "%s", am_last_error());
            return am_fail(AM_EFORMAT, "channel: %s", why);
        }
        for (int i = 0; i < AM_OP_BUFS; i++)
            if (n[i]) AM_TRY(in_arena(m->off_b[i], n[i], arena, i < inputs ? "an op's input" : "an op's output"));
        return AM_OK;
    }
    default: return am_fail(AM_EFORMAT, "channel: unknown request kind %u", (unsigned)m->kind);
    }
}

am_status am_chan_decode_reply(const uint8_t *s, size_t len, am_msg *m) {
    AM_TRY(header(s, len, m));
    if (m->kind != AM_MSG_REPLY) return am_fail(AM_EFORMAT, "channel: expected a reply, got kind %u", (unsigned)m->kind);
    m->status = (int)get32(s + 12);
    uint64_t b = get64(s + 120);
    memcpy(&m->busy, &b, 8);
    if (m->status < AM_OK || m->status > AM_ENUM) return am_fail(AM_EFORMAT, "channel: reply status %d", m->status);
    if (!(m->busy >= 0) || m->busy > 1e12) m->busy = 0;
    /* The server's words reach the user's terminal: one line of printable
     * ASCII, so that they cannot pose as the trusted side's own output. */
    size_t n = 0;
    for (; n < sizeof m->err - 1 && s[128 + n]; n++) {
        uint8_t c = s[128 + n];
        m->err[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    m->err[n] = 0;
    return AM_OK;
}

/* ------------------------------------------------------------ the file */

size_t am_chan_size(uint64_t arena_bytes) { return AM_CHAN_ARENA_OFFSET + (size_t)arena_bytes; }

static am_status map(int fd, size_t len, am_chan *c) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return am_fail(AM_ENOMEM, "channel: cannot map %zu MiB of shared memory (%s)", len >> 20, strerror(errno));
    c->base = p;
    c->len = len;
    c->ctl = (am_chan_control *)p;
    c->arena = c->base + AM_CHAN_ARENA_OFFSET;
    c->arena_bytes = len - AM_CHAN_ARENA_OFFSET;
    return AM_OK;
}

am_status am_chan_create(uint64_t arena_bytes, am_chan *c) {
    memset(c, 0, sizeof *c);
    c->fd_mem = c->fd_req = c->fd_rep = -1;
    if (arena_bytes < (1u << 20) || arena_bytes > ((uint64_t)1 << 40) || arena_bytes % 4096)
        return am_fail(AM_EINVAL, "channel: arena of %llu bytes", (unsigned long long)arena_bytes);
    c->fd_mem = memfd_create("asymml-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (c->fd_mem < 0) return am_fail(AM_EIO, "channel: memfd_create failed (%s)", strerror(errno));
    size_t len = am_chan_size(arena_bytes);
    am_status st = AM_OK;
    /* A sparse file: pages exist once written. Its size is sealed, so that
     * the server cannot cut the trusted side's mapping short (a SIGBUS). */
    if (ftruncate(c->fd_mem, (off_t)len)) st = am_fail(AM_ENOMEM, "channel: cannot size shared memory (%s)", strerror(errno));
    if (st == AM_OK && fcntl(c->fd_mem, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
        st = am_fail(AM_EIO, "channel: cannot seal the shared memory's size (%s)", strerror(errno));
    if (st == AM_OK) {
        c->fd_req = eventfd(0, EFD_CLOEXEC);
        c->fd_rep = eventfd(0, EFD_CLOEXEC);
        if (c->fd_req < 0 || c->fd_rep < 0) st = am_fail(AM_EIO, "channel: eventfd failed (%s)", strerror(errno));
    }
    if (st == AM_OK) st = map(c->fd_mem, len, c);
    if (st != AM_OK) {
        am_chan_close(c);
        return st;
    }
    c->ctl->magic = AM_CHAN_MAGIC;
    c->ctl->version = VERSION;
    c->ctl->arena_bytes = arena_bytes;
    return AM_OK;
}

am_status am_chan_attach(int fd_mem, int fd_req, int fd_rep, am_chan *c) {
    memset(c, 0, sizeof *c);
    c->fd_mem = fd_mem, c->fd_req = fd_req, c->fd_rep = fd_rep;
    struct stat sb;
    if (fd_mem < 0 || fstat(fd_mem, &sb) || sb.st_size < (off_t)am_chan_size(1u << 20))
        return am_fail(AM_EINVAL, "channel: descriptor %d is not a channel", fd_mem);
    AM_TRY(map(fd_mem, (size_t)sb.st_size, c));
    if (c->ctl->magic != AM_CHAN_MAGIC || c->ctl->version != VERSION || c->ctl->arena_bytes != c->arena_bytes) {
        am_chan_close(c);
        return am_fail(AM_EFORMAT, "channel: shared memory of another kind or version");
    }
    return AM_OK;
}

void am_chan_close(am_chan *c) {
    if (c->base) munmap(c->base, c->len);
    if (c->fd_mem >= 0) close(c->fd_mem);
    if (c->fd_req >= 0) close(c->fd_req);
    if (c->fd_rep >= 0) close(c->fd_rep);
    memset(c, 0, sizeof *c);
    c->fd_mem = c->fd_req = c->fd_rep = -1;
}

/* ------------------------------------------------------------ rings */

static uint8_t *req_slot(am_chan *c, uint32_t i) {
    return c->base + AM_CHAN_CONTROL_BYTES + (size_t)(i % AM_CHAN_SLOTS) * AM_CHAN_SLOT_BYTES;
}
static uint8_t *rep_slot(am_chan *c, uint32_t i) {
    return c->base + AM_CHAN_CONTROL_BYTES + (size_t)(AM_CHAN_SLOTS + i % AM_CHAN_SLOTS) * AM_CHAN_SLOT_BYTES;
}

/* Single producer, single consumer: the producer fills the slot, then
 * publishes head (release); the consumer reads head (acquire), copies the
 * slot out, then publishes tail. The indices run freely (mod 2^32). */
static am_status ring_send(volatile uint32_t *head, volatile uint32_t *tail, uint8_t *slot_of_head, const am_msg *m) {
    uint32_t h = atomic_load_explicit((_Atomic uint32_t *)head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit((_Atomic uint32_t *)tail, memory_order_acquire);
    if (h - t >= AM_CHAN_SLOTS) return am_fail(AM_EIO, "channel: ring full (%u messages unanswered)", h - t);
    am_chan_encode(m, slot_of_head);
    atomic_store_explicit((_Atomic uint32_t *)head, h + 1, memory_order_release);
    return AM_OK;
}

static int ring_recv(volatile uint32_t *head, volatile uint32_t *tail, am_chan *c, int rep, uint8_t *out) {
    uint32_t t = atomic_load_explicit((_Atomic uint32_t *)tail, memory_order_relaxed);
    uint32_t h = atomic_load_explicit((_Atomic uint32_t *)head, memory_order_acquire);
    if (h == t) return 0;
    memcpy(out, rep ? rep_slot(c, t) : req_slot(c, t), AM_CHAN_SLOT_BYTES);
    atomic_store_explicit((_Atomic uint32_t *)tail, t + 1, memory_order_release);
    return 1;
}

am_status am_chan_send_request(am_chan *c, const am_msg *m) {
    return ring_send(&c->ctl->req_head, &c->ctl->req_tail, req_slot(c, c->ctl->req_head), m);
}
int am_chan_recv_request(am_chan *c, uint8_t slot[AM_CHAN_SLOT_BYTES]) {
    return ring_recv(&c->ctl->req_head, &c->ctl->req_tail, c, 0, slot);
}
am_status am_chan_send_reply(am_chan *c, const am_msg *m) {
    return ring_send(&c->ctl->rep_head, &c->ctl->rep_tail, rep_slot(c, c->ctl->rep_head), m);
}
int am_chan_recv_reply(am_chan *c, uint8_t slot[AM_CHAN_SLOT_BYTES]) {
    return ring_recv(&c->ctl->rep_head, &c->ctl->rep_tail, c, 1, slot);
}

am_status am_chan_notify(int fd) {
    uint64_t one = 1;
    for (;;) {
        ssize_t w = write(fd, &one, sizeof one);
        if (w == (ssize_t)sizeof one) return AM_OK;
        if (w < 0 && errno == EINTR) continue;
        return am_fail(AM_EIO, "channel: signalling failed (%s)", w < 0 ? strerror(errno) : "short write");
    }
}

am_status am_chan_block(int fd) {
    uint64_t v;
    for (;;) {
        ssize_t r = read(fd, &v, sizeof v);
        if (r == (ssize_t)sizeof v) return AM_OK;
        if (r < 0 && errno == EINTR) continue;
        return am_fail(AM_EIO, "channel: waiting failed (%s)", r < 0 ? strerror(errno) : "short read");
    }
}
