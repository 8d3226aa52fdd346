/* IDX loader (the format of MNIST and Fashion-MNIST), through zlib so that
 * .gz files and plain files read alike (gzread passes plain files through).
 * Every header field is checked against the bytes actually present. */
#include "asymml/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <zlib.h>

/* Read exactly n bytes; AM_EFORMAT if the file ends early. */
static am_status read_all(gzFile f, const char *path, void *buf, size_t n) {
    unsigned char *p = buf;
    while (n) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            return am_fail(AM_EFORMAT, "%s: corrupt compressed data (%s)", path, msg);
        }
        if (got == 0) return am_fail(AM_EFORMAT, "%s: truncated", path);
        p += got;
        n -= (size_t)got;
    }
    return AM_OK;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Opens path and reads an IDX header of ndim dimensions with the u8 type. */
static am_status open_idx(const char *path, int ndim, uint32_t *dims, gzFile *out) {
    *out = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) return am_fail(AM_EIO, "%s: cannot open (%s)", path, errno ? strerror(errno) : "zlib");
    unsigned char h[16];
    am_status st = read_all(f, path, h, 4);
    if (st == AM_OK && (h[0] || h[1] || h[2] != 0x08 || h[3] != ndim))
        st = am_fail(AM_EFORMAT, "%s: not an IDX file of unsigned bytes with %d dimensions", path, ndim);
    if (st == AM_OK) st = read_all(f, path, h + 4, 4 * (size_t)ndim);
    for (int i = 0; st == AM_OK && i < ndim; i++) {
        dims[i] = be32(h + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (1u << 24))
            st = am_fail(AM_EFORMAT, "%s: dimension %d is %u", path, i, dims[i]);
    }
    if (st != AM_OK) {
        gzclose(f);
        return st;
    }
    *out = f;
    return AM_OK;
}

/* The file must end exactly where the header says. */
static am_status expect_eof(gzFile f, const char *path) {
    unsigned char extra;
    int got = gzread(f, &extra, 1);
    if (got < 0) return am_fail(AM_EFORMAT, "%s: corrupt compressed data", path);
    if (got > 0) return am_fail(AM_EFORMAT, "%s: data after the end of the IDX payload", path);
    return AM_OK;
}

am_status am_idx_load(const char *images_path, const char *labels_path, int classes,
                      am_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path) return am_fail(AM_EINVAL, "idx: NULL path");
    if (classes < 2 || classes > 256) return am_fail(AM_EINVAL, "idx: class count %d outside [2, 256]", classes);
    uint32_t di[3], dl[1];
    gzFile fi, fl;
    AM_TRY(open_idx(images_path, 3, di, &fi));
    am_status st = open_idx(labels_path, 1, dl, &fl);
    if (st != AM_OK) {
        gzclose(fi);
        return st;
    }
    size_t npix = (size_t)di[0] * di[1] * di[2];
    if (dl[0] != di[0])
        st = am_fail(AM_EFORMAT, "%s has %u images but %s has %u labels", images_path, di[0], labels_path, dl[0]);
    else if (di[1] > 4096 || di[2] > 4096 || npix > ((size_t)1 << 34))
        st = am_fail(AM_EFORMAT, "%s: images of %ux%u are too large", images_path, di[1], di[2]);
    uint8_t *px = NULL, *lb = NULL;
    if (st == AM_OK) {
        px = malloc(npix);
        lb = malloc(dl[0]);
        out->labels = malloc(sizeof(int32_t) * dl[0]);
        if (!px || !lb || !out->labels) st = am_fail(AM_ENOMEM, "idx: cannot hold %zu MiB of images", npix >> 20);
    }
    if (st == AM_OK) st = read_all(fi, images_path, px, npix);
    if (st == AM_OK) st = expect_eof(fi, images_path);
    if (st == AM_OK) st = read_all(fl, labels_path, lb, dl[0]);
    if (st == AM_OK) st = expect_eof(fl, labels_path);
    for (uint32_t i = 0; st == AM_OK && i < dl[0]; i++) {
        if (lb[i] >= classes) st = am_fail(AM_EFORMAT, "%s: label %u of image %u is not below %d", labels_path, lb[i], i, classes);
        else out->labels[i] = lb[i];
    }
    gzclose(fi);
    gzclose(fl);
    free(lb);
    if (st != AM_OK) {
        free(px);
        free(out->labels);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->n = (int)di[0];
    out->c = 1;
    out->h = (int)di[1];
    out->w = (int)di[2];
    out->classes = classes;
    out->pixels = px;
    return AM_OK;
}

void am_dataset_free(am_dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

am_status am_dataset_stats(const am_dataset *d, float *mean, float *std) {
    if (!d || !d->pixels || !mean || !std) return am_fail(AM_EINVAL, "dataset stats: NULL argument");
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
