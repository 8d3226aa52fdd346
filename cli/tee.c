/* Where the trusted side runs, and what runs its accelerator.
 *
 * --tee inproc: everything in this process; the accelerator is the CPU
 * backend called directly. Nothing is isolated: for tests and development.
 *
 * --tee process: this process is the trusted side. Before it reads the key
 * or any data it makes itself non-dumpable, closes every descriptor it
 * inherited, refuses preloaded libraries and locks its memory; once the
 * data are loaded it starts the accelerator server (src/enclave/spawn.c:
 * a fixed program beside this one, a clean environment, only the channel's
 * descriptors, another user when root, Landlock), and then locks itself
 * down (src/enclave/sandbox.c). Its privacy options are its own command
 * line's; nothing the server sends can change them. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "boundary/channel.h"
#include "enclave/remote_backend.h"
#include "enclave/sandbox.h"
#include "enclave/spawn.h"
#include "untrusted/cpu_backend.h"
#include "untrusted/recorder.h"

struct cli_tee {
    int process, cuda;
    am_backend *be;
    am_chan ch;
    am_spawned srv;
    char about[AM_CHAN_ERR_BYTES]; /* what the server said it runs on */
    char server_words[400];        /* how it is confined */
    char trusted_words[300];       /* how this process is */
};

static int g_locked;
static char g_lock_err[160];

/* Libraries loaded into this process by the environment run inside the
 * trusted side: refused. */
static int refuse_preload(void) {
    static const char *const vars[] = {"LD_PRELOAD", "LD_AUDIT"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]) && *getenv(vars[i]))
            return die(EXIT_USAGE, "%s is set: a library it loads runs inside the trusted process and sees "
                                   "everything; unset it for --tee process", vars[i]);
    return 0;
}

int tee_begin(const cli_mode *m) {
    if (m->process) {
        if (am_trusted_undumpable() != AM_OK || am_trusted_close_inherited() != AM_OK) return lib_fail("--tee process");
        int rc = refuse_preload();
        if (rc) return rc;
        g_locked = am_trusted_lock_memory() == AM_OK;
        if (!g_locked) snprintf(g_lock_err, sizeof g_lock_err, "%s", am_last_error());
    }
    if (m->threads && am_set_threads(m->threads)) return lib_fail("threads");
    if (m->key) {
        uint8_t key[AM_SEAL_KEY_BYTES];
        am_status st = am_seal_key_read(m->key, key);
        if (st == AM_OK) st = am_seal_set_key(key);
        sodium_memzero(key, sizeof key);
        if (st != AM_OK) return die(st == AM_EINVAL ? EXIT_USAGE : EXIT_RUNTIME, "--key: %s", am_last_error());
    }
    return 0;
}

/* The recording's two files in dir (new: an old recording is not mixed in). */
static int open_record(const char *dir, int fds[2]) {
    if (mkdir(dir, 0700) && errno != EEXIST) return die(EXIT_RUNTIME, "--record %s: cannot create (%s)", dir, strerror(errno));
    static const char *const names[2] = {"index.jsonl", "buffers.f32"};
    for (int i = 0; i < 2; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        fds[i] = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fds[i] < 0) {
            int e = errno;
            if (i) close(fds[0]);
            return die(EXIT_RUNTIME, "--record %s: %s", p, e == EEXIST ? "exists (give a new directory)" : strerror(e));
        }
    }
    return 0;
}

/* The folder this program lies in. */
static int self_dir(char *buf, size_t n) {
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0) return die(EXIT_RUNTIME, "cannot find this program's folder (/proc/self/exe)");
    buf[k] = 0;
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
    return 0;
}

/* Whether path lies beneath dir (both resolved). */
static int beneath(const char *path, const char *dir) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(path, a) || !realpath(dir, b)) return 0;
    size_t l = strlen(b);
    return !strncmp(a, b, l) && (a[l] == '/' || a[l] == 0 || (l == 1 && b[0] == '/'));
}

/* The folders /etc/ld.so.conf.d names (absolute paths, one a line). */
static int ld_conf_dirs(char out[][512], int max) {
    int n = 0;
    DIR *d = opendir("/etc/ld.so.conf.d");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".conf")) continue;
        char p[600], line[512];
        snprintf(p, sizeof p, "/etc/ld.so.conf.d/%s", e->d_name);
        FILE *f = fopen(p, "r");
        while (f && n < max && fgets(line, sizeof line, f)) {
            line[strcspn(line, " \t\r\n#")] = 0;
            if (line[0] == '/') snprintf(out[n++], 512, "%s", line);
        }
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return n;
}

