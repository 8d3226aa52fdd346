/* Datasets: parsing IDX and CIFAR binary data held in memory (every header
 * field is checked against the bytes actually present; nothing is
 * trusted), finding a dataset's files, synthetic data, statistics and
 * batches. Reading the files themselves is files.c's. */
#include "asymml/data.h"
#include "asymml/seal.h"
#include "data/files.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

am_status am_data_kind_parse(const char *name, am_data_kind *out) {
    if (!name) return am_fail(AM_EINVAL, "dataset kind: NULL");
    if (!strcmp(name, "idx") || !strcmp(name, "mnist") || !strcmp(name, "fashion-mnist")) *out = AM_DATA_IDX;
    else if (!strcmp(name, "cifar10")) *out = AM_DATA_CIFAR10;
    else if (!strcmp(name, "cifar100")) *out = AM_DATA_CIFAR100;
    else return am_fail(AM_EINVAL, "unknown dataset kind '%s' (idx, mnist, fashion-mnist, cifar10, cifar100)", name);
    return AM_OK;
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Checks an IDX header of ndim dimensions of unsigned bytes and that the
 * payload is exactly the product of the dimensions. */
static am_status idx_header(const uint8_t *b, size_t n, int ndim, const char *name, const char *what,
                            uint32_t *dims) {
    if (n < 4) return am_fail(AM_EFORMAT, "%s: %s file truncated", name, what);
    if (b[0] || b[1] || b[2] != 0x08 || b[3] != ndim)
        return am_fail(AM_EFORMAT, "%s: %s file is not an IDX file of unsigned bytes with %d dimension%s", name,
                       what, ndim, ndim == 1 ? "" : "s");
    size_t hl = 4 + 4 * (size_t)ndim, want = 1;
    if (n < hl) return am_fail(AM_EFORMAT, "%s: %s file truncated", name, what);
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(b + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (1u << 24))
            return am_fail(AM_EFORMAT, "%s: %s dimension %d is %u", name, what, i, dims[i]);
        want *= dims[i];
        if (want > ((size_t)1 << 36)) return am_fail(AM_EFORMAT, "%s: %s file too large", name, what);
    }
    if (n - hl < want) return am_fail(AM_EFORMAT, "%s: %s file truncated", name, what);
    if (n - hl > want) return am_fail(AM_EFORMAT, "%s: %s file has data after the end of the IDX payload", name, what);
    return AM_OK;
}

am_status am_idx_parse(const uint8_t *img, size_t img_n, const uint8_t *lab, size_t lab_n,
                       int classes, const char *name, am_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!img || !lab || !name) return am_fail(AM_EINVAL, "idx: NULL argument");
    if (classes < 2 || classes > 256) return am_fail(AM_EINVAL, "idx: class count %d outside [2, 256]", classes);
    uint32_t di[3] = {0}, dl[1] = {0};
    AM_TRY(idx_header(img, img_n, 3, name, "image", di));
    AM_TRY(idx_header(lab, lab_n, 1, name, "label", dl));
    if (dl[0] != di[0])
        return am_fail(AM_EFORMAT, "%s: %u images but %u labels", name, di[0], dl[0]);
    if (di[1] > 4096 || di[2] > 4096) return am_fail(AM_EFORMAT, "%s: images of %ux%u are too large", name, di[1], di[2]);
    size_t npix = (size_t)di[0] * di[1] * di[2];
    for (uint32_t i = 0; i < dl[0]; i++)
        if (lab[8 + i] >= classes)
            return am_fail(AM_EFORMAT, "%s: label %u of image %u is not below %d", name, lab[8 + i], i, classes);
    out->pixels = malloc(npix);
    out->labels = malloc(sizeof(int32_t) * dl[0]);
    if (!out->pixels || !out->labels) {
        am_dataset_free(out);
        return am_fail(AM_ENOMEM, "%s: cannot hold %zu MiB of images", name, npix >> 20);
    }
    memcpy(out->pixels, img + 16, npix);
    for (uint32_t i = 0; i < dl[0]; i++) out->labels[i] = lab[8 + i];
    out->n = (int)di[0];
    out->c = 1;
    out->h = (int)di[1];
    out->w = (int)di[2];
    out->classes = classes;
    return AM_OK;
}

