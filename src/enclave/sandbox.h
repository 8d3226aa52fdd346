/* Locking down the enclave process (Linux): see sandbox.c. */
#ifndef ASYMML_ENCLAVE_SANDBOX_H
#define ASYMML_ENCLAVE_SANDBOX_H

#include "asymml/core.h"

/* Not dumpable: no core dumps, and without CAP_SYS_PTRACE no other process
 * (the host included) may ptrace it or read /proc/PID/mem. Call first. */
am_status am_enclave_undumpable(void);
/* mlockall: its pages are never written to swap. Fails without the
 * privilege (RLIMIT_MEMLOCK too low); the caller says so. */
am_status am_enclave_lock_memory(void);
/* The seccomp filter; every later disallowed system call kills the process
 * with SIGSYS. Call once start-up (reading the data) is done. */
am_status am_enclave_sandbox(void);

#endif