/* The device files of NVIDIA's driver. */
static int nvidia_devices(char paths[][64], int max) {
    int n = 0;
    DIR *d = opendir("/dev");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max)
        if (!strncmp(e->d_name, "nvidia", 6) && strlen(e->d_name) < 58) snprintf(paths[n++], 64, "/dev/%.58s", e->d_name);
    if (d) closedir(d);
    return n;
}

static int start_server(cli_tee *t, const cli_mode *m, const char *data_dir) {
    char dir[PATH_MAX], prog[PATH_MAX + 16], lib[PATH_MAX + 16];
    int rc = self_dir(dir, sizeof dir);
    if (rc) return rc;
    snprintf(prog, sizeof prog, "%s/asymml-accel", dir);
    snprintf(lib, sizeof lib, "%s/lib", dir);
    /* What the dynamic loader reads: the system's library folders (those
     * ld.so.conf names too), its cache, the program's own lib/ (a bundle);
     * the CUDA stack and a sanitizer's runtime also read /proc and /sys. */
    static char conf[16][512];
    const char *reads[32] = {"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/cuda",
                             "/etc/ld.so.cache", lib};
    int n_read = 8;
#if defined(__SANITIZE_ADDRESS__)
    const int sys = 1;
#else
    const int sys = m->cuda;
#endif
    if (sys) reads[n_read++] = "/proc", reads[n_read++] = "/sys";
    for (int i = 0, n = ld_conf_dirs(conf, 16); i < n; i++) reads[n_read++] = conf[i];
    /* Nothing private may lie where the server can read. */
    const char *priv[2] = {m->key, data_dir};
    for (int i = 0; i < 2; i++)
        for (int j = 0; priv[i] && j < n_read; j++)
            if (beneath(priv[i], reads[j]))
                return die(EXIT_USAGE, "%s lies under %s, which the accelerator server may read (it loads its "
                                       "libraries from there): move it", priv[i], reads[j]);
    char devs[32][64];
    const char *rw[32];
    int n_rw = m->cuda ? nvidia_devices(devs, 32) : 0;
    for (int i = 0; i < n_rw; i++) rw[i] = devs[i];
    int rec[2] = {-1, -1};
    if (m->record && (rc = open_record(m->record, rec))) return rc;
    if (am_chan_create((uint64_t)m->shm_mib << 20, &t->ch) != AM_OK) {
        if (rec[0] >= 0) close(rec[0]), close(rec[1]);
        return lib_fail("--tee process");
    }
    char threads[16], parent[16], window[32];
    snprintf(threads, sizeof threads, "%d", am_get_threads());
    snprintf(window, sizeof window, "%u-%u", m->record_first, m->record_last);
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    int fds[5] = {t->ch.fd_mem, t->ch.fd_req, t->ch.fd_rep, rec[0], rec[1]};
    const int n_fds = m->record ? 5 : 3;
    char *argv[] = {"asymml-accel", "--channel", "3,4,5", "--parent", parent, "--accel", m->cuda ? "cuda" : "cpu",
                    "--threads", threads, m->record ? "--record-steps" : NULL, window, "--record", "6,7", NULL};
    am_spawn_cfg sc = {prog, argv, fds, n_fds, m->accel_user, reads, n_read, rw, n_rw};
    am_status st = am_spawn(&sc, &t->srv);
    if (rec[0] >= 0) close(rec[0]), close(rec[1]);
    if (st != AM_OK) return lib_fail("--tee process");
    int same = t->srv.uid == geteuid();
    if (t->srv.landlock_abi)
        snprintf(t->server_words, sizeof t->server_words,
                 "asymml-accel (pid %d) as %s, no_new_privs, Landlock (ABI %d): it can open only the system's "
                 "libraries, its own program%s; no descriptor but the channel's%s",
                 (int)t->srv.pid, t->srv.user, t->srv.landlock_abi, n_rw ? " and the GPU's device files" : "",
                 m->record ? " and the recording's" : "");
    else
        snprintf(t->server_words, sizeof t->server_words,
                 "asymml-accel (pid %d) as %s, no_new_privs; NO Landlock on this kernel: it can open whatever %s "
                 "can%s",
                 (int)t->srv.pid, t->srv.user, t->srv.user,
                 same ? ", your key and data files included (run as root to start it as another user)" : "");
    am_remote_cfg rcfg = {&t->ch, t->srv.pidfd, m->reply_timeout_s * 1000, m->overlap < 0 ? !m->cuda : !m->overlap};
    if (am_remote_backend_create(&rcfg, &t->be) != AM_OK || am_remote_hello(t->be, t->about, sizeof t->about) != AM_OK)
        return lib_fail("--tee process");
    return 0;
}

