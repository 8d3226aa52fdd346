/* The IDX loader on files written here: plain and gzip-compressed, and the
 * ways such files go wrong (truncated, wrong magic, counts that disagree,
 * labels out of range, trailing bytes, corrupt compression, missing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "asymml/asymml.h"

static char dir[256];

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
    p[3] = (unsigned char)v;
}

/* Writes an IDX file; gz selects compression. Returns the path. */
static const char *write_idx(const char *name, int gz, uint32_t magic, const uint32_t *dims, int nd,
                             const unsigned char *data, size_t n, size_t cut) {
    static char paths[16][512];
    static int k;
    char *path = paths[k++ % 16];
    snprintf(path, 512, "%s/%s", dir, name);
    unsigned char buf[4096];
    put32(buf, magic);
    for (int i = 0; i < nd; i++) put32(buf + 4 + 4 * i, dims[i]);
    size_t hl = 4 + 4 * (size_t)nd;
    memcpy(buf + hl, data, n);
    size_t total = hl + n - cut;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, buf, (unsigned)total), (int)total);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, total, f), total);
        fclose(f);
    }
    return path;
}

static unsigned char px[6 * 4 * 3], lb[6] = {0, 1, 2, 9, 3, 4};

static void t_valid(void **st) {
    (void)st;
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 7);
    uint32_t di[3] = {6, 4, 3}, dl[1] = {6};
    for (int gz = 0; gz < 2; gz++) {
        const char *im = write_idx(gz ? "i.gz" : "i", gz, 0x803, di, 3, px, sizeof px, 0);
        const char *la = write_idx(gz ? "l.gz" : "l", gz, 0x801, dl, 1, lb, sizeof lb, 0);
        am_dataset d;
        assert_int_equal(am_idx_load(im, la, 10, 1, &d), AM_OK);
        assert_int_equal(d.n, 6);
        assert_int_equal(d.h, 4);
        assert_int_equal(d.w, 3);
        assert_memory_equal(d.pixels, px, sizeof px);
        assert_int_equal(d.labels[3], 9);
        float mean, sd, x[2 * 12];
        int32_t lab[2];
        uint32_t idx[2] = {5, 0};
        assert_int_equal(am_dataset_stats(&d, &mean, &sd), AM_OK);
        assert_true(mean > 0.f && sd > 0.f);
        assert_int_equal(am_dataset_batch(&d, idx, 2, &mean, &sd, x, lab), AM_OK);
        assert_int_equal(lab[0], 4);
        assert_float_equal(x[12], ((float)px[0] / 255.f - mean) / sd, 1e-5);
        idx[1] = 6;
        assert_int_equal(am_dataset_batch(&d, idx, 2, &mean, &sd, x, lab), AM_EINVAL);
        am_dataset_free(&d);
    }
}

static void expect_fail(const char *im, const char *la, am_status want, const char *needle) {
    am_dataset d;
    am_status s = am_idx_load(im, la, 10, 1, &d);
    assert_int_equal(s, want);
    assert_null(d.pixels);
    if (needle && !strstr(am_last_error(), needle)) fail_msg("message '%s' lacks '%s'", am_last_error(), needle);
    assert_null(strchr(am_last_error(), '\n'));
}

static void t_bad(void **st) {
    (void)st;
    uint32_t di[3] = {6, 4, 3}, dl[1] = {6}, dl5[1] = {5};
    const char *im = write_idx("ok-i", 0, 0x803, di, 3, px, sizeof px, 0);
    const char *la = write_idx("ok-l", 0, 0x801, dl, 1, lb, sizeof lb, 0);
    expect_fail(write_idx("t", 0, 0x803, di, 3, px, sizeof px, 5), la, AM_EFORMAT, "truncated");
    expect_fail(write_idx("tgz", 1, 0x803, di, 3, px, sizeof px, 5), la, AM_EFORMAT, "truncated");
    expect_fail(im, write_idx("t2", 0, 0x801, dl, 1, lb, sizeof lb, 2), AM_EFORMAT, "truncated");
    expect_fail(write_idx("m", 0, 0x801, di, 3, px, sizeof px, 0), la, AM_EFORMAT, "IDX");
    expect_fail(la, im, AM_EFORMAT, "IDX"); /* swapped */
    expect_fail(im, write_idx("n", 0, 0x801, dl5, 1, lb, 5, 0), AM_EFORMAT, "labels");
    unsigned char badl[6] = {0, 1, 2, 10, 3, 4};
    expect_fail(im, write_idx("r", 0, 0x801, dl, 1, badl, 6, 0), AM_EFORMAT, "label");
    uint32_t big[3] = {6, 4, 3};
    unsigned char more[sizeof px + 3] = {0};
    expect_fail(write_idx("x", 0, 0x803, big, 3, more, sizeof more, 0), la, AM_EFORMAT, "after the end");
    uint32_t zero[3] = {0, 4, 3};
    expect_fail(write_idx("z", 0, 0x803, zero, 3, px, 0, 0), la, AM_EFORMAT, "dimension");
    expect_fail("/nonexistent/file", la, AM_EIO, "cannot open");
    /* A gzip file whose compressed bytes are damaged. */
    const char *g = write_idx("c.gz", 1, 0x803, di, 3, px, sizeof px, 0);
    FILE *f = fopen(g, "r+b");
    fseek(f, 20, SEEK_SET);
    fputc(0xFF, f);
    fputc(0x00, f);
    fclose(f);
    am_dataset d;
    assert_int_not_equal(am_idx_load(g, la, 10, 1, &d), AM_OK);
    assert_int_equal(am_idx_load(im, la, 1, 1, &d), AM_EINVAL); /* absurd class count */
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    snprintf(dir, sizeof dir, "/tmp/asymml-test-data-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_valid), cmocka_unit_test(t_bad)};
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) r = r ? r : 1;
    return r;
}
