/* A hostile accelerator server, for the tests that attack the trusted
 * process from the host's side (process_test.sh). The test installs it as
 * asymml-accel beside a copy of asymml, in a folder whose name says what
 * it does (the trusted process starts it with fixed arguments and a clean
 * environment, so its folder is all it has to go on):
 *   probe   tries to open the test's key and data (beside its folder, as
 *           process_test.sh lays them out: a real host knows the paths
 *           from the command line it sees), to read the trusted process's
 *           memory and to ptrace it; answers HELLO with what it got, as an
 *           error, so that the trusted side prints it
 *   nan     answers every forward request with a NaN in its result
 *   tamper  adds 1 to one value of every forward result
 *   silent  never answers the first conv request
 *   exit    dies at the first conv request
 *   replay  in a resumed run (its first request's step is not 0), scales
 *           every input gradient it returns by 3: the trusted side's
 *           replay of the steps after the checkpoint then computes other
 *           residuals than the first run did, which would share the first
 *           run's noise if a resumed run repeated it
 * Otherwise it serves like asymml-accel with the CPU backend. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>

#include "boundary/channel.h"
#include "untrusted/cpu_backend.h"
#include "untrusted/recorder.h"
#include "untrusted/server.h"

static char mode[32];
static long first_step = -1; /* replay: the step of the first request */

typedef struct evil {
    am_backend base;
    am_backend *in;
} evil;

static am_status e_buffer(am_backend *b, int layer, am_buf_role role, size_t n, float **out) {
    am_backend *in = ((evil *)b)->in;
    return in->vt->buffer(in, layer, role, n, out);
}

static am_status e_submit(am_backend *b, const am_req *q) {
    am_backend *in = ((evil *)b)->in;
    if (!strcmp(mode, "silent")) pause(); /* until the trusted process's end (below) kills it */
    if (!strcmp(mode, "exit")) _exit(3);
    AM_TRY(in->vt->submit(in, q));
    AM_TRY(in->vt->wait(in));
    if (q->kind == AM_REQ_CONV_FWD && !strcmp(mode, "nan")) q->out[1] = NAN;
    if (q->kind == AM_REQ_CONV_FWD && !strcmp(mode, "tamper")) q->out[3] += 1.f;
    if (first_step < 0) first_step = (long)q->step;
    if (q->kind == AM_REQ_CONV_BWD_DATA && !strcmp(mode, "replay") && first_step > 0) {
        am_shape s0, s1, so;
        AM_TRY(am_req_shapes(q, &s0, &s1, &so));
        for (size_t i = 0; i < am_shape_numel(so); i++) q->out[i] *= 3.f;
    }
    return AM_OK;
}

static am_status e_wait(am_backend *b) { return ((evil *)b)->in->vt->wait(((evil *)b)->in); }
static double e_busy(am_backend *b) { return ((evil *)b)->in->vt->busy_seconds(((evil *)b)->in); }
static void e_destroy(am_backend *b) {
    ((evil *)b)->in->vt->destroy(((evil *)b)->in);
    free(b);
}
static const am_backend_vt evil_vt = {"evil", e_buffer, e_submit, e_wait, e_busy, e_destroy, NULL, NULL};

static const char *try_open(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        close(fd);
        return "OPENED";
    }
    return strerror(errno);
}

static void probe(const char *self, char *about, size_t n) {
    char key[4200], img[4200], mem[64];
    snprintf(key, sizeof key, "%s/../key", self);
    snprintf(img, sizeof img, "%s/../data/train-images-idx3-ubyte", self);
    snprintf(mem, sizeof mem, "/proc/%d/mem", (int)getppid());
    const char *k = try_open(key), *d = try_open(img), *m = try_open(mem);
    errno = 0;
    long pt = ptrace(PTRACE_ATTACH, getppid(), NULL, NULL);
    snprintf(about, n, "probe: key %s; data %s; memory %s; ptrace %s", k, d, m, pt == 0 ? "ATTACHED" : strerror(errno));
}

int main(int argc, char **argv) {
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) return 1;
    self[k] = 0;
    *strrchr(self, '/') = 0; /* self: the folder */
    const char *base = strrchr(self, '/') ? strrchr(self, '/') + 1 : self;
    if (strlen(base) >= sizeof mode) return 2;
    memcpy(mode, base, strlen(base) + 1);
    int fd[3] = {3, 4, 5};
    if (argc < 3 || sscanf(argv[2], "%d,%d,%d", &fd[0], &fd[1], &fd[2]) != 3) return 2;
    am_chan ch;
    if (am_chan_attach(fd[0], fd[1], fd[2], &ch) != AM_OK) return 1;
    char about[AM_CHAN_ERR_BYTES] = "a hostile CPU backend";
    evil *e = calloc(1, sizeof *e);
    if (!e || am_cpu_backend_create(&e->in) != AM_OK) return 1;
    e->base.vt = &evil_vt;
    am_backend *be = &e->base;
    /* It records what it receives like asymml-accel (--record A,B last). */
    int ri, rd;
    if (argc >= 11 && !strcmp(argv[argc - 2], "--record") && sscanf(argv[argc - 1], "%d,%d", &ri, &rd) == 2) {
        am_backend *r;
        if (am_recorder_create(be, ri, rd, 0, UINT32_MAX, &r) != AM_OK) return 1;
        be = r;
    }
    if (!strcmp(mode, "probe")) {
        probe(self, about, sizeof about);
        be->vt->destroy(be);
        be = NULL; /* every request, HELLO first, is answered with the report */
    }
    /* The silent one never gets back to its loop: a watcher thread would be
     * needed; a child that waits for the parent's end and kills it will do. */
    int parent = atoi(argv[4]), ppfd = (int)syscall(SYS_pidfd_open, parent, 0);
    if (!strcmp(mode, "silent") && fork() == 0) {
        struct pollfd pf = {ppfd, POLLIN, 0};
        poll(&pf, 1, -1);
        kill(getppid(), SIGKILL);
        _exit(0);
    }
    am_status st = am_server_serve(&ch, be, about, ppfd);
    if (be) be->vt->destroy(be);
    return st == AM_OK ? 0 : 1;
}
