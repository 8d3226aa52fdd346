/* The accelerator's replies are not trusted. A backend that lies (the host
 * in the role of the accelerator) is caught: a non-finite value in any
 * reply is refused with an error naming the layer; with verification on
 * (am_model_verify) a single wrong value in a forward result, a weight
 * gradient or an input gradient is caught, while honest replies of every
 * zoo model pass. Over the channel, a server that does not answer or dies
 * ends the wait with an error, replies out of order are refused, and every
 * buffer lies where the trusted side put it: inside the arena, never
 * overlapping another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asymml/asymml.h"
#include "boundary/channel.h"
#include "enclave/remote_backend.h"
#include "untrusted/cpu_backend.h"
#include "fixture.h"

/* ---- a lying backend: the CPU backend, then one value changed ---- */
static struct {
    am_req_kind kind; /* which request's result */
    int active;
    float add;        /* added to one value (NAN: made NaN) */
    size_t where;
    int pair;         /* and subtracted from the same position of the next channel */
} lie;

typedef struct liar {
    am_backend base;
    am_backend *in;
} liar;

static am_status l_buffer(am_backend *b, int layer, am_buf_role role, size_t n, float **out) {
    am_backend *in = ((liar *)b)->in;
    return in->vt->buffer(in, layer, role, n, out);
}
static am_status l_submit(am_backend *b, const am_req *q) {
    am_backend *in = ((liar *)b)->in;
    AM_TRY(in->vt->submit(in, q));
    AM_TRY(in->vt->wait(in));
    if (lie.active && q->kind == lie.kind) {
        am_shape s0, s1, so;
        AM_TRY(am_req_shapes(q, &s0, &s1, &so));
        size_t i = lie.where % am_shape_numel(so), plane = (size_t)so.h * so.w;
        q->out[i] = isnan(lie.add) ? NAN : q->out[i] + lie.add;
        if (lie.pair) q->out[(i + plane) % am_shape_numel(so)] -= lie.add;
    }
    return AM_OK;
}
static am_status l_wait(am_backend *b) { return ((liar *)b)->in->vt->wait(((liar *)b)->in); }
static double l_busy(am_backend *b) { return ((liar *)b)->in->vt->busy_seconds(((liar *)b)->in); }
static void l_destroy(am_backend *b) {
    ((liar *)b)->in->vt->destroy(((liar *)b)->in);
    free(b);
}
static const am_backend_vt liar_vt = {"liar", l_buffer, l_submit, l_wait, l_busy, l_destroy, NULL, NULL};

static am_backend *make_liar(void) {
    liar *l = calloc(1, sizeof *l);
    assert_non_null(l);
    l->base.vt = &liar_vt;
    assert_int_equal(am_cpu_backend_create(&l->in), AM_OK);
    return &l->base;
}

