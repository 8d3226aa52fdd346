/* Writes the committed seed corpora in fuzz/corpus/: small valid inputs and
 * the known ways each format goes wrong. Run: make_corpus fuzz/corpus */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "asymml/asymml.h"
#include "boundary/channel.h"
#include "untrusted/cpu_backend.h"

static const char *root;

static void put(const char *sub, const char *name, const void *b, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, sub);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", root, sub, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(b, 1, n, f) != n) {
        fprintf(stderr, "make_corpus: cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
}

static size_t be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
    return 4;
}

/* IDX input: u16 image length, image file, label file. */
static void idx(const char *name, uint32_t imagic, uint32_t n, uint32_t h, uint32_t w, uint32_t lmagic,
                uint32_t ln, int cut, int extra, int bad_label) {
    uint8_t b[512];
    size_t o = 2;
    o += be(b + o, imagic);
    o += be(b + o, n);
    o += be(b + o, h);
    o += be(b + o, w);
    size_t px = (size_t)n * h * w;
    if (px > 200) px = 200;
    for (size_t i = 0; i < px; i++) b[o++] = (uint8_t)(i * 37);
    o -= (size_t)cut;
    for (int i = 0; i < extra; i++) b[o++] = 0xEE;
    size_t il = o - 2;
    b[0] = (uint8_t)il, b[1] = (uint8_t)(il >> 8);
    o += be(b + o, lmagic);
    o += be(b + o, ln);
    for (uint32_t i = 0; i < ln && i < 64; i++) b[o++] = (uint8_t)(bad_label && i == 1 ? 10 : i % 10);
    put("idx", name, b, o);
}

/* safetensors: u64 header length, the JSON header, the data. */
static void st_put(const char *name, const char *json, uint64_t hl, const uint8_t *data, size_t dn) {
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + dn);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, json, jl);
    if (dn) memcpy(b + 8 + jl, data, dn);
    put("safetensors", name, b, 8 + jl + dn);
    free(b);
}

/* LeNet at 1x4x4 in BF16 under the names asymml import reads: what the
 * fuzz target imports whole (38 KB). */
