/* The trusted process's lock-down (sandbox.h). Once it holds the key and
 * the data, it must not be able to give them away even if code in it goes
 * wrong (a bug, a malicious reply exploited): after am_trusted_lockdown it
 * has no capabilities (CAP_IPC_LOCK aside, which its locked memory needs)
 * and cannot gain any; it can open files only inside
 * the checkpoint directory (Landlock, and a seccomp rule on the directory
 * descriptor, and the final name never a symbolic link: O_NOFOLLOW is
 * required; without Landlock, a name with ".." could still leave the
 * directory); it cannot create sockets, start programs, map executable
 * memory, or signal any process but its own threads (and the server, where
 * Landlock does not scope signals: ABI 6). What it may write to is what it
 * holds open: its standard streams, the log, the channel and the files it
 * creates in the checkpoint directory. */
#define _GNU_SOURCE
#include "enclave/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define ASYMML_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYMML_SANITIZER_BUILD 1
#endif
#endif
#ifndef ASYMML_SANITIZER_BUILD
#define ASYMML_SANITIZER_BUILD 0
#endif

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif
#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

am_status am_trusted_undumpable(void) {
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) return am_fail(AM_EIO, "trusted process: PR_SET_DUMPABLE failed (%s)", strerror(errno));
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return am_fail(AM_EIO, "trusted process: still dumpable");
    return AM_OK;
}

am_status am_trusted_close_inherited(void) {
    if (syscall(SYS_close_range, 3u, ~0U, 0) == 0) return AM_OK;
    for (int fd = 3; fd < 65536; fd++) close(fd); /* kernels before 5.9 */
    return AM_OK;
}

/* Whether this process holds a capability in its effective set. */
static int has_cap(int cap) {
    struct __user_cap_header_struct hd = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &hd, d)) return 0;
    return (d[cap / 32].effective >> (cap % 32)) & 1;
}

static int g_memory_locked;

am_status am_trusted_lock_memory(void) {
    /* Every later allocation is locked too (MCL_FUTURE), and would fail past
     * a finite limit: lock only where there is none, or where CAP_IPC_LOCK
     * lifts it (that one capability is then kept through the lock-down). */
    struct rlimit lim = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_MEMLOCK, &lim); /* allowed with CAP_SYS_RESOURCE */
    if (!has_cap(CAP_IPC_LOCK) && (getrlimit(RLIMIT_MEMLOCK, &lim) || lim.rlim_cur != RLIM_INFINITY))
        return am_fail(AM_EIO, "RLIMIT_MEMLOCK is %llu KiB: run as root, or raise it (ulimit -l unlimited)",
                       (unsigned long long)(lim.rlim_cur >> 10));
    /* Pages are locked as they are touched (ONFAULT): the shared arena is
     * a large sparse file, and only what is used should count. */
    if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) return am_fail(AM_EIO, "mlockall failed (%s)", strerror(errno));
    g_memory_locked = 1;
    return AM_OK;
}

static am_status drop_capabilities(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return am_fail(AM_EIO, "no_new_privs failed (%s)", strerror(errno));
    /* Locked memory keeps needing CAP_IPC_LOCK for every new allocation;
     * nothing else is kept. The bounding set where this process may (root),
     * the ambient set, then effective, permitted and inheritable. */
    const int keep = g_memory_locked && has_cap(CAP_IPC_LOCK) ? CAP_IPC_LOCK : -1;
    for (int c = 0; c <= CAP_LAST_CAP; c++)
        if (c != keep) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hd = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (keep >= 0) d[keep / 32].effective = d[keep / 32].permitted = 1u << (keep % 32);
    if (syscall(SYS_capset, &hd, d)) return am_fail(AM_EIO, "cannot drop capabilities (%s)", strerror(errno));
    struct __user_cap_data_struct e[2];
    if (syscall(SYS_capget, &hd, e) || memcmp(d, e, sizeof d)) return am_fail(AM_EIO, "capabilities still held after dropping them");
    return AM_OK;
}

