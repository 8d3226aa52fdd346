/* Starting the accelerator server (spawn.h). The trusted process forks; the
 * child, still running trusted code, builds the server's whole world and
 * only then executes it:
 *   - descriptors: exactly the ones given, as 3, 4, ..., and /dev/null as
 *     0, 1 and 2 (the server has nothing to say to the user's terminal,
 *     and so cannot pose as the trusted side there); every other closed;
 *   - identity: when started as root, another user (nobody by default),
 *     with no supplementary groups and so no capabilities;
 *   - no_new_privs, and death with its parent (PR_SET_PDEATHSIG; the
 *     server also watches its parent: some kernels do not deliver it);
 *   - Landlock, where the kernel has it: it can open nothing but the
 *     system's libraries, its own program and the paths given (the
 *     accelerator's device files); with ABI 6 it cannot signal outside
 *     itself either;
 *   - the program, opened by this process and executed by descriptor, with
 *     an allow-listed environment.
 * A pipe that closes on exec tells the parent whether the execution
 * happened, and if not, which step failed. */
#define _GNU_SOURCE
#include "enclave/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Landlock's flags from newer ABIs than this system's header may know. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define LL_SCOPE_SIGNAL (1ULL << 1)

/* The ruleset attribute of ABI 6 (filesystem, network, scopes). */
struct ll_attr {
    uint64_t fs, net, scoped;
};

extern char **environ;

void am_spawn_env(char *const *env, const char **out, int cap) {
    static const char *const keep[] = {"CUDA_VISIBLE_DEVICES=", "CUDA_DEVICE_ORDER=", "CUDA_MODULE_LOADING=",
                                       "NVIDIA_VISIBLE_DEVICES=", "OPENBLAS_CORETYPE=", "OPENBLAS_L2_SIZE=",
                                       "ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS="};
    int n = 0;
    if (cap < 3) {
        if (cap >= 1) out[0] = NULL;
        return;
    }
    out[n++] = "OMP_WAIT_POLICY=passive";
    out[n++] = "GOMP_SPINCOUNT=1000"; /* a brief spin before sleeping: as fast idle, yields when shared */
    for (; env && *env; env++)
        for (size_t k = 0; k < sizeof keep / sizeof *keep && n < cap - 1; k++)
            if (!strncmp(*env, keep[k], strlen(keep[k]))) out[n++] = *env;
    out[n] = NULL;
}

static long ll_create(const struct ll_attr *a, size_t size, unsigned flags) {
    return syscall(SYS_landlock_create_ruleset, a, size, flags);
}

static int ll_add(int ruleset, const char *path, uint64_t handled, int writable) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == EACCES ? 0 : -1;
    struct stat sb;
    int rc = fstat(fd, &sb);
    uint64_t file = LANDLOCK_ACCESS_FS_READ_FILE | (writable ? LANDLOCK_ACCESS_FS_WRITE_FILE : LANDLOCK_ACCESS_FS_EXECUTE);
    uint64_t access = S_ISDIR(sb.st_mode) ? file | LANDLOCK_ACCESS_FS_READ_DIR : file;
    struct landlock_path_beneath_attr pb = {.allowed_access = access & handled, .parent_fd = fd};
    if (!rc) rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    close(fd);
    return rc;
}

/* The server's Landlock ruleset; -1 with *abi 0 where the kernel has none. */
static am_status ll_ruleset(const am_spawn_cfg *c, int *abi, int *out) {
    *out = -1;
    long v = ll_create(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    *abi = v > 0 ? (int)v : 0;
    if (v <= 0) return AM_OK;
    struct ll_attr a = {0};
    a.fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
           LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
           LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
           LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
           LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (v >= 2) a.fs |= LANDLOCK_ACCESS_FS_REFER;
    if (v >= 3) a.fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (v >= 6) a.scoped = LL_SCOPE_SIGNAL;
    int rs = (int)ll_create(&a, v >= 6 ? sizeof a : v >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t), 0);
    if (rs < 0) return am_fail(AM_EIO, "server sandbox: landlock_create_ruleset failed (%s)", strerror(errno));
    int rc = ll_add(rs, c->program, a.fs, 0);
    for (int i = 0; !rc && i < c->n_read; i++) rc = ll_add(rs, c->read_paths[i], a.fs, 0);
    for (int i = 0; !rc && i < c->n_rw; i++) rc = ll_add(rs, c->rw_paths[i], a.fs, 1);
    if (rc) {
        int e = errno;
        close(rs);
        return am_fail(AM_EIO, "server sandbox: a Landlock rule failed (%s)", strerror(e));
    }
    fcntl(rs, F_SETFD, FD_CLOEXEC);
    *out = rs;
    return AM_OK;
}

