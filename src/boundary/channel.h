/* The channel between the enclave (trusted process) and the host (untrusted
 * process, which owns the accelerator): one shared-memory file (memfd) that
 * both map, and two eventfds for signalling.
 *
 * Layout of the shared file:
 *     [control: ring indices]  [request slots]  [response slots]  [arena]
 * The enclave writes requests into the request ring and what it releases
 * (residuals, weights, output gradients) into arena buffers; the host
 * answers in the response ring and writes results into the arena. Each
 * message is one fixed-size slot. Every field a message carries is checked
 * by am_chan_decode_* before use: the host must survive any bytes the
 * enclave's side of the memory holds, and the enclave any bytes the host's.
 *
 * This header is shared by both sides and includes nothing of either. */
#ifndef ASYMML_BOUNDARY_CHANNEL_H
#define ASYMML_BOUNDARY_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "boundary/backend.h"

#define AM_CHAN_MAGIC 0x4c484341u /* "ACHL" */
#define AM_CHAN_SLOTS 64          /* per ring; a power of two */
#define AM_CHAN_SLOT_BYTES 256
#define AM_CHAN_CONTROL_BYTES 4096
#define AM_CHAN_ARENA_OFFSET (AM_CHAN_CONTROL_BYTES + 2 * AM_CHAN_SLOTS * AM_CHAN_SLOT_BYTES)
#define AM_CHAN_ALIGN 64 /* arena buffers start on this boundary */

typedef enum am_msg_kind {
    AM_MSG_BUFFER = 1, /* enclave -> host: a buffer for (layer, role) of n floats */
    AM_MSG_CONV,       /* enclave -> host: an am_req on arena buffers */
    AM_MSG_BYE,        /* enclave -> host: done, no more requests */
    AM_MSG_REPLY,      /* host -> enclave: answer to the request with the same seq */
} am_msg_kind;

/* A request or reply, decoded and checked. */
typedef struct am_msg {
    am_msg_kind kind;
    uint32_t seq;
    /* BUFFER */
    int layer;
    am_buf_role role;
    uint64_t n;
    /* CONV */
    am_req_kind conv;
    am_conv2d_cfg cfg;
    am_shape x;
    uint64_t off_in0, off_in1, off_out; /* arena offsets in bytes */
    unsigned keep;                      /* am_req.keep */
    /* REPLY */
    int status;         /* am_status of the request */
    uint64_t off;       /* BUFFER: where the buffer is */
    double busy;        /* the host's accelerator seconds so far */
    char err[128];      /* status != AM_OK: the host's message */
} am_msg;

/* The control page: ring indices, each written by one side only. */
typedef struct am_chan_control {
    uint32_t magic;
    uint32_t version;
    uint64_t arena_bytes;
    _Alignas(64) volatile uint32_t req_head; /* written by the enclave */
    _Alignas(64) volatile uint32_t req_tail; /* written by the host */
    _Alignas(64) volatile uint32_t rep_head; /* written by the host */
    _Alignas(64) volatile uint32_t rep_tail; /* written by the enclave */
} am_chan_control;

/* One side's view of the channel. */
typedef struct am_chan {
    uint8_t *base;      /* the mapping */
    size_t len;         /* its length */
    am_chan_control *ctl;
    uint8_t *arena;
    uint64_t arena_bytes;
    int fd_mem, fd_to_host, fd_to_enclave;
} am_chan;

/* Total size of a channel with an arena of arena_bytes. */
size_t am_chan_size(uint64_t arena_bytes);
/* Host: creates the memfd and the eventfds (not close-on-exec, for the
 * enclave to inherit) and maps the file. */
am_status am_chan_create(uint64_t arena_bytes, am_chan *c);
/* Enclave: maps the inherited file and checks its control page. */
am_status am_chan_attach(int fd_mem, int fd_to_host, int fd_to_enclave, am_chan *c);
void am_chan_close(am_chan *c);

/* Encoding into one slot (AM_CHAN_SLOT_BYTES). */
void am_chan_encode(const am_msg *m, uint8_t *slot);
/* Decoding a slot that the other side wrote. A request (BUFFER, CONV, BYE)
 * is checked against the arena: offsets aligned and every buffer it names
 * inside it, shapes and conv settings sane and consistent. Returns AM_OK or
 * AM_EFORMAT with a message; never reads outside the slot. */
am_status am_chan_decode_request(const uint8_t *slot, size_t slot_len, uint64_t arena_bytes, am_msg *m);
am_status am_chan_decode_reply(const uint8_t *slot, size_t slot_len, am_msg *m);

/* Ring operations. send: 0 on success, AM_EAGAIN-like failure when full is
 * reported as AM_EIO. recv: 1 if a message was taken, 0 if the ring was
 * empty. The signalling (eventfd) is separate: am_chan_notify / am_chan_block. */
am_status am_chan_send_request(am_chan *c, const am_msg *m);
int am_chan_recv_request(am_chan *c, uint8_t slot[AM_CHAN_SLOT_BYTES]);
am_status am_chan_send_reply(am_chan *c, const am_msg *m);
int am_chan_recv_reply(am_chan *c, uint8_t slot[AM_CHAN_SLOT_BYTES]);
/* Adds 1 to the eventfd; blocks on it until it is non-zero (and clears it). */
am_status am_chan_notify(int fd);
am_status am_chan_block(int fd);

#endif
