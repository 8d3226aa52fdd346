/* Checkpoint files: a versioned binary format with a BLAKE2b checksum
 * (libsodium) over header and payload, encoded in memory and parsed from
 * memory with every length and value checked before use. The checksum
 * detects damage; with a key set (asymml/seal.h) the whole file is also
 * sealed as the run's checkpoint of its step, which detects tampering and
 * hides the contents. Writing files atomically and finding them in a
 * directory is ckdir.c's. */
#include "asymml/train.h"
#include "asymml/seal.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "AMCK"
#define VERSION 6u /* 6: how the run was started; 5: its binding and release counter; 5, 4 and 3 are
                    * still read (not resumed) */
#define HASH_LEN crypto_generichash_BYTES /* 32 */
#define HEADER_LEN 16
#define MAX_DESC (1u << 20)

/* ---------------------------------------------------------------- writing */

typedef struct wr {
    uint8_t *mem;
    size_t n;
    crypto_generichash_state h;
} wr;

static void put(wr *w, const void *p, size_t n) {
    if (!n) return;
    crypto_generichash_update(&w->h, p, n);
    memcpy(w->mem + w->n, p, n);
    w->n += n;
}
static void put_u32(wr *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(w, b, 4);
}
static void put_u64(wr *w, uint64_t v) {
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}
static void put_i32(wr *w, int v) { put_u32(w, (uint32_t)v); }
static void put_f32(wr *w, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u32(w, u);
}
/* Float arrays: the machine is little-endian (x86-64, arm64), as the format. */
static void put_floats(wr *w, const float *p, size_t n) { put(w, p, n * sizeof(float)); }

#define BIND_LEN (AM_RUN_ID_BYTES + 2 * AM_DIGEST_BYTES + 3 * 4)

static size_t payload_len(const am_checkpoint *ck) {
    size_t n = 4 + strlen(ck->desc);
    n += 8 * 4 + 4 * 4 + 8;         /* cfg: 8 ints, 4 floats, seed */
    n += 4 + 8 * 4;                 /* channels, mean, std */
    n += 3 * 4;                     /* position */
    n += 2 * 8 + 2 * 4;             /* sizes, momentum flags */
    n += 4 * 8 + 4 + 4;             /* rng */
    n += 4 * 4 + 8 + 3 * 4 + 8 + 8; /* asym: mode, policy, basis, iters, rank value, clip, sigma, pad, seed, n */
    n += 32;                        /* noise key */
    n += BIND_LEN + 3 * 8 + 4;      /* binding; release counter, releases, coupling, sessions */
    n += 3 * 4;                     /* run options */
    n += 4 + 4 * (size_t)ck->cfg.asym.n_ranks + 4 + 8 * (size_t)ck->n_plan; /* rank list, plan */
    n += (ck->n_weights * (ck->momentum ? 2 : 1) + ck->n_buffers + ck->n_asym) * sizeof(float);
    return n;
}

