/* The trusted process's lock-down, tried from the inside: what code gone
 * wrong in it (a bug, an exploited reply) would try once it holds the key
 * and the data. Each attempt runs in a child locked down like the trusted
 * process; the parent checks whether the child was stopped by the filter
 * (exit 1, its one-line message), or the call returned. (The capabilities
 * and no_new_privs of the real trusted process are checked from outside,
 * in process_test.sh.) */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "enclave/sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER 1 /* its runtime needs open, mmap and clone: the filter lets them through there */
#else
#define SANITIZER 0
#endif

static char dir[256], ck[300];

enum { STOPPED = 1, RETURNED_OK = 40, RETURNED_ERR = 41 };

/* Runs attempt(ckdir) in a locked-down child; how it ended. */
static int attempt(int (*act)(int ckfd)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2); /* the filter's message is not the test's */
        int ckfd = open(ck, O_RDONLY | O_DIRECTORY);
        am_lockdown_cfg c = {ckfd, -1, "checkpoints"};
        if (am_trusted_lockdown(&c, NULL, 0) != AM_OK) _exit(30);
        _exit(act(ckfd) == 0 ? RETURNED_OK : RETURNED_ERR);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int create_in(int ckfd) {
    int fd = openat(ckfd, "ok", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1 || fsync(fd) || renameat(ckfd, "ok", ckfd, "ok2") || unlinkat(ckfd, "ok2", 0))
        return -1;
    return close(fd);
}
static int follow_link(int ckfd) { return openat(ckfd, "f", O_WRONLY | O_CREAT, 0600) < 0 ? -1 : 0; }
static int open_elsewhere(int ckfd) {
    (void)ckfd;
    return openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_NOFOLLOW) < 0 ? -1 : 0;
}
static int escape_dir(int ckfd) { return openat(ckfd, "../escaped", O_WRONLY | O_CREAT | O_NOFOLLOW, 0600) < 0 ? -1 : 0; }
static int open_plain(int ckfd) {
    (void)ckfd;
    return (int)syscall(SYS_open, "/etc/passwd", O_RDONLY) < 0 ? -1 : 0;
}
static int make_socket(int ckfd) {
    (void)ckfd;
    return socket(AF_INET, SOCK_STREAM, 0) < 0 ? -1 : 0;
}
static int make_socketpair(int ckfd) {
    (void)ckfd;
    int sv[2];
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}
static int run_program(int ckfd) {
    (void)ckfd;
    char *argv[] = {"/bin/true", NULL};
    return execv("/bin/true", argv);
}
static int exec_memory(int ckfd) {
    (void)ckfd;
    return mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1 : 0;
}
static int exec_protect(int ckfd) {
    (void)ckfd;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? -2 : mprotect(p, 4096, PROT_READ | PROT_EXEC);
}
static int new_process(int ckfd) {
    (void)ckfd;
    pid_t p = fork();
    if (p == 0) _exit(0);
    return p < 0 ? -1 : 0;
}
static int signal_parent(int ckfd) {
    (void)ckfd;
    return kill(getppid(), 0);
}
static pid_t tester; /* the test's own process, a target for signals */
static int signal_by_owner(int ckfd) {
    /* O_ASYNC with an owner signals that process when the descriptor turns
     * readable: a way round a filter that checks kill() alone. */
    return fcntl(ckfd, F_SETOWN, tester);
}
static int trace_parent(int ckfd) {
    (void)ckfd;
    return (int)ptrace(PTRACE_ATTACH, getppid(), NULL, NULL);
}
static int unlink_elsewhere(int ckfd) {
    (void)ckfd;
    return unlinkat(AT_FDCWD, "/tmp/asymml-no-such-file", 0);
}
static int rename_out(int ckfd) {
    int fd = openat(ckfd, "r", O_WRONLY | O_CREAT | O_NOFOLLOW, 0600);
    if (fd >= 0) close(fd);
    return renameat(ckfd, "r", AT_FDCWD, "/tmp/asymml-renamed-out");
}
static int threads_and_memory(int ckfd) {
    (void)ckfd;
    /* What training needs goes on: memory, and a new thread. */
    size_t n = (size_t)64 << 20;
    char *p = malloc(n);
    if (!p) return -1;
    memset(p, 1, n);
    free(p);
    pid_t t = (pid_t)syscall(SYS_gettid);
    return t > 0 ? 0 : -1;
}
static int landlock(void) { return syscall(SYS_landlock_create_ruleset, NULL, 0, 1UL) > 0 && !SANITIZER; }