am_status am_idx_load(const char *images_path, const char *labels_path, int classes, int train, am_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path) return am_fail(AM_EINVAL, "idx: NULL path");
    uint8_t *img, *lab;
    size_t ni, nl;
    am_data_check chk = {0};
    AM_TRY(am_read_data_file(images_path, train ? AM_SEAL_TRAIN_IMAGES : AM_SEAL_TEST_IMAGES, 0, &chk, &img, &ni));
    am_status st = am_read_data_file(labels_path, train ? AM_SEAL_TRAIN_LABELS : AM_SEAL_TEST_LABELS, 0, &chk, &lab, &nl);
    if (st == AM_OK) {
        /* Name the file at fault in the message. */
        st = am_idx_parse(img, ni, lab, nl, classes, images_path, out);
        if (st == AM_OK && chk.sealed) out->sealed = 1, memcpy(out->seal_id, chk.id, sizeof out->seal_id);
        if (st != AM_OK && strstr(am_last_error(), ": label")) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", strstr(am_last_error(), ": label") + 2);
            st = am_fail(st, "%s: %s", labels_path, msg);
        }
        free(lab);
    }
    free(img);
    return st;
}

am_status am_cifar_parse(const uint8_t *buf, size_t n, int cifar100, const char *name,
                         am_dataset *out) {
    if (!buf || !out || !name) return am_fail(AM_EINVAL, "cifar: NULL argument");
    const size_t img = 3 * 32 * 32, rec = img + (cifar100 ? 2 : 1);
    const int classes = cifar100 ? 100 : 10;
    if (n == 0 || n % rec)
        return am_fail(AM_EFORMAT, "%s: %zu bytes is not a whole number of %zu-byte CIFAR-%d records", name, n,
                       rec, classes);
    size_t cnt = n / rec;
    if (out->pixels && (out->c != 3 || out->h != 32 || out->w != 32 || out->classes != classes))
        return am_fail(AM_EINVAL, "%s: cannot append CIFAR-%d to another kind of dataset", name, classes);
    if ((size_t)out->n + cnt > (1u << 24)) return am_fail(AM_EFORMAT, "%s: too many images", name);
    for (size_t i = 0; i < cnt; i++) {
        uint8_t l = buf[i * rec + (cifar100 ? 1 : 0)];
        if (l >= classes)
            return am_fail(AM_EFORMAT, "%s: label %u of record %zu is not below %d", name, l, i, classes);
        if (cifar100 && buf[i * rec] >= 20)
            return am_fail(AM_EFORMAT, "%s: coarse label %u of record %zu is not below 20", name, buf[i * rec], i);
    }
    size_t total = (size_t)out->n + cnt;
    uint8_t *px = realloc(out->pixels, total * img);
    if (!px) return am_fail(AM_ENOMEM, "%s: out of memory", name);
    out->pixels = px;
    int32_t *lb = realloc(out->labels, total * sizeof(int32_t));
    if (!lb) return am_fail(AM_ENOMEM, "%s: out of memory", name);
    out->labels = lb;
    for (size_t i = 0; i < cnt; i++) {
        out->labels[out->n + i] = buf[i * rec + (cifar100 ? 1 : 0)];
        memcpy(out->pixels + (out->n + i) * img, buf + i * rec + (rec - img), img);
    }
    out->n = (int)total;
    out->c = 3;
    out->h = out->w = 32;
    out->classes = classes;
    return AM_OK;
}

/* The order in which a file's names are tried: with a key set, sealed
 * copies first, so that a plain file planted beside them is not taken
 * instead; without one, plain files first. */
