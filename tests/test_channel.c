/* The channel between the trusted process and the accelerator server:
 * messages round-trip, and the decoder refuses every malformed request
 * (wrong size or magic, unknown kinds, tags or flags, offsets out of the
 * arena or unaligned, shapes that overflow, absurd conv settings; gpu-only
 * mode's ops likewise) with an error instead of touching memory; a reply's words reach the terminal as
 * one line of printable ASCII; the rings hold what they say; the shared
 * file's size is sealed against the server. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "boundary/channel.h"

#define ARENA ((uint64_t)64 << 20)

static am_msg conv(void) {
    am_msg m = {.kind = AM_MSG_CONV, .seq = 7, .conv = AM_REQ_CONV_FWD, .layer = 3,
                .cfg = {.out_c = 8, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
                .x = {4, 16, 10, 10}, .off_in0 = 0, .off_in1 = 1 << 20, .off_out = 2 << 20,
                .tag0 = AM_CROSS_RESIDUAL, .tag1 = AM_CROSS_WEIGHTS, .step = 41, .flags = AM_REQ_EXACT};
    return m;
}

static am_status dec(const am_msg *m, am_msg *out) {
    uint8_t s[AM_CHAN_SLOT_BYTES];
    am_chan_encode(m, s);
    return am_chan_decode_request(s, sizeof s, ARENA, out);
}

static void t_roundtrip(void **st) {
    (void)st;
    am_msg m = conv(), d;
    assert_int_equal(dec(&m, &d), AM_OK);
    assert_int_equal(d.kind, AM_MSG_CONV);
    assert_int_equal(d.seq, 7);
    assert_int_equal(d.layer, 3);
    assert_int_equal(d.cfg.out_c, 8);
    assert_int_equal(d.x.c, 16);
    assert_true(d.off_in1 == 1 << 20 && d.off_out == 2 << 20);
    assert_true(d.tag0 == AM_CROSS_RESIDUAL && d.tag1 == AM_CROSS_WEIGHTS && d.step == 41 && d.flags == AM_REQ_EXACT);
    am_msg b = {.kind = AM_MSG_HELLO, .seq = 1};
    assert_int_equal(dec(&b, &d), AM_OK);
    assert_true(d.kind == AM_MSG_HELLO && d.seq == 1);
    am_msg r = {.kind = AM_MSG_REPLY, .seq = 9, .status = AM_ENOMEM, .busy = 1.5};
    snprintf(r.err, sizeof r.err, "arena full");
    uint8_t s[AM_CHAN_SLOT_BYTES];
    am_chan_encode(&r, s);
    assert_int_equal(am_chan_decode_reply(s, sizeof s, &d), AM_OK);
    assert_true(d.seq == 9 && d.status == AM_ENOMEM && d.busy == 1.5);
    assert_string_equal(d.err, "arena full");
    /* A reply's message is cut at its field, whatever the bytes, and what
     * is not printable ASCII (a new line, a terminal's escape) becomes '?':
     * the server cannot print a line that looks like the trusted side's. */
    memset(s + 128, 'x', AM_CHAN_SLOT_BYTES - 128);
    assert_int_equal(am_chan_decode_reply(s, sizeof s, &d), AM_OK);
    assert_int_equal(strlen(d.err), sizeof d.err - 1);
    snprintf(r.err, sizeof r.err, "ok\nprivacy: epsilon 0.1\033[2J");
    am_chan_encode(&r, s);
    assert_int_equal(am_chan_decode_reply(s, sizeof s, &d), AM_OK);
    assert_string_equal(d.err, "ok?privacy: epsilon 0.1?[2J");
}

