/* The channel between the trusted process and the accelerator server (the
 * untrusted process it starts): one shared-memory file (memfd) that both
 * map, and two eventfds for signalling.
 *
 * Layout of the shared file:
 *     [control: ring indices]  [request slots]  [response slots]  [arena]
 * The trusted side creates the file, fixes its size (sealed: the server can
 * neither shrink nor grow it), places every buffer in the arena itself, and
 * writes requests and what it releases (residuals, weights, output
 * gradients); the server answers in the response ring and writes results
 * into the arena. Each message is one fixed-size slot. Every field a
 * message carries is checked by am_chan_decode_* before use: the server
 * must survive any bytes the trusted side's half of the memory holds, and
 * the trusted side any bytes the server's.
 *
 * This header is shared by both sides and includes nothing of either. */
#ifndef ASYMML_BOUNDARY_CHANNEL_H
#define ASYMML_BOUNDARY_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "boundary/backend.h"

#define AM_CHAN_MAGIC 0x4c484341u /* "ACHL" */
#define AM_CHAN_SLOTS 64          /* per ring; a power of two */
#define AM_CHAN_SLOT_BYTES 512
#define AM_CHAN_CONTROL_BYTES 4096
#define AM_CHAN_ARENA_OFFSET (AM_CHAN_CONTROL_BYTES + 2 * AM_CHAN_SLOTS * AM_CHAN_SLOT_BYTES)
#define AM_CHAN_ALIGN 64 /* arena buffers start on this boundary */
#define AM_CHAN_ERR_BYTES 384

typedef enum am_msg_kind {
    AM_MSG_HELLO = 1, /* trusted -> server: are you there? (the reply's err: what the server runs on) */
    AM_MSG_CONV,      /* trusted -> server: an am_req on arena buffers */
    AM_MSG_BYE,       /* trusted -> server: done, no more requests */
    AM_MSG_REPLY,     /* server -> trusted: answer to the request with the same seq */
    AM_MSG_OP,        /* trusted -> server: an am_op on arena buffers (gpu-only mode) */
} am_msg_kind;

/* A request or reply, decoded and checked. */
typedef struct am_msg {
    am_msg_kind kind;
    uint32_t seq;
    /* CONV */
    int layer;
    am_req_kind conv;
    am_conv2d_cfg cfg;
    am_shape x;
    uint64_t off_in0, off_in1, off_out; /* arena offsets in bytes */
    unsigned keep;                      /* am_req.keep */
    am_cross_kind tag0, tag1;           /* am_req.tag0, tag1 */
    unsigned flags;                     /* am_req.flags */
    uint64_t step;                      /* am_req.step */
    /* OP: the op (its b[] NULL) and its buffers' arena offsets */
    am_op op;
    uint64_t off_b[AM_OP_BUFS];
    /* REPLY */
    int status;                  /* am_status of the request */
    double busy;                 /* the server's accelerator seconds so far */
    char err[AM_CHAN_ERR_BYTES]; /* status != AM_OK: the server's message; HELLO: its accelerator */
} am_msg;

/* The control page: ring indices, each written by one side only. */
typedef struct am_chan_control {
    uint32_t magic;
    uint32_t version;
    uint64_t arena_bytes;
    _Alignas(64) volatile uint32_t req_head; /* written by the trusted side */
    _Alignas(64) volatile uint32_t req_tail; /* written by the server */
    _Alignas(64) volatile uint32_t rep_head; /* written by the server */
    _Alignas(64) volatile uint32_t rep_tail; /* written by the trusted side */
} am_chan_control;

/* One side's view of the channel. fd_req signals requests (trusted ->
 * server), fd_rep replies (server -> trusted). */
typedef struct am_chan {
    uint8_t *base;      /* the mapping */
    size_t len;         /* its length */
    am_chan_control *ctl;
    uint8_t *arena;
    uint64_t arena_bytes;
    int fd_mem, fd_req, fd_rep;
} am_chan;

/* Total size of a channel with an arena of arena_bytes. */
size_t am_chan_size(uint64_t arena_bytes);
/* Trusted side: creates the memfd (its size sealed), the eventfds
 * (close-on-exec: the server gets them only as the spawner passes them)
 * and maps the file. The arena is sparse: pages exist once written. */
am_status am_chan_create(uint64_t arena_bytes, am_chan *c);
/* Server: maps the file it was given and checks its control page. */
am_status am_chan_attach(int fd_mem, int fd_req, int fd_rep, am_chan *c);
void am_chan_close(am_chan *c);

/* Encoding into one slot (AM_CHAN_SLOT_BYTES). */
void am_chan_encode(const am_msg *m, uint8_t *slot);
/* Decoding a slot that the other side wrote. A request (HELLO, CONV, BYE) is
 * checked against the arena: offsets aligned and every buffer it names
 * inside it, shapes, conv settings and tags sane and consistent. A reply's
 * message is cut to one line of printable ASCII. Returns AM_OK or
 * AM_EFORMAT with a message; never reads outside the slot. */
am_status am_chan_decode_request(const uint8_t *slot, size_t slot_len, uint64_t arena_bytes, am_msg *m);
am_status am_chan_decode_reply(const uint8_t *slot, size_t slot_len, am_msg *m);

/* Ring operations. send: AM_OK, or AM_EIO when the ring is full. recv: 1 if
 * a message was taken, 0 if the ring was empty. The signalling (eventfd) is
 * separate: am_chan_notify and am_chan_block, or poll the descriptor. */
am_status am_chan_send_request(am_chan *c, const am_msg *m);
int am_chan_recv_request(am_chan *c, uint8_t slot[AM_CHAN_SLOT_BYTES]);
am_status am_chan_send_reply(am_chan *c, const am_msg *m);
int am_chan_recv_reply(am_chan *c, uint8_t slot[AM_CHAN_SLOT_BYTES]);
/* Adds 1 to the eventfd; blocks on it until it is non-zero (and clears it). */
am_status am_chan_notify(int fd);
am_status am_chan_block(int fd);

#endif
