/* One batch's unblinding factors of one layer, sealed (asymml/factors.h):
 * pieces of PIECE values, each sealed on its own as the set's role and
 * store identity with index (the set's index << PIECE_BITS | the piece's
 * number), one after another. A piece moved, dropped, repeated or taken
 * from another set or store fails its authentication or its index; the
 * pieces are sealed and unsealed in parallel, so that reading a set is not
 * one core's stream cipher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/factors.h"
#include "asymml/seal.h"

#define PIECE ((size_t)1 << 20) /* values a piece: 4 MiB */
#define PIECE_BITS 11

static size_t pieces_of(size_t n) { return (n + PIECE - 1) / PIECE; }
static size_t piece_len(size_t n, size_t i) { return n - i * PIECE < PIECE ? n - i * PIECE : PIECE; }

size_t am_factor_set_size(size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < pieces_of(n); i++) total += am_sealed_size(piece_len(n, i) * 4);
    return total;
}

static am_status check_set(const am_seal_id *set, size_t n) {
    if (!n || pieces_of(n) > ((size_t)1 << PIECE_BITS) || set->index >> (64 - PIECE_BITS))
        return am_fail(AM_EINVAL, "factors: a set of %zu values or of index %llu is out of range", n,
                       (unsigned long long)set->index);
    return AM_OK;
}

/* The first failing piece's error, kept for the caller's thread (errors
 * are per thread): the same one whichever thread fails first. */
typedef struct fail_box {
    am_status st;
    size_t piece;
    char msg[512];
} fail_box;

static void keep_fail(fail_box *f, am_status st, size_t piece) {
#pragma omp critical(factor_set_fail)
    if (f->st == AM_OK || piece < f->piece) {
        f->st = st;
        f->piece = piece;
        snprintf(f->msg, sizeof f->msg, "%s", am_last_error());
    }
}

am_status am_factor_set_seal(const uint8_t *key, const am_seal_id *set, const int32_t *v, size_t n, uint8_t **out,
                             size_t *out_n) {
    AM_TRY(check_set(set, n));
    const size_t total = am_factor_set_size(n), pieces = pieces_of(n);
    uint8_t *o = malloc(total);
    if (!o) return am_fail(AM_ENOMEM, "factors: cannot hold %zu MiB", total >> 20);
    fail_box f = {AM_OK, 0, {0}};
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < pieces; i++) {
        am_seal_id id = *set;
        id.index = set->index << PIECE_BITS | i;
        uint8_t *c;
        size_t cn;
        const uint8_t *in = (const uint8_t *)(v + i * PIECE);
        am_status st = key ? am_seal(key, &id, in, piece_len(n, i) * 4, &c, &cn)
                           : am_seal_current(&id, in, piece_len(n, i) * 4, &c, &cn);
        if (st != AM_OK) {
            keep_fail(&f, st, i);
            continue;
        }
        memcpy(o + i * am_sealed_size(PIECE * 4), c, cn);
        free(c);
    }
    if (f.st != AM_OK) {
        free(o);
        return am_fail(f.st, "%s", f.msg);
    }
    *out = o;
    *out_n = total;
    return AM_OK;
}

/* Piece i of a set at in: unsealed into out, if it is that piece. */
static am_status unseal_piece(const uint8_t *key, const am_seal_id *set, const uint8_t *in, size_t i, size_t len,
                              const char *what, int32_t *out) {
    am_seal_id id;
    uint8_t *p;
    size_t pn;
    const size_t cn = am_sealed_size(len * 4);
    AM_TRY(key ? am_unseal(key, in, cn, what, &id, &p, &pn) : am_unseal_current(in, cn, what, &id, &p, &pn));
    am_status st = AM_OK;
    if (id.role != set->role || id.index != (set->index << PIECE_BITS | i) || memcmp(id.id, set->id, sizeof id.id) ||
        pn != len * 4)
        st = am_fail(AM_EFORMAT, "%s: piece %zu holds %s of index %llu (piece %llu) or of another store, not this "
                                 "store's factors of index %llu", what, i, am_seal_role_name(id.role),
                     (unsigned long long)(id.index >> PIECE_BITS),
                     (unsigned long long)(id.index & (((uint64_t)1 << PIECE_BITS) - 1)), (unsigned long long)set->index);
    else
        memcpy(out, p, pn);
    free(p);
    return st;
}

am_status am_factor_set_unseal(const uint8_t *key, const am_seal_id *set, const uint8_t *in, size_t in_n,
                               const char *what, int32_t *out, size_t n) {
    AM_TRY(check_set(set, n));
    if (in_n != am_factor_set_size(n))
        return am_fail(AM_EFORMAT, "%s: %zu bytes, not the %zu that %zu factors sealed take: truncated or altered", what,
                       in_n, am_factor_set_size(n), n);
    fail_box f = {AM_OK, 0, {0}};
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < pieces_of(n); i++) {
        am_status st =
            unseal_piece(key, set, in + i * am_sealed_size(PIECE * 4), i, piece_len(n, i), what, out + i * PIECE);
        if (st != AM_OK) keep_fail(&f, st, i);
    }
    return f.st == AM_OK ? AM_OK : am_fail(f.st, "%s", f.msg);
}
