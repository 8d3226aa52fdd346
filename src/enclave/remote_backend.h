/* The accelerator as the trusted process sees it: an am_backend whose
 * buffers the trusted side places in the shared arena and whose requests
 * go to the accelerator server over the channel. */
#ifndef ASYMML_ENCLAVE_REMOTE_BACKEND_H
#define ASYMML_ENCLAVE_REMOTE_BACKEND_H

#include "boundary/backend.h"
#include "boundary/channel.h"

typedef struct am_remote_cfg {
    am_chan *ch;       /* the channel (borrowed; outlives the backend) */
    int server_pidfd;  /* the server's pidfd: its death ends every wait (-1: none) */
    int timeout_ms;    /* the longest wait for one reply (> 0) */
    /* 1: hold requests until wait, so that the server computes only while
     * the trusted side waits (an accelerator on the same cores); 0: send at
     * once, so that the server computes while the trusted side goes on. */
    int defer;
} am_remote_cfg;

am_status am_remote_backend_create(const am_remote_cfg *cfg, am_backend **out);
/* Asks the server whether it is there and what it runs on (its answer,
 * one line, into about). A server that could not start its backend answers
 * with the reason, which this returns as the error. */
am_status am_remote_hello(am_backend *be, char *about, size_t n);

#endif
