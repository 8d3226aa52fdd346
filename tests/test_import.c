/* asymml import (asymml/import.h, src/train/safetensors.h): models saved
 * from PyTorch give PyTorch's logits, and every damaged or mismatched file
 * is refused with one line that names the tensor.
 *
 * The VGG11 and ResNet18 files are rebuilt here from the header that
 * tests/gen_fixtures.py wrote with its own safetensors writer and from the
 * formula both sides compute bit for bit (gen_fixtures.py's formula()); the
 * LeNet file is committed whole, every byte from Python. The imported VGG11
 * and ResNet18 also run in slalom mode (fixed point, blinded, on the CPU
 * backend) and must predict as PyTorch's float model does on at least 99
 * of a batch of 100 (issue 16). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "fixture.h"
#include "train/safetensors.h"
#include "untrusted/cpu_backend.h"

/* ------------------------------------------------- the fixtures' formula */

static uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int ends_with(const char *s, const char *suffix) {
    size_t l = strlen(s), k = strlen(suffix);
    return l >= k && !strcmp(s + l - k, suffix);
}

/* Element e of tensor number idx (gen_fixtures.py's formula()). */
static float formula(uint64_t idx, const am_st_tensor *t, uint64_t e) {
    double u = (double)(splitmix64(idx << 40 | e) >> 40) * 0x1p-24;
    if (ends_with(t->name, "running_var")) return (float)(0.5 + u);
    if (ends_with(t->name, "running_mean")) return (float)((u - 0.5) * 0.25);
    if (t->ndim >= 2) {
        uint64_t fan = 1;
        int k = 0;
        for (int d = 1; d < t->ndim; d++) fan *= t->dims[d];
        while (24ull << (2 * (k + 1)) <= 2 * fan) k++;
        return (float)((u - 0.5) * ldexp(1.0, -k));
    }
    if (ends_with(t->name, "weight")) return (float)(0.75 + 0.5 * u);
    return (float)((u - 0.5) * 0.25);
}