static void put_payload(wr *w, const am_checkpoint *ck) {
    const am_train_cfg *c = &ck->cfg;
    put_u32(w, (uint32_t)strlen(ck->desc));
    put(w, ck->desc, strlen(ck->desc));
    put_i32(w, c->epochs), put_i32(w, c->batch), put_i32(w, c->nesterov), put_i32(w, (int)c->sched);
    put_i32(w, c->step_size), put_i32(w, c->warmup), put_i32(w, c->crop_pad), put_i32(w, c->flip);
    put_f32(w, c->lr), put_f32(w, c->momentum), put_f32(w, c->wd), put_f32(w, c->gamma);
    put_u64(w, c->seed);
    put_i32(w, ck->channels);
    for (int i = 0; i < 4; i++) put_f32(w, ck->mean[i]);
    for (int i = 0; i < 4; i++) put_f32(w, ck->std[i]);
    put_i32(w, ck->epoch), put_i32(w, ck->step), put_i32(w, ck->global_step);
    put_u64(w, ck->n_weights), put_u64(w, ck->n_buffers);
    put_i32(w, ck->momentum != NULL), put_i32(w, ck->momentum_started);
    for (int i = 0; i < 4; i++) put_u64(w, ck->rng.s[i]);
    put_f32(w, ck->rng.spare), put_i32(w, ck->rng.has_spare);
    const am_asym_cfg *a = &c->asym;
    put_i32(w, (int)a->mode), put_i32(w, (int)a->policy), put_i32(w, (int)a->basis), put_i32(w, a->iters);
    uint64_t rv;
    memcpy(&rv, &a->rank_value, 8);
    put_u64(w, rv);
    put_f32(w, a->clip), put_f32(w, a->sigma), put_i32(w, a->protect_grads);
    put_u64(w, a->noise_seed);
    put(w, a->noise_key, sizeof a->noise_key);
    const am_run_binding *b = &ck->bind;
    put(w, b->run_id, sizeof b->run_id);
    put(w, b->train_digest, sizeof b->train_digest);
    put(w, b->test_digest, sizeof b->test_digest);
    put_i32(w, b->threads), put_i32(w, b->n_train), put_i32(w, b->n_test);
    put_u64(w, ck->noise_counter);
    put_u64(w, (uint64_t)ck->releases), put_u64(w, (uint64_t)ck->coupling);
    put_i32(w, ck->sessions);
    put_i32(w, ck->opts.tee_process), put_i32(w, ck->opts.save_every), put_i32(w, ck->opts.keep);
    put_i32(w, a->n_ranks);
    for (int i = 0; i < a->n_ranks; i++) put_i32(w, a->ranks[i]);
    put_i32(w, ck->n_plan);
    for (int i = 0; i < ck->n_plan; i++) put_i32(w, ck->plan_rank[i]), put_i32(w, ck->plan_basis[i]);
    put_u64(w, ck->n_asym);
    put_floats(w, ck->weights, ck->n_weights);
    put_floats(w, ck->buffers, ck->n_buffers);
    if (ck->momentum) put_floats(w, ck->momentum, ck->n_weights);
    if (ck->n_asym) put_floats(w, ck->asym, ck->n_asym);
}

am_status am_checkpoint_encode(const am_checkpoint *ck, uint8_t **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    if (!ck || !ck->desc || !ck->weights || (!ck->buffers && ck->n_buffers))
        return am_fail(AM_EINVAL, "checkpoint: NULL argument");
    if (sodium_init() < 0) return am_fail(AM_EIO, "checkpoint: libsodium failed to initialize");
    const size_t total = HEADER_LEN + payload_len(ck) + HASH_LEN;
    wr w = {.mem = malloc(total)};
    if (!w.mem) return am_fail(AM_ENOMEM, "checkpoint: cannot hold %zu MiB", total >> 20);
    crypto_generichash_init(&w.h, NULL, 0, HASH_LEN);
    put(&w, MAGIC, 4);
    put_u32(&w, VERSION);
    put_u64(&w, payload_len(ck));
    put_payload(&w, ck);
    crypto_generichash_final(&w.h, w.mem + w.n, HASH_LEN);
    w.n += HASH_LEN;
    if (!am_seal_have_key()) {
        *out = w.mem;
        *out_n = w.n;
        return AM_OK;
    }
    /* Sealed as what it is: this run's checkpoint of this step. */
    am_seal_id id = {AM_SEAL_CHECKPOINT, {0}, (uint64_t)ck->global_step};
    memcpy(id.id, ck->bind.run_id, sizeof id.id);
    am_status st = am_seal_current(&id, w.mem, w.n, out, out_n);
    sodium_memzero(w.mem, w.n);
    free(w.mem);
    return st;
}

/* ---------------------------------------------------------------- reading */

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
    int short_read;
} rd;

