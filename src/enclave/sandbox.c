/* The enclave process's lock-down: non-dumpable from its first
 * instruction, memory locked, and a seccomp filter that allows only the
 * system calls training needs once the data are loaded. */
#define _GNU_SOURCE
#include "enclave/sandbox.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

am_status am_enclave_undumpable(void) {
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) return am_fail(AM_EIO, "enclave: PR_SET_DUMPABLE failed (%s)", strerror(errno));
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return am_fail(AM_EIO, "enclave: still dumpable");
    return AM_OK;
}

am_status am_enclave_lock_memory(void) {
    /* Pages are locked as they are touched (ONFAULT): the shared arena is
     * a large sparse file, and only what is used should count. */
    if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT))
        return am_fail(AM_EIO, "mlockall failed (%s)", strerror(errno));
    return AM_OK;
}

/* With ASYMML_SANDBOX_TRAP set, a denied call prints its number and exits
 * 159 instead of a silent SIGSYS kill: for finding what the list lacks. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
    (void)sig, (void)ctx;
    char msg[96] = "asymml-enclave: sandbox: system call ";
    char num[16];
    int n = si->si_syscall, k = 0;
    do num[k++] = (char)('0' + n % 10); while ((n /= 10) && k < 15);
    size_t l = strlen(msg);
    while (k) msg[l++] = num[--k];
    memcpy(msg + l, " denied\n", 9);
    ssize_t w = write(2, msg, strlen(msg));
    (void)w;
    _exit(159);
}

am_status am_enclave_sandbox(void) {
    int trap = getenv("ASYMML_SANDBOX_TRAP") != NULL;
    if (trap) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSYS, &sa, NULL);
    }
    scmp_filter_ctx f = seccomp_init(trap ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
    if (!f) return am_fail(AM_ENOMEM, "sandbox: seccomp_init failed");
    /* The steady state: memory, threads (OpenMP), the channel (eventfd
     * read/write), printing, checkpoint files, time. */
    static const int allow[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
        SCMP_SYS(close), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(lseek),
        SCMP_SYS(openat), SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(rename), SCMP_SYS(renameat),
        SCMP_SYS(renameat2), SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(getdents64), SCMP_SYS(fcntl),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(mprotect), SCMP_SYS(brk), SCMP_SYS(madvise),
        SCMP_SYS(mbind), SCMP_SYS(get_mempolicy), SCMP_SYS(set_mempolicy),
        SCMP_SYS(futex), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity), SCMP_SYS(set_robust_list),
        SCMP_SYS(rseq), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigaction), SCMP_SYS(gettid), SCMP_SYS(getpid),
        SCMP_SYS(tgkill), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep),
        SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday), SCMP_SYS(getrusage), SCMP_SYS(getrandom),
#if ASYMML_SANITIZER_BUILD
        /* AddressSanitizer's runtime and its leak check at exit (a tracer
         * task that ptraces the threads), in the sanitizer build only: that
         * build is for finding bugs, not for private data. */
        SCMP_SYS(sigaltstack), SCMP_SYS(prctl), SCMP_SYS(readlink), SCMP_SYS(getppid), SCMP_SYS(sched_getparam),
        SCMP_SYS(uname), SCMP_SYS(ptrace), SCMP_SYS(wait4), SCMP_SYS(waitid), SCMP_SYS(kill), SCMP_SYS(open),
        SCMP_SYS(stat), SCMP_SYS(lstat), SCMP_SYS(access), SCMP_SYS(pipe), SCMP_SYS(pipe2), SCMP_SYS(dup2),
        SCMP_SYS(getdents), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sched_setaffinity),
#endif
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof allow / sizeof *allow && !rc; i++) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, allow[i], 0);
    /* New threads only (clone with CLONE_THREAD), never new processes;
     * clone3 reports ENOSYS so that the C library falls back to clone. */
#if ASYMML_SANITIZER_BUILD
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0);
#else
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
#endif
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* isatty(): the terminal query only. */
    if (!rc) rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));
    if (!rc) rc = seccomp_load(f);
    seccomp_release(f);
    if (rc) return am_fail(AM_EIO, "sandbox: cannot install the seccomp filter (%s)", strerror(-rc));
    return AM_OK;
}