/* The whole file from the committed header and the formula. */
static uint8_t *rebuild(const fx_file *f, size_t *n) {
    const char *header = fx_text(f, "header");
    size_t hl = strlen(header), dn = (size_t)fx_i32(f, "data_bytes", 1)[0];
    *n = 8 + hl + dn;
    uint8_t *buf = calloc(*n, 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    am_safetensors st;
    if (am_st_parse(buf, *n, &st) != AM_OK) fail_msg("%s", am_last_error());
    for (int i = 0; i < st.n; i++) {
        const am_st_tensor *t = &st.t[i];
        if (t->dtype != AM_ST_F32) continue; /* num_batches_tracked: zero */
        uint8_t *d = buf + (t->data - buf);
        for (size_t e = 0; e < t->numel; e++) {
            float v = formula((uint64_t)i, t, e);
            memcpy(d + 4 * e, &v, 4);
        }
    }
    am_st_free(&st);
    return buf;
}

/* The model's logits for the fixture's input x. */
static const float *logits_of(am_model *m, const fx_file *f, int B) {
    am_shape s = am_model_input_shape(m);
    s.n = B;
    am_tensor x = {s, (float *)fx_f32(f, "x", am_shape_numel(s))};
    if (am_model_set_batch(m, B) != AM_OK || am_model_forward(m, &x, 0, NULL) != AM_OK) fail_msg("%s", am_last_error());
    return am_model_logits(m)->d;
}

/* The refusal's message: one line that names what it must. */
static void refused(am_status st, const char *a, const char *b) {
    const char *e = am_last_error();
    if (st == AM_OK) fail_msg("accepted; expected a refusal naming %s", a);
    if (strchr(e, '\n') || (a && !strstr(e, a)) || (b && !strstr(e, b)))
        fail_msg("the message '%s' does not say '%s'%s%s", e, a, b ? " and " : "", b ? b : "");
}

/* -------------------------------------------- models saved from PyTorch */

static am_model *import_buf(const fx_file *f, const uint8_t *buf, size_t n, am_import_info *info, am_status *st) {
    const int32_t *in = fx_i32(f, "input", 4);
    am_model *m = NULL;
    *st = am_import_safetensors(fx_text(f, "model"), am_shape4(1, in[0], in[1], in[2]), in[3], buf, n, &m, info);
    return m;
}

/* n images of shape s uniform in [-1, 1) from stream idx (gen_fixtures.py's
 * images()). */
static float *images(uint64_t idx, int n, am_shape s) {
    size_t m = (size_t)n * s.c * s.h * s.w;
    float *x = malloc(m * sizeof(float));
    for (size_t e = 0; e < m; e++) x[e] = (float)(2 * ((double)(splitmix64(idx << 40 | e) >> 40) * 0x1p-24) - 1);
    return x;
}

/* m folded, in slalom mode, calibrated on stream 2^20: how many of stream
 * 2^20 + 1's 100 images it predicts as PyTorch did. */
static int slalom_agreement(am_model *m, const fx_file *f) {
    am_model *q;
    am_backend *be;
    am_shape s = am_model_input_shape(m);
    assert_int_equal(am_model_fold_bn(m, &q, NULL), AM_OK);
    assert_int_equal(am_model_set_batch(q, 100), AM_OK);
    assert_int_equal(am_cpu_backend_create(&be), AM_OK);
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_SLALOM;
    assert_int_equal(am_model_set_asym(q, &c, be), AM_OK);
    float *xc = images(1u << 20, 100, s), *xe = images((1u << 20) + 1, 100, s);
    am_tensor tc = {am_shape4(100, s.c, s.h, s.w), xc}, te = {tc.s, xe};
    assert_int_equal(am_model_calibrate(q, &tc), AM_OK);
    if (am_model_forward(q, &te, 0, NULL)) fail_msg("%s", am_last_error());
    const am_tensor *z = am_model_logits(q);
    const int32_t *want = fx_i32(f, "preds", 100);
    int K = z->s.c, same = 0;
    for (int b = 0; b < 100; b++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (z->d[b * K + k] > z->d[b * K + best]) best = k;
        same += best == want[b];
    }
    free(xc), free(xe);
    am_model_free(q);
    be->vt->destroy(be);
    return same;
}

/* A zoo model's logits against PyTorch's. Both run float32 with different
 * summation orders (im2col + sgemm here, oneDNN there); the error is
 * measured against the largest logit (ResNet18's reach 200 under the
 * formula's weights, where 1e-5 absolute is below float's resolution). */
static void zoo_logits(const char *fixture, int tensors, int counters, const char *var) {
    fx_file f;
    fx_load(&f, fixture);
    size_t n;
    uint8_t *buf = rebuild(&f, &n);
    am_import_info info;
    am_status st;
    am_model *m = import_buf(&f, buf, n, &info, &st);
    if (st != AM_OK) fail_msg("%s", am_last_error());
    assert_int_equal(info.tensors, tensors);
    assert_int_equal(info.ignored, counters);
    assert_int_equal(info.params, am_model_trainable_count(m));
    int K = am_model_num_classes(m);
    const float *z = logits_of(m, &f, 2), *ref = fx_f32(&f, "logits", 2 * (size_t)K);
    double e = fx_scaled_err(z, ref, 2 * (size_t)K);
    print_message("%s: logits within %.2g of PyTorch's, relative to the largest\n", fixture, e);
    assert_true(e <= 1e-5);
    int same = slalom_agreement(m, &f);
    print_message("%s: slalom predicts as PyTorch's float model on %d of 100 images\n", fixture, same);
    assert_true(same >= 99);
    am_model_free(m);
    /* A negative running variance is refused, by name. */
    am_safetensors sf;
    assert_int_equal(am_st_parse(buf, n, &sf), AM_OK);
    const am_st_tensor *t = am_st_find(&sf, var);
    assert_non_null(t);
    float neg = -1.f;
    memcpy(buf + (t->data - buf) + 12, &neg, 4);
    am_st_free(&sf);
    m = import_buf(&f, buf, n, &info, &st);
    refused(st, var, "negative variance at element 3");
    assert_null(m);
    free(buf);
    fx_free(&f);
}

static void test_vgg11(void **state) {
    (void)state;
    zoo_logits("import_vgg11.amfx", 8 * 2 + 8 * 4 + 2, 8, "features.5.running_var");
}

static void test_resnet18(void **state) {
    (void)state;
    zoo_logits("import_resnet18.amfx", 20 + 20 * 4 + 2, 20, "layer3.0.downsample.1.running_var");
}

/* The committed LeNet file, and its checkpoint read back. */
static void test_lenet_file(void **state) {
    (void)state;
    fx_file f;
    fx_load(&f, "import_lenet.amfx");
    am_model *m;
    am_import_info info;
    if (am_import_file("lenet", am_shape4(1, 1, 12, 12), 10, ASYMML_FIXTURES "/import_lenet.safetensors", &m, &info))
        fail_msg("%s", am_last_error());
    assert_int_equal(info.tensors, 8);
    const float *ref = fx_f32(&f, "logits", 40);
    fx_close("lenet logits", logits_of(m, &f, 4), ref, 40, 1e-6, 1e-5);
    float mean = 0.25f, std = 0.5f;
    am_checkpoint ck, back;
    uint8_t *bytes;
    size_t n;
    assert_int_equal(am_import_checkpoint(m, &mean, &std, &ck), AM_OK);
    assert_int_equal(am_checkpoint_encode(&ck, &bytes, &n), AM_OK);
    if (am_checkpoint_parse(bytes, n, &back) != AM_OK) fail_msg("%s", am_last_error());
    assert_true(back.mean[0] == mean && back.std[0] == std && back.channels == 1 && back.global_step == 0);
    assert_int_equal(back.cfg.asym.mode, AM_MODE_TEE_ONLY);
    am_model *m2;
    assert_int_equal(am_model_create(back.desc, &m2), AM_OK);
    assert_int_equal(back.n_weights, am_model_weights_len(m2));
    memcpy(am_model_weights(m2), back.weights, back.n_weights * sizeof(float));
    assert_memory_equal(logits_of(m2, &f, 4), logits_of(m, &f, 4), 40 * sizeof(float));
    am_model_free(m2);
    am_checkpoint_free(&back);
    free(bytes);
    am_model_free(m);
    fx_free(&f);
}

/* ------------------------------------------- files made here, and damaged */

typedef struct ent {
    char name[64];
    const char *dtype;
    int ndim;
    uint64_t dims[4];
    const void *data; /* NULL: zeros */
    size_t bytes;
    uint64_t off[2];  /* data_offsets given as they are when off[1] > 0 */
} ent;

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

__attribute__((format(printf, 2, 3))) static void put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = 2 * (b->n + (size_t)k + 1);
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* A safetensors file of these tensors, their data one after another (or
 * where off says), as gen_fixtures.py's writer lays it out. */
static uint8_t *build(const ent *e, int n, size_t *len) {
    sbuf h = {0};
    uint64_t pos = 0, end = 0, (*off)[2] = calloc((size_t)n + 1, sizeof *off);
    put(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        off[i][0] = e[i].off[1] ? e[i].off[0] : pos;
        off[i][1] = e[i].off[1] ? e[i].off[1] : pos + e[i].bytes;
        if (!e[i].off[1]) pos += e[i].bytes;
        if (off[i][1] > end) end = off[i][1];
        put(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e[i].name, e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++) put(&h, "%s%llu", d ? "," : "", (unsigned long long)e[i].dims[d]);
        put(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off[i][0], (unsigned long long)off[i][1]);
    }
    put(&h, "}");
    while (h.n % 8) put(&h, " ");
    *len = 8 + h.n + (size_t)end;
    uint8_t *buf = calloc(*len, 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    memcpy(buf + 8, h.p, h.n);
    for (int i = 0; i < n; i++)
        if (e[i].data) memcpy(buf + 8 + h.n + off[i][0], e[i].data, (size_t)(off[i][1] - off[i][0]));
    free(h.p);
    free(off);
    return buf;
}

#define IN am_shape4(1, 1, 8, 8)

/* LeNet at 1x8x8, initialized, as a state dict: its 8 tensors under
 * torchvision-style names (import.h). */
typedef struct lenet {
    am_model *m;
    ent e[9];
    int n;
} lenet;

static void lenet_make(lenet *l) {
    char desc[4096];
    memset(l, 0, sizeof *l);
    if (am_zoo_describe("lenet", IN, 10, desc, sizeof desc) || am_model_create(desc, &l->m) || am_model_init(l->m, 3))
        fail_msg("%s", am_last_error());
    l->n = am_model_num_params(l->m);
    assert_int_equal(l->n, 8);
    for (int i = 0; i < l->n; i++) {
        am_param *p = am_model_param(l->m, i);
        ent *e = &l->e[i];
        am_layer_info li;
        assert_int_equal(am_import_name(l->m, "lenet", i, e->name, sizeof e->name), AM_OK);
        am_model_layer_info(l->m, p->layer, &li);
        e->dtype = "F32";
        e->ndim = p->kind != AM_P_WEIGHT ? 1 : strcmp(li.kind, "conv") ? 2 : 4;
        uint64_t d[4] = {(uint64_t)p->shape.n, (uint64_t)p->shape.c, (uint64_t)p->shape.h, (uint64_t)p->shape.w};
        memcpy(e->dims, d, sizeof d);
        e->data = p->data;
        e->bytes = p->numel * sizeof(float);
    }
}

static ent *find(lenet *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->e[i].name, name)) return &l->e[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static am_status import_ents(const lenet *l, am_model **m, am_import_info *info) {
    size_t n;
    uint8_t *buf = build(l->e, l->n, &n);
    am_status st = am_import_safetensors("lenet", IN, 10, buf, n, m, info);
    free(buf);
    return st;
}

/* Imported as built, and refused with a message naming a and b. */
static void expect_refused(const lenet *l, const char *a, const char *b) {
    am_model *m = (am_model *)1;
    refused(import_ents(l, &m, NULL), a, b);
    assert_null(m);
}

static void test_lenet_names(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    static const char *const want[8] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                        "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias"};
    for (int i = 0; i < 8; i++) assert_string_equal(l.e[i].name, want[i]);
    am_model *m;
    am_import_info info;
    if (import_ents(&l, &m, &info) != AM_OK) fail_msg("%s", am_last_error());
    assert_int_equal(info.tensors, 8);
    assert_int_equal(info.prefixed, 0);
    assert_memory_equal(am_model_weights(m), am_model_weights(l.m), am_model_weights_len(m) * sizeof(float));
    am_model_free(m);
    /* nn.DataParallel's names. */
    for (int i = 0; i < l.n; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "module.%s", l.e[i].name);
        snprintf(l.e[i].name, sizeof l.e[i].name, "%s", nm);
    }
    if (import_ents(&l, &m, &info) != AM_OK) fail_msg("%s", am_last_error());
    assert_int_equal(info.prefixed, 1);
    am_model_free(m);
    am_model_free(l.m);
}

