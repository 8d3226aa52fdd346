/* The host process's side of the channel: spawn the enclave, drop
 * privileges, serve requests with an accelerator backend (the CPU's
 * kernels, or the GPU) on arena buffers. See host.h. */
#define _GNU_SOURCE
#include "untrusted/host.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "boundary/channel.h"
#include "untrusted/cpu_backend.h"

struct am_host {
    am_chan ch;
    pid_t pid;
    int pidfd;
    int reaped, status;
    uint64_t next;    /* arena bump pointer (bytes) */
    am_backend *acc;  /* its kernels and workspace; its own buffers are unused */
    double busy;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

am_status am_host_start(const char *enclave, char *const *argv, uint64_t arena_bytes, am_accelerator_fn make,
                        am_host **out) {
    *out = NULL;
    if (!enclave || !argv || !argv[0]) return am_fail(AM_EINVAL, "host: no enclave program");
    if (access(enclave, X_OK)) return am_fail(AM_EIO, "%s: cannot run the enclave program (%s)", enclave, strerror(errno));
    am_host *h = calloc(1, sizeof *h);
    if (!h) return am_fail(AM_ENOMEM, "host: out of memory");
    h->pidfd = -1;
    am_status st = am_chan_create(arena_bytes, &h->ch);
    if (st == AM_OK) st = (make ? make : am_cpu_backend_create)(&h->acc);
    if (st == AM_OK && h->acc->vt->adopt) st = h->acc->vt->adopt(h->acc, h->ch.arena, h->ch.arena_bytes);
    int argc = 0;
    while (argv[argc]) argc++;
    char chan[96];
    snprintf(chan, sizeof chan, "--channel=%d,%d,%d", h->ch.fd_mem, h->ch.fd_to_host, h->ch.fd_to_enclave);
    char **av = st == AM_OK ? calloc((size_t)argc + 2, sizeof *av) : NULL;
    if (st == AM_OK && !av) st = am_fail(AM_ENOMEM, "host: out of memory");
    if (st != AM_OK) {
        am_host_free(h);
        return st;
    }
    for (int i = 0; i < argc; i++) av[i] = argv[i];
    av[argc] = chan;
    fflush(NULL);
    pid_t parent = getpid();
    h->pid = fork();
    if (h->pid == 0) {
        /* The enclave dies with its host: nothing would answer it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        execv(enclave, av);
        _exit(127);
    }
    free(av);
    if (h->pid < 0) {
        st = am_fail(AM_EIO, "host: cannot start the enclave (%s)", strerror(errno));
        am_host_free(h);
        return st;
    }
    h->pidfd = (int)syscall(SYS_pidfd_open, h->pid, 0);
    *out = h;
    return AM_OK;
}

pid_t am_host_pid(const am_host *h) { return h->pid; }
double am_host_busy_seconds(const am_host *h) { return h->busy; }
uint64_t am_host_arena_used(const am_host *h) { return h->next; }

am_status am_host_drop_privileges(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return am_fail(AM_EIO, "host: no_new_privs failed (%s)", strerror(errno));
    /* Empty the bounding set where allowed, then effective, permitted and
     * inheritable sets. */
    for (int c = 0; c <= CAP_LAST_CAP; c++) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    struct __user_cap_header_struct hd = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &hd, d)) return am_fail(AM_EIO, "host: cannot drop capabilities (%s)", strerror(errno));
    memset(d, 0xff, sizeof d);
    if (syscall(SYS_capget, &hd, d) || d[0].effective || d[0].permitted || d[1].effective || d[1].permitted)
        return am_fail(AM_EIO, "host: capabilities still held after dropping them");
    return AM_OK;
}