/* One training step of a model in a mode; the status of the first failure. */
static am_status step(const char *name, am_shape in, int B, am_mode mode, int protect, int verify, am_backend *be) {
    static char desc[65536];
    assert_int_equal(am_zoo_describe(name, in, 10, desc, sizeof desc), AM_OK);
    am_model *m = fx_model(desc, 3, B);
    am_asym_cfg c = am_asym_defaults();
    c.mode = mode;
    c.protect_grads = protect;
    if (protect) c.clip = 100.f; /* protected gradients need no noise, but a bound is fine */
    assert_int_equal(am_model_set_asym(m, &c, be), AM_OK);
    am_model_verify(m, verify);
    am_tensor x;
    in.n = B;
    assert_int_equal(am_tensor_alloc(&x, in), AM_OK);
    am_rng r;
    am_rng_seed(&r, 11);
    for (size_t i = 0; i < am_shape_numel(in); i++) x.d[i] = am_rng_normal(&r);
    int32_t lab[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float loss;
    am_status st = am_model_forward(m, &x, 1, &r);
    if (st == AM_OK) st = am_model_loss(m, lab, &loss);
    if (st == AM_OK) st = am_model_backward(m);
    am_tensor_free(&x);
    am_model_free(m);
    return st;
}

static void t_nan_refused(void **st) {
    (void)st;
    am_backend *be = make_liar();
    const am_req_kind kinds[3] = {AM_REQ_CONV_FWD, AM_REQ_CONV_BWD_FILTER, AM_REQ_CONV_BWD_DATA};
    const char *what[3] = {"forward result", "weight gradient", "input gradient"};
    for (int mode = 0; mode < 2; mode++)
        for (int k = 0; k < 3; k++) {
            lie.active = 1, lie.kind = kinds[k], lie.add = NAN, lie.where = 77;
            /* vgg11: every split layer has an input gradient to send back. */
            am_status s = step("vgg11", am_shape4(1, 3, 32, 32), 2, mode ? AM_MODE_OPEN : AM_MODE_ASYMML, 0, 0, be);
            assert_int_equal(s, AM_ENUM);
            assert_non_null(strstr(am_last_error(), "non-finite value in layer"));
            assert_non_null(strstr(am_last_error(), what[k]));
        }
    lie.active = 0;
    assert_int_equal(step("vgg11", am_shape4(1, 3, 32, 32), 2, AM_MODE_ASYMML, 0, 0, be), AM_OK);
    be->vt->destroy(be);
}

/* A wrong value in any reply kind and place: unnoticed without --verify,
 * caught with it. */
static void t_verify_lies(void **st) {
    (void)st;
    am_backend *be = make_liar();
    const am_req_kind kinds[3] = {AM_REQ_CONV_FWD, AM_REQ_CONV_BWD_FILTER, AM_REQ_CONV_BWD_DATA};
    const char *what[3] = {"forward result", "weight gradient", "input gradient"};
    const size_t where[3] = {5, 1234, 4321};
    for (int protect = 0; protect < 2; protect++)
        for (int k = 0; k < 3; k++) {
            print_message("verify: a wrong %s%s\n", what[k], protect ? ", protected gradients" : "");
            for (int w = 0; w < 3; w++) {
                /* One value off by 0.01: unnoticed without verification... */
                lie.active = 1, lie.kind = kinds[k], lie.add = 0.01f, lie.where = where[w];
                assert_int_equal(step("vgg11", am_shape4(1, 3, 32, 32), 2, AM_MODE_ASYMML, protect, 0, be), AM_OK);
                /* ...and caught with it. */
                am_status s = step("vgg11", am_shape4(1, 3, 32, 32), 2, AM_MODE_ASYMML, protect, 1, be);
                if (s != AM_EIO) fail_msg("%s off by 0.01 at %zu passed verification (%d)", what[k], where[w], s);
                assert_non_null(strstr(am_last_error(), "failed verification"));
                assert_non_null(strstr(am_last_error(), what[k]));
            }
        }
    /* An error spread over two channels so that it would cancel under +-1
     * signs (+e in one, -e in the next at the same position): caught every
     * time (with signs alone, half the time). */
    lie.pair = 1;
    for (int trial = 0; trial < 8; trial++) {
        lie.active = 1, lie.kind = AM_REQ_CONV_FWD, lie.add = 0.05f, lie.where = 777;
        am_status s = step("vgg11", am_shape4(1, 3, 32, 32), 2, AM_MODE_ASYMML, 0, 1, be);
        if (s != AM_EIO) fail_msg("an error spread over two channels passed verification in trial %d", trial);
    }
    lie.pair = 0;
    /* Open mode: every conv whole on the accelerator, checked likewise. */
    lie.active = 1, lie.kind = AM_REQ_CONV_FWD, lie.add = -0.5f, lie.where = 9;
    assert_int_equal(step("resnet18", am_shape4(1, 3, 32, 32), 2, AM_MODE_OPEN, 0, 1, be), AM_EIO);
    lie.active = 0;
    be->vt->destroy(be);
}

/* Honest replies pass, model after model: no false alarm from float
 * rounding, whatever the fan-in. */
static void t_verify_honest(void **st) {
    (void)st;
    am_backend *be = make_liar();
    lie.active = 0;
    for (const char *const *n = am_zoo_names(); *n; n++) {
        int lenet = !strcmp(*n, "lenet"), big = strstr(*n, "imagenet") != NULL;
        am_shape in = lenet ? am_shape4(1, 1, 28, 28) : am_shape4(1, 3, big ? 64 : 32, big ? 64 : 32);
        print_message("verify: honest replies, %s\n", *n);
        for (int mode = 0; mode < 2; mode++) {
            am_status s = step(*n, in, 2, mode ? AM_MODE_OPEN : AM_MODE_ASYMML, 0, 1, be);
            if (s != AM_OK) fail_msg("%s (%s): %s", *n, mode ? "open" : "asymml", am_last_error());
        }
    }
    be->vt->destroy(be);
}

/* ---- the channel, with a server played by a thread ---- */
static struct {
    am_chan *ch;
    int behaviour; /* 0 honest, 1 never answers, 2 answers out of order */
} srv;

static void *server(void *arg) {
    (void)arg;
    uint8_t slot[AM_CHAN_SLOT_BYTES];
    for (;;) {
        if (!am_chan_recv_request(srv.ch, slot)) {
            if (am_chan_block(srv.ch->fd_req) != AM_OK) return NULL;
            continue;
        }
        am_msg m, r = {.kind = AM_MSG_REPLY};
        if (am_chan_decode_request(slot, sizeof slot, srv.ch->arena_bytes, &m) != AM_OK) return NULL;
        if (srv.behaviour == 1 && m.kind != AM_MSG_BYE) continue;
        r.seq = srv.behaviour == 2 ? m.seq + 5 : m.seq;
        snprintf(r.err, sizeof r.err, "a thread");
        am_chan_send_reply(srv.ch, &r);
        am_chan_notify(srv.ch->fd_rep);
        if (m.kind == AM_MSG_BYE) return NULL;
    }
}

static void t_channel(void **st) {
    (void)st;
    am_chan ch;
    assert_int_equal(am_chan_create((uint64_t)32 << 20, &ch), AM_OK);
    srv.ch = &ch;
    for (int b = 0; b < 3; b++) {
        srv.behaviour = b;
        pthread_t t;
        pthread_create(&t, NULL, server, NULL);
        am_backend *be;
        am_remote_cfg rc = {&ch, -1, b == 1 ? 300 : 5000, 0};
        assert_int_equal(am_remote_backend_create(&rc, &be), AM_OK);
        char about[64];
        am_status s = am_remote_hello(be, about, sizeof about);
        if (b == 0) {
            assert_int_equal(s, AM_OK);
            assert_string_equal(about, "a thread");
            /* Placement: the trusted side's alone, inside the arena, each
             * buffer apart from every other, also as buffers grow. */
            float *p[6 * AM_BUF_ROLES];
            size_t n[6 * AM_BUF_ROLES];
            for (int round = 0; round < 2; round++)
                for (int l = 0; l < 6; l++)
                    for (int r = 0; r < AM_BUF_ROLES; r++) {
                        size_t k = (size_t)l * AM_BUF_ROLES + r;
                        n[k] = 1000 + 997 * k + 20000 * round * (k % 3);
                        assert_int_equal(be->vt->buffer(be, l, (am_buf_role)r, n[k], &p[k]), AM_OK);
                        assert_true((uint8_t *)p[k] >= ch.arena && (uint8_t *)(p[k] + n[k]) <= ch.arena + ch.arena_bytes);
                        assert_int_equal(((uint8_t *)p[k] - ch.arena) % 4096, 0);
                    }
            for (size_t i = 0; i < 6 * AM_BUF_ROLES; i++)
                for (size_t j = 0; j < i; j++) assert_true(p[i] + n[i] <= p[j] || p[j] + n[j] <= p[i]);
            /* More than the arena holds: refused, not placed past it. */
            float *q;
            assert_int_equal(be->vt->buffer(be, 7, AM_BUF_INPUT, (size_t)9 << 20, &q), AM_ENOMEM);
        } else if (b == 1) {
            assert_int_equal(s, AM_EIO);
            assert_non_null(strstr(am_last_error(), "did not answer"));
        } else {
            assert_int_equal(s, AM_EFORMAT);
            assert_non_null(strstr(am_last_error(), "out of order"));
        }
        be->vt->destroy(be);
        if (b) {
            am_msg bye = {.kind = AM_MSG_BYE, .seq = 999};
            am_chan_send_request(&ch, &bye);
            am_chan_notify(ch.fd_req);
        }
        pthread_join(t, NULL);
        /* Empty the rings for the next round. */
        uint8_t slot[AM_CHAN_SLOT_BYTES];
        while (am_chan_recv_reply(&ch, slot) || am_chan_recv_request(&ch, slot)) {
        }
    }
    am_chan_close(&ch);
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_nan_refused), cmocka_unit_test(t_verify_lies), cmocka_unit_test(t_verify_honest),
                                       cmocka_unit_test(t_channel)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