static void test_missing(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    *find(&l, "fc1.bias") = l.e[--l.n];
    expect_refused(&l, "'fc1.bias'", "missing");
    am_model_free(l.m);
}

static void test_extra(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    l.e[l.n++] = (ent){"fc3.weight", "F32", 2, {1, 2, 0, 0}, NULL, 8, {0, 0}};
    expect_refused(&l, "'fc3.weight'", "not one of lenet's");
    /* A BatchNorm counter where the model has no BatchNorm is one too. */
    l.e[l.n - 1] = (ent){"conv1.num_batches_tracked", "I64", 0, {0}, NULL, 8, {0, 0}};
    expect_refused(&l, "'conv1.num_batches_tracked'", NULL);
    am_model_free(l.m);
}

static void test_misshapen(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    ent *e = find(&l, "conv2.weight");
    e->dims[2] = e->dims[3] = 3;
    e->bytes = 32 * 16 * 3 * 3 * sizeof(float);
    expect_refused(&l, "tensor 'conv2.weight' has shape 32x16x3x3", "the model expects 32x16x5x5");
    /* A linear weight as PyTorch holds it, out x in, not out x in x 1 x 1. */
    am_model_free(l.m);
    lenet_make(&l);
    e = find(&l, "fc2.weight");
    e->ndim = 4;
    expect_refused(&l, "'fc2.weight' has shape 10x128x1x1", "expects 10x128");
    am_model_free(l.m);
}

