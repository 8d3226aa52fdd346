/* Blinding's one-time pads: residues uniform mod p = 2^31 - 1 from the
 * ChaCha20 keystream (libsodium's IETF variant) under the model's secret
 * key, with the pad's number as the nonce's first 8 bytes: a fresh number
 * for every layer of every batch, so that no pad is ever used twice.
 *
 * A pad is made of segments of ASYM_PAD_SEG residues, each from its own
 * stretch of the keystream (segment j: blocks j SEG/16 on), so that
 * segments are drawn independently and in parallel. Each 32-bit word gives
 * 31 bits, uniform on [0, 2^31 - 1]; a word equal to p itself is replaced
 * by the next word not equal to p of the segment's own spare stream (the
 * nonce's last 4 bytes j + 1): every residue exactly uniform on [0, p),
 * all of them independent. */
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "trusted/split_impl.h"

static void nonce_of(uint64_t number, uint32_t spare, uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES]) {
    for (int i = 0; i < 8; i++) nonce[i] = (uint8_t)(number >> (8 * i));
    for (int i = 0; i < 4; i++) nonce[8 + i] = (uint8_t)(spare >> (8 * i));
}

/* The next word of a segment's spare stream that is not p. */
static uint32_t spare_word(const uint8_t key[32], uint64_t number, uint64_t seg, uint64_t *used) {
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
    nonce_of(number, (uint32_t)(seg + 1), nonce);
    for (;;) {
        uint8_t block[64];
        const uint64_t b = *used / 16;
        crypto_stream_chacha20_ietf_xor_ic(block, (const uint8_t[64]){0}, 64, nonce, (uint32_t)b, key);
        uint32_t w;
        memcpy(&w, block + 4 * (*used % 16), 4);
        sodium_memzero(block, sizeof block);
        ++*used;
        w &= 0x7fffffffu; /* byte order does not matter: the bits are uniform */
        if (w != AM_MODP) return w;
    }
}

void asym_pad_seg(const uint8_t key[32], uint64_t number, uint64_t seg, uint32_t out[ASYM_PAD_SEG]) {
    static const uint8_t zeros[4 * ASYM_PAD_SEG];
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
    nonce_of(number, 0, nonce);
    crypto_stream_chacha20_ietf_xor_ic((uint8_t *)out, zeros, sizeof zeros, nonce,
                                       (uint32_t)(seg * (ASYM_PAD_SEG / 16)), key);
    uint64_t used = 0;
    for (size_t i = 0; i < ASYM_PAD_SEG; i++) {
        out[i] &= 0x7fffffffu;
        if (out[i] == AM_MODP) out[i] = spare_word(key, number, seg, &used);
    }
}

void asym_pad(const uint8_t key[32], uint64_t number, size_t n, double *out) {
    const size_t segs = (n + ASYM_PAD_SEG - 1) / ASYM_PAD_SEG;
#pragma omp parallel for schedule(static) if (segs > 16)
    for (size_t j = 0; j < segs; j++) {
        uint32_t r[ASYM_PAD_SEG];
        asym_pad_seg(key, number, j, r);
        const size_t i0 = j * ASYM_PAD_SEG, m = n - i0 < ASYM_PAD_SEG ? n - i0 : ASYM_PAD_SEG;
        for (size_t i = 0; i < m; i++) out[i0 + i] = asym_center(r[i]);
        sodium_memzero(r, sizeof r);
    }
}