static void st_lenet(void) {
    char desc[4096], json[4096];
    am_model *m;
    if (am_zoo_describe("lenet", am_shape4(1, 1, 4, 4), 10, desc, sizeof desc) || am_model_create(desc, &m) ||
        am_model_init(m, 1))
        exit(1);
    uint8_t *data = malloc(2 * am_model_weights_len(m));
    size_t pos = 0, jl = (size_t)snprintf(json, sizeof json, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < am_model_num_params(m); i++) {
        am_param *p = am_model_param(m, i);
        char name[64];
        am_import_name(m, "lenet", i, name, sizeof name);
        int conv = p->shape.h > 1, vec = p->kind != AM_P_WEIGHT;
        jl += (size_t)snprintf(json + jl, sizeof json - jl, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%d", name, p->shape.n);
        if (!vec) jl += (size_t)snprintf(json + jl, sizeof json - jl, ",%d", p->shape.c);
        if (conv) jl += (size_t)snprintf(json + jl, sizeof json - jl, ",%d,%d", p->shape.h, p->shape.w);
        jl += (size_t)snprintf(json + jl, sizeof json - jl, "],\"data_offsets\":[%zu,%zu]}", pos, pos + 2 * p->numel);
        for (size_t e = 0; e < p->numel; e++) {
            uint32_t u;
            memcpy(&u, &p->data[e], 4);
            data[pos++] = (uint8_t)(u >> 16), data[pos++] = (uint8_t)(u >> 24);
        }
    }
    snprintf(json + jl, sizeof json - jl, "}");
    st_put("lenet-bf16", json, strlen(json), data, pos);
    free(data);
    am_model_free(m);
}

static void safetensors(void) {
    static const char small[] =
        "{\"__metadata__\":{\"format\":\"pt\"},\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"a.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[16,24]},"
        "\"\\u00e9\\ud83d\\ude00\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]}}    ";
    uint8_t d[28] = {0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 7, 0, 0, 0, 0, 0, 0, 0, 0, 60, 0, 124};
    st_put("small", small, strlen(small), d, sizeof d);
    st_put("truncated", small, strlen(small), d, sizeof d - 6);
    st_put("header-past-end", small, 1000, d, sizeof d);
    uint8_t nan[4] = {0, 0, 192, 127};
    static const char one[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    st_put("nan", one, strlen(one), nan, 4);
    static const char overlap[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    st_put("overlap", overlap, strlen(overlap), d, 8);
    static const char dup[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    st_put("duplicate", dup, strlen(dup), d, 8);
    static const char bad[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}";
    st_put("bad-json", bad, strlen(bad), d, 4);
    st_lenet();
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    root = argv[1];
    mkdir(root, 0755);
    idx("valid", 0x803, 3, 4, 5, 0x801, 3, 0, 0, 0);
    idx("truncated-images", 0x803, 3, 4, 5, 0x801, 3, 7, 0, 0);
    idx("trailing-bytes", 0x803, 3, 4, 5, 0x801, 3, 0, 3, 0);
    idx("bad-magic", 0x801, 3, 4, 5, 0x801, 3, 0, 0, 0);
    idx("swapped-magic", 0x803, 3, 4, 5, 0x803, 3, 0, 0, 0);
    idx("count-mismatch", 0x803, 3, 4, 5, 0x801, 2, 0, 0, 0);
    idx("label-out-of-range", 0x803, 3, 4, 5, 0x801, 3, 0, 0, 1);
    idx("zero-images", 0x803, 0, 4, 5, 0x801, 0, 0, 0, 0);
    idx("huge-dims", 0x803, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0x801, 3, 0, 0, 0);
    uint8_t tiny[3] = {1, 0, 0};
    put("idx", "tiny", tiny, 3);

    /* CIFAR input: kind byte, records. */
    enum { R10 = 3073, R100 = 3074 };
    uint8_t *c = calloc(1, 1 + 2 * R100 + 8);
    c[0] = 0;
    c[1] = 3, c[1 + R10] = 7;
    put("cifar", "valid-c10", c, 1 + 2 * R10);
    put("cifar", "short-c10", c, 1 + 2 * R10 - 5);
    c[1 + R10] = 10;
    put("cifar", "label-c10", c, 1 + 2 * R10);
    memset(c, 0, 1 + 2 * R100);
    c[0] = 1;
    c[2] = 42, c[1 + R100] = 19, c[2 + R100] = 99;
    put("cifar", "valid-c100", c, 1 + 2 * R100);
    c[1] = 20;
    put("cifar", "coarse-c100", c, 1 + 2 * R100);
    put("cifar", "empty", c, 1);
    free(c);

    /* Model descriptions. */
    const char *descs[][2] = {
        {"lenet", NULL},
        {"resnet-block", "input 3 8 8\nconv 4 k=3 p=1 bias=0 name=a\nbn\nrelu\nconv 4 k=3 p=1 name=b\nadd from=a,b\nrelu\ngap\nflatten\nlinear 3"},
        {"semicolons", "input 1 4 4; conv 2 k=3 p=1; maxpool k=2 ceil=1; flatten; dropout p=0.2; linear 2"},
        {"bad-from", "input 1 4 4\nconv 2 k=3 from=zz\nlinear 2"},
        {"bad-kernel", "input 1 4 4\nconv 2 k=9\nlinear 2"},
        {"no-input", "conv 2 k=3\nlinear 2"},
    };
    char buf[8192];
    for (size_t i = 0; i < sizeof descs / sizeof *descs; i++) {
        const char *d = descs[i][1];
        if (!d) {
            am_zoo_describe("lenet", am_shape4(1, 1, 12, 12), 3, buf, sizeof buf);
            d = buf;
        }
        put("desc", descs[i][0], d, strlen(d));
    }

    /* Checkpoints: a real one of a tiny model, then damaged copies. */
    am_dataset ds;
    am_trainer *t;
    am_backend *be;
    if (am_cpu_backend_create(&be)) return 1;
    am_trainer_io io = {&ds, NULL, be};
    am_train_cfg cfg = {.epochs = 1, .batch = 4, .lr = 0.1f, .momentum = 0.9f, .sched = AM_SCHED_CONSTANT,
                        .step_size = 1, .gamma = 0.1f, .seed = 1};
    if (am_synthetic(8, 1, 4, 4, 2, 1, &ds) ||
        am_trainer_create(&cfg, "input 1 4 4\nconv 2 k=3 p=1\nbn\nrelu\ngap\nflatten\nlinear 2", &io, &t) ||
        am_trainer_step(t, NULL)) {
        fprintf(stderr, "make_corpus: %s\n", am_last_error());
        return 1;
    }
    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoint", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/checkpoint/valid", root);
    if (am_trainer_save(t, p)) {
        fprintf(stderr, "make_corpus: %s\n", am_last_error());
        return 1;
    }
    am_trainer_free(t);
    /* One in asymml mode whose plan was decided on the first batch. */
    cfg.asym = am_asym_defaults();
    cfg.asym.policy = AM_RANK_ENTROPY;
    cfg.asym.basis = AM_BASIS_AUTO;
    char p2[1024];
    snprintf(p2, sizeof p2, "%s/checkpoint/valid-plan", root);
    if (am_trainer_create(&cfg, "input 1 4 4\nconv 8 k=3 p=1\nrelu\nconv 8 k=3 p=1\ngap\nflatten\nlinear 2", &io, &t) ||
        am_trainer_step(t, NULL) || am_trainer_save(t, p2)) {
        fprintf(stderr, "make_corpus: %s\n", am_last_error());
        return 1;
    }
    am_trainer_free(t);
    am_dataset_free(&ds);
    be->vt->destroy(be);
    FILE *f = fopen(p, "rb");
    uint8_t ck[65536];
    size_t n = fread(ck, 1, sizeof ck, f);
    fclose(f);
    put("checkpoint", "truncated", ck, n - 40);
    put("checkpoint", "header-only", ck, 16);
    uint8_t *m = malloc(n + 4);
    memcpy(m, ck, n);
    m[n / 2] ^= 0x10;
    put("checkpoint", "flipped-bit", m, n);
    memcpy(m, ck, n);
    m[4] = 9;
    put("checkpoint", "future-version", m, n);
    memcpy(m, ck, n);
    memset(m + n, 0, 4);
    put("checkpoint", "trailing", m, n + 4);
    free(m);

    /* Channel messages: 8 bytes of arena size, then a slot. */
    snprintf(p, sizeof p, "%s/channel", root);
    mkdir(p, 0755);
    const uint64_t arena = (uint64_t)64 << 20;
    uint8_t msg[8 + AM_CHAN_SLOT_BYTES];
    memcpy(msg, &arena, 8);
    am_msg cm = {.kind = AM_MSG_CONV, .seq = 1, .conv = AM_REQ_CONV_BWD_FILTER, .layer = 4,
                 .cfg = {.out_c = 32, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
                 .x = {8, 16, 14, 14}, .off_in0 = 0, .off_in1 = 1 << 20, .off_out = 2 << 20, .keep = AM_KEEP_IN0,
                 .tag0 = AM_CROSS_RESIDUAL, .tag1 = AM_CROSS_OUTPUT_GRAD, .step = 12, .flags = AM_REQ_EXACT};
    am_chan_encode(&cm, msg + 8);
    put("channel", "conv", msg, sizeof msg);
    cm.off_out = arena - 64;
    am_chan_encode(&cm, msg + 8);
    put("channel", "conv-past-arena", msg, sizeof msg);
    am_msg om = {.kind = AM_MSG_OP, .seq = 3};
    om.op.kind = AM_OP_BN_BWD, om.op.layer = 2, om.op.flags = AM_OP_TRAINING | AM_OP_ACCUM;
    om.op.x = am_shape4(8, 16, 14, 14), om.op.eps = 1e-5f, om.op.bn_momentum = 0.1f;
    for (int i = 0; i < AM_OP_BUFS; i++) om.off_b[i] = (uint64_t)i << 20;
    am_chan_encode(&om, msg + 8);
    put("channel", "op", msg, sizeof msg);
    om.op.kind = AM_OP_SGD, om.op.x = am_shape4(1, 4096, 1, 1), om.op.lr = 0.1f, om.op.momentum = 0.9f;
    om.op.flags = AM_OP_STARTED;
    am_chan_encode(&om, msg + 8);
    put("channel", "op-sgd", msg, sizeof msg);
    am_msg bm = {.kind = AM_MSG_HELLO, .seq = 2};
    am_chan_encode(&bm, msg + 8);
    put("channel", "hello", msg, sizeof msg);
    am_msg rm = {.kind = AM_MSG_REPLY, .seq = 2, .status = AM_EIO, .busy = 0.25};
    snprintf(rm.err, sizeof rm.err, "backend failed\n\033[2Jprivacy: epsilon 0");
    am_chan_encode(&rm, msg + 8);
    put("channel", "reply", msg, sizeof msg);
    put("channel", "short", msg, 8 + 100);
    safetensors();
    return 0;
}