static void test_dtype(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    find(&l, "conv1.bias")->dtype = "I32";
    expect_refused(&l, "'conv1.bias' is I32", NULL);
    find(&l, "conv1.bias")->dtype = "F7";
    expect_refused(&l, "'conv1.bias' has an unknown dtype 'F7'", NULL);
    am_model_free(l.m);
}

static void test_nonfinite(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    ent *e = find(&l, "fc2.weight");
    float w[1280];
    memcpy(w, e->data, sizeof w);
    w[5] = NAN;
    e->data = w;
    expect_refused(&l, "'fc2.weight' holds a NaN at element 5", NULL);
    w[5] = -INFINITY;
    expect_refused(&l, "'fc2.weight' holds an infinity at element 5", NULL);
    /* F16's infinity, and an F64 beyond float's range. */
    uint16_t h[16] = {0};
    h[2] = 0x7C00;
    e = find(&l, "conv1.bias");
    *e = (ent){"conv1.bias", "F16", 1, {16}, h, sizeof h, {0, 0}};
    expect_refused(&l, "'conv1.bias' holds an infinity at element 2", NULL);
    double d[16] = {0};
    d[7] = 1e300;
    *e = (ent){"conv1.bias", "F64", 1, {16}, d, sizeof d, {0, 0}};
    expect_refused(&l, "'conv1.bias' holds a value beyond float's range at element 7", NULL);
    am_model_free(l.m);
}