static const char *suffix(int i, int sealed_first, int gz) {
    static const char *const plain[4] = {"", ".gz", ".sealed", ".gz.sealed"}, *const key[4] = {".sealed", ".gz.sealed", "", ".gz"};
    if (!gz) i = i < 2 ? 2 * i : 4; /* "", ".sealed" (or the reverse) */
    return i >= 4 ? NULL : sealed_first ? key[i] : plain[i];
}

/* dir/name (+ suffix), or dir/sub/name when that exists. */
static am_status find_in(const char *dir, const char *sub, const char *name, char *path, size_t cap) {
    const int k = am_seal_have_key();
    for (int i = 0; suffix(i, k, 0); i++)
        for (int in_sub = 1; in_sub >= 0; in_sub--) {
            if (in_sub) snprintf(path, cap, "%s/%s/%s%s", dir, sub, name, suffix(i, k, 0));
            else snprintf(path, cap, "%s/%s%s", dir, name, suffix(i, k, 0));
            if (access(path, F_OK) == 0) return AM_OK;
        }
    return am_fail(AM_EIO, "%s: no %s (nor %s/%s), plain or .sealed", dir, name, sub, name);
}

/* dir/PRE-WHAT with the first suffix that exists (1), into path. */
static int first_idx(const char *dir, const char *pre, const char *what, int sealed_first, char *path, size_t cap) {
    for (int i = 0; suffix(i, sealed_first, 1); i++) {
        snprintf(path, cap, "%s/%s-%s%s", dir, pre, what, suffix(i, sealed_first, 1));
        if (access(path, F_OK) == 0) return 1;
    }
    return 0;
}

/* A missing folder said as such, not as its first missing file. */
static am_status is_dir(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb)) return am_fail(AM_EIO, "%s: cannot open (%s)", dir, strerror(errno));
    return S_ISDIR(sb.st_mode) ? AM_OK : am_fail(AM_EINVAL, "%s: not a directory", dir);
}

am_status am_dataset_load(am_data_kind kind, const char *dir, const char *split, am_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!dir || !split) return am_fail(AM_EINVAL, "dataset: NULL argument");
    int train = !strcmp(split, "train");
    if (!train && strcmp(split, "test")) return am_fail(AM_EINVAL, "dataset: split '%s' is not train or test", split);
    char p1[4096], p2[4096];
    AM_TRY(is_dir(dir));
    if (kind == AM_DATA_IDX) {
        const char *pre = train ? "train" : "t10k";
        /* Plain names and .gz, as Debian and the original site ship them,
         * and sealed copies of either (first when a key is set). */
        const int k = am_seal_have_key();
        if (!first_idx(dir, pre, "images-idx3-ubyte", k, p1, sizeof p1))
            return am_fail(AM_EIO, "%s: no %s-images-idx3-ubyte (nor .gz, .sealed or .gz.sealed)", dir, pre);
        /* The labels on their own: .gz images with plain labels are found. */
        if (!first_idx(dir, pre, "labels-idx1-ubyte", k, p2, sizeof p2))
            return am_fail(AM_EIO, "%s: no %s-labels-idx1-ubyte (nor .gz, .sealed or .gz.sealed)", dir, pre);
        return am_idx_load(p1, p2, 10, train, out);
    }
    int c100 = kind == AM_DATA_CIFAR100;
    const char *sub = c100 ? "cifar-100-binary" : "cifar-10-batches-bin";
    int files = c100 || !train ? 1 : 5;
    am_data_check chk = {0};
    for (int i = 0; i < files; i++) {
        char nm[32];
        if (c100) snprintf(nm, sizeof nm, "%s.bin", train ? "train" : "test");
        else if (train) snprintf(nm, sizeof nm, "data_batch_%d.bin", i + 1);
        else snprintf(nm, sizeof nm, "test_batch.bin");
        uint8_t *buf = NULL;
        size_t n;
        am_status st = find_in(dir, sub, nm, p1, sizeof p1);
        if (st == AM_OK) st = am_read_data_file(p1, train ? AM_SEAL_TRAIN_RECORDS : AM_SEAL_TEST_RECORDS,
                                         c100 || !train ? 0 : (uint64_t)i + 1, &chk, &buf, &n);
        if (st == AM_OK) st = am_cifar_parse(buf, n, c100, p1, out);
        free(buf);
        if (st != AM_OK) {
            am_dataset_free(out);
            return st;
        }
    }
    if (chk.sealed) out->sealed = 1, memcpy(out->seal_id, chk.id, sizeof out->seal_id);
    return AM_OK;
}