/* Landlock: file access only beneath the checkpoint directory. Returns the
 * ABI used, 0 where the kernel has none (or in sanitizer builds, whose
 * runtime reads /proc at exit). */
static int confine_files(int ckdir_fd) {
    if (ASYMML_SANITIZER_BUILD) return 0;
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi <= 0) return 0;
    uint64_t fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                  LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                  LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                  LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                  LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (abi >= 3) fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    /* ABI 6 also scopes signals: none to processes outside this domain. */
    struct {
        uint64_t fs, net, scoped;
    } a = {fs, 0, abi >= 6 ? 2u /* LANDLOCK_SCOPE_SIGNAL */ : 0u};
    int rs = (int)syscall(SYS_landlock_create_ruleset, &a, abi >= 6 ? sizeof a : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t), 0);
    if (rs < 0) return -1;
    int rc = 0;
    if (ckdir_fd >= 0) {
        struct landlock_path_beneath_attr pb = {
            .allowed_access = (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                               LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_TRUNCATE) & fs,
            .parent_fd = ckdir_fd};
        rc = (int)syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    }
    if (!rc) rc = (int)syscall(SYS_landlock_restrict_self, rs, 0);
    close(rs);
    return rc ? -1 : (int)abi;
}

/* A denied call: one line on stderr, exit status 1. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
    (void)sig, (void)ctx;
    char msg[160] = "asymml: sandbox: system call ";
    char num[16];
    int n = si->si_syscall, k = 0;
    do num[k++] = (char)('0' + n % 10); while ((n /= 10) && k < 15);
    size_t l = strlen(msg);
    while (k) msg[l++] = num[--k];
    static const char tail[] = " was denied: the trusted process stops (a bug, or code that should not run here)\n";
    memcpy(msg + l, tail, sizeof tail);
    ssize_t w = write(2, msg, strlen(msg));
    (void)w;
    _exit(1);
}

static int allow(scmp_filter_ctx f, int nr) { return seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0); }

/* Argument arg equals v (every field named: libseccomp's SCMP_A0(SCMP_CMP_EQ,
 * v) leaves the unused second datum out, which clang warns of). */
static struct scmp_arg_cmp eq(unsigned arg, scmp_datum_t v) {
    return (struct scmp_arg_cmp){arg, SCMP_CMP_EQ, v, 0};
}

static am_status filter(const am_lockdown_cfg *c) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_TRAP);
    if (!f) return am_fail(AM_ENOMEM, "sandbox: seccomp_init failed");
    /* The steady state: memory, threads (OpenMP), the channel (eventfd
     * read/write, poll), printing, time, randomness (libsodium). */
    static const int plain[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
        SCMP_SYS(close), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(lseek), SCMP_SYS(fsync),
        SCMP_SYS(fdatasync), SCMP_SYS(getdents64), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk),
        SCMP_SYS(madvise), SCMP_SYS(mbind), SCMP_SYS(get_mempolicy), SCMP_SYS(set_mempolicy), SCMP_SYS(futex),
        SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity), SCMP_SYS(set_robust_list), SCMP_SYS(rseq),
        SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigaction), SCMP_SYS(gettid), SCMP_SYS(getpid),
        SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
        SCMP_SYS(gettimeofday), SCMP_SYS(getrusage), SCMP_SYS(getrandom), SCMP_SYS(poll), SCMP_SYS(ppoll),
        SCMP_SYS(wait4), SCMP_SYS(waitid), SCMP_SYS(restart_syscall), SCMP_SYS(sysinfo),