/* F16 (normal, subnormal, largest, signed zero), BF16 and F64 into floats. */
static void test_conversions(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    uint16_t h[16] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x3555, 0x03FF}, b[10 * 128] = {0x3F80, 0xC0A0, 0x0001};
    double d[32] = {0.1, -2.5, 1e-50};
    *find(&l, "conv1.bias") = (ent){"conv1.bias", "F16", 1, {16}, h, sizeof h, {0, 0}};
    *find(&l, "fc2.weight") = (ent){"fc2.weight", "BF16", 2, {10, 128}, b, sizeof b, {0, 0}};
    *find(&l, "conv2.bias") = (ent){"conv2.bias", "F64", 1, {32}, d, sizeof d, {0, 0}};
    am_model *m;
    if (import_ents(&l, &m, NULL) != AM_OK) fail_msg("%s", am_last_error());
    const float *cb = am_model_param(m, 1)->data, *c2b = am_model_param(m, 3)->data, *f2w = am_model_param(m, 6)->data;
    const float want_h[7] = {1.f, -2.f, 65504.f, 0x1p-24f, -0.f, 0x1.554p-2f, 0x3FFp-24f};
    for (int i = 0; i < 7; i++) assert_memory_equal(&cb[i], &want_h[i], sizeof(float));
    assert_true(f2w[0] == 1.f && f2w[1] == -5.f && f2w[2] == 0x1p-133f);
    assert_true(c2b[0] == (float)0.1 && c2b[1] == -2.5f && c2b[2] == 0.f);
    am_model_free(m);
    am_model_free(l.m);
}

