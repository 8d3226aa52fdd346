/* The enclave's accelerator backend: requests go to the host process over
 * the shared-memory channel. One backend at a time per channel. */
#ifndef ASYMML_ENCLAVE_REMOTE_BACKEND_H
#define ASYMML_ENCLAVE_REMOTE_BACKEND_H

#include "boundary/backend.h"
#include "boundary/channel.h"

/* The channel that backends made from now on talk over. */
void am_remote_backend_use(am_chan *ch);
am_status am_remote_backend_create(am_backend **out);
/* on: backends made from now on hold requests until wait (the host then
 * computes only while the enclave waits); off (default): send at once. */
void am_remote_backend_defer(int on);

#endif