static am_status handle(am_host *h, const am_msg *m, am_msg *rep) {
    switch (m->kind) {
    case AM_MSG_BYE: return AM_OK;
    case AM_MSG_BUFFER: {
        /* Each buffer on its own pages (a multiple of AM_CHAN_ALIGN), so that a
         * GPU backend can pin buffers one by one. */
        const uint64_t page = 4096;
        uint64_t off = (h->next + page - 1) / page * page;
        if (off > h->ch.arena_bytes || m->n * 4 > h->ch.arena_bytes - off)
            return am_fail(AM_ENOMEM, "shared arena full: %llu MiB in use, %llu MiB more asked for (--shm-mib)",
                           (unsigned long long)(h->next >> 20), (unsigned long long)((m->n * 4) >> 20));
        rep->off = off;
        h->next = off + m->n * 4;
        return AM_OK;
    }
    case AM_MSG_CONV: {
        uint8_t *a = h->ch.arena;
        am_req q = {m->conv, m->layer, m->cfg, m->x, (const float *)(a + m->off_in0), (const float *)(a + m->off_in1),
                    (float *)(a + m->off_out), m->keep};
        double t0 = now();
        am_status st = h->acc->vt->submit(h->acc, &q);
        if (st == AM_OK) st = h->acc->vt->wait(h->acc);
        h->busy += now() - t0;
        return st;
    }
    default: return am_fail(AM_EFORMAT, "unexpected message");
    }
}

/* Reaps the enclave; a signal death becomes an error that names it. */
static am_status reap(am_host *h, int *exit_code) {
    if (!h->reaped) {
        while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR) {
        }
        h->reaped = 1;
    }
    if (WIFEXITED(h->status)) {
        *exit_code = WEXITSTATUS(h->status);
        return AM_OK;
    }
    *exit_code = 128 + (WIFSIGNALED(h->status) ? WTERMSIG(h->status) : 0);
    if (WIFSIGNALED(h->status) && WTERMSIG(h->status) == SIGSYS)
        return am_fail(AM_EIO, "the enclave was killed by its sandbox: it made a system call the filter does not allow");
    if (WIFSIGNALED(h->status))
        return am_fail(AM_EIO, "the enclave was killed by signal %d (%s)", WTERMSIG(h->status), strsignal(WTERMSIG(h->status)));
    return am_fail(AM_EIO, "the enclave ended abnormally");
}

am_status am_host_serve(am_host *h, long max_requests, int *exit_code) {
    *exit_code = 1;
    uint8_t slot[AM_CHAN_SLOT_BYTES];
    long served = 0;
    for (;;) {
        if (max_requests > 0 && served >= max_requests) {
            *exit_code = -1;
            return AM_OK;
        }
        /* Drain the request ring, then sleep until signalled or the enclave
         * exits. */
        while ((max_requests <= 0 || served < max_requests) && am_chan_recv_request(&h->ch, slot)) {
            served++;
            am_msg m, rep = {.kind = AM_MSG_REPLY};
            am_status st = am_chan_decode_request(slot, sizeof slot, h->ch.arena_bytes, &m);
            rep.seq = m.seq;
            if (st == AM_OK) st = handle(h, &m, &rep);
            rep.status = st;
            rep.busy = h->busy;
            if (st != AM_OK) snprintf(rep.err, sizeof rep.err, "%s", am_last_error());
            AM_TRY(am_chan_send_reply(&h->ch, &rep));
            AM_TRY(am_chan_notify(h->ch.fd_to_enclave));
        }
        struct pollfd p[2] = {{h->ch.fd_to_host, POLLIN, 0}, {h->pidfd, POLLIN, 0}};
        int np = h->pidfd >= 0 ? 2 : 1;
        int r = poll(p, (nfds_t)np, h->pidfd >= 0 ? -1 : 100);
        if (r < 0 && errno != EINTR) return am_fail(AM_EIO, "host: poll failed (%s)", strerror(errno));
        if (r > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(h->ch.fd_to_host, &v, sizeof v) < 0 && errno != EINTR && errno != EAGAIN)
                return am_fail(AM_EIO, "host: channel read failed (%s)", strerror(errno));
            continue;
        }
        int exited = np == 2 ? r > 0 && (p[1].revents & (POLLIN | POLLHUP)) : 0;
        if (np == 1 && waitpid(h->pid, &h->status, WNOHANG) == h->pid) h->reaped = 1, exited = 1;
        if (exited) {
            /* Answer what it left in the ring? No one is there to read it. */
            return reap(h, exit_code);
        }
    }
}

void am_host_free(am_host *h) {
    if (!h) return;
    if (h->pid > 0 && !h->reaped) {
        kill(h->pid, SIGKILL);
        while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR) {
        }
    }
    if (h->pidfd >= 0) close(h->pidfd);
    if (h->acc) h->acc->vt->destroy(h->acc);
    am_chan_close(&h->ch);
    free(h);
}