static void test_truncated(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    size_t n;
    uint8_t *buf = build(l.e, l.n, &n);
    am_model *m;
    refused(am_import_safetensors("lenet", IN, 10, buf, n - 20, &m, NULL), "'fc2.bias'", "truncated");
    refused(am_import_safetensors("lenet", IN, 10, buf, 5, &m, NULL), "too short", NULL);
    /* Bytes after the last tensor's data belong to none. */
    buf = realloc(buf, n + 16);
    memset(buf + n, 0, 16);
    refused(am_import_safetensors("lenet", IN, 10, buf, n + 16, &m, NULL), "16 bytes after the last tensor's", NULL);
    /* The header's length past the end of the file. */
    uint64_t hl = n - 7;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hl >> (8 * i));
    refused(am_import_safetensors("lenet", IN, 10, buf, n, &m, NULL), "the header's length", "past the end of the file");
    memset(buf, 0xFF, 8);
    refused(am_import_safetensors("lenet", IN, 10, buf, n, &m, NULL), "the header's length", "past the end of the file");
    free(buf);
    /* A gap in the data, before the last tensor's. */
    ent *e = find(&l, "fc2.bias");
    size_t before = 0;
    for (int i = 0; i < l.n; i++) before += l.e[i].bytes;
    before -= e->bytes;
    e->off[0] = before + 8, e->off[1] = before + 8 + e->bytes;
    char gap[100];
    snprintf(gap, sizeof gap, "bytes %zu to %zu of the data belong to no tensor", before, before + 8);
    expect_refused(&l, gap, "'fc2.bias'");
    am_model_free(l.m);
}

static void test_overlap(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    ent *e = find(&l, "fc2.bias");
    e->off[0] = 0, e->off[1] = 40; /* conv1.weight's first bytes */
    expect_refused(&l, "'fc2.bias'", "'conv1.weight' overlap");
    am_model_free(l.m);
}

static void test_duplicate(void **state) {
    (void)state;
    lenet l;
    lenet_make(&l);
    l.e[l.n++] = *find(&l, "conv2.bias");
    expect_refused(&l, "'conv2.bias' appears twice", NULL);
    am_model_free(l.m);
}

/* The header's JSON, strictly: each of these is refused with one line (and
 * the last ones read). */
