/* Blinding's one-time pads: residues uniform mod p = 2^31 - 1 from the
 * ChaCha20 keystream (libsodium's IETF variant) under the model's secret
 * key, with the pad's number as nonce: a fresh number for every layer of
 * every batch, so that no pad is ever used twice. Each 32-bit word gives 31
 * bits, uniform on [0, 2^31 - 1]; the one value p itself is rejected and the
 * next word drawn, so the residues are exactly uniform on [0, p). */
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "trusted/split_impl.h"

#define WORDS 4096 /* keystream words drawn at a time */

void asym_pad(const uint8_t key[32], uint64_t number, size_t n, double *out) {
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
    for (int i = 0; i < 8; i++) nonce[i] = (uint8_t)(number >> (8 * i));
    static const uint8_t zeros[4 * WORDS];
    uint32_t words[WORDS];
    uint32_t block = 0; /* the keystream's 64-byte block counter */
    const double h = (AM_MODP - 1) / 2;
    size_t got = 0;
    while (got < n) {
        crypto_stream_chacha20_ietf_xor_ic((uint8_t *)words, zeros, sizeof words, nonce, block, key);
        block += (uint32_t)(sizeof words / 64);
        for (size_t i = 0; i < WORDS && got < n; i++) {
            uint32_t v = words[i] & 0x7fffffffu; /* byte order does not matter: the bits are uniform */
            if (v == AM_MODP) continue;
            out[got++] = (double)v - (v > h ? AM_MODP : 0);
        }
    }
    sodium_memzero(words, sizeof words);
}