#if ASYMML_SANITIZER_BUILD
        /* AddressSanitizer's runtime and its leak check at exit (a tracer
         * task that ptraces the threads), in the sanitizer build only: that
         * build is for finding bugs, not for private data. */
        SCMP_SYS(sigaltstack), SCMP_SYS(prctl), SCMP_SYS(readlink), SCMP_SYS(getppid), SCMP_SYS(sched_getparam),
        SCMP_SYS(uname), SCMP_SYS(ptrace), SCMP_SYS(kill), SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(stat),
        SCMP_SYS(lstat), SCMP_SYS(access), SCMP_SYS(pipe), SCMP_SYS(pipe2), SCMP_SYS(dup2), SCMP_SYS(getdents),
        SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sched_setaffinity), SCMP_SYS(mmap), SCMP_SYS(mprotect), SCMP_SYS(clone),
        SCMP_SYS(fcntl),
#endif
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof plain / sizeof *plain && !rc; i++) rc = allow(f, plain[i]);
    /* fcntl: descriptor and status flags only; not F_SETOWN or F_SETSIG,
     * with which O_ASYNC would signal another process. */
    static const int fcntl_ok[] = {F_GETFD, F_SETFD, F_GETFL, F_SETFL};
    for (size_t i = 0; i < sizeof fcntl_ok / sizeof *fcntl_ok && !rc && !ASYMML_SANITIZER_BUILD; i++)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1, eq(1, (scmp_datum_t)fcntl_ok[i]));
    /* Signals: its own threads (abort, OpenMP) and the server. */
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, eq(0, (scmp_datum_t)getpid()));
    if (!rc && c->server_pidfd >= 0)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(pidfd_send_signal), 1, eq(0, (scmp_datum_t)c->server_pidfd));
#if !ASYMML_SANITIZER_BUILD
    /* Memory, never executable; new threads, never new processes (clone3
     * reports ENOSYS so that the C library falls back to clone). */
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    /* Files: only relative to the checkpoint directory, never through a
     * symbolic link. */
    if (!rc && c->ckdir_fd >= 0)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(openat), 2, eq(0, (scmp_datum_t)c->ckdir_fd),
                              SCMP_A2(SCMP_CMP_MASKED_EQ, O_NOFOLLOW, O_NOFOLLOW));
#endif
    if (!rc && c->ckdir_fd >= 0) {
        scmp_datum_t d = (scmp_datum_t)c->ckdir_fd;
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(unlinkat), 1, eq(0, d));
        if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(renameat), 2, eq(0, d), eq(2, d));
        if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(renameat2), 2, eq(0, d), eq(2, d));
    }
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* isatty(): the terminal query only. */
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, eq(1, TCGETS));
    if (!rc) rc = seccomp_load(f);
    seccomp_release(f);
    if (rc) return am_fail(AM_EIO, "sandbox: cannot install the seccomp filter (%s)", strerror(-rc));
    return AM_OK;
}

/* What the lock-down leaves of file access, in words (ll: Landlock took). */
static void files_words(const am_lockdown_cfg *c, int ll, char *out, size_t n) {
    if (c->ckdir_fd < 0) {
        snprintf(out, n, "no files opened (%s)", ll ? "Landlock and seccomp" : "seccomp; no Landlock here");
        return;
    }
    snprintf(out, n, "files only %s the one directory it was given%s%s (%s)", ll ? "in" : "relative to",
             c->dir_what ? ": " : "", c->dir_what ? c->dir_what : "",
             ll ? "Landlock and seccomp" : "seccomp; without Landlock on this kernel a name with '..' could leave it");
}

am_status am_trusted_lockdown(const am_lockdown_cfg *c, char *words, size_t n) {
    AM_TRY(drop_capabilities());
    const int ipc = has_cap(CAP_IPC_LOCK);
    int ll = confine_files(c->ckdir_fd);
    if (ll < 0) return am_fail(AM_EIO, "sandbox: Landlock failed (%s)", strerror(errno));
    AM_TRY(filter(c));
    if (words && n) {
        char files[256];
        files_words(c, ll, files, sizeof files);
        snprintf(words, n, "%s, seccomp-filtered (no sockets, no programs, no executable memory), %s",
                 ipc ? "no capability but CAP_IPC_LOCK (its locked memory needs it)" : "no capabilities", files);
    }
    return AM_OK;
}