static void t_malformed(void **st) {
    (void)st;
    am_msg m, d;
    uint8_t s[AM_CHAN_SLOT_BYTES];
    /* Size and magic. */
    m = conv();
    am_chan_encode(&m, s);
    assert_int_equal(am_chan_decode_request(s, sizeof s - 1, ARENA, &d), AM_EFORMAT);
    assert_int_equal(am_chan_decode_request(NULL, sizeof s, ARENA, &d), AM_EFORMAT);
    s[0] ^= 1;
    assert_int_equal(am_chan_decode_request(s, sizeof s, ARENA, &d), AM_EFORMAT);
    /* A reply where a request belongs, and the reverse. */
    m = (am_msg){.kind = AM_MSG_REPLY};
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv();
    am_chan_encode(&m, s);
    assert_int_equal(am_chan_decode_reply(s, sizeof s, &d), AM_EFORMAT);
    m = (am_msg){.kind = (am_msg_kind)77};
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* Kinds and ranges. */
    m = conv(), m.conv = (am_req_kind)9;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.conv = (am_req_kind)(AM_REQ_CONV_MODP + 1);
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* Blinded inference's conv mod p travels, with its blinded input's kind,
     * and is checked like a forward conv. */
    m = conv(), m.conv = AM_REQ_CONV_MODP, m.tag0 = AM_CROSS_BLINDED;
    assert_int_equal(dec(&m, &d), AM_OK);
    assert_int_equal(d.conv, AM_REQ_CONV_MODP);
    assert_int_equal(d.tag0, AM_CROSS_BLINDED);
    m = conv(), m.conv = AM_REQ_CONV_MODP, m.off_out = ARENA - 64;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.layer = -1;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.cfg.bias = 1; /* the accelerator never adds the bias */
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.cfg.kh = 0;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.cfg.sh = -2;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.cfg.kh = 30; /* a kernel larger than the padded input */
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.x.n = 0;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* Reuse hints: the two known bits travel; any other bit is refused. */
    m = conv(), m.keep = AM_KEEP_IN0 | AM_KEEP_IN1;
    assert_int_equal(dec(&m, &d), AM_OK);
    assert_int_equal(d.keep, AM_KEEP_IN0 | AM_KEEP_IN1);
    m = conv(), m.keep = 4;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.flags = 2;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.tag1 = AM_CROSS_KINDS;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* Shapes whose product overflows 32 or 64 bits, or exceeds the arena. */
    m = conv(), m.x = (am_shape){65536, 65536, 65536, 65536};
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.x = (am_shape){65, 64, 64, 64};
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.cfg.out_c = 65536, m.x.c = 65536;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* Offsets: unaligned, past the end, a buffer that runs over the end,
     * and one that wraps around. */
    m = conv(), m.off_in0 = 4;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.off_out = ARENA;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.off_in1 = ARENA - 64;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    m = conv(), m.off_in0 = UINT64_MAX - 63;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* The output of a backward-data request is the size of the input: it
     * must fit where the forward's output fitted too. */
    m = conv(), m.conv = AM_REQ_CONV_BWD_DATA, m.off_out = ARENA - 4096;
    assert_int_equal(dec(&m, &d), AM_EFORMAT);
    /* Replies with a status no library function returns. */
    m = (am_msg){.kind = AM_MSG_REPLY, .status = 99};
    am_chan_encode(&m, s);
    assert_int_equal(am_chan_decode_reply(s, sizeof s, &d), AM_EFORMAT);
}

/* gpu-only mode's ops: every field round-trips; the decoder refuses an
 * unknown kind or flag, absurd settings (NaN, a pool that does not fit),
 * and any buffer the op's sizes would take outside the arena. */
static am_msg op_msg(void) {
    am_msg m = {.kind = AM_MSG_OP, .seq = 5};
    am_op *o = &m.op;
    o->kind = AM_OP_POOL_BWD, o->layer = 9, o->step = 77, o->flags = AM_OP_ACCUM;
    o->x = am_shape4(4, 16, 8, 8), o->y = am_shape4(4, 16, 4, 4);
    o->pool = (am_pool_cfg){2, 2, 2, 2, 0, 0, 0}, o->pool_kind = AM_POOL_MAX;
    for (int i = 0; i < 5; i++) m.off_b[i] = (uint64_t)(i + 1) << 20;
    return m;
}

