/* The accelerator server's loop: the untrusted side's half of the channel.
 * It answers the trusted process's requests with an accelerator backend on
 * buffers that the trusted side placed in the shared arena, and sees only
 * what crosses (what the trusted side's ledger lists). */
#ifndef ASYMML_UNTRUSTED_SERVER_H
#define ASYMML_UNTRUSTED_SERVER_H

#include "boundary/backend.h"
#include "boundary/channel.h"

/* Serves requests on ch with be until the trusted side says BYE (AM_OK),
 * the channel fails, or the trusted process (parent_pidfd, or -1) ends.
 * HELLO is answered with `about` (what the backend runs on). With be NULL,
 * every request is answered with the error `about` (why the backend could
 * not start), so that the trusted side can say why. */
am_status am_server_serve(am_chan *ch, am_backend *be, const char *about, int parent_pidfd);

#endif
