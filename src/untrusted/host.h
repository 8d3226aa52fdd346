/* The host process: the untrusted side that owns the accelerator. It starts
 * the enclave program, gives up the privileges that would let it read the
 * enclave's memory, and answers the enclave's requests over the channel
 * until the enclave exits. It never sees the data, the labels or a full
 * activation: only what crosses the channel (what the ledger lists). */
#ifndef ASYMML_UNTRUSTED_HOST_H
#define ASYMML_UNTRUSTED_HOST_H

#include <stdint.h>
#include <sys/types.h>

#include "asymml/core.h"
#include "boundary/backend.h"

typedef struct am_host am_host;

/* Starts `enclave` (a program path) with argv (argv[0] first, NULL-ended)
 * and the argument "--channel=MEM,TOHOST,TOENCLAVE" appended; the channel's
 * arena holds arena_bytes (a sparse file: only what is written takes
 * memory). The accelerator requests are served with a backend from make
 * (NULL: the CPU backend), which is given the arena (vt->adopt). */
am_status am_host_start(const char *enclave, char *const *argv, uint64_t arena_bytes, am_accelerator_fn make,
                        am_host **out);
pid_t am_host_pid(const am_host *h);
/* Drops every capability (CAP_SYS_PTRACE among them) and sets
 * no_new_privs, for good: afterwards this process can neither ptrace the
 * enclave nor read its /proc/PID/mem. */
am_status am_host_drop_privileges(void);
/* Serves requests until the enclave exits (or, with max_requests > 0, until
 * that many were answered: *exit_code is then -1). *exit_code receives the
 * enclave's exit status; a signal death (the sandbox's SIGSYS, a kill)
 * returns an error that says which. */
am_status am_host_serve(am_host *h, long max_requests, int *exit_code);
/* Accelerator seconds spent so far, and bytes of arena in use. */
double am_host_busy_seconds(const am_host *h);
uint64_t am_host_arena_used(const am_host *h);
/* Kills the enclave if it still runs, reaps it, unmaps the channel. */
void am_host_free(am_host *h);

#endif
