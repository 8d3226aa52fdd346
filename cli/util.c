/* Small helpers every command uses: the one-line error, strict numbers,
 * models from the zoo or a file, datasets. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"


int die(int code, const char *fmt, ...) {
    va_list ap;
    fflush(stdout); /* what was said before the error comes before it */
    fputs("asymml: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int lib_fail(const char *what) {
    if (am_mem_limit_hit())
        return die(EXIT_RUNTIME, "%s: %s (the trusted memory limit, --tee-mem %zu MiB, was reached)", what,
                   am_last_error(), am_mem_limit() >> 20);
    return die(EXIT_RUNTIME, "%s: %s", what, am_last_error());
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

int arg_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        die(EXIT_USAGE, "--%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int arg_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        die(EXIT_USAGE, "--%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

int arg_float(const char *opt, const char *s, double lo, double hi, float *out) {
    double v;
    if (!arg_double(opt, s, lo, hi, &v)) return 0;
    *out = (float)v;
    return 1;
}

int arg_shape(const char *opt, const char *s, am_shape *out) {
    int c, h, w, n = 0;
    if (sscanf(s, "%d,%d,%d%n", &c, &h, &w, &n) != 3 || s[n] || c < 1 || h < 1 || w < 1 || c > 4096 || h > 8192 ||
        w > 8192) {
        die(EXIT_USAGE, "--%s: '%s' is not C,H,W", opt, s);
        return 0;
    }
    *out = am_shape4(1, c, h, w);
    return 1;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *nb = cap > (64u << 20) ? NULL : realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                errno = EFBIG;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

int describe(const char *name, const char *file, am_shape in, int classes, char **out) {
    *out = NULL;
    if (file) {
        *out = read_text_file(file);
        if (!*out) return die(EXIT_RUNTIME, "%s: cannot read (%s)", file, strerror(errno));
        return 0;
    }
    size_t cap = 1 << 16;
    *out = malloc(cap);
    if (!*out) return die(EXIT_RUNTIME, "out of memory");
    if (am_zoo_describe(name, in, classes, *out, cap) != AM_OK) {
        free(*out);
        *out = NULL;
        return die(EXIT_USAGE, "%s (asymml info --list names the zoo)", am_last_error());
    }
    return 0;
}

int make_model(const char *name, const char *file, am_shape in, int classes, am_model **m) {
    char *d;
    int rc = describe(name, file, in, classes, &d);
    if (rc) return rc;
    am_status st = am_model_create(d, m);
    free(d);
    if (!file && st == AM_EINVAL) /* the zoo's models are sound: the input does not fit */
        return die(EXIT_USAGE, "%s does not take a %dx%dx%d input (%s)", name, in.c, in.h, in.w, am_last_error());
    if (st != AM_OK) return die(st == AM_EINVAL ? EXIT_USAGE : EXIT_RUNTIME, "model: %s", am_last_error());
    return 0;
}

int load_checkpoint(const char **path, const char *doing, am_checkpoint *ck, char *used, size_t cap) {
    char skipped[2048];
    if (am_checkpoint_load(*path, ck, used, cap, skipped, sizeof skipped) != AM_OK) return lib_fail("checkpoint");
    if (*skipped) fprintf(stderr, "asymml: warning: skipped what does not read: %s; %s %s instead\n", skipped, doing, used);
    *path = used;
    return 0;
}

int load_data(am_data_kind kind, const char *dir, const char *split, int limit, am_dataset *d) {
    if (am_dataset_load(kind, dir, split, d) != AM_OK) return lib_fail("data");
    am_dataset_truncate(d, limit);
    return 0;
}

const char *plural(long n, const char *one, const char *many) { return n == 1 ? one : many; }

const char *dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == path) snprintf(dir, cap, "/");
    else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    return slash ? slash + 1 : path;
}
