/* asymml seal and asymml keygen: sealing dataset files under a key. */
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"

static const char usage[] =
    "usage: asymml seal --key KEYFILE [--out-dir DIR] [--role ROLE] FILE...\n"
    "Encrypt and authenticate dataset files (XChaCha20-Poly1305, libsodium secretstream)\n"
    "into FILE.sealed (or DIR/NAME.sealed). Each is sealed as what it is: its role (training\n"
    "or test images, labels or records, from its name as the datasets ship it, or --role)\n"
    "and one dataset identity shared by the files sealed together. The readers given --key\n"
    "open them and refuse a file in another role or of another sealing; a wrong key or a\n"
    "changed byte is an error. Existing outputs are never overwritten.\n";

enum { S_KEY = 1, S_OUT, S_ROLE };

static const cli_opt opts[] = {
    {"key", "KEYFILE", S_KEY, 0, "a key from `asymml keygen` (mode 0600)"},
    {"out-dir", "DIR", S_OUT, 0, "where the sealed files go (created if missing; default: beside each FILE)"},
    {"role", "ROLE", S_ROLE, 0, "the files' role when their names do not say: train-images, train-labels,\n"
                                "test-images, test-labels, train-records, test-records"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct seal_opts {
    const char *key, *out;
    int role_set;
    am_seal_role role;
} seal_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    seal_opts *s = ctx;
    switch (o->id) {
    case S_KEY: s->key = arg; return 0;
    case S_OUT: s->out = arg; return 0;
    case S_ROLE:
        s->role_set = 1;
        return am_seal_role_parse(arg, &s->role) == AM_OK ? 0 : die(EXIT_USAGE, "--role: %s", am_last_error());
    }
    return EXIT_USAGE;
}

/* dir and the folders above it that are missing (mode 0700): 0, or -1 with errno. */
static int make_dirs(const char *dir) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return errno = ENAMETOOLONG, -1;
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(p, 0700) && errno != EEXIST) return -1;
            *q = '/';
        }
    return mkdir(p, 0700) && errno != EEXIST ? -1 : 0;
}

/* Where FILE's sealed copy goes. */
static void out_name(const seal_opts *o, const char *file, char *out, size_t cap) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (o->out) snprintf(out, cap, "%s/%s.sealed", o->out, base);
    else snprintf(out, cap, "%s.sealed", file);
}

int cmd_seal(int argc, char **argv) {
    seal_opts o = {0};
    const cli_opt *const tables[] = {opts, NULL};
    int rest, rc = cli_parse("seal", usage, argc, argv, tables, handle, &o, NULL, &rest);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.key) return die(EXIT_USAGE, "seal: --key KEYFILE is required");
    if (rest >= argc) return die(EXIT_USAGE, "seal: no FILE given");
    /* Every file's role first: nothing is written if one is unclear. */
    am_seal_id ids[256];
    if (argc - rest > 256) return die(EXIT_USAGE, "seal: at most 256 files at once");
    if (sodium_init() < 0) return die(EXIT_RUNTIME, "seal: libsodium failed to initialize");
    uint8_t dataset[AM_SEAL_ID_BYTES];
    randombytes_buf(dataset, sizeof dataset);
    for (int i = rest; i < argc; i++) {
        am_seal_id *id = &ids[i - rest];
        id->index = 0;
        if (o.role_set) id->role = o.role;
        else if (am_seal_role_of_name(argv[i], &id->role, &id->index) != AM_OK) return die(EXIT_USAGE, "seal: %s", am_last_error());
        memcpy(id->id, dataset, sizeof dataset);
    }
    if (o.out && make_dirs(o.out)) return die(EXIT_RUNTIME, "seal: %s: cannot create (%s)", o.out, strerror(errno));
    uint8_t key[AM_SEAL_KEY_BYTES];
    if (am_seal_key_read(o.key, key) != AM_OK) return lib_fail("seal");
    /* Files sealed together are one dataset: none is written if any is there
     * already (a folder of two sealings is refused when it is read). */
    for (int i = rest; i < argc && !rc; i++) {
        char out[4096];
        out_name(&o, argv[i], out, sizeof out);
        if (access(out, F_OK) == 0)
            rc = die(EXIT_RUNTIME, "seal: %s exists; nothing was written (the files sealed together are one dataset)", out);
    }
    for (int i = rest; i < argc && !rc; i++) {
        char out[4096];
        out_name(&o, argv[i], out, sizeof out);
        if (am_seal_file(key, &ids[i - rest], argv[i], out) != AM_OK) rc = lib_fail("seal");
        else printf("seal: %s -> %s (%s)\n", argv[i], out, am_seal_role_name(ids[i - rest].role));
    }
    sodium_memzero(key, sizeof key);
    return rc;
}

int cmd_keygen(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: asymml keygen FILE\nWrite a new random 32-byte sealing key to FILE (mode 0600; never overwrites).\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') return die(EXIT_USAGE, "keygen: give one FILE (see asymml keygen --help)");
    if (am_seal_keygen(argv[1]) != AM_OK) return lib_fail("keygen");
    printf("keygen: wrote a new key to %s\n", argv[1]);
    return 0;
}
