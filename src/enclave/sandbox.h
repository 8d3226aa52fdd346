/* The trusted process's lock-down (Linux) in --tee process runs: see
 * sandbox.c for what each step stops. In order: am_trusted_undumpable and
 * am_trusted_close_inherited first of all, am_trusted_lock_memory before
 * any key or data is read, am_trusted_lockdown once the data are loaded,
 * the server started and the checkpoint directory and log opened. */
#ifndef ASYMML_ENCLAVE_SANDBOX_H
#define ASYMML_ENCLAVE_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

#include "asymml/core.h"

/* Not dumpable: no core dumps, and no process without CAP_SYS_PTRACE (the
 * server included) may ptrace it or read its /proc/PID/mem. */
am_status am_trusted_undumpable(void);
/* Closes every descriptor above 2 this process was started with: nothing
 * the launching process left open (a socket, a file) is writable from here. */
am_status am_trusted_close_inherited(void);
/* mlockall: its pages are never written to swap. Fails without the
 * privilege (RLIMIT_MEMLOCK too low); the caller says so. */
am_status am_trusted_lock_memory(void);

typedef struct am_lockdown_cfg {
    int ckdir_fd;     /* the checkpoint directory, the only place files may be opened (-1: none) */
    int server_pidfd; /* the accelerator server, the only process that may be signalled (-1: none) */
    const char *dir_what; /* what that directory holds, for the words (NULL: files) */
} am_lockdown_cfg;

/* Drops every capability (bounding, ambient, permitted, effective; but
 * CAP_IPC_LOCK where the memory was locked with it) and
 * sets no_new_privs; where the kernel has Landlock, confines file access to
 * the checkpoint directory; then installs the seccomp filter. A system call
 * outside it stops the process with a one-line message and exit status 1.
 * words (may be NULL) receives what was applied, for the start-up lines. */
am_status am_trusted_lockdown(const am_lockdown_cfg *c, char *words, size_t n);

#endif