am_status am_synthetic(int n, int c, int h, int w, int classes, uint64_t seed, am_dataset *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || c < 1 || h < 1 || w < 1 || classes < 2 || n > (1 << 24) || c > 4 || h > 4096 ||
        w > 4096 || classes > 65536)
        return am_fail(AM_EINVAL, "synthetic: bad shape %dx%dx%dx%d or %d classes", n, c, h, w, classes);
    size_t img = (size_t)c * h * w;
    out->pixels = malloc((size_t)n * img);
    out->labels = malloc(sizeof(int32_t) * (size_t)n);
    if (!out->pixels || !out->labels) {
        am_dataset_free(out);
        return am_fail(AM_ENOMEM, "synthetic: cannot hold %zu MiB", ((size_t)n * img) >> 20);
    }
    am_rng r;
    am_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int lab = (int)am_rng_below(&r, (uint32_t)classes);
        out->labels[i] = lab;
        int base = 32 + (191 * lab) / (classes - 1); /* the label sets the brightness */
        uint8_t *p = out->pixels + (size_t)i * img;
        for (size_t j = 0; j < img; j++) {
            int v = base + (int)(am_rng_u64(&r) % 65) - 32;
            p[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    out->n = n, out->c = c, out->h = h, out->w = w, out->classes = classes;
    return AM_OK;
}

void am_dataset_free(am_dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void am_dataset_truncate(am_dataset *d, int n) {
    if (d && n > 0 && n < d->n) d->n = n;
}

am_status am_dataset_stats(const am_dataset *d, float *mean, float *std) {
    if (!d || !d->pixels || !mean || !std || d->n < 1) return am_fail(AM_EINVAL, "dataset stats: bad argument");
    size_t plane = (size_t)d->h * d->w;
    for (int c = 0; c < d->c; c++) {
        double s = 0, ss = 0;
        for (int i = 0; i < d->n; i++) {
            const uint8_t *p = d->pixels + ((size_t)i * d->c + c) * plane;
            uint64_t a = 0, b = 0;
            for (size_t j = 0; j < plane; j++) {
                a += p[j];
                b += (uint64_t)p[j] * p[j];
            }
            s += (double)a;
            ss += (double)b;
        }
        double n = (double)d->n * plane, m = s / n / 255.0;
        double var = ss / n / (255.0 * 255.0) - m * m;
        mean[c] = (float)m;
        std[c] = (float)(var > 1e-12 ? sqrt(var) : 1.0);
    }
    return AM_OK;
}

am_status am_dataset_batch(const am_dataset *d, const uint32_t *idx, int B, const float *mean,
                           const float *std, float *x, int32_t *labels) {
    if (!d || !idx || !mean || !std || !x || !labels || B < 1) return am_fail(AM_EINVAL, "dataset batch: bad argument");
    size_t plane = (size_t)d->h * d->w;
    for (int b = 0; b < B; b++) {
        if (idx[b] >= (uint32_t)d->n) return am_fail(AM_EINVAL, "dataset batch: index %u of %d", idx[b], d->n);
        for (int c = 0; c < d->c; c++) {
            const uint8_t *p = d->pixels + ((size_t)idx[b] * d->c + c) * plane;
            float *q = x + ((size_t)b * d->c + c) * plane;
            float a = 1.f / (255.f * std[c]), o = mean[c] / std[c];
            for (size_t j = 0; j < plane; j++) q[j] = (float)p[j] * a - o;
        }
        labels[b] = d->labels[idx[b]];
    }
    return AM_OK;
}