static void t_ops(void **st) {
    (void)st;
    am_msg m = op_msg(), d;
    assert_int_equal(dec(&m, &d), AM_OK);
    assert_true(d.kind == AM_MSG_OP && d.seq == 5 && d.op.kind == AM_OP_POOL_BWD && d.op.layer == 9 && d.step == 77);
    assert_true(d.op.flags == AM_OP_ACCUM && d.op.pool.kh == 2 && d.op.y.h == 4 && d.op.pool_kind == AM_POOL_MAX);
    assert_true(d.off_b[4] == (uint64_t)5 << 20 && d.op.b[0] == NULL);
    am_msg s = {.kind = AM_MSG_OP, .seq = 6};
    s.op.kind = AM_OP_SGD, s.op.x = am_shape4(1, 1000, 1, 1), s.op.lr = 0.1f, s.op.momentum = 0.9f, s.op.decay = 5e-4f;
    s.op.flags = AM_OP_NESTEROV | AM_OP_STARTED;
    s.off_b[1] = 1 << 20, s.off_b[2] = 2 << 20;
    assert_int_equal(dec(&s, &d), AM_OK);
    assert_true(d.op.lr == 0.1f && d.op.momentum == 0.9f && d.op.decay == 5e-4f && d.op.flags == (AM_OP_NESTEROV | AM_OP_STARTED));
    am_msg b;
    b = op_msg(), b.op.kind = AM_OP_KINDS;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.flags = 64;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.y.h = 5; /* not what the pool gives */
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.pool_kind = 7;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.off_b[4] = ARENA - 4096; /* dx runs past the end */
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.off_b[2] = 100; /* unaligned */
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.x.n = 0;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.tag = AM_CROSS_KINDS;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = s, b.op.lr = 0.f / 0.f;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = s, b.op.momentum = 1.f;
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = s, b.op.x = am_shape4(1, 1 << 30, 1, 1); /* more floats than the arena */
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    /* Dimensions each in range whose product wraps 2^64 (to 8192 floats). */
    b = op_msg(), b.op.kind = AM_OP_POOL_FWD, b.op.pool_kind = AM_POOL_ADAPTIVE;
    b.op.x = b.op.y = am_shape4(43691, 12026418, 34284, 1024);
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.kind = AM_OP_RELU_FWD, b.op.x = am_shape4(43691, 12026418, 34284, 1024);
    assert_int_equal(dec(&b, &d), AM_EFORMAT);
    b = op_msg(), b.op.kind = AM_OP_LINEAR_FWD, b.op.x = am_shape4(1, 1 << 20, 64, 1), b.op.y = am_shape4(1, 1 << 30, 1, 1);
    assert_int_equal(dec(&b, &d), AM_EFORMAT); /* weights of 2^56 floats */
    am_msg c = {.kind = AM_MSG_OP};
    c.op.kind = AM_OP_CONV_FWD, c.op.x = am_shape4(2, 3, 8, 8), c.op.conv = (am_conv2d_cfg){4, 3, 3, 1, 1, 1, 1, 1};
    c.op.flags = 0; /* the settings have a bias, the flags none */
    assert_int_equal(dec(&c, &d), AM_EFORMAT);
    c.op.flags = AM_OP_BIAS;
    assert_int_equal(dec(&c, &d), AM_OK);
    am_msg l = {.kind = AM_MSG_OP};
    l.op.kind = AM_OP_LOSS, l.op.x = am_shape4(8, 10, 2, 1); /* logits are N x classes */
    assert_int_equal(dec(&l, &d), AM_EFORMAT);
}

static void t_rings(void **st) {
    (void)st;
    am_chan c;
    assert_int_equal(am_chan_create(1 << 20, &c), AM_OK);
    /* The server cannot cut the file short (the trusted side would fault
     * reading it) or grow it, nor lift the seals. */
    assert_int_not_equal(ftruncate(c.fd_mem, 4096), 0);
    assert_int_not_equal(ftruncate(c.fd_mem, (off_t)am_chan_size(1 << 20) * 2), 0);
    assert_true(fcntl(c.fd_mem, F_ADD_SEALS, F_SEAL_WRITE) != 0);
    am_chan e;
    assert_int_equal(am_chan_attach(c.fd_mem, -1, -1, &e), AM_OK);
    e.fd_mem = -1; /* the descriptor belongs to c */
    uint8_t s[AM_CHAN_SLOT_BYTES];
    assert_int_equal(am_chan_recv_request(&c, s), 0);
    am_msg m = {.kind = AM_MSG_BYE};
    for (int i = 0; i < AM_CHAN_SLOTS; i++) {
        m.seq = (uint32_t)i;
        assert_int_equal(am_chan_send_request(&e, &m), AM_OK);
    }
    assert_int_equal(am_chan_send_request(&e, &m), AM_EIO); /* full */
    am_msg d;
    for (int i = 0; i < AM_CHAN_SLOTS; i++) {
        assert_int_equal(am_chan_recv_request(&c, s), 1);
        assert_int_equal(am_chan_decode_request(s, sizeof s, c.arena_bytes, &d), AM_OK);
        assert_int_equal(d.seq, (uint32_t)i);
    }
    assert_int_equal(am_chan_recv_request(&c, s), 0);
    /* Arena writes on one side are seen on the other. */
    memcpy(e.arena + 4096, "residual", 8);
    assert_memory_equal(c.arena + 4096, "residual", 8);
    am_chan_close(&e);
    am_chan_close(&c);
    /* A descriptor that is not a channel. */
    assert_int_equal(am_chan_attach(0, -1, -1, &e), AM_EINVAL);
    assert_int_equal(am_chan_create(12345, &c), AM_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_roundtrip), cmocka_unit_test(t_malformed),
                                       cmocka_unit_test(t_ops), cmocka_unit_test(t_rings)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
