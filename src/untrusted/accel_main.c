/* asymml-accel: the accelerator server, the untrusted side's program. The
 * trusted process (asymml train|eval|bench --tee process) starts it from a
 * fixed path beside itself, with an allow-listed environment, only the
 * channel's descriptors (and /dev/null as its standard streams), and under
 * the confinement the trusted side chose (another uid when started as root,
 * no_new_privs, Landlock where the kernel has it). It answers conv requests
 * on the shared arena with the CPU or the CUDA backend until the trusted
 * side says BYE. It has nothing to print: its errors travel back in its
 * replies, and its exit status says whether it ended well.
 *
 *   asymml-accel --channel MEM,REQ,REP --parent PID --accel cpu|cuda --threads N
 *                [--record-steps FIRST-LAST --record INDEX,DATA]
 *
 * It ends when the trusted process (PID, its parent) does, whatever kills
 * that one: it watches a pidfd of it (the kernel's parent-death signal is
 * not enough: some kernels do not deliver it, and the trusted process,
 * without capabilities, may not signal a server of another user).
 * Exit: 0 after BYE, 1 when the channel failed or the parent ended, 2 on
 * bad arguments. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "asymml/core.h"
#include "boundary/channel.h"
#include "untrusted/cpu_backend.h"
#include "untrusted/cuda/cuda_backend.h"
#include "untrusted/recorder.h"
#include "untrusted/server.h"

/* "A,B[,C]" of descriptors; returns how many were read. */
static int fds(const char *s, int *out, int max) {
    int n = 0;
    char *end;
    while (n < max && *s) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1 << 20) return 0;
        out[n++] = (int)v;
        if (*end != ',') return *end ? 0 : n;
        s = end + 1;
    }
    return *s ? 0 : n;
}

int main(int argc, char **argv) {
    int ch_fd[3], rec_fd[2], threads = 1, have_ch = 0, have_rec = 0, parent = 0;
    const char *accel = "cpu";
    unsigned first = 0, last = UINT32_MAX;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--channel")) have_ch = fds(v, ch_fd, 3) == 3;
        else if (!strcmp(k, "--record")) have_rec = fds(v, rec_fd, 2) == 2;
        else if (!strcmp(k, "--record-steps")) {
            if (sscanf(v, "%u-%u", &first, &last) != 2 || first > last) return 2;
        } else if (!strcmp(k, "--accel")) accel = v;
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--parent")) parent = atoi(v);
        else return 2;
    }
    if (!have_ch || argc % 2 == 0 || threads < 1 || threads > 1024 || parent < 1 ||
        (strcmp(accel, "cpu") && strcmp(accel, "cuda")))
        return 2;
    int ppfd = (int)syscall(SYS_pidfd_open, parent, 0);
    if (ppfd < 0 || getppid() != parent) return 1; /* already orphaned */
    am_chan ch;
    if (am_chan_attach(ch_fd[0], ch_fd[1], ch_fd[2], &ch) != AM_OK) return 1;
    am_set_threads(threads);
    am_backend *be = NULL;
    char about[AM_CHAN_ERR_BYTES];
    am_status st = !strcmp(accel, "cuda") ? am_cuda_backend_create(&be) : am_cpu_backend_create(&be);
    if (st == AM_OK && have_rec) {
        am_backend *rb;
        st = am_recorder_create(be, rec_fd[0], rec_fd[1], first, last, &rb);
        if (st == AM_OK) be = rb;
        else be->vt->destroy(be), be = NULL;
    }
    if (st == AM_OK && be->vt->adopt) st = be->vt->adopt(be, ch.arena, ch.arena_bytes);
    if (st == AM_OK && !strcmp(accel, "cuda")) am_cuda_describe(about, sizeof about);
    else if (st == AM_OK) snprintf(about, sizeof about, "the CPU backend, %d thread%s", threads, threads == 1 ? "" : "s");
    else snprintf(about, sizeof about, "the accelerator server could not start its %s backend: %s", accel, am_last_error());
    if (st != AM_OK && be) be->vt->destroy(be), be = NULL;
    st = am_server_serve(&ch, be, about, ppfd);
    if (be) be->vt->destroy(be);
    am_chan_close(&ch);
    return st == AM_OK ? 0 : 1;
}