/* The user the server runs as when this process is root. */
static am_status pick_user(const char *name, am_spawned *s) {
    s->uid = geteuid(), s->gid = getegid();
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (s->uid != 0) {
        if (getpwuid_r(s->uid, &pw, buf, sizeof buf, &res) == 0 && res) snprintf(s->user, sizeof s->user, "%s", pw.pw_name);
        else snprintf(s->user, sizeof s->user, "uid %d", (int)s->uid);
        return AM_OK;
    }
    if (!name) name = "nobody";
    if (getpwnam_r(name, &pw, buf, sizeof buf, &res) || !res)
        return am_fail(AM_EINVAL, "--accel-user: no user '%s' on this system", name);
    if (pw.pw_uid == 0 || pw.pw_gid == 0)
        return am_fail(AM_EINVAL, "--accel-user: '%s' is root; the accelerator server must run as another user", name);
    s->uid = pw.pw_uid, s->gid = pw.pw_gid;
    snprintf(s->user, sizeof s->user, "%s", pw.pw_name);
    return AM_OK;
}

/* In the child: report which step failed, and end. */
__attribute__((noreturn)) static void child_fail(int pipe_w, int step) {
    int msg[2] = {step, errno};
    ssize_t w = write(pipe_w, msg, sizeof msg);
    (void)w;
    _exit(127);
}

__attribute__((noreturn)) static void child(const am_spawn_cfg *c, const am_spawned *s, pid_t parent, int exe,
                                            int devnull, int pipe_w, int ruleset, char *const *envp) {
    /* Final places: the server's descriptors at 3 .. 3+n-1; then, closing
     * on exec, the status pipe, the program and the ruleset; everything
     * from `keep` on is closed. */
    const int n = c->n_fds, keep = 3 + n + 3;
    int src[64 + 4], tmp[64 + 4];
    for (int i = 0; i < n; i++) src[i] = c->fds[i];
    src[n] = pipe_w, src[n + 1] = exe, src[n + 2] = ruleset, src[n + 3] = devnull;
    /* Copies above the final places first, so that no move clobbers. */
    for (int i = 0; i < n + 4; i++) {
        tmp[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, keep) : -1;
        if (src[i] >= 0 && tmp[i] < 0) child_fail(pipe_w, 1);
    }
    pipe_w = tmp[n];
    for (int f = 0; f < 3; f++)
        if (dup2(tmp[n + 3], f) < 0) child_fail(pipe_w, 1);
    for (int i = 0; i < n; i++)
        if (dup2(tmp[i], 3 + i) < 0) child_fail(pipe_w, 1);
    for (int k = 0; k < 3; k++) {
        if (tmp[n + k] >= 0 ? dup3(tmp[n + k], 3 + n + k, O_CLOEXEC) < 0 : close(3 + n + k) < 0 && errno != EBADF)
            child_fail(pipe_w, 1);
    }
    pipe_w = 3 + n, exe = 3 + n + 1, ruleset = ruleset >= 0 ? 3 + n + 2 : -1;
    if (syscall(SYS_close_range, (unsigned)keep, ~0U, 0)) child_fail(pipe_w, 1);
    if (geteuid() == 0 && (setgroups(0, NULL) || setresgid(s->gid, s->gid, s->gid) || setresuid(s->uid, s->uid, s->uid)))
        child_fail(pipe_w, 2);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) child_fail(pipe_w, 3);
    if (ruleset >= 0 && syscall(SYS_landlock_restrict_self, ruleset, 0)) child_fail(pipe_w, 4);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent) child_fail(pipe_w, 5);
    /* A terminal's interrupt is the trusted side's to act on (it saves and
     * stops; the server goes with it), not the server's to die of first. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTERM, SIG_IGN); /* a group's SIGTERM (timeout, systemd) too; the server is stopped with SIGKILL */
    syscall(SYS_execveat, exe, "", c->argv, envp, AT_EMPTY_PATH);
    child_fail(pipe_w, 6);
}