static void test_json(void **state) {
    (void)state;
    static const struct {
        const char *json, *says; /* says NULL: it reads */
        size_t data;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", "expected a string", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", "expected ',' or '}'", 4},
        {"{\"a\" {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "expected ':'", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", "leading zero", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "negative", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", "fraction", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", "fraction", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", "beyond 2^64", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", "a field other than", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "given twice", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "'a' has no data_offsets", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "not [begin, end]", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "end before they begin", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "too many numbers", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", "beyond 2^60", 4},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "takes 8", 4},
        {"{\"a\":{\"dtype\":F32,\"shape\":[1],\"data_offsets\":[0,4]}}", "expected a string", 4},
        {"{\"a\n\":{}}", "control character", 0},
        {"{\"a\\u0000b\":{}}", "control character in a tensor name", 0},
        {"{\"\\ud800\":{}}", "without its low one", 0},
        {"{\"\\udc00\":{}}", "lone low surrogate", 0},
        {"{\"a\\x\":{}}", "unknown escape", 0},
        {"{\"\xc3\x28\":{}}", "not UTF-8", 0},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", "empty tensor name", 4},
        {"[\"a\"]  ", "not a JSON object", 0},
        {"{}  x", "text after", 0},
        {"{\"__metadata__\":{\"k\":1}}", "not a string", 0},
        {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", "'k' twice", 0},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", "given twice", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4},
        {"{\"a\\nb\":{}}", "control character in a tensor name", 0},
        {" { \"__metadata__\" : { \"format\" : \"pt\" } , \"\\u00e9\\ud83d\\ude00\\\"\" : { \"shape\" : [ ] , "
         "\"data_offsets\" : [ 0 , 8 ] , \"dtype\" : \"I64\" } }\t\r\n ", NULL, 8},
        {"{\"\\u00e9\\ud83d\\ude00/\\\"\":{\"shape\":[],\"data_offsets\":[0,8],\"dtype\":\"I64\"},\"z\":{\"shape\":[0],"
         "\"data_offsets\":[8,8],\"dtype\":\"BOOL\"}}", NULL, 8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t hl = strlen(cases[c].json), n = 8 + hl + cases[c].data;
        uint8_t *buf = calloc(n, 1);
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        memcpy(buf + 8, cases[c].json, hl);
        am_safetensors st;
        am_status s = am_st_parse(buf, n, &st);
        if (cases[c].says) {
            if (s == AM_OK) fail_msg("case %zu read: %s", c, cases[c].json);
            refused(s, cases[c].says, NULL);
            assert_null(st.t);
        } else {
            if (s != AM_OK) fail_msg("case %zu: %s", c, am_last_error());
            if (c == sizeof cases / sizeof *cases - 2) {
                assert_int_equal(st.n_meta, 1);
                assert_non_null(am_st_find(&st, "\xc3\xa9\xf0\x9f\x98\x80\""));
            }
            am_st_free(&st);
        }
        free(buf);
    }
}

/* The wrong --model: the first tensor it lacks is named. */
static void test_wrong_model(void **state) {
    (void)state;
    am_model *m;
    refused(am_import_file("vgg11", am_shape4(1, 1, 32, 32), 10, ASYMML_FIXTURES "/import_lenet.safetensors", &m, NULL),
            "import_lenet.safetensors: tensor 'features.0.weight' (64x1x3x3) is missing", NULL);
    refused(am_import_file("lenet", am_shape4(1, 1, 28, 28), 10, ASYMML_FIXTURES "/import_lenet.safetensors", &m, NULL),
            "'fc1.weight' has shape 128x288, the model expects 128x1568", NULL);
    refused(am_import_file("alexnet", am_shape4(1, 3, 32, 32), 10, ASYMML_FIXTURES "/import_lenet.safetensors", &m, NULL),
            "unknown model 'alexnet'", NULL);
    refused(am_import_file("lenet", IN, 10, ASYMML_FIXTURES "/nowhere.safetensors", &m, NULL), "cannot open", NULL);
}

/* Every zoo model has a name for every parameter, each once. */
static void test_zoo_names(void **state) {
    (void)state;
    for (const char *const *z = am_zoo_names(); *z; z++) {
        char desc[1 << 16], a[64], b[64];
        am_model *m;
        int inet = strstr(*z, "imagenet") != NULL;
        am_shape in = am_shape4(1, 3, inet ? 64 : 32, inet ? 64 : 32);
        if (am_zoo_describe(*z, in, 10, desc, sizeof desc) || am_model_create(desc, &m)) fail_msg("%s", am_last_error());
        for (int i = 0; i < am_model_num_params(m); i++) {
            if (am_import_name(m, *z, i, a, sizeof a) != AM_OK) fail_msg("%s: %s", *z, am_last_error());
            for (int j = 0; j < i; j++) {
                assert_int_equal(am_import_name(m, *z, j, b, sizeof b), AM_OK);
                if (!strcmp(a, b)) fail_msg("%s: '%s' twice", *z, a);
            }
        }
        am_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vgg11),       cmocka_unit_test(test_resnet18),  cmocka_unit_test(test_lenet_file),
        cmocka_unit_test(test_lenet_names), cmocka_unit_test(test_missing),   cmocka_unit_test(test_extra),
        cmocka_unit_test(test_misshapen),   cmocka_unit_test(test_dtype),     cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_conversions), cmocka_unit_test(test_truncated), cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_duplicate),   cmocka_unit_test(test_json),      cmocka_unit_test(test_wrong_model),
        cmocka_unit_test(test_zoo_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