static const uint8_t *take_bytes(rd *r, size_t n) {
    if (r->short_read || n > r->n - r->off) {
        r->short_read = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}
static uint32_t get_u32(rd *r) {
    const uint8_t *b = take_bytes(r, 4);
    return b ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24 : 0;
}
static uint64_t get_u64(rd *r) {
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}
static int get_i32(rd *r) { return (int)get_u32(r); }
static float get_f32(rd *r) {
    uint32_t u = get_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static am_status get_floats(rd *r, size_t n, float **out, const char *what) {
    *out = NULL;
    if (n > (r->n - r->off) / sizeof(float)) return am_fail(AM_EFORMAT, "checkpoint truncated in the %s", what);
    const uint8_t *b = take_bytes(r, n * sizeof(float));
    float *f = am_aligned_alloc((n ? n : 1) * sizeof(float));
    if (!f) return am_fail(AM_ENOMEM, "checkpoint: out of memory for the %s", what);
    memcpy(f, b, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            am_aligned_free(f);
            return am_fail(AM_ENUM, "checkpoint: non-finite value in the %s", what);
        }
    *out = f;
    return AM_OK;
}

static am_status check_cfg(const am_train_cfg *c) {
    if (c->epochs < 1 || c->epochs > 100000 || c->batch < 1 || c->batch > 65536 ||
        !(c->lr > 0.f && c->lr <= 100.f) || !(c->momentum >= 0.f && c->momentum < 1.f) ||
        !(c->wd >= 0.f && c->wd < 1.f) || (c->nesterov != 0 && c->nesterov != 1) ||
        (int)c->sched < 0 || (int)c->sched > AM_SCHED_COSINE || c->step_size < 1 ||
        !(c->gamma > 0.f && c->gamma <= 1.f) || c->warmup < 0 || c->crop_pad < 0 ||
        c->crop_pad > 64 || (c->flip != 0 && c->flip != 1))
        return am_fail(AM_EFORMAT, "checkpoint: training configuration out of range");
    const am_asym_cfg *a = &c->asym;
    if ((int)a->mode < 0 || (int)a->mode > AM_MODE_OPEN)
        return am_fail(AM_EFORMAT, "checkpoint: unknown execution mode %d", (int)a->mode);
    if (a->mode != AM_MODE_TEE_ONLY && ((int)a->policy < 0 || (int)a->policy > AM_RANK_LIST ||
        (int)a->basis < 0 || (int)a->basis > AM_BASIS_AUTO || a->iters < 1 || a->iters > 20 ||
        (a->policy == AM_RANK_LIST) != (a->n_ranks > 0) ||
        !isfinite(a->rank_value) || !(a->clip >= 0.f) || !isfinite(a->clip) || !(a->sigma >= 0.f) ||
        !isfinite(a->sigma) || (a->protect_grads != 0 && a->protect_grads != 1)))
        return am_fail(AM_EFORMAT, "checkpoint: execution mode configuration out of range");
    return AM_OK;
}

static am_status parse_plain(const uint8_t *buf, size_t n, am_checkpoint *ck);

am_status am_checkpoint_parse(const uint8_t *buf, size_t n, am_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    if (!buf) return am_fail(AM_EINVAL, "checkpoint: NULL buffer");
    /* With a key, every checkpoint is sealed: a plain one (unauthenticated,
     * so anyone's) is not taken for the run's. */
    if (!am_is_sealed(buf, n) && am_seal_have_key())
        return am_fail(AM_EFORMAT, "not sealed, while a key is set: a plain checkpoint is not taken for a sealed run's");
    if (!am_is_sealed(buf, n)) return parse_plain(buf, n, ck);
    uint8_t *plain;
    size_t pn;
    am_seal_id id;
    AM_TRY(am_unseal_current(buf, n, "checkpoint", &id, &plain, &pn));
    am_status st = id.role == AM_SEAL_CHECKPOINT ? parse_plain(plain, pn, ck)
                                                 : am_fail(AM_EFORMAT, "a sealed %s file, not a checkpoint",
                                                           am_seal_role_name(id.role));
    /* The header names the run and the step it holds. */
    if (st == AM_OK && (memcmp(id.id, ck->bind.run_id, sizeof id.id) || id.index != (uint64_t)ck->global_step)) {
        am_checkpoint_free(ck);
        st = am_fail(AM_EFORMAT, "checkpoint: its sealed header and its contents name different runs or steps");
    }
    sodium_memzero(plain, pn);
    free(plain);
    return st;
}

static am_status parse_plain(const uint8_t *buf, size_t n, am_checkpoint *ck) {
    if (sodium_init() < 0) return am_fail(AM_EIO, "checkpoint: libsodium failed to initialize");
    if (n < 4 || memcmp(buf, MAGIC, 4)) return am_fail(AM_EFORMAT, "not an asymml checkpoint (bad magic)");
    if (n < HEADER_LEN + HASH_LEN) return am_fail(AM_EFORMAT, "checkpoint truncated");
    rd r = {buf, n, 4, 0};
    uint32_t version = get_u32(&r);
    if (version < 3 || version > VERSION)
        return am_fail(AM_EFORMAT, "checkpoint version %u; this build reads versions 3 to %u", version, VERSION);
    uint64_t plen = get_u64(&r);
    if (plen != n - HEADER_LEN - HASH_LEN)
        return am_fail(AM_EFORMAT, "checkpoint %s: header says %llu payload bytes, file has %zu",
                       plen > n - HEADER_LEN - HASH_LEN ? "truncated" : "has trailing data",
                       (unsigned long long)plen, n - HEADER_LEN - HASH_LEN);
    unsigned char hash[HASH_LEN];
    crypto_generichash(hash, HASH_LEN, buf, n - HASH_LEN, NULL, 0);
    if (sodium_memcmp(hash, buf + n - HASH_LEN, HASH_LEN))
        return am_fail(AM_EFORMAT, "checkpoint is corrupt (checksum mismatch)");
    r.n = n - HASH_LEN;
    uint32_t dl = get_u32(&r);
    if (dl == 0 || dl > MAX_DESC || dl > r.n - r.off) return am_fail(AM_EFORMAT, "checkpoint: bad model description length");
    const uint8_t *d = take_bytes(&r, dl);
    if (memchr(d, 0, dl)) return am_fail(AM_EFORMAT, "checkpoint: NUL in the model description");
    ck->desc = malloc(dl + 1);
    if (!ck->desc) return am_fail(AM_ENOMEM, "checkpoint: out of memory");
    memcpy(ck->desc, d, dl);
    ck->desc[dl] = 0;
    am_train_cfg *c = &ck->cfg;
    c->epochs = get_i32(&r), c->batch = get_i32(&r), c->nesterov = get_i32(&r);
    c->sched = (am_sched_kind)get_i32(&r);
    c->step_size = get_i32(&r), c->warmup = get_i32(&r), c->crop_pad = get_i32(&r), c->flip = get_i32(&r);
    c->lr = get_f32(&r), c->momentum = get_f32(&r), c->wd = get_f32(&r), c->gamma = get_f32(&r);
    c->seed = get_u64(&r);
    ck->channels = get_i32(&r);
    for (int i = 0; i < 4; i++) ck->mean[i] = get_f32(&r);
    for (int i = 0; i < 4; i++) ck->std[i] = get_f32(&r);
    ck->epoch = get_i32(&r), ck->step = get_i32(&r), ck->global_step = get_i32(&r);
    ck->n_weights = (size_t)get_u64(&r), ck->n_buffers = (size_t)get_u64(&r);
    int has_mom = get_i32(&r);
    ck->momentum_started = get_i32(&r);
    for (int i = 0; i < 4; i++) ck->rng.s[i] = get_u64(&r);
    ck->rng.spare = get_f32(&r);
    ck->rng.has_spare = get_i32(&r);
    am_asym_cfg *a = &c->asym;
    a->mode = (am_mode)get_i32(&r), a->policy = (am_rank_policy)get_i32(&r);
    a->basis = (am_basis_kind)get_i32(&r), a->iters = get_i32(&r);
    uint64_t rv = get_u64(&r);
    memcpy(&a->rank_value, &rv, 8);
    a->clip = get_f32(&r), a->sigma = get_f32(&r);
    a->protect_grads = get_i32(&r);
    a->noise_seed = get_u64(&r);
    if (version >= 4) {
        const uint8_t *k = take_bytes(&r, sizeof a->noise_key);
        if (k) memcpy(a->noise_key, k, sizeof a->noise_key);
    } else {
        memset(a->noise_key, 0, sizeof a->noise_key);
    }
    ck->version = (int)version;
    if (version >= 5) {
        am_run_binding *b = &ck->bind;
        const uint8_t *k = take_bytes(&r, BIND_LEN - 3 * 4);
        if (k) {
            memcpy(b->run_id, k, sizeof b->run_id);
            memcpy(b->train_digest, k + sizeof b->run_id, sizeof b->train_digest);
            memcpy(b->test_digest, k + sizeof b->run_id + AM_DIGEST_BYTES, sizeof b->test_digest);
        }
        b->threads = get_i32(&r), b->n_train = get_i32(&r), b->n_test = get_i32(&r);
        ck->noise_counter = get_u64(&r);
        ck->releases = (long)get_u64(&r);
        ck->coupling = (long)get_u64(&r);
        ck->sessions = get_i32(&r);
    }
    if (version >= 6)
        ck->opts.tee_process = get_i32(&r), ck->opts.save_every = get_i32(&r), ck->opts.keep = get_i32(&r);
    am_status st = AM_OK;
    if (ck->bind.threads < 0 || ck->bind.threads > 1024 || ck->bind.n_train < 0 || ck->bind.n_test < 0 ||
        ck->releases < 0 || ck->releases > (1L << 40) ||
        ck->coupling < 0 || ck->coupling > 65536 || ck->sessions < 0 || ck->sessions > (1 << 24) ||
        (ck->opts.tee_process != 0 && ck->opts.tee_process != 1) || ck->opts.save_every < 0 || ck->opts.keep < 0)
        st = am_fail(AM_EFORMAT, "checkpoint: bad run binding or accounting");
    a->n_ranks = st == AM_OK ? get_i32(&r) : 0;
    if (st == AM_OK && (a->n_ranks < 0 || a->n_ranks > AM_MAX_RANKS)) st = am_fail(AM_EFORMAT, "checkpoint: bad rank list length");
    for (int i = 0; st == AM_OK && i < a->n_ranks; i++) a->ranks[i] = get_i32(&r);
    ck->n_plan = st == AM_OK ? get_i32(&r) : 0;
    if (st == AM_OK && (ck->n_plan < 0 || ck->n_plan > AM_MAX_RANKS + 1))
        st = am_fail(AM_EFORMAT, "checkpoint: bad split plan length");
    for (int i = 0; st == AM_OK && i < ck->n_plan; i++) {
        ck->plan_rank[i] = get_i32(&r), ck->plan_basis[i] = get_i32(&r);
        if (ck->plan_rank[i] < 0 || ck->plan_rank[i] > 65536 ||
            (ck->plan_basis[i] != AM_BASIS_SHARED && ck->plan_basis[i] != AM_BASIS_PER_SAMPLE))
            st = am_fail(AM_EFORMAT, "checkpoint: split plan entry %d out of range", i + 1);
    }
    ck->n_asym = (size_t)get_u64(&r);
    if (r.short_read) st = am_fail(AM_EFORMAT, "checkpoint truncated");
    if (st == AM_OK && ck->n_plan && c->asym.mode == AM_MODE_TEE_ONLY) st = am_fail(AM_EFORMAT, "checkpoint: a split plan in tee-only mode");
    if (st == AM_OK) st = check_cfg(c);
    if (st == AM_OK && (ck->channels < 1 || ck->channels > 4))
        st = am_fail(AM_EFORMAT, "checkpoint: %d channels", ck->channels);
    for (int i = 0; st == AM_OK && i < ck->channels; i++)
        if (!isfinite(ck->mean[i]) || !(ck->std[i] > 0.f) || !isfinite(ck->std[i]))
            st = am_fail(AM_EFORMAT, "checkpoint: bad normalization");
    if (st == AM_OK && (ck->epoch < 0 || ck->step < 0 || ck->global_step < 0 || (has_mom != 0 && has_mom != 1) ||
                        (ck->momentum_started != 0 && ck->momentum_started != 1) ||
                        (ck->rng.has_spare != 0 && ck->rng.has_spare != 1) || !isfinite(ck->rng.spare)))
        st = am_fail(AM_EFORMAT, "checkpoint: bad position or state flags");
    if (st == AM_OK && (ck->n_weights == 0 || ck->n_weights > ((size_t)1 << 36) || ck->n_buffers > ((size_t)1 << 36)))
        st = am_fail(AM_EFORMAT, "checkpoint: bad tensor sizes");
    if (st == AM_OK) st = get_floats(&r, ck->n_weights, &ck->weights, "weights");
    if (st == AM_OK) st = get_floats(&r, ck->n_buffers, &ck->buffers, "running statistics");
    if (st == AM_OK && has_mom) st = get_floats(&r, ck->n_weights, &ck->momentum, "momentum buffer");
    if (st == AM_OK && ck->n_asym > ((size_t)1 << 32)) st = am_fail(AM_EFORMAT, "checkpoint: bad split state size");
    if (st == AM_OK && ck->n_asym) st = get_floats(&r, ck->n_asym, &ck->asym, "split-execution state");
    if (st == AM_OK && r.off != r.n) st = am_fail(AM_EFORMAT, "checkpoint: %zu unexpected bytes at the end of the payload", r.n - r.off);
    if (st != AM_OK) am_checkpoint_free(ck);
    return st;
}

/* What comes before the run's identity in the payload (version 5 on), after
 * the description: the training configuration (56 bytes), normalization
 * (36), position (12), sizes and flags (24), dropout generator (40), split
 * settings (44) and noise key (32), as put_payload writes them. */
#define BEFORE_RUN_ID (56 + 36 + 12 + 24 + 40 + 44 + 32)

static uint32_t le32(const uint8_t *b) { return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24; }

am_status am_checkpoint_peek_run(int fd, uint8_t run_id[AM_RUN_ID_BYTES]) {
    uint8_t h[64];
    ssize_t n = pread(fd, h, sizeof h, 0);
    if (n > 0 && am_is_sealed(h, (size_t)n)) {
        am_seal_id id;
        AM_TRY(am_seal_peek(h, (size_t)n, &id));
        if (id.role != AM_SEAL_CHECKPOINT) return am_fail(AM_EFORMAT, "a sealed %s file", am_seal_role_name(id.role));
        memcpy(run_id, id.id, AM_RUN_ID_BYTES);
        return AM_OK;
    }
    if (n < HEADER_LEN + 4 || memcmp(h, MAGIC, 4)) return am_fail(AM_EFORMAT, "not an asymml checkpoint");
    if (le32(h + 4) < 5) return am_fail(AM_EFORMAT, "checkpoint version %u names no run", le32(h + 4));
    uint32_t dl = le32(h + HEADER_LEN);
    if (!dl || dl > MAX_DESC) return am_fail(AM_EFORMAT, "checkpoint: bad model description length");
    off_t at = HEADER_LEN + 4 + (off_t)dl + BEFORE_RUN_ID;
    if (pread(fd, run_id, AM_RUN_ID_BYTES, at) != AM_RUN_ID_BYTES) return am_fail(AM_EFORMAT, "checkpoint truncated");
    return AM_OK;
}

void am_checkpoint_free(am_checkpoint *ck) {
    if (!ck) return;
    free(ck->desc);
    am_aligned_free(ck->weights);
    am_aligned_free(ck->buffers);
    am_aligned_free(ck->momentum);
    am_aligned_free(ck->asym);
    memset(ck, 0, sizeof *ck);
}

