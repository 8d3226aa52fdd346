/* The process boundary from the host's side: once the enclave runs and the
 * host has dropped its privileges, the host cannot read the enclave's
 * memory (ptrace, /proc/PID/mem, process_vm_readv are refused), the enclave
 * runs under its seccomp filter with its memory locked where allowed, and
 * the host holds no capabilities and cannot regain any. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "untrusted/host.h"

/* A field of /proc/PID/status, or "" when absent. */
static void status_field(pid_t pid, const char *key, char *out, size_t n) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    out[0] = 0;
    FILE *f = fopen(p, "r");
    if (!f) return;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            const char *v = line + kl + 1;
            while (*v == ' ' || *v == '\t') v++;
            snprintf(out, n, "%s", v);
            out[strcspn(out, "\n")] = 0;
        }
    fclose(f);
}

static void t_host_cannot_read_enclave(void **st) {
    (void)st;
    char *argv[] = {"asymml-enclave", "bench", "--models", "lenet", "--input", "1,28,28", "--batch", "4",
                    "--steps", "50", "--warmup", "0", "--mode", "asymml", "--tee", "process", NULL};
    am_host *h;
    assert_int_equal(am_host_start(ASYMML_ENCLAVE_BIN, argv, (uint64_t)256 << 20, NULL, &h), AM_OK);
    assert_int_equal(am_host_drop_privileges(), AM_OK);
    /* The enclave's first request comes after its start-up and lock-down. */
    int code;
    if (am_host_serve(h, 1, &code) != AM_OK) fail_msg("%s", am_last_error());
    assert_int_equal(code, -1);
    pid_t pid = am_host_pid(h);
    print_message("enclave %d: probing from the host\n", (int)pid);

    char p[64];
    snprintf(p, sizeof p, "/proc/%d/mem", (int)pid);
    int fd = open(p, O_RDONLY);
    int e = errno;
    if (fd >= 0) close(fd);
    assert_true(fd < 0 && (e == EACCES || e == EPERM));

    errno = 0;
    long r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
    assert_true(r < 0 && errno == EPERM);
    errno = 0;
    r = ptrace(PTRACE_SEIZE, pid, NULL, NULL);
    assert_true(r < 0 && errno == EPERM);

    char buf[64];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
    errno = 0;
    assert_true(process_vm_readv(pid, &local, 1, &remote, 1, 0) < 0 && errno == EPERM);

    /* The enclave: under a seccomp filter, not dumpable (its /proc files
     * belong to root), memory locked when the limit allowed it. */
    char v[128];
    status_field(pid, "Seccomp", v, sizeof v);
    assert_string_equal(v, "2");
    status_field(pid, "VmLck", v, sizeof v);
    print_message("enclave VmLck: %s\n", v);

    /* The host: no capabilities, no way to gain any. */
    struct __user_cap_header_struct hd = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    assert_int_equal(syscall(SYS_capget, &hd, d), 0);
    assert_true(!d[0].effective && !d[0].permitted && !d[1].effective && !d[1].permitted);
    assert_int_equal(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 1);

    /* Still serving after the probes: the enclave finishes normally. */
    if (am_host_serve(h, 0, &code) != AM_OK) fail_msg("%s", am_last_error());
    assert_int_equal(code, 0);
    am_host_free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_host_cannot_read_enclave)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