int tee_open(const cli_mode *m, int need_accel, const char *data_dir, cli_tee **out) {
    cli_tee *t = calloc(1, sizeof *t);
    if (!t) return die(EXIT_RUNTIME, "out of memory");
    t->process = m->process, t->cuda = m->cuda;
    t->srv.pid = -1, t->srv.pidfd = -1;
    t->ch.fd_mem = t->ch.fd_req = t->ch.fd_rep = -1;
    *out = t;
    if (!need_accel && m->record)
        return die(EXIT_USAGE, "--record: this mode sends nothing to an accelerator: there is nothing to record");
    if (!need_accel) return 0;
    if (m->process) return start_server(t, m, data_dir);
    if (am_cpu_backend_create(&t->be) != AM_OK) return lib_fail("accelerator");
    snprintf(t->about, sizeof t->about, "the CPU backend, %d %s", am_get_threads(),
             plural(am_get_threads(), "thread", "threads"));
    if (m->record) {
        int rec[2], rc = open_record(m->record, rec);
        if (rc) return rc;
        am_backend *r;
        if (am_recorder_create(t->be, rec[0], rec[1], m->record_first, m->record_last, &r) != AM_OK) {
            close(rec[0]), close(rec[1]);
            return lib_fail("--record");
        }
        t->be = r;
    }
    return 0;
}

am_backend *tee_backend(cli_tee *t) { return t ? t->be : NULL; }

void tee_words(const cli_tee *t, char *buf, size_t n) {
    if (!t->process)
        snprintf(buf, n, "%s, in this same process (nothing is isolated; --tee process isolates the trusted side)",
                 t->be ? t->about : "none");
    else if (!t->be)
        snprintf(buf, n, "none (nothing leaves); trusted process: non-dumpable, %s%s%s, %s",
                 g_locked ? "memory-locked" : "NOT memory-locked (", g_locked ? "" : g_lock_err, g_locked ? "" : ")",
                 t->trusted_words);
    else
        snprintf(buf, n, "%s, in the accelerator server: %s\ntrusted process: non-dumpable, %s%s%s, %s", t->about,
                 t->server_words, g_locked ? "memory-locked" : "NOT memory-locked (", g_locked ? "" : g_lock_err,
                 g_locked ? "" : ")", t->trusted_words);
}

int tee_lockdown(cli_tee *t, int ckdir_fd, const char *dir_what) {
    if (!t->process) return 0;
    am_lockdown_cfg c = {ckdir_fd, t->srv.pidfd, dir_what};
    if (am_trusted_lockdown(&c, t->trusted_words, sizeof t->trusted_words) != AM_OK) return lib_fail("--tee process");
    return 0;
}

int tee_close(cli_tee *t, int failed) {
    if (!t) return 0;
    int rc = 0;
    if (t->be) t->be->vt->destroy(t->be);
    /* After a failure the server may not have been told goodbye: it ends
     * with this process (it watches it), and is not waited for. */
    if (failed) am_spawn_forget(&t->srv);
    if (t->srv.pid > 0) {
        int status;
        if (am_spawn_reap(&t->srv, 10000, &status) != AM_OK) rc = lib_fail("--tee process");
        else if (WIFSIGNALED(status))
            rc = die(EXIT_RUNTIME, "the accelerator server was killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else if (WEXITSTATUS(status))
            rc = die(EXIT_RUNTIME, "the accelerator server exited with status %d", WEXITSTATUS(status));
    }
    am_spawn_forget(&t->srv);
    if (t->ch.base || t->ch.fd_mem >= 0) am_chan_close(&t->ch);
    free(t);
    return rc;
}
