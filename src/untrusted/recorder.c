/* The host's view, recorded: see recorder.h. */
#include "untrusted/recorder.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct rec_be {
    am_backend base;
    am_backend *inner;
    int fd_index, fd_data;
    uint64_t seq, offset;
    uint32_t first, last;    /* the steps recorded, inclusive */
    uint8_t seen[1024 / 8];  /* layers with a request recorded (an unchanged input is then not written again) */
} rec_be;

static am_status write_all(int fd, const void *p, size_t n, const char *what) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return am_fail(AM_EIO, "recorder: cannot write %s (%s)", what, w < 0 ? strerror(errno) : "no space");
        c += w;
        n -= (size_t)w;
    }
    return AM_OK;
}

static const char *req_name(am_req_kind k) {
    return k == AM_REQ_CONV_FWD        ? "conv-forward"
           : k == AM_REQ_CONV_BWD_DATA ? "conv-backward-data"
           : k == AM_REQ_CONV_MODP     ? "conv-mod-p"
                                       : "conv-backward-filter";
}

static am_status record(rec_be *r, const am_req *q, int input, const float *p, am_shape s) {
    size_t n = am_shape_numel(s);
    char line[512];
    int len = snprintf(line, sizeof line,
                       "{\"seq\": %llu, \"step\": %u, \"layer\": %d, \"request\": \"%s\", \"input\": %d, \"kind\": \"%s\", "
                       "\"shape\": [%d, %d, %d, %d], \"offset\": %llu, \"floats\": %zu, \"conv\": {\"out\": %d, "
                       "\"kernel\": [%d, %d], \"stride\": [%d, %d], \"pad\": [%d, %d]}}\n",
                       (unsigned long long)r->seq, q->step, q->layer, req_name(q->kind), input,
                       am_cross_kind_name(input ? q->tag1 : q->tag0), s.n, s.c, s.h, s.w,
                       (unsigned long long)r->offset, n, q->cfg.out_c, q->cfg.kh, q->cfg.kw, q->cfg.sh, q->cfg.sw,
                       q->cfg.ph, q->cfg.pw);
    AM_TRY(write_all(r->fd_data, p, n * sizeof(float), "buffers.f32"));
    AM_TRY(write_all(r->fd_index, line, (size_t)len, "index.jsonl"));
    r->offset += n * sizeof(float);
    return AM_OK;
}

static am_status rec_submit(am_backend *b, const am_req *q) {
    rec_be *r = (rec_be *)b;
    if (!q || !q->in0 || !q->in1 || !q->out) return am_fail(AM_EINVAL, "backend: incomplete request");
    am_shape s0, s1, so;
    AM_TRY(am_req_shapes(q, &s0, &s1, &so));
    if (q->step >= r->first && q->step <= r->last) {
        /* Inputs unchanged since an earlier request were written then, unless
         * that request fell before the window: a layer's first is whole. */
        int seen = q->layer >= 0 && q->layer < 1024 && (r->seen[q->layer / 8] >> (q->layer % 8) & 1);
        if (!seen || !(q->keep & AM_KEEP_IN0)) AM_TRY(record(r, q, 0, q->in0, s0));
        if (!seen || !(q->keep & AM_KEEP_IN1)) AM_TRY(record(r, q, 1, q->in1, s1));
        if (q->layer >= 0 && q->layer < 1024) r->seen[q->layer / 8] |= (uint8_t)(1u << (q->layer % 8));
    }
    r->seq++;
    return r->inner->vt->submit(r->inner, q);
}

/* gpu-only mode: what the host is given is what PUT moves (the batch,
 * labels, weights and state); the other ops run on what is already there. */
static am_status rec_op(am_backend *b, const am_op *o) {
    rec_be *r = (rec_be *)b;
    if (!r->inner->vt->op) return am_fail(AM_EINVAL, "this accelerator runs convs only: no gpu-only mode");
    if (o->kind == AM_OP_PUT && o->b[0] && o->step >= r->first && o->step <= r->last) {
        size_t n = am_shape_numel(o->x);
        char line[320];
        int len = snprintf(line, sizeof line,
                           "{\"seq\": %llu, \"step\": %u, \"layer\": %d, \"request\": \"put\", \"input\": 0, "
                           "\"kind\": \"%s\", \"shape\": [%d, %d, %d, %d], \"offset\": %llu, \"floats\": %zu}\n",
                           (unsigned long long)r->seq, o->step, o->layer, am_cross_kind_name(o->tag), o->x.n, o->x.c,
                           o->x.h, o->x.w, (unsigned long long)r->offset, n);
        AM_TRY(write_all(r->fd_data, o->b[0], n * sizeof(float), "buffers.f32"));
        AM_TRY(write_all(r->fd_index, line, (size_t)len, "index.jsonl"));
        r->offset += n * sizeof(float);
    }
    r->seq++;
    return r->inner->vt->op(r->inner, o);
}

static am_status rec_buffer(am_backend *b, int layer, am_buf_role role, size_t n, float **out) {
    am_backend *in = ((rec_be *)b)->inner;
    return in->vt->buffer(in, layer, role, n, out);
}
static am_status rec_wait(am_backend *b) {
    am_backend *in = ((rec_be *)b)->inner;
    return in->vt->wait(in);
}
static double rec_busy(am_backend *b) {
    am_backend *in = ((rec_be *)b)->inner;
    return in->vt->busy_seconds(in);
}
static am_status rec_adopt(am_backend *b, void *mem, size_t bytes) {
    am_backend *in = ((rec_be *)b)->inner;
    return in->vt->adopt ? in->vt->adopt(in, mem, bytes) : AM_OK;
}

static void rec_destroy(am_backend *b) {
    rec_be *r = (rec_be *)b;
    if (!r) return;
    r->inner->vt->destroy(r->inner);
    close(r->fd_index);
    close(r->fd_data);
    free(r);
}

static const am_backend_vt rec_vt = {"recorder", rec_buffer, rec_submit, rec_wait, rec_busy, rec_destroy, rec_adopt, rec_op};

am_status am_recorder_create(am_backend *inner, int index_fd, int data_fd, uint32_t first, uint32_t last,
                             am_backend **out) {
    *out = NULL;
    if (!inner || index_fd < 0 || data_fd < 0 || first > last) return am_fail(AM_EINVAL, "recorder: bad argument");
    rec_be *r = calloc(1, sizeof *r);
    if (!r) return am_fail(AM_ENOMEM, "recorder: out of memory");
    r->base.vt = &rec_vt;
    r->inner = inner;
    r->fd_index = index_fd;
    r->fd_data = data_fd;
    r->first = first, r->last = last;
    *out = &r->base;
    return AM_OK;
}
