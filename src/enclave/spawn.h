/* Starting the accelerator server: the trusted process is the parent, and
 * chooses everything about its child. See spawn.c. */
#ifndef ASYMML_ENCLAVE_SPAWN_H
#define ASYMML_ENCLAVE_SPAWN_H

#include <sys/types.h>

#include "asymml/core.h"

typedef struct am_spawn_cfg {
    const char *program;     /* the server's path (opened here, executed by descriptor) */
    char *const *argv;       /* its arguments, argv[0] first, NULL-ended */
    const int *fds;          /* descriptors it gets, as 3, 4, ... in this order */
    int n_fds;
    const char *user;        /* started as root: the user it runs as (NULL: nobody; never root) */
    /* Landlock, where the kernel has it: paths it may read (and execute)
     * beneath, and paths it may also write (device files). Paths that do
     * not exist are left out. Everything else it can open is nothing. */
    const char *const *read_paths;
    int n_read;
    const char *const *rw_paths;
    int n_rw;
} am_spawn_cfg;

typedef struct am_spawned {
    pid_t pid;
    int pidfd;         /* readable once it has exited */
    uid_t uid;         /* what it runs as */
    gid_t gid;
    int landlock_abi;  /* the kernel's Landlock ABI, 0 without: then it is confined by its uid alone */
    char user[64];     /* its user's name */
} am_spawned;

/* The environment the server gets: from env, only what the CUDA stack and
 * the sanitizers read and nothing that loads code (no LD_*, no ASYMML_*),
 * plus OMP_WAIT_POLICY=passive and a brief spin (GOMP_SPINCOUNT). Fills
 * out (at most cap - 1 entries, then NULL), pointing into env. */
void am_spawn_env(char *const *env, const char **out, int cap);
/* Starts the server: a child with only cfg->fds (and /dev/null as its
 * standard streams), no_new_privs, killed when this process dies, under
 * cfg->user when this process is root, Landlock-confined where the kernel
 * allows, then the program executed with the allow-listed environment.
 * Fails if the child could not be started or could not execute it. */
am_status am_spawn(const am_spawn_cfg *cfg, am_spawned *out);
/* Waits up to timeout_ms for it to exit and reaps it; *status as waitpid
 * gives it. After that, it is forgotten (am_spawn_forget) and an error. */
am_status am_spawn_reap(am_spawned *s, int timeout_ms, int *status);
/* Kills it where this process may (another user's process needs
 * CAP_KILL, which the locked-down trusted process has given up), reaps it
 * if it has ended, and closes its pidfd. A server left running ends with
 * this process: it watches it. */
void am_spawn_forget(am_spawned *s);

#endif