static void t_lockdown(void **st) {
    (void)st;
    /* Allowed: files in the checkpoint directory, memory, threads. */
    assert_int_equal(attempt(create_in), RETURNED_OK);
    assert_int_equal(attempt(threads_and_memory), RETURNED_OK);
    /* Stopped: sockets, programs, new processes, tracing, signals outside. */
    assert_int_equal(attempt(make_socket), STOPPED);
    assert_int_equal(attempt(make_socketpair), STOPPED);
    assert_int_equal(attempt(run_program), STOPPED);
    if (!SANITIZER) {
        assert_int_equal(attempt(signal_parent), STOPPED);
        assert_int_equal(attempt(signal_by_owner), STOPPED);
        assert_int_equal(attempt(trace_parent), STOPPED);
        assert_int_equal(attempt(new_process), STOPPED);
        /* Executable memory, mapped or made so. */
        assert_int_equal(attempt(exec_memory), STOPPED);
        assert_int_equal(attempt(exec_protect), STOPPED);
        /* Files anywhere but the checkpoint directory, or through a link. */
        assert_int_equal(attempt(open_elsewhere), STOPPED);
        assert_int_equal(attempt(open_plain), STOPPED);
        assert_int_equal(attempt(follow_link), STOPPED);
        assert_int_equal(attempt(unlink_elsewhere), STOPPED);
        assert_int_equal(attempt(rename_out), STOPPED);
    }
    /* The directory's descriptor with "..": Landlock keeps it inside. */
    if (landlock()) {
        assert_int_equal(attempt(escape_dir), RETURNED_ERR);
        char p[400];
        snprintf(p, sizeof p, "%s/escaped", dir);
        assert_int_not_equal(access(p, F_OK), 0);
    } else {
        print_message("no Landlock here: '..' below the checkpoint directory is not kept inside\n");
    }
}

/* What the filter prints: one line that names the call. */
static void t_message(void **st) {
    (void)st;
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        am_lockdown_cfg c = {-1, -1, NULL};
        if (am_trusted_lockdown(&c, NULL, 0) != AM_OK) _exit(30);
        socket(AF_INET, SOCK_DGRAM, 0);
        _exit(40);
    }
    close(p[1]);
    char buf[300] = "";
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    int s;
    waitpid(pid, &s, 0);
    close(p[0]);
    assert_true(WIFEXITED(s) && WEXITSTATUS(s) == 1);
    char want[64];
    snprintf(want, sizeof want, "asymml: sandbox: system call %d was denied", (int)SYS_socket);
    assert_non_null(strstr(buf, want));
    assert_int_equal(strchr(buf, '\n') - buf, (long)strlen(buf) - 1);
}

/* Descriptors it was started with are closed; non-dumpable. */
static void t_start(void **st) {
    (void)st;
    int keep = open("/dev/null", O_RDONLY);
    assert_true(keep > 2);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (am_trusted_undumpable() != AM_OK || am_trusted_close_inherited() != AM_OK) _exit(30);
        if (fcntl(keep, F_GETFD) != -1 || errno != EBADF) _exit(31);
        _exit(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : 32);
    }
    int s;
    waitpid(pid, &s, 0);
    assert_true(WIFEXITED(s) && WEXITSTATUS(s) == 0);
    close(keep);
}

int main(void) {
    tester = getpid();
    snprintf(dir, sizeof dir, "/tmp/asymml-sandbox-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    snprintf(ck, sizeof ck, "%s/ck", dir);
    mkdir(ck, 0700);
    symlink("/etc/hostname", (snprintf(ck + strlen(ck), 8, "/f"), ck));
    ck[strlen(ck) - 2] = 0;
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_lockdown), cmocka_unit_test(t_message), cmocka_unit_test(t_start)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) rc = rc ? rc : 1;
    return rc;
}