am_status am_spawn(const am_spawn_cfg *c, am_spawned *out) {
    memset(out, 0, sizeof *out);
    out->pid = -1, out->pidfd = -1;
    if (!c || !c->program || !c->argv || !c->argv[0] || c->n_fds < 0 || c->n_fds > 64)
        return am_fail(AM_EINVAL, "spawn: bad argument");
    AM_TRY(pick_user(c->user, out));
    int exe = open(c->program, O_PATH | O_CLOEXEC);
    struct stat sb;
    if (exe < 0 || fstat(exe, &sb) || !S_ISREG(sb.st_mode) || !(sb.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))) {
        int e = exe < 0 ? errno : ENOEXEC;
        if (exe >= 0) close(exe);
        return am_fail(AM_EIO, "%s: cannot run the accelerator server (%s)", c->program, strerror(e));
    }
    int rs = -1, p[2] = {-1, -1}, devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    am_status st = ll_ruleset(c, &out->landlock_abi, &rs);
    const char *envp[32];
    am_spawn_env(environ, envp, 32);
    if (st == AM_OK && (devnull < 0 || pipe2(p, O_CLOEXEC)))
        st = am_fail(AM_EIO, "spawn: cannot set up the server (%s)", strerror(errno));
    if (st == AM_OK) {
        fflush(NULL);
        pid_t parent = getpid();
        out->pid = fork();
        if (out->pid == 0) child(c, out, parent, exe, devnull, p[1], rs, (char *const *)envp);
        if (out->pid < 0) st = am_fail(AM_EIO, "spawn: fork failed (%s)", strerror(errno));
    }
    if (p[1] >= 0) close(p[1]);
    if (st == AM_OK) {
        int msg[2];
        ssize_t r;
        while ((r = read(p[0], msg, sizeof msg)) < 0 && errno == EINTR) {
        }
        if (r == (ssize_t)sizeof msg) {
            static const char *const what[] = {"", "arrange its descriptors", "change to its user",
                                               "set no_new_privs", "enter its Landlock sandbox",
                                               "tie its life to this process", "execute it"};
            int step = msg[0] >= 1 && msg[0] <= 6 ? msg[0] : 0;
            st = am_fail(AM_EIO, "%s: the accelerator server could not %s as %s (%s)", c->program, what[step], out->user,
                         strerror(msg[1]));
            waitpid(out->pid, NULL, 0);
            out->pid = -1;
        }
    }
    if (st == AM_OK) {
        out->pidfd = (int)syscall(SYS_pidfd_open, out->pid, 0);
        if (out->pidfd < 0) {
            st = am_fail(AM_EIO, "spawn: pidfd_open failed (%s)", strerror(errno));
            am_spawn_forget(out);
        }
    }
    if (p[0] >= 0) close(p[0]);
    if (devnull >= 0) close(devnull);
    if (rs >= 0) close(rs);
    close(exe);
    return st;
}

am_status am_spawn_reap(am_spawned *s, int timeout_ms, int *status) {
    *status = 0;
    if (s->pid <= 0) return am_fail(AM_EINVAL, "spawn: no server to reap");
    struct pollfd p = {s->pidfd, POLLIN, 0};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r == 0) {
        am_spawn_forget(s);
        return am_fail(AM_EIO, "the accelerator server did not exit within %d s of its last request", timeout_ms / 1000);
    }
    while (waitpid(s->pid, status, 0) < 0 && errno == EINTR) {
    }
    s->pid = -1;
    close(s->pidfd);
    s->pidfd = -1;
    return AM_OK;
}

void am_spawn_forget(am_spawned *s) {
    if (s->pid > 0) {
        /* Killed where this process may (before its lock-down; or the same
         * user); else it ends when this process does (it watches it). */
        if (s->pidfd >= 0) syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
        waitpid(s->pid, NULL, WNOHANG);
        s->pid = -1;
    }
    if (s->pidfd >= 0) close(s->pidfd);
    s->pidfd = -1;
}
